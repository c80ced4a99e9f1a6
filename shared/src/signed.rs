//! Signed envelopes: everything the collector sends that changes what an agent does (policy
//! bundles, EDM sets, orders) travels as Ed25519-signed bytes, verified before it is decoded.
//!
//! The signature covers a domain tag and the exact body bytes, so there is nothing to
//! canonicalise: the agent verifies the bytes it received, then decodes them.

use crate::time::UnixMs;
use serde::{Deserialize, Serialize};

/// Domain separation: a Holdfast signature can never be confused with another protocol's.
const CONTEXT: &[u8] = b"holdfast-signed-v1\0";
/// Largest signed body accepted: 4 MiB, the size of a wire frame it travels in.
pub const MAX_SIGNED: usize = 4 * 1024 * 1024;

/// What a signed body is for. An agent checks the kind, so a policy signature is never
/// accepted as an order.
pub mod kind {
    pub const POLICY: &str = "policy";
    pub const EDM: &str = "edm";
    /// The manifest of a customer set's pieces ([`crate::edm::manifest::Manifest`]).
    pub const EDM_MANIFEST: &str = "edm-manifest";
    pub const ORDER: &str = "order";
}

/// Bytes plus their signature, as sent and as kept on disk by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// MessagePack of a [`SignedBody`].
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Ed25519 signature over `CONTEXT || body`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// What was signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBody {
    /// One of [`kind`].
    pub kind: String,
    /// A version the agent reports back (for policies, the bundle's content hash).
    pub version: String,
    /// When the collector signed it; an agent never goes back to an older one.
    pub issued_ms: UnixMs,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// A policy bundle: the policy files, by name, as the collector validated them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyBundle {
    pub files: Vec<(String, String)>,
}

/// Why a signed envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature does not verify under the pinned key: forged, corrupted or another
    /// collector's.
    #[error("signature does not verify")]
    BadSignature,
    /// The body is larger than [`MAX_SIGNED`].
    #[error("signed body of {0} bytes is too large")]
    TooLarge(usize),
    /// The body verified but does not decode.
    #[error("signed body is malformed: {0}")]
    Malformed(String),
    /// A valid signature over the wrong kind of thing.
    #[error("expected a signed {expected}, got a signed {got}")]
    WrongKind { expected: String, got: String },
}

/// Why something could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The key bytes are not an Ed25519 PKCS#8 document.
    #[error("signing key is not a valid Ed25519 PKCS#8 key")]
    BadKey,
    /// The body could not be encoded.
    #[error("cannot encode signed body: {0}")]
    Encode(String),
}

fn message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + body.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(body);
    m
}

/// The Ed25519 public key of a PKCS#8 signing key.
pub fn public_key(pkcs8: &[u8]) -> Result<Vec<u8>, SignError> {
    use ring::signature::KeyPair;
    let key = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| SignError::BadKey)?;
    Ok(key.public_key().as_ref().to_vec())
}

impl Signed {
    /// Signs `body` with the PKCS#8 Ed25519 key.
    pub fn sign(pkcs8: &[u8], body: &SignedBody) -> Result<Signed, SignError> {
        let key =
            ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| SignError::BadKey)?;
        let bytes = rmp_serde::to_vec_named(body).map_err(|e| SignError::Encode(e.to_string()))?;
        let signature = key.sign(&message(&bytes)).as_ref().to_vec();
        Ok(Signed {
            body: bytes,
            signature,
        })
    }

    /// Verifies under `public_key` and checks the kind; only then decodes the body.
    pub fn verify(
        &self,
        public_key: &[u8],
        expected_kind: &str,
    ) -> Result<SignedBody, VerifyError> {
        if self.body.len() > MAX_SIGNED {
            return Err(VerifyError::TooLarge(self.body.len()));
        }
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
            .verify(&message(&self.body), &self.signature)
            .map_err(|_| VerifyError::BadSignature)?;
        let body: SignedBody =
            rmp_serde::from_slice(&self.body).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if body.kind != expected_kind {
            return Err(VerifyError::WrongKind {
                expected: expected_kind.into(),
                got: body.kind,
            });
        }
        Ok(body)
    }

    /// Decodes the body without verifying it: only for the signer reading back envelopes it
    /// signed and stored itself. Anything received is checked with [`Signed::verify`].
    pub fn decode_unverified(&self) -> Result<SignedBody, VerifyError> {
        rmp_serde::from_slice(&self.body).map_err(|e| VerifyError::Malformed(e.to_string()))
    }

    /// The stored form (MessagePack), for keeping the last good envelope on disk.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SignError> {
        rmp_serde::to_vec_named(self).map_err(|e| SignError::Encode(e.to_string()))
    }

    /// Reads the stored form back (verify it before use).
    pub fn from_bytes(bytes: &[u8]) -> Result<Signed, VerifyError> {
        rmp_serde::from_slice(bytes).map_err(|e| VerifyError::Malformed(e.to_string()))
    }
}

impl PolicyBundle {
    /// Payload bytes for a [`SignedBody`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, SignError> {
        rmp_serde::to_vec_named(self).map_err(|e| SignError::Encode(e.to_string()))
    }

    /// Decodes a verified payload.
    pub fn from_bytes(bytes: &[u8]) -> Result<PolicyBundle, VerifyError> {
        rmp_serde::from_slice(bytes).map_err(|e| VerifyError::Malformed(e.to_string()))
    }
}

/// A fresh PKCS#8 Ed25519 signing key, for tests (empty if the system has no randomness, which
/// then fails at its first use).
#[cfg(any(test, feature = "testkit"))]
pub fn test_key() -> Vec<u8> {
    let rng = ring::rand::SystemRandom::new();
    ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map(|d| d.as_ref().to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Vec<u8> {
        test_key()
    }

    fn body(kind: &str) -> SignedBody {
        SignedBody {
            kind: kind.into(),
            version: "v1".into(),
            issued_ms: UnixMs(5),
            payload: b"payload".to_vec(),
        }
    }

    /// One `check()` per module: what `verify` says about an envelope under a key and kind.
    fn check(env: &Signed, pk: &[u8], kind_: &str, want: Result<SignedBody, VerifyError>) {
        assert_eq!(env.verify(pk, kind_), want);
    }

    #[test]
    fn verifies_only_the_right_key_kind_and_bytes() {
        let (k1, k2) = (key(), key());
        let (pk1, pk2) = (public_key(&k1).unwrap(), public_key(&k2).unwrap());
        let env = Signed::sign(&k1, &body(kind::POLICY)).unwrap();
        check(&env, &pk1, kind::POLICY, Ok(body(kind::POLICY)));
        check(&env, &pk2, kind::POLICY, Err(VerifyError::BadSignature));
        check(
            &env,
            &pk1,
            kind::ORDER,
            Err(VerifyError::WrongKind {
                expected: "order".into(),
                got: "policy".into(),
            }),
        );
        for i in 0..env.body.len() {
            let mut bad = env.clone();
            bad.body[i] ^= 1;
            check(&bad, &pk1, kind::POLICY, Err(VerifyError::BadSignature));
        }
        let mut bad = env.clone();
        bad.signature[0] ^= 1;
        check(&bad, &pk1, kind::POLICY, Err(VerifyError::BadSignature));
        let stored = Signed::from_bytes(&env.to_bytes().unwrap()).unwrap();
        check(&stored, &pk1, kind::POLICY, Ok(body(kind::POLICY)));
        assert!(Signed::sign(b"junk", &body(kind::POLICY)).is_err());
        assert!(Signed::from_bytes(b"\xc1").is_err());
    }
}
