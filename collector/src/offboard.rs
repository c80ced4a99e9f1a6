//! Offboarding: one command turns a leaver into signed, durable revocation orders for each
//! of their devices (carried out at the effective time, delivered at each device's next
//! heartbeat, surviving restarts because they live in the database), a status per device
//! from the devices' receipts, and a restore that undoes it. Every step is audited.

use crate::config::Config;
use crate::store::{AuditEntry, NewOrder, OffboardRow, OrderRow, Store, StoreError};
use holdfast_shared::order::{ActionReceipt, Order, OrderAction, OrderError};
use holdfast_shared::policy::{PolicySet, DEFAULT_PACK};
use holdfast_shared::signed::{kind, PolicyBundle, SignError, Signed, SignedBody};
use holdfast_shared::time::UnixMs;
use rand::RngCore;
use serde::Serialize;

/// Why an offboarding operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OffboardError {
    /// No device was ever enrolled for this user and no token was ever issued to them.
    #[error("unknown user `{0}`: no device or enrollment token was ever issued to them")]
    UnknownUser(String),
    /// There is nothing to restore or report: the user was never offboarded.
    #[error("`{0}` has not been offboarded")]
    NotOffboarded(String),
    /// The user is already being offboarded with another effective time: the signed orders
    /// carry that time, so a re-sent request does not silently keep or change it.
    #[error("`{user}` is already being offboarded, effective {current}; the new effective time {asked} is not applied (its orders are signed with the first one): to change it, `offboard restore {user}` and offboard again")]
    EffectiveChanged {
        user: String,
        current: String,
        asked: String,
    },
    /// The successor is the leaver, empty, or no name at all.
    #[error("successor `{0}`: {1}")]
    BadSuccessor(String, &'static str),
    /// The signing key could not be loaded.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// An order could not be signed or encoded.
    #[error("signing an order: {0}")]
    Sign(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SignError> for OffboardError {
    fn from(e: SignError) -> Self {
        OffboardError::Sign(e.to_string())
    }
}

impl From<OrderError> for OffboardError {
    fn from(e: OrderError) -> Self {
        OffboardError::Sign(e.to_string())
    }
}

pub use crate::Actor;

/// What to offboard.
#[derive(Debug, Clone)]
pub struct Request {
    pub user: String,
    /// When the orders take effect; `None`: now (and, for an offboarding already open,
    /// whatever it said).
    pub effective_ms: Option<UnixMs>,
    pub lookback_ms: i64,
    pub reason: String,
    /// When notice was given; the user is departing from then until the effective time
    /// (default: now).
    pub notice_ms: Option<UnixMs>,
    /// Who takes the leaver's customers over.
    pub successor: Option<String>,
}

/// The offboarding actions of the policy in force: the published bundle's, or the built-in
/// pack's when none was published.
pub fn policy_in_force(store: &Store) -> Result<PolicySet, OffboardError> {
    let published = store.current_policy()?.and_then(|p| {
        let env = Signed::from_bytes(&p.signed).ok()?;
        // Our own signature over our own stored bytes: decoding is enough here.
        let body = env.decode_unverified().ok()?;
        let bundle = PolicyBundle::from_bytes(&body.payload).ok()?;
        let refs: Vec<(&str, &str)> = bundle
            .files
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        PolicySet::compile(&refs, "~").ok()
    });
    match published {
        Some(set) => Ok(set),
        None => PolicySet::compile(DEFAULT_PACK, "~")
            .map_err(|e| OffboardError::Sign(format!("built-in policy pack: {e}"))),
    }
}

fn connector_names(config: &Config) -> Vec<String> {
    config.connectors.iter().map(|c| c.name.clone()).collect()
}

fn new_order_id() -> String {
    let mut b = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut b);
    format!("ord-{}", hex::encode(b))
}

/// Signs one order per device of `user`.
fn sign_orders(
    config: &Config,
    store: &Store,
    user: &str,
    order_kind: &str,
    actions: &[OrderAction],
    effective_ms: UnixMs,
    now_ms: UnixMs,
) -> Result<Vec<NewOrder>, OffboardError> {
    let key = crate::pki::signing_key(&config.data_dir)?;
    let mut out = Vec::new();
    for d in store.devices()?.into_iter().filter(|d| d.user == user) {
        let order = Order {
            id: new_order_id(),
            device_id: d.id.clone(),
            user: user.to_string(),
            actions: actions.to_vec(),
        };
        let signed = Signed::sign(
            &key,
            &SignedBody {
                kind: kind::ORDER.into(),
                version: order.id.clone(),
                issued_ms: now_ms,
                payload: order.to_bytes()?,
            },
        )?;
        out.push(NewOrder {
            id: order.id,
            device_id: d.id,
            kind: order_kind.into(),
            effective_ms,
            signed: signed.to_bytes()?,
        });
    }
    Ok(out)
}

/// What `offboard` did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Started {
    pub user: String,
    /// False when an offboarding was already open (nothing changed).
    pub started: bool,
    pub devices: usize,
    pub effective_ms: UnixMs,
}

