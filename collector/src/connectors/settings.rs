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
    /// `webhook`, `command`, `scim`, `wecom`, `salesforce`, `hubspot`, `zoho` or `dingtalk`;
    /// absent, the one of `webhook`/`command` given.
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
    /// `zoho`: the Zoho accounts server that issues access tokens (by data centre).
    accounts_url: Option<String>,
    retry_base: Option<String>,
    max_attempts: Option<u32>,
    timeout: Option<String>,
}

/// The kinds that call a vendor's API.
const API_KINDS: [&str; 6] = ["scim", "wecom", "salesforce", "hubspot", "zoho", "dingtalk"];

/// `kinds` as an error lists them: `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn quoted_list(kinds: &[&str]) -> String {
    let q: Vec<String> = kinds.iter().map(|k| format!("\"{k}\"")).collect();
    match q.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
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
        // The fields of the API kinds, with the kinds they belong to: one given to any other
        // kind is refused (a typo'd kind must not silently drop a setting).
        let api_fields: [(&str, bool, &[&str]); 11] = [
            ("url", c.url.is_some(), &API_KINDS),
            (
                "client_id",
                c.client_id.is_some(),
                &["salesforce", "zoho", "dingtalk"],
            ),
            ("action", c.action.is_some(), &["salesforce"]),
            ("poll", c.poll.is_some(), &["salesforce", "hubspot", "zoho"]),
            (
                "users",
                c.users.is_some(),
                &["salesforce", "hubspot", "zoho"],
            ),
            ("accounts_url", c.accounts_url.is_some(), &["zoho"]),
            ("corpid", c.corpid.is_some(), &["wecom"]),
            (
                "token_file",
                c.token_file.is_some(),
                &["scim", "hubspot", "zoho"],
            ),
            ("match", c.match_by.is_some(), &["scim"]),
            ("login", c.login.is_some(), &API_KINDS),
            ("on_restore", c.on_restore.is_some(), &["scim", "dingtalk"]),
        ];
        if let Some(k) = c.kind.as_deref() {
            if !["webhook", "command"].contains(&k) && !API_KINDS.contains(&k) {
                return Err(bad(format!(
                    "unknown kind `{k}`, expected one of webhook, command, {}",
                    API_KINDS.join(", ")
                )));
            }
        }
        let misplaced = api_fields.iter().find(|(_, given, kinds)| {
            *given && !c.kind.as_deref().is_some_and(|k| kinds.contains(&k))
        });
        if let Some((field, _, kinds)) = misplaced {
            return Err(bad(format!(
                "`{field}` belongs to kind = {}",
                quoted_list(kinds)
            )));
        }
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
            (Some("hubspot"), None, None) => {
                ConnectorTarget::HubSpot(hubspot_target(base, &c).map_err(bad)?)
            }
            (Some("zoho"), None, None) => {
                ConnectorTarget::Zoho(zoho_target(base, &c).map_err(bad)?)
            }
            (Some("dingtalk"), None, None) => {
                ConnectorTarget::DingTalk(dingtalk_target(base, &c).map_err(bad)?)
            }
            (
                Some(k @ ("scim" | "wecom" | "salesforce" | "hubspot" | "zoho" | "dingtalk")),
                _,
                _,
            ) => {
                return Err(bad(format!(
                    "kind = \"{k}\" takes no `webhook` or `command`"
                )))
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

/// A kind's credential from `secret_file` (never inline: a secret in collector.toml ends up
/// in backups and tickets); `what` says what the file holds.
fn file_secret(
    base: &Path,
    c: &RawConnector,
    kind: &str,
    what: &str,
) -> Result<crate::connectors::Secret, String> {
    let file = c
        .secret_file
        .as_ref()
        .ok_or_else(|| format!("kind = \"{kind}\" needs `secret_file` (a file holding {what})"))?;
    if c.secret.is_some() {
        return Err(format!(
            "kind = \"{kind}\" reads its secret from `secret_file` only"
        ));
    }
    Ok(crate::connectors::Secret::new(secret_line(
        base,
        "secret_file",
        file,
    )?))
}

/// A kind's bearer or refresh token from `token_file`.
fn file_token(
    base: &Path,
    c: &RawConnector,
    kind: &str,
    what: &str,
) -> Result<crate::connectors::Secret, String> {
    let file = c
        .token_file
        .as_ref()
        .ok_or_else(|| format!("kind = \"{kind}\" needs `token_file` (a file holding {what})"))?;
    Ok(crate::connectors::Secret::new(secret_line(
        base,
        "token_file",
        file,
    )?))
}

/// A required, non-blank text field of `kind`; `what` says where to find it.
fn required(v: &Option<String>, kind: &str, field: &str, what: &str) -> Result<String, String> {
    v.clone()
        .filter(|x| !x.trim().is_empty())
        .ok_or_else(|| format!("kind = \"{kind}\" needs `{field}` ({what})"))
}

/// The account's name there: `login` with `{user}` for the Holdfast user (`{user}` alone
/// when absent). Without `{user}` every leaver would be the same account.
fn login_template(c: &RawConnector) -> Result<String, String> {
    let login = c.login.clone().unwrap_or_else(|| "{user}".into());
    if !login.contains("{user}") {
        return Err(format!(
            "login `{login}` must hold `{{user}}` (or every leaver would be the same account)"
        ));
    }
    Ok(login)
}

/// How often a CRM's exports are polled: `poll` (at least a second), `None` when absent or
/// `"off"`.
fn poll_every(c: &RawConnector) -> Result<Option<Duration>, String> {
    match &c.poll {
        None => Ok(None),
        Some(p) if p == "off" => Ok(None),
        Some(_) => duration(
            "poll",
            &c.poll,
            Duration::from_secs(300),
            Duration::from_secs(1),
        )
        .map(Some),
    }
}

/// The CRM logins → Holdfast users of a polling kind.
fn user_map(c: &RawConnector, login: &str) -> crate::connectors::crm::UserMap {
    crate::connectors::crm::UserMap::new(c.users.clone().unwrap_or_default(), login)
}

/// What a restore does to an account the offboarding disabled.
fn on_restore(c: &RawConnector) -> Result<crate::connectors::scim::OnRestore, String> {
    use crate::connectors::scim::OnRestore;
    match c.on_restore.as_deref() {
        None | Some("leave") => Ok(OnRestore::Leave),
        Some("reactivate") => Ok(OnRestore::Reactivate),
        Some(o) => Err(format!("on_restore `{o}` is not one of leave, reactivate")),
    }
}

/// The `wecom` connector's settings, validated; the secret read from `secret_file`.
fn wecom_target(base: &Path, c: &RawConnector) -> Result<crate::connectors::wecom::WeCom, String> {
    Ok(crate::connectors::wecom::WeCom {
        api: api_base(c.url.as_deref().unwrap_or("https://qyapi.weixin.qq.com"))?,
        corpid: required(
            &c.corpid,
            "wecom",
            "corpid",
            "企业ID, in the admin console's 我的企业",
        )?,
        secret: file_secret(base, c, "wecom", "the 客户联系 secret")?,
        login: login_template(c)?,
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
    let client_id = required(
        &c.client_id,
        "salesforce",
        "client_id",
        "the connected app's consumer key",
    )?;
    let secret = file_secret(base, c, "salesforce", "the consumer secret")?;
    let login = login_template(c)?;
    let action = match c.action.as_deref() {
        None | Some("freeze") => SfAction::Freeze,
        Some("deactivate") => SfAction::Deactivate,
        Some(a) => return Err(format!("action `{a}` is not one of freeze, deactivate")),
    };
    Ok(Salesforce {
        url,
        client_id,
        secret,
        action,
        poll: poll_every(c)?,
        users: user_map(c, &login),
        login,
    })
}

/// The `hubspot` connector's settings, validated; the private app's token read from
/// `token_file`.
fn hubspot_target(
    base: &Path,
    c: &RawConnector,
) -> Result<crate::connectors::hubspot::HubSpot, String> {
    let login = login_template(c)?;
    Ok(crate::connectors::hubspot::HubSpot {
        api: api_base(c.url.as_deref().unwrap_or("https://api.hubapi.com"))?,
        token: file_token(base, c, "hubspot", "the private app's access token")?,
        poll: poll_every(c)?,
        users: user_map(c, &login),
        login,
    })
}

/// The `zoho` connector's settings, validated; the client secret from `secret_file`, the
/// refresh token from `token_file`.
fn zoho_target(base: &Path, c: &RawConnector) -> Result<crate::connectors::zoho::Zoho, String> {
    let login = login_template(c)?;
    Ok(crate::connectors::zoho::Zoho {
        api: api_base(c.url.as_deref().unwrap_or("https://www.zohoapis.com"))?,
        accounts: api_base(
            c.accounts_url
                .as_deref()
                .unwrap_or("https://accounts.zoho.com"),
        )?,
        client_id: required(
            &c.client_id,
            "zoho",
            "client_id",
            "the self client's Client ID, from api-console.zoho.com",
        )?,
        secret: file_secret(base, c, "zoho", "the self client's Client Secret")?,
        refresh: file_token(base, c, "zoho", "a refresh token")?,
        poll: poll_every(c)?,
        users: user_map(c, &login),
        login,
    })
}

/// The `dingtalk` connector's settings, validated; the AppSecret read from `secret_file`.
fn dingtalk_target(
    base: &Path,
    c: &RawConnector,
) -> Result<crate::connectors::dingtalk::DingTalk, String> {
    Ok(crate::connectors::dingtalk::DingTalk {
        api: api_base(c.url.as_deref().unwrap_or("https://api.dingtalk.com"))?,
        app_key: required(
            &c.client_id,
            "dingtalk",
            "client_id",
            "the internal app's AppKey, from open-dev.dingtalk.com",
        )?,
        secret: file_secret(base, c, "dingtalk", "the app's AppSecret")?,
        login: login_template(c)?,
        on_restore: on_restore(c)?,
    })
}

/// The `scim` connector's settings, validated; the token read from `token_file`.
fn scim_target(base: &Path, c: &RawConnector) -> Result<crate::connectors::scim::Scim, String> {
    use crate::connectors::scim::{MatchBy, Scim};
    let url = api_base(
        c.url
            .as_deref()
            .ok_or("kind = \"scim\" needs `url` (the SCIM base URL)")?,
    )?;
    let token = file_token(base, c, "scim", "the bearer token")?;
    let match_by = match c.match_by.as_deref() {
        None => MatchBy::UserName,
        Some(m) => {
            MatchBy::parse(m).ok_or_else(|| format!("match `{m}` is not one of userName, email"))?
        }
    };
    Ok(Scim {
        url,
        token,
        match_by,
        login: login_template(c)?,
        on_restore: on_restore(c)?,
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
            "/c.toml: connector: connector[0] (x): unknown kind `ldap`, expected one of webhook, command, scim, wecom, salesforce, hubspot, zoho, dingtalk",
        );
        bad(
            "[[connector]]\nname = \"x\"\ncommand = [\"/bin/true\"]\nurl = \"https://x\"\n",
            "/c.toml: connector: connector[0] (x): `url` belongs to kind = \"scim\", \"wecom\", \"salesforce\", \"hubspot\", \"zoho\" or \"dingtalk\"",
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

    #[test]
    fn hubspot_zoho_and_dingtalk_connectors_are_validated() {
        use crate::connectors::scim::OnRestore;
        let (_d, file) = holdfast_io::testing::scratch("vendor.secret");
        std::fs::write(&file, "vendor-secret-0123\n").unwrap();
        let f = file.display();
        let c = parsed(&format!(
            "[[connector]]\nname = \"hs\"\nkind = \"hubspot\"\ntoken_file = \"{f}\"\nlogin = \"{{user}}@acme.example\"\npoll = \"5m\"\n\n\
             [[connector]]\nname = \"zoho\"\nkind = \"zoho\"\nurl = \"https://www.zohoapis.eu\"\naccounts_url = \"https://accounts.zoho.eu\"\nclient_id = \"1000.X\"\nsecret_file = \"{f}\"\ntoken_file = \"{f}\"\npoll = \"10m\"\n\n\
             [[connector]]\nname = \"dt\"\nkind = \"dingtalk\"\nclient_id = \"dingabc\"\nsecret_file = \"{f}\"\non_restore = \"reactivate\"\n"
        ));
        let [hs, zoho, dt] = &c.connectors[..] else {
            panic!("{:?}", c.connectors);
        };
        let ConnectorTarget::HubSpot(h) = &hs.target else {
            panic!("{hs:?}")
        };
        assert_eq!(
            (
                h.api.as_str(),
                h.token.expose(),
                h.poll,
                h.users.user_of("kim@acme.example")
            ),
            (
                "https://api.hubapi.com",
                "vendor-secret-0123",
                Some(Duration::from_secs(300)),
                Some("kim".into())
            )
        );
        let ConnectorTarget::Zoho(z) = &zoho.target else {
            panic!("{zoho:?}")
        };
        assert_eq!(
            (
                z.api.as_str(),
                z.accounts.as_str(),
                z.client_id.as_str(),
                z.login.as_str(),
                z.poll
            ),
            (
                "https://www.zohoapis.eu",
                "https://accounts.zoho.eu",
                "1000.X",
                "{user}",
                Some(Duration::from_secs(600))
            )
        );
        let ConnectorTarget::DingTalk(d) = &dt.target else {
            panic!("{dt:?}")
        };
        assert_eq!(
            (d.api.as_str(), d.app_key.as_str(), d.on_restore),
            ("https://api.dingtalk.com", "dingabc", OnRestore::Reactivate)
        );
        assert!(!format!("{:?}", c.connectors).contains("vendor-secret"));
        for (head, rest, want) in [
            ("hubspot", String::new(), "kind = \"hubspot\" needs `token_file` (a file holding the private app's access token)"),
            ("hubspot", format!("token_file = \"{f}\"\npoll = \"soon\"\n"), "poll `soon`: expected number at 0 (write e.g. \"10m\", \"30s\")"),
            ("zoho", format!("secret_file = \"{f}\"\ntoken_file = \"{f}\"\n"), "kind = \"zoho\" needs `client_id` (the self client's Client ID, from api-console.zoho.com)"),
            ("zoho", format!("client_id = \"1000.X\"\nsecret_file = \"{f}\"\ntoken_file = \"{f}\"\naccounts_url = \"http://accounts.example\"\n"), "url `http://accounts.example` must be https:// (plain http only to this machine): the bearer token goes with every request"),
            ("dingtalk", format!("client_id = \"d\"\nsecret = \"inline-0123456789\"\nsecret_file = \"{f}\"\n"), "kind = \"dingtalk\" reads its secret from `secret_file` only"),
            ("dingtalk", format!("client_id = \"d\"\nsecret_file = \"{f}\"\npoll = \"1m\"\n"), "`poll` belongs to kind = \"salesforce\", \"hubspot\" or \"zoho\""),
        ] {
            let name = head;
            bad(
                &format!("[[connector]]\nname = \"{name}\"\nkind = \"{head}\"\n{rest}"),
                &format!("/c.toml: connector: connector[0] ({name}): {want}"),
            );
        }
    }
}
