//! What each configured connector is, what it does at an offboarding and a restore, and,
//! for a CRM that is polled for exports, how its polling stands: `connectors list`.

use super::{crm, Connector, ConnectorTarget};
use crate::store::{Store, StoreError};
use holdfast_shared::time::UnixMs;

/// One connector, as `connectors list` shows it. No secret, no URL path with a token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorStatus {
    pub name: String,
    /// `webhook`, `command`, `scim`, `wecom`, `salesforce`, `hubspot`, `zoho` or `dingtalk`.
    pub kind: &'static str,
    /// What an offboarding does there.
    pub offboarding: String,
    /// What a restore does there.
    pub restore: String,
    /// Seconds between polls of the CRM's exports; `None` when it is not polled.
    pub poll_every_s: Option<u64>,
    pub last_poll_ms: Option<UnixMs>,
    /// Whether the last poll worked (`None`: never polled).
    pub poll_ok: Option<bool>,
    /// The last poll's outcome: how many exports it read, or what failed.
    pub poll_detail: String,
    /// Exports from this CRM stored so far.
    pub exports: i64,
}

/// The kind of `target`, as collector.toml writes it.
pub fn kind(target: &ConnectorTarget) -> &'static str {
    match target {
        ConnectorTarget::Webhook { .. } => "webhook",
        ConnectorTarget::Command { .. } => "command",
        ConnectorTarget::Scim(_) => "scim",
        ConnectorTarget::WeCom(_) => "wecom",
        ConnectorTarget::Salesforce(_) => "salesforce",
        ConnectorTarget::HubSpot(_) => "hubspot",
        ConnectorTarget::Zoho(_) => "zoho",
        ConnectorTarget::DingTalk(_) => "dingtalk",
    }
}

/// What an offboarding and a restore do through `target`.
fn actions(target: &ConnectorTarget) -> (String, String) {
    use super::scim::OnRestore;
    let told = ("told (signed JSON POST)".to_string(), "told".to_string());
    let restore = |r: OnRestore| match r {
        OnRestore::Leave => "left disabled".to_string(),
        OnRestore::Reactivate => "re-enabled".to_string(),
    };
    match target {
        ConnectorTarget::Webhook { .. } => told,
        ConnectorTarget::Command { .. } => ("program run".into(), "program run".into()),
        ConnectorTarget::Scim(s) => ("active=false, read back".into(), restore(s.on_restore)),
        ConnectorTarget::WeCom(_) => (
            "customers and groups handed to the successor".into(),
            "nothing (a handover is not undone)".into(),
        ),
        ConnectorTarget::Salesforce(s) => match s.action {
            super::salesforce::SfAction::Freeze => {
                ("user frozen, read back".into(), "unfrozen".into())
            }
            super::salesforce::SfAction::Deactivate => {
                ("user deactivated, read back".into(), "left inactive".into())
            }
        },
        ConnectorTarget::HubSpot(_) => (
            "user removed, read back".into(),
            "nothing (HubSpot cannot bring a removed user back)".into(),
        ),
        ConnectorTarget::Zoho(_) => ("nothing (exports polled only)".into(), "nothing".into()),
        ConnectorTarget::DingTalk(d) => (
            "account disabled and signed out, read back".into(),
            restore(d.on_restore),
        ),
    }
}

/// Every connector of `connectors`, in collector.toml's order, with its polling state.
pub fn overview(
    store: &Store,
    connectors: &[Connector],
    now: UnixMs,
) -> Result<Vec<ConnectorStatus>, StoreError> {
    connectors
        .iter()
        .map(|c| {
            let (offboarding, restore) = actions(&c.target);
            let every = crm::poll_every(c);
            let poll = match every {
                Some(_) => Some(store.crm_poll(&c.name, now)?),
                None => None,
            };
            Ok(ConnectorStatus {
                name: c.name.clone(),
                kind: kind(&c.target),
                offboarding,
                restore,
                poll_every_s: every.map(|d| d.as_secs()),
                last_poll_ms: poll.as_ref().and_then(|p| p.polled_ms),
                poll_ok: poll
                    .as_ref()
                    .and_then(|p| p.polled_ms.is_some().then_some(p.ok)),
                poll_detail: poll.as_ref().map(|p| p.detail.clone()).unwrap_or_default(),
                exports: poll.as_ref().map(|p| p.exports).unwrap_or(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str, setup: impl FnOnce(&Store), want: &[(&str, &str, Option<bool>, &str)]) {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s");
        std::fs::write(&secret, "0123456789abcdef0123\n").unwrap();
        let src = toml.replace("SECRET", &secret.display().to_string());
        let config = crate::config::Config::parse(&dir.path().join("c.toml"), &src).unwrap();
        let connectors = config.connectors;
        let store = Store::open(&dir.path().join("db")).unwrap();
        setup(&store);
        let got = overview(&store, &connectors, UnixMs(1)).unwrap();
        let got: Vec<_> = got
            .iter()
            .map(|s| {
                (
                    s.kind,
                    s.offboarding.as_str(),
                    s.poll_ok,
                    s.poll_detail.as_str(),
                )
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn each_kind_says_what_it_does_and_how_polling_stands() {
        let toml = "[[connector]]\nname = \"hook\"\nwebhook = \"https://h.example/x\"\nsecret_file = \"SECRET\"\n\
            [[connector]]\nname = \"sf\"\nkind = \"salesforce\"\nurl = \"https://acme.my.salesforce.com\"\nclient_id = \"k\"\nsecret_file = \"SECRET\"\npoll = \"5m\"\n\
            [[connector]]\nname = \"hs\"\nkind = \"hubspot\"\ntoken_file = \"SECRET\"\npoll = \"1m\"\n";
        check(
            toml,
            |s| {
                s.record_crm_poll("sf", UnixMs(5), UnixMs(9), false, "invalid_client")
                    .unwrap();
            },
            &[
                ("webhook", "told (signed JSON POST)", None, ""),
                (
                    "salesforce",
                    "user frozen, read back",
                    Some(false),
                    "invalid_client",
                ),
                ("hubspot", "user removed, read back", None, ""),
            ],
        );
    }
}
