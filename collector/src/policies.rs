//! Policy publishing: validate policy files, sign them as one bundle with the collector's
//! Ed25519 key, and record the bundle as the one agents must run. Agents receive it at their
//! next heartbeat and verify it against the key pinned at enrollment.

use crate::config::Config;
use crate::store::{PublishedPolicy, Store, StoreError};
use holdfast_io::policy_files::{read_path, PolicyLoadError};
use holdfast_shared::policy::PolicySet;
use holdfast_shared::signed::{kind, PolicyBundle, SignError, Signed, SignedBody};
use holdfast_shared::time::UnixMs;
use std::path::Path;

/// Why a bundle could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The files could not be read, or do not validate (errors name file:line:column).
    #[error(transparent)]
    Load(#[from] PolicyLoadError),
    /// The signing key could not be loaded or created.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The bundle could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `publish` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    pub version: String,
    pub rules: usize,
    pub files: usize,
    /// False when this exact bundle was already the current one.
    pub changed: bool,
}

/// Reads `path` (a directory of `*.toml` files, or one file), validates, signs and publishes.
pub fn publish(
    config: &Config,
    store: &Store,
    path: &Path,
    now_ms: UnixMs,
    actor: &crate::Actor,
) -> Result<Published, PublishError> {
    let files = read_path(path)?;
    // Validate with the names the user knows, then ship bare file names: the agent compiles
    // the bundle under the same names, so both sides compute the same version.
    let shown: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    PolicySet::compile(&shown, "~").map_err(PolicyLoadError::from)?;
    let bundle = PolicyBundle {
        files: files
            .iter()
            .map(|(n, s)| {
                let name = Path::new(n)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| n.clone());
                (name, s.clone())
            })
            .collect(),
    };
    let refs: Vec<(&str, &str)> = bundle
        .files
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    let set = PolicySet::compile(&refs, "~").map_err(PolicyLoadError::from)?;
    let key = crate::pki::signing_key(&config.data_dir)?;
    let signed = Signed::sign(
        &key,
        &SignedBody {
            kind: kind::POLICY.into(),
            version: set.version.clone(),
            issued_ms: now_ms,
            payload: bundle.to_bytes()?,
        },
    )?;
    let changed = store.publish_policy(
        &PublishedPolicy {
            version: set.version.clone(),
            issued_ms: now_ms,
            published_ms: now_ms,
            files: bundle.files.len() as u64,
            signed: signed.to_bytes()?,
        },
        actor,
    )?;
    Ok(Published {
        version: set.version,
        rules: set.rules.len(),
        files: bundle.files.len(),
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_verifiable_bundles_once() {
        let (dir, config, store) = crate::store::fixtures::configured();
        let pdir = dir.path().join("p");
        std::fs::create_dir(&pdir).unwrap();
        std::fs::write(
            pdir.join("a.toml"),
            "[[rule]]\nid = \"a\"\nseverity = \"low\"\n",
        )
        .unwrap();
        let p = publish(&config, &store, &pdir, UnixMs(10), &crate::Actor::test()).unwrap();
        assert!(p.changed);
        assert_eq!((p.rules, p.files), (1, 1));
        assert!(
            !publish(&config, &store, &pdir, UnixMs(20), &crate::Actor::test())
                .unwrap()
                .changed
        );
        // What is stored verifies under the collector's public key, as a policy.
        let current = store.current_policy().unwrap().unwrap();
        let pk = holdfast_shared::signed::public_key(&crate::pki::signing_key(dir.path()).unwrap())
            .unwrap();
        let body = Signed::from_bytes(&current.signed)
            .unwrap()
            .verify(&pk, kind::POLICY)
            .unwrap();
        let bundle = PolicyBundle::from_bytes(&body.payload).unwrap();
        assert_eq!(bundle.files[0].0, "a.toml");
        assert_eq!(body.version, p.version);
        // A broken file is refused with its location, and nothing is published.
        std::fs::write(
            pdir.join("b.toml"),
            "[[rule]]\nid = \"b\"\nseverity = \"loud\"\n",
        )
        .unwrap();
        let err = publish(&config, &store, &pdir, UnixMs(30), &crate::Actor::test())
            .unwrap_err()
            .to_string();
        assert!(err.contains("b.toml:3:12"), "{err}");
        assert_eq!(store.current_policy().unwrap().unwrap().version, p.version);
    }
}