/// Offboards a user: one signed order per device, effective at `effective_ms`. Idempotent:
/// while an offboarding is open, a second call changes nothing.
pub fn start(
    config: &Config,
    store: &mut Store,
    req: &Request,
    actor: &Actor,
    now_ms: UnixMs,
) -> Result<Started, OffboardError> {
    if !store.user_known(&req.user)? {
        return Err(OffboardError::UnknownUser(req.user.clone()));
    }
    if let Some(row) = store.offboarding(&req.user)? {
        if row.restored_ms.is_none() {
            // The same time to the second (an RFC 3339 time sent twice) is the same request.
            if let Some(asked) = req.effective_ms {
                let same = asked.ms() / 1000 == row.effective_ms.ms() / 1000;
                // "Now" again, once the offboarding is in effect, asks for nothing new.
                let already = asked <= now_ms && row.effective_ms <= now_ms;
                if !same && !already {
                    return Err(OffboardError::EffectiveChanged {
                        user: req.user.clone(),
                        current: crate::fmt_ms(row.effective_ms),
                        asked: crate::fmt_ms(asked),
                    });
                }
            }
            let devices = store.orders_of(&req.user)?.len();
            return Ok(Started {
                user: req.user.clone(),
                started: false,
                devices,
                effective_ms: row.effective_ms,
            });
        }
    }
    if let Some(s) = &req.successor {
        let why = if s.trim().is_empty() || s.len() > 256 {
            Some("must be 1 to 256 characters")
        } else if s.chars().any(char::is_control) {
            Some("must not hold a control character")
        } else if *s == req.user {
            Some("must be someone other than the leaver")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(OffboardError::BadSuccessor(s.clone(), why));
        }
    }
    let plan = policy_in_force(store)?.offboard;
    let notice_ms = req.notice_ms.unwrap_or(now_ms).min(now_ms);
    let effective_ms = req.effective_ms.unwrap_or(now_ms).max(now_ms);
    let orders = sign_orders(
        config,
        store,
        &req.user,
        "offboard",
        &plan.actions(),
        effective_ms,
        now_ms,
    )?;
    let devices = orders.len();
    let started = store.start_offboarding(
        &OffboardRow {
            user: req.user.clone(),
            started_ms: now_ms,
            effective_ms,
            lookback_ms: req.lookback_ms,
            reason: req.reason.clone(),
            restored_ms: None,
            notice_ms,
            raise_levels: plan.departing_raise,
            successor: req.successor.clone(),
        },
        &orders,
        &connector_names(config),
        &AuditEntry::by(
            actor,
            now_ms,
            "offboard",
            &req.user,
            format!(
                "effective {}, look-back {} days, {} device(s), reason: {}{}",
                crate::fmt_ms(effective_ms),
                req.lookback_ms / 86_400_000,
                devices,
                req.reason,
                req.successor
                    .as_ref()
                    .map(|s| format!(", successor: {s}"))
                    .unwrap_or_default()
            ),
        ),
    )?;
    Ok(Started {
        user: req.user.clone(),
        started,
        devices,
        effective_ms,
    })
}

/// Undoes an offboarding: each device puts quarantined files back and gives access back.
/// Returns false when it was already restored.
pub fn restore(
    config: &Config,
    store: &mut Store,
    user: &str,
    actor: &Actor,
    now_ms: UnixMs,
) -> Result<bool, OffboardError> {
    match store.offboarding(user)? {
        None => return Err(OffboardError::NotOffboarded(user.to_string())),
        Some(row) if row.restored_ms.is_some() => return Ok(false),
        Some(_) => {}
    }
    let orders = sign_orders(
        config,
        store,
        user,
        "restore",
        &[OrderAction::Restore],
        now_ms,
        now_ms,
    )?;
    Ok(store.restore_offboarding(
        user,
        now_ms,
        &orders,
        &connector_names(config),
        &AuditEntry::by(
            actor,
            now_ms,
            "offboard.restore",
            user,
            format!("{} device(s)", orders.len()),
        ),
    )?)
}

/// Starts the user's failed connector calls again. Returns how many.
pub fn retry(
    store: &mut Store,
    user: &str,
    actor: &Actor,
    now_ms: UnixMs,
) -> Result<usize, OffboardError> {
    if store.offboarding(user)?.is_none() {
        return Err(OffboardError::NotOffboarded(user.to_string()));
    }
    Ok(store.retry_connectors(
        user,
        now_ms,
        &AuditEntry::by(actor, now_ms, "connector.retry", user, String::new()),
    )?)
}

