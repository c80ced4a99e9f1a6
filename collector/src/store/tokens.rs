//! Enrollment tokens: stored as hashes of their secret, redeemed once, before they expire.

use super::{audit_in, AuditEntry, Store, StoreError};
use crate::fmt_ms;
use holdfast_shared::time::UnixMs;
use rusqlite::{params, OptionalExtension};

/// Why an enrollment token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// No such token.
    #[error("unknown token")]
    Unknown,
    /// The token's time to live has passed.
    #[error("token expired")]
    Expired,
    /// The token was already used once.
    #[error("token already used")]
    Used,
}

impl Store {
    /// Records a new enrollment token (only the secret's hash is stored).
    pub fn add_token(
        &self,
        secret_sha256: &str,
        user: &str,
        now_ms: UnixMs,
        expires_ms: UnixMs,
        actor: &crate::Actor,
    ) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO tokens (secret_sha256, user, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
            params![secret_sha256, user, now_ms, expires_ms],
        )?;
        audit_in(
            &tx,
            &AuditEntry::by(
                actor,
                now_ms,
                "token.create",
                user,
                format!("enrollment token, expires {}", fmt_ms(expires_ms)),
            ),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Spends a token for `device_id`: succeeds once, before expiry. Returns the token's user.
    pub fn redeem_token(
        &self,
        secret_sha256: &str,
        device_id: &str,
        now_ms: UnixMs,
    ) -> Result<Result<String, TokenRefusal>, StoreError> {
        let changed = self.conn.execute(
            "UPDATE tokens SET used_ms = ?2, used_by = ?3
             WHERE secret_sha256 = ?1 AND used_ms IS NULL AND expires_ms > ?2",
            params![secret_sha256, now_ms, device_id],
        )?;
        let row: Option<(String, i64, Option<String>)> = self
            .conn
            .query_row(
                "SELECT user, expires_ms, used_by FROM tokens WHERE secret_sha256 = ?1",
                [secret_sha256],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(match row {
            None => Err(TokenRefusal::Unknown),
            Some((user, _, _)) if changed == 1 => Ok(user),
            Some((_, _, Some(_))) => Err(TokenRefusal::Used),
            Some(_) => Err(TokenRefusal::Expired),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_single_use_and_expire() {
        let (_dir, s) = crate::store::fixtures::open();
        s.add_token("h1", "ada", UnixMs(0), UnixMs(100), &crate::Actor::test())
            .unwrap();
        s.add_token("h2", "bob", UnixMs(0), UnixMs(100), &crate::Actor::test())
            .unwrap();
        assert_eq!(
            s.redeem_token("h1", "d1", UnixMs(50)).unwrap(),
            Ok("ada".into())
        );
        assert_eq!(
            s.redeem_token("h1", "d2", UnixMs(51)).unwrap(),
            Err(TokenRefusal::Used)
        );
        assert_eq!(
            s.redeem_token("h2", "d3", UnixMs(100)).unwrap(),
            Err(TokenRefusal::Expired)
        );
        assert_eq!(
            s.redeem_token("nope", "d4", UnixMs(1)).unwrap(),
            Err(TokenRefusal::Unknown)
        );
    }
}
