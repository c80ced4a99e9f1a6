//! Enrollment tokens: `hf1.<secret>.<ca-sha256>`, like `kubeadm join`'s token plus CA hash.
//!
//! The secret is what the collector checks (it stores only its SHA-256); the CA fingerprint
//! lets the agent verify it is talking to the right collector before it hands the secret over.

/// A parsed enrollment token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollToken {
    /// 32 lowercase hex characters of one-time secret.
    pub secret: String,
    /// Lowercase hex SHA-256 of the collector CA certificate (DER).
    pub ca_sha256: String,
}

/// Why a token string is not a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// It does not have the `hf1.<secret>.<ca-sha256>` shape.
    #[error("token must look like hf1.<32 hex>.<64 hex>")]
    Shape,
}

impl EnrollToken {
    /// Parses `hf1.<secret>.<ca-sha256>`.
    pub fn parse(s: &str) -> Result<EnrollToken, TokenError> {
        let mut parts = s.trim().split('.');
        let (Some("hf1"), Some(secret), Some(ca), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Shape);
        };
        let is_hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex(secret, 32) || !is_hex(ca, 64) {
            return Err(TokenError::Shape);
        }
        Ok(EnrollToken {
            secret: secret.to_ascii_lowercase(),
            ca_sha256: ca.to_ascii_lowercase(),
        })
    }

    /// The string form handed to IT.
    pub fn encode(&self) -> String {
        format!("hf1.{}.{}", self.secret, self.ca_sha256)
    }

    /// What the collector stores instead of the secret.
    pub fn secret_hash(secret: &str) -> String {
        crate::sha256_hex(secret.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, ok: bool) {
        assert_eq!(EnrollToken::parse(input).is_ok(), ok, "{input}");
        if let Ok(t) = EnrollToken::parse(input) {
            assert_eq!(EnrollToken::parse(&t.encode()), Ok(t));
        }
    }

    #[test]
    fn parses() {
        let s = "a".repeat(32);
        let c = "b".repeat(64);
        check(&format!("hf1.{s}.{c}"), true);
        check(&format!(" hf1.{s}.{c}\n"), true);
        check(&format!("hf2.{s}.{c}"), false);
        check(&format!("hf1.{s}.{c}.x"), false);
        check(&format!("hf1.{}.{c}", "g".repeat(32)), false);
        check(&format!("hf1.{s}"), false);
        check("", false);
    }
}