/// The look-back report and handover list: the window is the offboarding's look-back before
/// its effective time.
pub fn report(store: &Store, user: &str) -> Result<crate::report::Report, OffboardError> {
    let row = store
        .offboarding(user)?
        .ok_or_else(|| OffboardError::NotOffboarded(user.to_string()))?;
    let to = row.effective_ms;
    let from = to - row.lookback_ms;
    let window = store.events_of_user(user, from, to, crate::report::MAX_EVENTS)?;
    // What they hold is as last reported, not as at the effective time: a file quarantined
    // or deleted since is held no more.
    let history = store.events_of_user(
        user,
        UnixMs(i64::MIN),
        UnixMs(i64::MAX),
        crate::report::MAX_EVENTS,
    )?;
    let hosts = store
        .devices()?
        .into_iter()
        .map(|d| (d.id, d.hostname))
        .collect();
    let mut r = crate::report::build(user, from, to, &window, &history, &hosts);
    r.handover.successor = row.successor;
    r.handover.customers = store.handed_over_of(user)?;
    Ok(r)
}

/// One device's orders, for `offboard status`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeviceStatus {
    pub device_id: String,
    pub hostname: String,
    /// The state of the device's latest order.
    pub state: String,
    pub orders: Vec<OrderStatus>,
}

/// One order, for `offboard status`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OrderStatus {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub effective_ms: UnixMs,
    pub delivered_ms: Option<UnixMs>,
    pub done_ms: Option<UnixMs>,
    #[schemars(with = "Vec<serde_json::Value>")]
    pub receipts: Vec<ActionReceipt>,
}

/// `offboard status USER`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Status {
    /// The offboarding as stored.
    #[serde(flatten)]
    pub offboarding: crate::store::OffboardRow,
    pub devices: Vec<DeviceStatus>,
    /// Each connector call with its attempts and last result.
    pub connectors: Vec<crate::store::ConnectorRun>,
}

