//! The device identity on disk: private key (mode 0600, generated here, never sent),
//! device certificate, collector CA and the enrollment facts. The only module that reads
//! or writes those files.

use holdfast_io::fs::{read_pem, to_pem, write_file_atomic, FileError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const KEY_FILE: &str = "device.key";
const CERT_FILE: &str = "device.crt";
const CA_FILE: &str = "ca.crt";
const IDENTITY_FILE: &str = "identity.toml";

/// Facts from enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub device_id: String,
    pub user: String,
    /// `HOST:PORT` of the collector.
    pub collector: String,
    /// Hex Ed25519 key that signs the collector's policies and orders (pinned at enrollment).
    #[serde(default)]
    pub signing_key: String,
}

/// Everything the agent needs to connect.
#[derive(Clone)]
pub struct Identity {
    pub enrollment: Enrollment,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
    pub ca_der: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("enrollment", &self.enrollment)
            .finish_non_exhaustive()
    }
}

/// Why the identity could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No identity in this data directory: `holdfast-agent enroll` has not run.
    #[error("not enrolled: no {0} (run `holdfast-agent enroll --collector HOST:PORT --token TOKEN` first)")]
    NotEnrolled(PathBuf),
    /// A file could not be read or written, or is not what it should be (its path and why).
    #[error(transparent)]
    File(#[from] FileError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| {
        IdentityError::File(FileError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl Identity {
    /// True when `data_dir` holds an enrollment.
    pub fn exists(data_dir: &Path) -> bool {
        data_dir.join(IDENTITY_FILE).is_file()
    }

    /// Loads the identity from `data_dir`.
    pub fn load(data_dir: &Path) -> Result<Identity, IdentityError> {
        let id_path = data_dir.join(IDENTITY_FILE);
        if !id_path.is_file() {
            return Err(IdentityError::NotEnrolled(id_path));
        }
        let text = std::fs::read_to_string(&id_path).map_err(io_err(&id_path))?;
        let enrollment: Enrollment = toml::from_str(&text).map_err(|e| {
            IdentityError::File(FileError::Corrupt {
                path: id_path.clone(),
                message: e.message().to_string(),
            })
        })?;
        Ok(Identity {
            enrollment,
            cert_der: read_pem(&data_dir.join(CERT_FILE), "CERTIFICATE")?,
            key_der: read_pem(&data_dir.join(KEY_FILE), "PRIVATE KEY")?,
            ca_der: read_pem(&data_dir.join(CA_FILE), "CERTIFICATE")?,
        })
    }

    /// Saves the identity into `data_dir` (key 0600, the rest 0644; the directory 0700).
    pub fn save(&self, data_dir: &Path) -> Result<(), IdentityError> {
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(data_dir))?;
        }
        let write = |name: &str, bytes: &[u8], mode| {
            let p = data_dir.join(name);
            write_file_atomic(&p, bytes, mode)
                .map_err(|source| IdentityError::File(FileError::Io { path: p, source }))
        };
        write(
            KEY_FILE,
            to_pem("PRIVATE KEY", &self.key_der).as_bytes(),
            0o600,
        )?;
        write(
            CERT_FILE,
            to_pem("CERTIFICATE", &self.cert_der).as_bytes(),
            0o644,
        )?;
        write(
            CA_FILE,
            to_pem("CERTIFICATE", &self.ca_der).as_bytes(),
            0o644,
        )?;
        let text = toml::to_string(&self.enrollment).map_err(|e| {
            IdentityError::File(FileError::Corrupt {
                path: data_dir.join(IDENTITY_FILE),
                message: e.to_string(),
            })
        })?;
        // Written last: its presence means the enrollment is complete.
        write(IDENTITY_FILE, text.as_bytes(), 0o644)
    }

    /// Replaces the device certificate (renewal keeps the key): one atomic rename, so a
    /// crash leaves either the old or the new certificate, both valid for the key.
    pub fn save_cert(&mut self, data_dir: &Path, cert_der: Vec<u8>) -> Result<(), IdentityError> {
        let p = data_dir.join(CERT_FILE);
        write_file_atomic(&p, to_pem("CERTIFICATE", &cert_der).as_bytes(), 0o644)
            .map_err(|source| IdentityError::File(FileError::Io { path: p, source }))?;
        self.cert_der = cert_der;
        Ok(())
    }

    /// The pinned policy-signing key, decoded.
    pub fn signing_key(&self) -> Vec<u8> {
        hex::decode(&self.enrollment.signing_key).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_modes() {
        let (_dir, d) = holdfast_io::testing::scratch("agent");
        assert!(matches!(
            Identity::load(&d),
            Err(IdentityError::NotEnrolled(_))
        ));
        let id = Identity {
            enrollment: Enrollment {
                device_id: "dev".into(),
                user: "ada".into(),
                collector: "127.0.0.1:1".into(),
                signing_key: "ab".into(),
            },
            cert_der: vec![1, 2, 3],
            key_der: vec![4, 5],
            ca_der: vec![6],
        };
        id.save(&d).unwrap();
        let back = Identity::load(&d).unwrap();
        assert_eq!(back.enrollment, id.enrollment);
        assert_eq!(
            (back.cert_der, back.key_der, back.ca_der),
            (vec![1, 2, 3], vec![4, 5], vec![6])
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!format!("{id:?}").contains("key_der"));
    }
}
