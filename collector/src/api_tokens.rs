//! API tokens: named secrets with a role, for scripts (bearer) and browser logins (a session
//! cookie). Only a SHA-256 of each secret is stored; the secret is shown once, at creation.

use crate::store::{ApiToken, AuditEntry, Store, StoreError};
use crate::Actor;
use base64::Engine;
use holdfast_shared::time::UnixMs;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a token may do. Every role may read alerts, users, devices and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Triage: change alerts' status, assignee and notes.
    Analyst,
    /// Devices and offboarding.
    ItAdmin,
    /// Read-only, the audit log included.
    Auditor,
    /// Everything, tokens included.
    Admin,
}

/// A capability that an endpoint requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// Alerts, users, devices, events, policy and health.
    Read,
    /// Change alerts.
    Triage,
    /// Start, restore and retry offboardings; revoke devices.
    Offboard,
    /// Read the audit log.
    Audit,
    /// Manage API tokens.
    Admin,
}

impl Cap {
    /// The name used in errors and in the OpenAPI document.
    pub fn as_str(self) -> &'static str {
        match self {
            Cap::Read => "read",
            Cap::Triage => "triage",
            Cap::Offboard => "offboard",
            Cap::Audit => "audit",
            Cap::Admin => "admin",
        }
    }

    /// The roles that have this capability.
    pub fn roles(self) -> Vec<Role> {
        Role::ALL.into_iter().filter(|r| r.can(self)).collect()
    }
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Analyst, Role::ItAdmin, Role::Auditor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Analyst => "analyst",
            Role::ItAdmin => "it_admin",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role has `cap`.
    pub fn can(self, cap: Cap) -> bool {
        match cap {
            Cap::Read => true,
            Cap::Triage => matches!(self, Role::Analyst | Role::Admin),
            Cap::Offboard => matches!(self, Role::ItAdmin | Role::Admin),
            Cap::Audit => matches!(self, Role::Auditor | Role::Admin),
            Cap::Admin => self == Role::Admin,
        }
    }
}

/// Why a token could not be created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum ApiTokenError {
    /// The name is empty, too long, or has characters other than letters, digits, `-_.`.
    #[error("token name `{0}` must be 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName(String),
    /// The role is not one of the four.
    #[error("role `{0}` is not one of analyst, it_admin, auditor, admin")]
    BadRole(String),
    /// A token of that name exists (names are never reused, so the audit log stays clear).
    #[error("a token named `{0}` already exists")]
    Exists(String),
    /// No live token of that name.
    #[error("no live token named `{0}`")]
    Unknown(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A token just created: the secret is shown this once.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Created {
    pub name: String,
    pub role: String,
    pub secret: String,
    pub once: bool,
}

/// A fresh random secret with a recognisable prefix (`hfa_` for API tokens).
pub fn new_secret(prefix: &str) -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// SHA-256 of a secret, hex: what the database keeps.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a token. `once` makes a one-time login: good for one browser session.
pub fn create(
    store: &mut Store,
    name: &str,
    role: &str,
    once: bool,
    actor: &Actor,
    now_ms: UnixMs,
) -> Result<Created, ApiTokenError> {
    if !crate::valid_name(name) {
        return Err(ApiTokenError::BadName(name.to_string()));
    }
    let role = Role::parse(role).ok_or_else(|| ApiTokenError::BadRole(role.to_string()))?;
    let secret = new_secret("hfa_");
    let token = ApiToken {
        name: name.to_string(),
        role: role.as_str().into(),
        created_ms: now_ms,
        created_by: actor.who.clone(),
        last_used_ms: None,
        revoked_ms: None,
        once,
        used_ms: None,
    };
    let detail = format!(
        "role {}{}",
        role.as_str(),
        if once { ", one-time login" } else { "" }
    );
    let audit = AuditEntry::by(actor, now_ms, "token.create", name, detail);
    if !store.add_api_token(&token, &digest(&secret), &audit)? {
        return Err(ApiTokenError::Exists(name.to_string()));
    }
    Ok(Created {
        name: name.to_string(),
        role: role.as_str().into(),
        secret,
        once,
    })
}

/// Revokes a token and ends its browser sessions.
pub fn revoke(
    store: &mut Store,
    name: &str,
    actor: &Actor,
    now_ms: UnixMs,
) -> Result<(), ApiTokenError> {
    let audit = AuditEntry::by(actor, now_ms, "token.revoke", name, String::new());
    if store.revoke_api_token(name, now_ms, &audit)? {
        Ok(())
    } else {
        Err(ApiTokenError::Unknown(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::audit_actions;

    fn check(role: Role, caps: &[Cap]) {
        for cap in [
            Cap::Read,
            Cap::Triage,
            Cap::Offboard,
            Cap::Audit,
            Cap::Admin,
        ] {
            assert_eq!(role.can(cap), caps.contains(&cap), "{role:?} {cap:?}");
        }
    }

    #[test]
    fn roles_have_exactly_their_capabilities() {
        check(Role::Analyst, &[Cap::Read, Cap::Triage]);
        check(Role::ItAdmin, &[Cap::Read, Cap::Offboard]);
        check(Role::Auditor, &[Cap::Read, Cap::Audit]);
        check(
            Role::Admin,
            &[
                Cap::Read,
                Cap::Triage,
                Cap::Offboard,
                Cap::Audit,
                Cap::Admin,
            ],
        );
    }

    #[test]
    fn tokens_are_stored_hashed_and_names_are_not_reused() {
        let (_dir, mut s) = crate::store::fixtures::open();
        let actor = Actor {
            who: "cli:test".into(),
            origin: "cli@h".into(),
        };
        let t = create(&mut s, "soc-1", "analyst", false, &actor, UnixMs(10)).unwrap();
        assert!(t.secret.starts_with("hfa_"));
        let found = s.api_token_by_secret(&digest(&t.secret)).unwrap().unwrap();
        assert_eq!(
            (found.name.as_str(), found.role.as_str()),
            ("soc-1", "analyst")
        );
        assert!(
            s.api_token_by_secret(&t.secret).unwrap().is_none(),
            "kept hashed"
        );
        assert!(matches!(
            create(&mut s, "soc-1", "admin", false, &actor, UnixMs(11)),
            Err(ApiTokenError::Exists(_))
        ));
        assert!(matches!(
            create(&mut s, "x", "root", false, &actor, UnixMs(11)),
            Err(ApiTokenError::BadRole(_))
        ));
        assert!(matches!(
            create(&mut s, "bad name", "admin", false, &actor, UnixMs(11)),
            Err(ApiTokenError::BadName(_))
        ));
        revoke(&mut s, "soc-1", &actor, UnixMs(12)).unwrap();
        assert!(s.api_token_by_secret(&digest(&t.secret)).unwrap().is_none());
        assert!(matches!(
            revoke(&mut s, "soc-1", &actor, UnixMs(13)),
            Err(ApiTokenError::Unknown(_))
        ));
        assert_eq!(audit_actions(&s), ["token.revoke", "token.create"]);
    }
}
