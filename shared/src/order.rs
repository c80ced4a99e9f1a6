//! Revocation orders and their receipts: what the collector tells one device to do when its
//! user is offboarded (or the offboarding is undone), and what the device answers.
//!
//! An order travels inside a [`crate::signed::Signed`] envelope of kind `order` and names
//! the one device it is for, so an order copied to another device is refused there. The
//! actions are plain values; the agent carries them out and answers one
//! [`ActionReceipt`] per action.

use serde::{Deserialize, Serialize};

/// One thing a device is told to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum OrderAction {
    /// Move customer-classified files under these folders (`~` is the device user's home;
    /// empty: the agent's watched places) into the root-only quarantine, with a manifest.
    Quarantine {
        #[serde(default)]
        paths: Vec<String>,
        /// A file is a customer file from this many records in a customer table.
        min_records: u64,
    },
    /// Take the user's access to these folders away (owner and mode, or ACLs).
    StripAccess { paths: Vec<String> },
    /// Delete these caches (CRM offline data, tokens), recording what was removed.
    Purge { paths: Vec<String> },
    /// Undo an earlier offboarding: put quarantined files back byte-identical and give the
    /// stripped access back.
    Restore,
}

impl OrderAction {
    /// The action's name in receipts, the CLI and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            OrderAction::Quarantine { .. } => "quarantine",
            OrderAction::StripAccess { .. } => "strip_access",
            OrderAction::Purge { .. } => "purge",
            OrderAction::Restore => "restore",
        }
    }
}

/// An order for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Unique, chosen by the collector; the agent carries out each id once.
    pub id: String,
    /// The device it is for: any other device refuses it.
    pub device_id: String,
    /// The user being offboarded.
    pub user: String,
    pub actions: Vec<OrderAction>,
}

/// Why an order's payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The payload does not decode as an order.
    #[error("malformed order: {0}")]
    Malformed(String),
    /// The order names another device.
    #[error("order {id} is for device {for_device}, not this one")]
    WrongDevice { id: String, for_device: String },
}

impl Order {
    /// Payload bytes for a signed body.
    pub fn to_bytes(&self) -> Result<Vec<u8>, OrderError> {
        rmp_serde::to_vec_named(self).map_err(|e| OrderError::Malformed(e.to_string()))
    }

    /// Decodes a verified payload and checks that it is meant for `device_id`.
    pub fn from_bytes(bytes: &[u8], device_id: &str) -> Result<Order, OrderError> {
        let o: Order =
            rmp_serde::from_slice(bytes).map_err(|e| OrderError::Malformed(e.to_string()))?;
        if o.device_id != device_id {
            return Err(OrderError::WrongDevice {
                id: o.id,
                for_device: o.device_id,
            });
        }
        Ok(o)
    }
}

/// How one action went on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionReceipt {
    /// [`OrderAction::name`].
    pub action: String,
    /// True when everything the action covers was done.
    pub ok: bool,
    /// Items handled (files quarantined or restored, folders stripped, caches removed).
    pub items: u64,
    /// Bytes involved (quarantined, purged).
    pub bytes: u64,
    /// What went wrong, or a short account of what was done (paths, never content).
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8], device: &str, want: Result<&str, OrderError>) {
        let got = Order::from_bytes(bytes, device).map(|o| o.id);
        assert_eq!(got, want.map(str::to_string));
    }

    #[test]
    fn orders_round_trip_only_to_their_device() {
        let o = Order {
            id: "ord-1".into(),
            device_id: "dev-a".into(),
            user: "kim".into(),
            actions: vec![
                OrderAction::Quarantine {
                    paths: vec![],
                    min_records: 10,
                },
                OrderAction::StripAccess {
                    paths: vec!["~/Customers".into()],
                },
                OrderAction::Purge {
                    paths: vec!["~/.cache/crm".into()],
                },
                OrderAction::Restore,
            ],
        };
        let b = o.to_bytes().unwrap();
        assert_eq!(Order::from_bytes(&b, "dev-a").unwrap(), o);
        check(&b, "dev-a", Ok("ord-1"));
        check(
            &b,
            "dev-b",
            Err(OrderError::WrongDevice {
                id: "ord-1".into(),
                for_device: "dev-a".into(),
            }),
        );
        assert!(matches!(
            Order::from_bytes(b"\xc1", "dev-a"),
            Err(OrderError::Malformed(_))
        ));
        let names: Vec<&str> = o.actions.iter().map(OrderAction::name).collect();
        assert_eq!(names, ["quarantine", "strip_access", "purge", "restore"]);
    }
}
