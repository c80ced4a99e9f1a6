//! The `[[connector]]` tables of collector.toml: read raw, then validated into
//! [`Connector`]s, each secret read from its file (relative to the config's folder).

use super::{Connector, ConnectorTarget};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnector {
    name: String,
    /// `webhook`, `command` or `scim`; absent, the one of `webhook`/`command` given.
    kind: Option<String>,
    webhook: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    command: Option<Vec<String>>,
    /// `scim`: the base URL, the bearer token's file, how the user is found, their name there
    /// and what a restore does.
    url: Option<String>,
    /// `wecom`: the corp id (`secret_file` holds the customer-contact secret).
    corpid: Option<String>,
    token_file: Option<PathBuf>,
    #[serde(rename = "match")]
    match_by: Option<String>,
    login: Option<String>,
    on_restore: Option<String>,
    /// `salesforce`: the connected app's consumer key, what an offboarding does, how often
    /// exports are polled, and CRM logins → Holdfast users.
    client_id: Option<String>,
    action: Option<String>,
    poll: Option<String>,
    users: Option<std::collections::BTreeMap<String, String>>,
    retry_base: Option<String>,
    max_attempts: Option<u32>,
    timeout: Option<String>,
}

/// `v` as a duration of at least `min` (`default` when absent).
fn duration(
    field: &str,
    v: &Option<String>,
    default: Duration,
    min: Duration,
) -> Result<Duration, String> {
    let Some(v) = v else { return Ok(default) };
    let d = humantime::parse_duration(v)
        .map_err(|e| format!("{field} `{v}`: {e} (write e.g. \"10m\", \"30s\")"))?;
    if d < min {
        let min = humantime::format_duration(min);
        return Err(format!(
            "{field} `{v}` is shorter than the minimum of {min}"
        ));
    }
    Ok(d)
}

/// The validated connectors; an error names the connector (`connector[i] (name): ...`).
pub(crate) fn connectors(base: &Path, raw: Vec<RawConnector>) -> Result<Vec<Connector>, String> {
    let mut connectors: Vec<Connector> = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        let bad = |message: String| format!("connector[{i}] ({}): {message}", c.name);
        if !crate::valid_name(&c.name) {
            return Err(bad(
                "name must be 1 to 64 letters, digits, '-', '_' or '.'".into()
            ));
        }
        if connectors.iter().any(|o| o.name == c.name) {
            return Err(bad("duplicate name".into()));
        }
        // The fields of the API kinds, with the kinds they belong to.
        let api_fields = [
            (
                "url",
                c.url.is_some(),
                "\"scim\", \"wecom\" or \"salesforce\"",
            ),
            ("client_id", c.client_id.is_some(), "\"salesforce\""),
            ("action", c.action.is_some(), "\"salesforce\""),
            ("poll", c.poll.is_some(), "\"salesforce\""),
            ("users", c.users.is_some(), "\"salesforce\""),
            ("corpid", c.corpid.is_some(), "\"wecom\""),
            ("token_file", c.token_file.is_some(), "\"scim\""),
            ("match", c.match_by.is_some(), "\"scim\""),
            (
                "login",
                c.login.is_some(),
                "\"scim\", \"wecom\" or \"salesforce\"",
            ),
            ("on_restore", c.on_restore.is_some(), "\"scim\""),
        ];
        let target = match (c.kind.as_deref(), &c.webhook, &c.command) {
            (Some("scim"), None, None) => {
                ConnectorTarget::Scim(scim_target(base, &c).map_err(bad)?)
            }
            (Some("wecom"), None, None) => {
                ConnectorTarget::WeCom(wecom_target(base, &c).map_err(bad)?)
            }
            (Some("salesforce"), None, None) => {
                ConnectorTarget::Salesforce(salesforce_target(base, &c).map_err(bad)?)
            }
            (Some(k @ ("scim" | "wecom" | "salesforce")), _, _) => {
                return Err(bad(format!(
                    "kind = \"{k}\" takes no `webhook` or `command`"
                )))
            }
            (Some(k), _, _) if !["webhook", "command"].contains(&k) => {
                return Err(bad(format!(
                    "unknown kind `{k}`, expected one of webhook, command, scim, wecom, salesforce"
                )))
            }
            _ if api_fields.iter().any(|(_, given, _)| *given) => {
                let (field, _, kinds) = api_fields
                    .iter()
                    .find(|(_, g, _)| *g)
                    .copied()
                    .unwrap_or_default();
                return Err(bad(format!("`{field}` belongs to kind = {kinds}")));
            }
            (Some("webhook"), None, _) => {
                return Err(bad("kind = \"webhook\" needs `webhook`".into()))
            }
            (Some("command"), _, None) => {
                return Err(bad("kind = \"command\" needs `command`".into()))
            }
            (_, Some(url), None) => {
                let secret = webhook_secret(base, url, &c.secret, &c.secret_file).map_err(bad)?;
                ConnectorTarget::Webhook {
                    url: url.clone(),
                    secret,
                }
            }
            (_, None, Some(argv)) if !argv.is_empty() && !argv[0].is_empty() => {
                ConnectorTarget::Command { argv: argv.clone() }
            }
            (_, None, Some(_)) => return Err(bad("command is empty".into())),
            _ => return Err(bad("needs exactly one of `webhook` or `command`".into())),
        };
        let retry_base = duration(
            "retry_base",
            &c.retry_base,
            Duration::from_secs(5),
            Duration::from_millis(100),
        )
        .map_err(bad)?;
        let timeout = duration(
            "timeout",
            &c.timeout,
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
        .map_err(bad)?;
        let max_attempts = c.max_attempts.unwrap_or(8);
        if !(1..=100).contains(&max_attempts) {
            return Err(bad("max_attempts must be within 1..=100".into()));
        }
        connectors.push(Connector {
            name: c.name.clone(),
            target,
            retry_base,
            max_attempts,
            timeout,
        });
    }
    Ok(connectors)
}