/// Where each device of an offboarded user stands.
pub fn status(store: &Store, user: &str, now_ms: UnixMs) -> Result<Status, OffboardError> {
    let row = store
        .offboarding(user)?
        .ok_or_else(|| OffboardError::NotOffboarded(user.to_string()))?;
    let orders: Vec<OrderRow> = store.orders_of(user)?;
    let hosts = store.devices()?;
    let mut devices: Vec<DeviceStatus> = Vec::new();
    for o in orders {
        let st = OrderStatus {
            state: o.state(now_ms).to_string(),
            id: o.id,
            kind: o.kind,
            effective_ms: o.effective_ms,
            delivered_ms: o.delivered_ms,
            done_ms: o.done_ms,
            receipts: o.receipts,
        };
        match devices.iter_mut().find(|d| d.device_id == o.device_id) {
            Some(d) => {
                d.state = st.state.clone();
                d.orders.push(st);
            }
            None => devices.push(DeviceStatus {
                hostname: hosts
                    .iter()
                    .find(|h| h.id == o.device_id)
                    .map(|h| h.hostname.clone())
                    .unwrap_or_default(),
                device_id: o.device_id,
                state: st.state.clone(),
                orders: vec![st],
            }),
        }
    }
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    Ok(Status {
        offboarding: row,
        devices,
        connectors: store.connector_runs_of(user)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Device;

    fn device(id: &str, user: &str) -> Device {
        Device {
            id: id.into(),
            user: user.into(),
            hostname: format!("{id}.local"),
            cert_sha256: format!("sha-{id}"),
            ..Device::default()
        }
    }

    #[test]
    fn a_successor_is_checked_stored_reported_and_audited() {
        let (_dir, config, mut store) = crate::store::fixtures::configured();
        store.add_device(&device("d1", "kim")).unwrap();
        let actor = Actor {
            who: "cli:test".into(),
            origin: "cli@here".into(),
        };
        let req = |successor: &str| Request {
            user: "kim".into(),
            effective_ms: Some(UnixMs(0)),
            lookback_ms: 86_400_000,
            reason: String::new(),
            notice_ms: None,
            successor: Some(successor.into()),
        };
        for (bad, says) in [
            (
                "kim",
                "successor `kim`: must be someone other than the leaver",
            ),
            ("", "successor ``: must be 1 to 256 characters"),
            (
                "li\nsi",
                "successor `li\nsi`: must not hold a control character",
            ),
        ] {
            let e = start(&config, &mut store, &req(bad), &actor, UnixMs(100)).unwrap_err();
            assert_eq!(e.to_string(), says);
        }
        assert!(
            store.offboarding("kim").unwrap().is_none(),
            "nothing started"
        );
        assert!(
            start(&config, &mut store, &req("lisi"), &actor, UnixMs(100))
                .unwrap()
                .started
        );
        let st = status(&store, "kim", UnixMs(100)).unwrap();
        assert_eq!(st.offboarding.successor.as_deref(), Some("lisi"));
        assert_eq!(
            report(&store, "kim").unwrap().handover.successor.as_deref(),
            Some("lisi")
        );
        let audit = store.audit_log(10).unwrap();
        assert!(
            audit[0].detail.ends_with(", successor: lisi"),
            "{:?}",
            audit[0]
        );
        let run = crate::store::ConnectorRun {
            id: 1,
            user: "kim".into(),
            event: "offboard".into(),
            connector: "c".into(),
            created_ms: UnixMs(0),
            next_ms: UnixMs(0),
            attempts: 0,
            status: crate::store::RunStatus::Pending,
            last: None,
        };
        let body: serde_json::Value =
            serde_json::from_slice(&crate::connectors::payload(&run, Some(&st.offboarding)))
                .unwrap();
        assert_eq!(body["successor"], "lisi");
    }

    #[test]
    fn offboarding_signs_one_order_per_device_of_the_user() {
        let (dir, config, mut store) = crate::store::fixtures::configured();
        for (id, user) in [("d1", "kim"), ("d2", "kim"), ("d3", "lee")] {
            store.add_device(&device(id, user)).unwrap();
        }
        let actor = Actor {
            who: "cli:test".into(),
            origin: "cli@here".into(),
        };
        let req = |user: &str| Request {
            user: user.into(),
            effective_ms: None,
            lookback_ms: 90 * 86_400_000,
            reason: "resigned".into(),
            notice_ms: None,
            successor: None,
        };
        let err = start(&config, &mut store, &req("nobody"), &actor, UnixMs(100)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown user `nobody`: no device or enrollment token was ever issued to them"
        );
        let s = start(&config, &mut store, &req("kim"), &actor, UnixMs(100)).unwrap();
        assert_eq!(
            (s.started, s.devices, s.effective_ms),
            (true, 2, UnixMs(100))
        );
        assert!(
            !start(&config, &mut store, &req("kim"), &actor, UnixMs(200))
                .unwrap()
                .started
        );
        // Sent again: "now" once more, or a time already past, asks nothing new; a new
        // date is refused and says why, and changes nothing.
        let at = |t: i64| Request {
            effective_ms: Some(UnixMs(t)),
            ..req("kim")
        };
        assert!(
            !start(&config, &mut store, &at(150), &actor, UnixMs(200))
                .unwrap()
                .started
        );
        let later = start(
            &config,
            &mut store,
            &at(1_800_000_000_000),
            &actor,
            UnixMs(200),
        );
        let Err(e @ OffboardError::EffectiveChanged { .. }) = later else {
            panic!("{later:?}");
        };
        assert!(
            e.to_string().starts_with("`kim` is already being offboarded, effective 1970-01-01T00:00:00Z; the new effective time 2027-01-15T08:00:00Z is not applied"),
            "{e}"
        );
        assert_eq!(
            store.offboarding("kim").unwrap().unwrap().effective_ms,
            UnixMs(100)
        );
        // Each order verifies under the collector's key, is an order, and names its device.
        let pk = holdfast_shared::signed::public_key(&crate::pki::signing_key(dir.path()).unwrap())
            .unwrap();
        let due = store.orders_due("d2", UnixMs(100)).unwrap();
        assert_eq!(due.len(), 1);
        let body = Signed::from_bytes(&due[0])
            .unwrap()
            .verify(&pk, kind::ORDER)
            .unwrap();
        let order = Order::from_bytes(&body.payload, "d2").unwrap();
        assert_eq!(order.user, "kim");
        // The built-in pack quarantines, strips ~/Customers and purges CRM caches.
        let names: Vec<&str> = order.actions.iter().map(OrderAction::name).collect();
        assert_eq!(names, ["quarantine", "strip_access", "purge"]);
        assert!(Order::from_bytes(&body.payload, "d1").is_err());
        let st = status(&store, "kim", UnixMs(100)).unwrap();
        let states: Vec<String> = st
            .devices
            .iter()
            .map(|d| d.device_id.clone() + " " + &d.state)
            .collect();
        assert_eq!(states, ["d1 pending", "d2 delivered"]);
        assert!(restore(&config, &mut store, "kim", &actor, UnixMs(300)).unwrap());
        assert!(!restore(&config, &mut store, "kim", &actor, UnixMs(301)).unwrap());
        assert!(matches!(
            restore(&config, &mut store, "lee", &actor, UnixMs(300)),
            Err(OffboardError::NotOffboarded(_))
        ));
    }
}
