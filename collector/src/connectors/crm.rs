//! CRM export events: what a polling connector ([`super::salesforce`]) reads from the CRM's
//! own event log, the mapping from the CRM's login to a Holdfast user, and the one call the
//! collector's poller makes. The events then go through the store's `crm` ingest, which holds
//! them to the same rules as an agent's file events.

use super::{Connector, ConnectorTarget};
use holdfast_shared::time::UnixMs;
use std::collections::BTreeMap;
use std::time::Duration;

/// One export the CRM recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmExport {
    /// The CRM's id of the event (unique per CRM: a second poll of it is dropped).
    pub id: String,
    pub time_ms: UnixMs,
    /// The CRM login (username or email) that exported.
    pub login: String,
    /// The report's (or list's) name, as the CRM shows it.
    pub report: String,
    /// Records (rows) exported.
    pub records: u64,
    /// What the records are (`Account, Contact`), when the CRM says.
    pub entity: Option<String>,
    /// `csv`, `xlsx`, … when the CRM says.
    pub format: Option<String>,
    /// How it was exported, in words (`Salesforce report export (Lightning)`).
    pub how: String,
}

/// CRM logins → Holdfast users: the table first (case-insensitive), then the connector's
/// `login` template read backwards (`{user}@acme.example`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserMap {
    table: BTreeMap<String, String>,
    login: String,
}

impl UserMap {
    pub fn new(table: BTreeMap<String, String>, login: &str) -> UserMap {
        UserMap {
            table: table
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
            login: login.to_string(),
        }
    }

    /// The Holdfast user of CRM login `login`, or `None` when neither the table nor the
    /// template names one.
    pub fn user_of(&self, login: &str) -> Option<String> {
        let lower = login.to_lowercase();
        if let Some(u) = self.table.get(&lower) {
            return Some(u.clone());
        }
        let (prefix, suffix) = self.login.split_once("{user}")?;
        let user = lower
            .strip_prefix(&prefix.to_lowercase())?
            .strip_suffix(&suffix.to_lowercase())?;
        crate::valid_name(user).then(|| user.to_string())
    }
}

/// The CRM's name as alerts and stories show it, and the device id its events are stored
/// under (`crm:<connector>`).
pub fn device_of(c: &Connector) -> String {
    format!("crm:{}", c.name)
}

/// Whether `c` polls a CRM for exports, and how often.
pub fn poll_every(c: &Connector) -> Option<Duration> {
    match &c.target {
        ConnectorTarget::Salesforce(s) => s.poll,
        _ => None,
    }
}

/// The vendor's name, for the events' paths and the stories.
pub fn vendor(c: &Connector) -> &'static str {
    match &c.target {
        ConnectorTarget::Salesforce(_) => "Salesforce",
        _ => "CRM",
    }
}

/// The user map of a polling connector.
pub fn users(c: &Connector) -> Option<&UserMap> {
    match &c.target {
        ConnectorTarget::Salesforce(s) => Some(&s.users),
        _ => None,
    }
}

/// One poll of `c` for exports since `since` (blocking): the exports, or what failed.
pub fn poll(c: &Connector, since: UnixMs) -> Result<Vec<CrmExport>, String> {
    match &c.target {
        ConnectorTarget::Salesforce(s) => {
            super::salesforce::poll(s, since, c.timeout).map_err(|(_, d)| d)
        }
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_map_to_users_by_table_then_template() {
        let m = UserMap::new(
            [("Kim.Lee@Acme.example".to_string(), "kim".to_string())].into(),
            "{user}@acme.example",
        );
        for (login, want) in [
            ("kim.lee@acme.example", Some("kim")),
            ("ada@acme.example", Some("ada")),
            ("ADA@ACME.EXAMPLE", Some("ada")),
            ("ada@other.example", None),
            ("@acme.example", None),
            ("a b@acme.example", None),
        ] {
            assert_eq!(m.user_of(login).as_deref(), want, "{login}");
        }
    }
}
