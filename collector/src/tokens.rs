//! Enrollment token issuance: a random one-time secret bound to a user and an expiry,
//! stored only as its hash, handed out together with the CA fingerprint.

use crate::config::Config;
use crate::pki::{Ca, PkiError};
use crate::store::{Store, StoreError};
use holdfast_shared::time::UnixMs;
use holdfast_shared::token::EnrollToken;
use std::time::Duration;

/// Longest allowed token lifetime.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why a token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TokenCreateError {
    /// The user name is empty or unreasonable.
    #[error("--user: {0}")]
    User(&'static str),
    /// The lifetime is zero or longer than [`MAX_TTL`].
    #[error("--ttl: must be between 1s and 30 days")]
    Ttl,
    /// The CA could not be loaded or created.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The token could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A freshly issued token.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Issued {
    pub token: String,
    pub user: String,
    pub expires_ms: UnixMs,
}

/// Issues a single-use token for `user`, valid for `ttl`.
pub fn create(
    config: &Config,
    user: &str,
    ttl: Duration,
    actor: &crate::Actor,
) -> Result<Issued, TokenCreateError> {
    let user = user.trim();
    if user.is_empty() {
        return Err(TokenCreateError::User("must not be empty"));
    }
    if user.starts_with('-') {
        return Err(TokenCreateError::User("must not start with `-`"));
    }
    if user.len() > 128 || user.chars().any(char::is_control) {
        return Err(TokenCreateError::User("at most 128 printable characters"));
    }
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(TokenCreateError::Ttl);
    }
    let ca = Ca::load_or_create(&config.data_dir)?;
    let store = Store::open(&config.db_path())?;
    let secret = hex::encode(rand::random::<[u8; 16]>());
    let now = crate::now_ms();
    let expires_ms = now + ttl.as_millis() as i64;
    store.add_token(
        &EnrollToken::secret_hash(&secret),
        user,
        now,
        expires_ms,
        actor,
    )?;
    Ok(Issued {
        token: EnrollToken {
            secret,
            ca_sha256: ca.fingerprint(),
        }
        .encode(),
        user: user.to_string(),
        expires_ms,
    })
}
