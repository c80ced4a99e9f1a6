//! CRM export events: what a polling connector ([`super::salesforce`], [`super::hubspot`],
//! [`super::zoho`]) reads from the CRM's
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

/// A CRM's time in ms: RFC 3339 with `Z`, or with an offset written `+0000` (Salesforce) or
/// `+05:30` (Zoho).
pub fn parse_time(s: &str) -> Option<UnixMs> {
    let t = s.trim();
    let zone_at = t
        .char_indices()
        .skip(11)
        .find(|(_, c)| *c == '+' || *c == '-')
        .map(|(i, _)| i);
    let Some(i) = zone_at else {
        return UnixMs::parse_rfc3339(t);
    };
    let (head, zone) = t.split_at(i);
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hh: i64 = digits[..2].parse().ok()?;
    let mm: i64 = digits[2..].parse().ok()?;
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let base = UnixMs::parse_rfc3339(&format!("{head}Z"))?;
    Some(UnixMs(base.ms() - sign * (hh * 60 + mm) * 60_000))
}

/// `t` as RFC 3339 UTC with milliseconds (`2026-12-05T10:00:00.000Z`), as CRMs' queries take
/// it.
pub fn rfc3339_ms(t: UnixMs) -> String {
    let st = std::time::UNIX_EPOCH + Duration::from_millis(t.ms().max(0) as u64);
    humantime::format_rfc3339_millis(st).to_string()
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
        ConnectorTarget::HubSpot(h) => h.poll,
        ConnectorTarget::Zoho(z) => z.poll,
        _ => None,
    }
}

/// The vendor's name, for the events' paths and the stories.
pub fn vendor(c: &Connector) -> &'static str {
    match &c.target {
        ConnectorTarget::Salesforce(_) => "Salesforce",
        ConnectorTarget::HubSpot(_) => "HubSpot",
        ConnectorTarget::Zoho(_) => "Zoho",
        _ => "CRM",
    }
}

/// The user map of a polling connector.
pub fn users(c: &Connector) -> Option<&UserMap> {
    match &c.target {
        ConnectorTarget::Salesforce(s) => Some(&s.users),
        ConnectorTarget::HubSpot(h) => Some(&h.users),
        ConnectorTarget::Zoho(z) => Some(&z.users),
        _ => None,
    }
}

/// One poll of `c` for exports since `since` (blocking): the exports, or what failed.
pub fn poll(c: &Connector, since: UnixMs) -> Result<Vec<CrmExport>, String> {
    match &c.target {
        ConnectorTarget::Salesforce(s) => {
            super::salesforce::poll(s, since, c.timeout).map_err(|(_, d)| d)
        }
        ConnectorTarget::HubSpot(h) => {
            super::hubspot::poll(h, since, c.timeout).map_err(|(_, d)| d)
        }
        ConnectorTarget::Zoho(z) => super::zoho::poll(z, since, c.timeout).map_err(|(_, d)| d),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crm_times_read_with_every_offset_style() {
        let want = UnixMs::parse_rfc3339("2026-12-05T10:00:00Z");
        for t in [
            "2026-12-05T10:00:00Z",
            "2026-12-05T10:00:00.000+0000",
            "2026-12-05T12:00:00.000+0200",
            "2026-12-05T15:30:00+05:30",
            "2026-12-05T05:00:00-05:00",
        ] {
            assert_eq!(parse_time(t), want, "{t}");
        }
        assert_eq!(parse_time("2026-12-05T10:00:00+5"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

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