/// Checks a webhook URL and reads its HMAC secret (given inline or in a file beside the
/// config): the same rules for connectors and forwarders.
pub(crate) fn webhook_secret(
    base: &Path,
    url: &str,
    secret: &Option<String>,
    secret_file: &Option<PathBuf>,
) -> Result<Vec<u8>, String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(format!("webhook `{url}` must be an http(s):// URL"));
    }
    let secret = match (secret, secret_file) {
        (Some(s), None) => s.clone().into_bytes(),
        (None, Some(f)) => {
            let f = if f.is_absolute() {
                f.clone()
            } else {
                base.join(f)
            };
            let text = std::fs::read_to_string(&f)
                .map_err(|e| format!("secret_file {}: {e}", f.display()))?;
            text.trim().as_bytes().to_vec()
        }
        _ => return Err("a webhook needs exactly one of `secret` or `secret_file`".into()),
    };
    if secret.len() < 16 {
        return Err("the webhook secret must be at least 16 bytes".into());
    }
    Ok(secret)
}

/// `url` as a connector's API base: https, or plain http to this machine only (a secret goes
/// with every request). Without a trailing `/`.
fn api_base(url: &str) -> Result<String, String> {
    let loopback = ["http://127.0.0.1", "http://[::1]", "http://localhost"]
        .iter()
        .any(|p| {
            url.strip_prefix(p)
                .is_some_and(|r| r.is_empty() || r.starts_with([':', '/']))
        });
    if !(url.starts_with("https://") || loopback) {
        return Err(format!(
            "url `{url}` must be https:// (plain http only to this machine): the bearer token goes with every request"
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// A one-line secret from `file` (relative to the config's folder).
fn secret_line(base: &Path, field: &str, file: &Path) -> Result<String, String> {
    let file = if file.is_absolute() {
        file.to_path_buf()
    } else {
        base.join(file)
    };
    let text =
        std::fs::read_to_string(&file).map_err(|e| format!("{field} {}: {e}", file.display()))?;
    let line = text.trim();
    if line.is_empty() || line.chars().any(|ch| ch.is_control() || ch == ' ') {
        return Err(format!(
            "{field} {}: holds no token (one line, no spaces)",
            file.display()
        ));
    }
    Ok(line.to_string())
}

/// The `wecom` connector's settings, validated; the secret read from `secret_file`.
fn wecom_target(base: &Path, c: &RawConnector) -> Result<crate::connectors::wecom::WeCom, String> {
    let api = api_base(c.url.as_deref().unwrap_or("https://qyapi.weixin.qq.com"))?;
    let corpid = c
        .corpid
        .clone()
        .filter(|id| !id.trim().is_empty())
        .ok_or("kind = \"wecom\" needs `corpid` (企业ID, in the admin console's 我的企业)")?;
    let file = c
        .secret_file
        .as_ref()
        .ok_or("kind = \"wecom\" needs `secret_file` (a file holding the 客户联系 secret)")?;
    if c.secret.is_some() {
        return Err("kind = \"wecom\" reads its secret from `secret_file` only".into());
    }
    let secret = crate::connectors::Secret::new(secret_line(base, "secret_file", file)?);
    let login = c.login.clone().unwrap_or_else(|| "{user}".into());
    if !login.contains("{user}") {
        return Err(format!(
            "login `{login}` must hold `{{user}}` (or every leaver would be the same account)"
        ));
    }
    Ok(crate::connectors::wecom::WeCom {
        api,
        corpid,
        secret,
        login,
    })
}

/// The `salesforce` connector's settings, validated; the consumer secret read from
/// `secret_file`.
fn salesforce_target(
    base: &Path,
    c: &RawConnector,
) -> Result<crate::connectors::salesforce::Salesforce, String> {
    use crate::connectors::salesforce::{Salesforce, SfAction};
    let url = api_base(c.url.as_deref().ok_or(
        "kind = \"salesforce\" needs `url` (the org's My Domain URL, https://acme.my.salesforce.com)",
    )?)?;
    let client_id = c
        .client_id
        .clone()
        .filter(|id| !id.trim().is_empty())
        .ok_or("kind = \"salesforce\" needs `client_id` (the connected app's consumer key)")?;
    let file = c
        .secret_file
        .as_ref()
        .ok_or("kind = \"salesforce\" needs `secret_file` (a file holding the consumer secret)")?;
    if c.secret.is_some() {
        return Err("kind = \"salesforce\" reads its secret from `secret_file` only".into());
    }
    let secret = crate::connectors::Secret::new(secret_line(base, "secret_file", file)?);
    let login = c.login.clone().unwrap_or_else(|| "{user}".into());
    if !login.contains("{user}") {
        return Err(format!(
            "login `{login}` must hold `{{user}}` (or every leaver would be the same account)"
        ));
    }
    let action = match c.action.as_deref() {
        None | Some("freeze") => SfAction::Freeze,
        Some("deactivate") => SfAction::Deactivate,
        Some(a) => return Err(format!("action `{a}` is not one of freeze, deactivate")),
    };
    let poll = match &c.poll {
        None => None,
        Some(p) if p == "off" => None,
        Some(_) => Some(duration(
            "poll",
            &c.poll,
            Duration::from_secs(300),
            Duration::from_secs(1),
        )?),
    };
    let users = crate::connectors::crm::UserMap::new(c.users.clone().unwrap_or_default(), &login);
    Ok(Salesforce {
        url,
        client_id,
        secret,
        login,
        action,
        poll,
        users,
    })
}

/// The `scim` connector's settings, validated; the token read from `token_file`.
fn scim_target(base: &Path, c: &RawConnector) -> Result<crate::connectors::scim::Scim, String> {
    use crate::connectors::scim::{MatchBy, OnRestore, Scim};
    let url = api_base(
        c.url
            .as_deref()
            .ok_or("kind = \"scim\" needs `url` (the SCIM base URL)")?,
    )?;
    let file = c
        .token_file
        .as_ref()
        .ok_or("kind = \"scim\" needs `token_file` (a file holding the bearer token)")?;
    let token = crate::connectors::Secret::new(secret_line(base, "token_file", file)?);
    let match_by = match c.match_by.as_deref() {
        None => MatchBy::UserName,
        Some(m) => {
            MatchBy::parse(m).ok_or_else(|| format!("match `{m}` is not one of userName, email"))?
        }
    };
    let login = c.login.clone().unwrap_or_else(|| "{user}".into());
    if !login.contains("{user}") {
        return Err(format!(
            "login `{login}` must hold `{{user}}` (or every leaver would be the same account)"
        ));
    }
    let on_restore = match c.on_restore.as_deref() {
        None | Some("leave") => OnRestore::Leave,
        Some("reactivate") => OnRestore::Reactivate,
        Some(o) => return Err(format!("on_restore `{o}` is not one of leave, reactivate")),
    };
    Ok(Scim {
        url,
        token,
        match_by,
        login,
        on_restore,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// `src` refused with exactly `want`.
    fn bad(src: &str, want: &str) {
        let e = Config::parse(Path::new("/c.toml"), src).unwrap_err();
        assert_eq!(e.to_string(), want);
    }

    /// `src` as a valid config.
    fn parsed(src: &str) -> Config {
        Config::parse(Path::new("/etc/c.toml"), src).unwrap()
    }

    #[test]
    fn connectors_are_validated() {
        let c = parsed("[[connector]]\nname = \"crm\"\nwebhook = \"https://crm.example/h\"\nsecret = \"0123456789abcdef\"\nretry_base = \"1s\"\n\n[[connector]]\nname = \"idp\"\ncommand = [\"/bin/true\", \"{user}\"]\n");
        assert_eq!(c.connectors.len(), 2);
        assert_eq!(c.connectors[0].retry_base, Duration::from_secs(1));
        assert_eq!(c.connectors[1].max_attempts, 8);
        // The secret never shows in debug output.
        assert!(!format!("{:?}", c.connectors).contains("0123456789abcdef"));
        bad(
            "[[connector]]\nname = \"crm\"\nwebhook = \"ftp://x\"\nsecret = \"0123456789abcdef\"\n",
            "/c.toml: connector: connector[0] (crm): webhook `ftp://x` must be an http(s):// URL",
        );
        bad(
            "[[connector]]\nname = \"crm\"\nwebhook = \"https://x\"\nsecret = \"short\"\n",
            "/c.toml: connector: connector[0] (crm): the webhook secret must be at least 16 bytes",
        );
        bad(
            "[[connector]]\nname = \"crm\"\n",
            "/c.toml: connector: connector[0] (crm): needs exactly one of `webhook` or `command`",
        );
        bad(
            "[[connector]]\nname = \"a\"\ncommand = [\"x\"]\n[[connector]]\nname = \"a\"\ncommand = [\"y\"]\n",
            "/c.toml: connector: connector[1] (a): duplicate name",
        );
    }

    #[test]
    fn scim_connectors_are_validated() {
        use crate::connectors::scim::{MatchBy, OnRestore};
        let (_d, token) = holdfast_io::testing::scratch("okta.token");
        std::fs::write(&token, "tok-0123456789\n").unwrap();
        let t = token.display();
        let c = parsed(&format!("[[connector]]\nname = \"okta\"\nkind = \"scim\"\nurl = \"https://acme.okta.com/scim/v2/\"\ntoken_file = \"{t}\"\nmatch = \"email\"\nlogin = \"{{user}}@acme.example\"\non_restore = \"reactivate\"\n"));
        let ConnectorTarget::Scim(s) = &c.connectors[0].target else {
            panic!("{:?}", c.connectors[0]);
        };
        assert_eq!(
            (
                s.url.as_str(),
                s.token.expose(),
                s.match_by,
                s.login.as_str(),
                s.on_restore
            ),
            (
                "https://acme.okta.com/scim/v2",
                "tok-0123456789",
                MatchBy::Email,
                "{user}@acme.example",
                OnRestore::Reactivate
            )
        );
        assert!(!format!("{:?}", c.connectors).contains("tok-0123456789"));
        let loopback = parsed(&format!("[[connector]]\nname = \"idp\"\nkind = \"scim\"\nurl = \"http://127.0.0.1:8080\"\ntoken_file = \"{t}\"\n"));
        let ConnectorTarget::Scim(s) = &loopback.connectors[0].target else {
            panic!();
        };
        assert_eq!(
            (s.match_by, s.login.as_str(), s.on_restore),
            (MatchBy::UserName, "{user}", OnRestore::Leave)
        );
        let head = "[[connector]]\nname = \"idp\"\nkind = \"scim\"\n";
        for (rest, want) in [
            (
                format!("url = \"http://idp.example/scim\"\ntoken_file = \"{t}\"\n"),
                "url `http://idp.example/scim` must be https:// (plain http only to this machine): the bearer token goes with every request".to_string(),
            ),
            (
                format!("url = \"http://127.0.0.1.evil.example/\"\ntoken_file = \"{t}\"\n"),
                "url `http://127.0.0.1.evil.example/` must be https:// (plain http only to this machine): the bearer token goes with every request".to_string(),
            ),
            (
                "url = \"https://x\"\n".to_string(),
                "kind = \"scim\" needs `token_file` (a file holding the bearer token)".to_string(),
            ),
            (
                "url = \"https://x\"\ntoken_file = \"/nonexistent/t\"\n".to_string(),
                "token_file /nonexistent/t: No such file or directory (os error 2)".to_string(),
            ),
            (
                format!("url = \"https://x\"\ntoken_file = \"{t}\"\nmatch = \"uid\"\n"),
                "match `uid` is not one of userName, email".to_string(),
            ),
            (
                format!("url = \"https://x\"\ntoken_file = \"{t}\"\nlogin = \"admin\"\n"),
                "login `admin` must hold `{user}` (or every leaver would be the same account)".to_string(),
            ),
            (
                format!("url = \"https://x\"\ntoken_file = \"{t}\"\non_restore = \"delete\"\n"),
                "on_restore `delete` is not one of leave, reactivate".to_string(),
            ),
            (
                format!("url = \"https://x\"\ntoken_file = \"{t}\"\nwebhook = \"https://x\"\n"),
                "kind = \"scim\" takes no `webhook` or `command`".to_string(),
            ),
        ] {
            bad(
                &format!("{head}{rest}"),
                &format!("/c.toml: connector: connector[0] (idp): {want}"),
            );
        }
        bad(
            "[[connector]]\nname = \"x\"\nkind = \"ldap\"\n",
            "/c.toml: connector: connector[0] (x): unknown kind `ldap`, expected one of webhook, command, scim, wecom, salesforce",
        );
        bad(
            "[[connector]]\nname = \"x\"\ncommand = [\"/bin/true\"]\nurl = \"https://x\"\n",
            "/c.toml: connector: connector[0] (x): `url` belongs to kind = \"scim\", \"wecom\" or \"salesforce\"",
        );
        bad(
            "[[connector]]\nname = \"x\"\ncommand = [\"/bin/true\"]\ncorpid = \"ww1\"\n",
            "/c.toml: connector: connector[0] (x): `corpid` belongs to kind = \"wecom\"",
        );
        std::fs::write(&token, "\n").unwrap();
        bad(
            &format!("{head}url = \"https://x\"\ntoken_file = \"{t}\"\n"),
            &format!("/c.toml: connector: connector[0] (idp): token_file {t}: holds no token (one line, no spaces)"),
        );
    }

    #[test]
    fn wecom_connectors_are_validated() {
        let (_d, secret) = holdfast_io::testing::scratch("wecom.secret");
        std::fs::write(&secret, "corp-secret-0123\n").unwrap();
        let f = secret.display();
        let c = parsed(&format!("[[connector]]\nname = \"wecom\"\nkind = \"wecom\"\ncorpid = \"ww1\"\nsecret_file = \"{f}\"\n"));
        let ConnectorTarget::WeCom(w) = &c.connectors[0].target else {
            panic!("{:?}", c.connectors[0]);
        };
        assert_eq!(
            (
                w.api.as_str(),
                w.corpid.as_str(),
                w.secret.expose(),
                w.login.as_str()
            ),
            (
                "https://qyapi.weixin.qq.com",
                "ww1",
                "corp-secret-0123",
                "{user}"
            )
        );
        assert!(!format!("{:?}", c.connectors).contains("corp-secret"));
        let head = "[[connector]]\nname = \"wecom\"\nkind = \"wecom\"\n";
        for (rest, want) in [
            (
                format!("secret_file = \"{f}\"\n"),
                "kind = \"wecom\" needs `corpid` (企业ID, in the admin console's 我的企业)",
            ),
            (
                "corpid = \"ww1\"\n".to_string(),
                "kind = \"wecom\" needs `secret_file` (a file holding the 客户联系 secret)",
            ),
            (
                format!("corpid = \"ww1\"\nsecret_file = \"{f}\"\nsecret = \"inline-secret-0123\"\n"),
                "kind = \"wecom\" reads its secret from `secret_file` only",
            ),
            (
                format!("corpid = \"ww1\"\nsecret_file = \"{f}\"\nurl = \"http://qyapi.example\"\n"),
                "url `http://qyapi.example` must be https:// (plain http only to this machine): the bearer token goes with every request",
            ),
        ] {
            bad(
                &format!("{head}{rest}"),
                &format!("/c.toml: connector: connector[0] (wecom): {want}"),
            );
        }
    }
}
