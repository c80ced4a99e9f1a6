//! The collector's certificate authority: created on first start (key mode 0600), it signs
//! the server certificate and device certificates from agents' CSRs. The only module that
//! holds the CA key.

use holdfast_io::fs::{read_pem, to_pem, write_file_atomic, FileError};
use holdfast_shared::time::UnixMs;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateSigningRequestDer;
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing key material failed.
    #[error(transparent)]
    Files(#[from] FileError),
    /// A key file could not be written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Generating or signing failed, or a CSR is malformed or badly signed.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// The loaded CA.
pub struct Ca {
    pub cert_der: Vec<u8>,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("sha256", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

fn serial() -> rcgen::SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    rcgen::SerialNumber::from_slice(&bytes)
}

impl Ca {
    /// Loads the CA from `data_dir`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Ca, PkiError> {
        let (cert_path, key_path) = (data_dir.join("ca.crt"), data_dir.join("ca.key"));
        if cert_path.is_file() && key_path.is_file() {
            let key_der = read_pem(&key_path, "PRIVATE KEY")?;
            let key = KeyPair::try_from(key_der.as_slice())?;
            return Ok(Ca {
                cert_der: read_pem(&cert_path, "CERTIFICATE")?,
                key,
            });
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Holdfast collector CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Holdfast");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(serial());
        let cert = params.self_signed(&key)?;
        let io = |p: &Path| {
            let path = p.display().to_string();
            move |source| PkiError::Io { path, source }
        };
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        write_file_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)
            .map_err(io(&key_path))?;
        write_file_atomic(
            &cert_path,
            to_pem("CERTIFICATE", cert.der()).as_bytes(),
            0o644,
        )
        .map_err(io(&cert_path))?;
        Ok(Ca {
            cert_der: cert.der().to_vec(),
            key,
        })
    }

    /// Hex SHA-256 of the CA certificate: what enrollment tokens pin.
    pub fn fingerprint(&self) -> String {
        holdfast_shared::sha256_hex(&self.cert_der)
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        Ok(Issuer::from_ca_cert_der(
            &self.cert_der.clone().into(),
            &self.key,
        )?)
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses); returns
    /// `(cert_der, key_der)`. A fresh one at every start: it is never written to disk.
    pub fn server_cert(&self, names: &[String]) -> Result<(Vec<u8>, Vec<u8>), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for n in names {
            params
                .subject_alt_names
                .push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(n.clone().try_into()?),
                });
        }
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Holdfast collector");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(90);
        params.serial_number = Some(serial());
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok((cert.der().to_vec(), key.serialize_der()))
    }

    /// Signs a device certificate for the key in `csr_der`, valid for `lifetime` from `now`.
    /// Only the public key is taken from the CSR; subject, names, usage and validity are the
    /// collector's.
    pub fn sign_device(
        &self,
        csr_der: &[u8],
        device_id: &str,
        now: OffsetDateTime,
        lifetime: std::time::Duration,
    ) -> Result<DeviceCert, PkiError> {
        let csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(
            csr_der,
        ))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, device_id);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Holdfast device");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // A little slack before `now` for agents whose clocks run behind.
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + lifetime;
        let serial = serial();
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        let signed = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer()?)?;
        let ms = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        Ok(DeviceCert {
            der: signed.der().to_vec(),
            serial_hex,
            issued_ms: UnixMs(ms(now)),
            not_after_ms: UnixMs(ms(now + lifetime)),
        })
    }
}

/// A signed device certificate and the facts the registry keeps about it.
#[derive(Debug, Clone)]
pub struct DeviceCert {
    pub der: Vec<u8>,
    pub serial_hex: String,
    pub issued_ms: UnixMs,
    pub not_after_ms: UnixMs,
}

/// The Ed25519 key (PKCS#8, mode 0600) that signs policy bundles, EDM sets and orders,
/// created on first use.
pub fn signing_key(data_dir: &Path) -> Result<Vec<u8>, PkiError> {
    secret_file(
        &data_dir.join("signing.key"),
        || {
            let rng = ring::rand::SystemRandom::new();
            ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .map(|doc| doc.as_ref().to_vec())
                .map_err(|_| "cannot generate an Ed25519 key".to_string())
        },
        |key| {
            holdfast_shared::signed::public_key(key)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
}

/// The QUIC stateless-reset key (64 random bytes, mode 0600), created on first use.
pub fn reset_key(data_dir: &Path) -> Result<Vec<u8>, PkiError> {
    secret_file(
        &data_dir.join("reset.key"),
        || {
            let mut key = rand::random::<[u8; 32]>().to_vec();
            key.extend_from_slice(&rand::random::<[u8; 32]>());
            Ok(key)
        },
        |key| match key.len() {
            64 => Ok(()),
            n => Err(format!("expected 64 bytes, found {n}")),
        },
    )
}

/// The secret at `path`: made by `make` and written (mode 0600) when there is none, then read
/// back and accepted by `check`.
fn secret_file(
    path: &Path,
    make: impl FnOnce() -> Result<Vec<u8>, String>,
    check: impl Fn(&[u8]) -> Result<(), String>,
) -> Result<Vec<u8>, PkiError> {
    let io = |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    };
    let invalid = |m: String| io(std::io::Error::new(std::io::ErrorKind::InvalidData, m));
    if !path.exists() {
        let key = make().map_err(|m| io(std::io::Error::other(m)))?;
        write_file_atomic(path, &key, 0o600).map_err(io)?;
    }
    let key = std::fs::read(path).map_err(io)?;
    check(&key).map_err(invalid)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let again = Ca::load_or_create(dir.path()).unwrap();
        assert_eq!(ca.fingerprint(), again.fingerprint());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(vec!["x".to_string()])
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        let life = std::time::Duration::from_secs(3600);
        let cert = ca
            .sign_device(csr.der(), "dev-1", OffsetDateTime::now_utc(), life)
            .unwrap();
        assert!(!cert.der.is_empty());
        assert_eq!(cert.serial_hex.len(), 32);
        assert_eq!(cert.not_after_ms - cert.issued_ms, 3_600_000);
        assert!(ca
            .sign_device(b"not a csr", "d", OffsetDateTime::now_utc(), life)
            .is_err());
        let k = signing_key(dir.path()).unwrap();
        assert_eq!(signing_key(dir.path()).unwrap(), k);
        std::fs::write(dir.path().join("signing.key"), b"junk").unwrap();
        assert!(signing_key(dir.path()).is_err());
        assert!(ca
            .server_cert(&["localhost".into(), "127.0.0.1".into()])
            .is_ok());
    }
}
