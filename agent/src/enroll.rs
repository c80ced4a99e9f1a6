//! Enrollment: trade a one-time token for a device certificate. The key is generated here
//! and never leaves the device; the collector is verified by the CA fingerprint in the token
//! before the token's secret is sent.

use crate::identity::{Enrollment, Identity, IdentityError};
use crate::uplink::{connect, exchange, UplinkError};
use holdfast_shared::token::{EnrollToken, TokenError};
use holdfast_shared::wire::Message;
use std::path::Path;

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The token string is malformed.
    #[error("--token: {0}")]
    Token(#[from] TokenError),
    /// This data directory is already enrolled, with another collector.
    #[error(
        "{dir} is already enrolled as device {device} with the collector at {collector}; \
         pass --force to enroll again"
    )]
    AlreadyEnrolled {
        dir: String,
        device: String,
        collector: String,
    },
    /// A key or CSR could not be generated.
    #[error("generating the device key: {0}")]
    Key(#[from] rcgen::Error),
    /// The collector could not be reached or verified.
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    /// The collector refused the token.
    #[error("collector refused enrollment: {0}")]
    Refused(String),
    /// The collector answered with something other than a certificate.
    #[error("unexpected answer from the collector")]
    Unexpected,
    /// The CA the collector returned is not the one the token pinned.
    #[error("collector returned a CA that does not match the token's fingerprint")]
    CaMismatch,
    /// The spool in the data directory could not be read.
    #[error("reading the spool: {0}")]
    Spool(String),
    /// The identity could not be written.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// What enrollment established.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub device_id: String,
    pub user: String,
    pub when: When,
}

/// Whether the identity was made by this call or found from an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Now,
    /// Enrolled earlier with the same collector: nothing was done (a device-management
    /// script run again, its single-use token long spent).
    Earlier,
}

/// Enrolls this device with the collector at `collector` (`HOST:PORT`), saving the identity
/// in `data_dir`. An identity already there for the same collector is kept and reported
/// (so enrolling again is safe); one for another collector is refused. With `force`, an
/// existing enrollment is replaced.
pub async fn enroll(
    collector: &str,
    token: &str,
    data_dir: &Path,
    force: bool,
) -> Result<Enrolled, EnrollError> {
    let token = EnrollToken::parse(token)?;
    if !force && Identity::exists(data_dir) {
        let id = Identity::load(data_dir)?.enrollment;
        if id.collector == collector {
            return Ok(Enrolled {
                device_id: id.device_id,
                user: id.user,
                when: When::Earlier,
            });
        }
        return Err(EnrollError::AlreadyEnrolled {
            dir: data_dir.display().to_string(),
            device: id.device_id,
            collector: id.collector,
        });
    }
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, holdfast_io::host::hostname());
    let csr = params.serialize_request(&key)?;
    // Events of this identity start after anything an earlier enrollment spooled here.
    std::fs::create_dir_all(data_dir).map_err(|e| EnrollError::Spool(e.to_string()))?;
    let first_seq = crate::spool::Spool::open(&data_dir.join(crate::spool::SPOOL_FILE))
        .and_then(|s| s.last_seq())
        .map_err(|e| EnrollError::Spool(e.to_string()))?
        + 1;
    let cfg = crate::tls::enroll_client(&token.ca_sha256).map_err(UplinkError::from)?;
    let (endpoint, conn) = connect(collector, cfg).await?;
    let answer = exchange(
        &conn,
        &Message::EnrollRequest {
            token_secret: token.secret.clone(),
            csr_der: csr.der().to_vec(),
            hostname: holdfast_io::host::hostname(),
            os: std::env::consts::OS.to_string(),
            agent_version: crate::VERSION.to_string(),
            first_seq,
        },
    )
    .await;
    conn.close(0u32.into(), b"enrolled");
    endpoint.wait_idle().await;
    match answer? {
        Message::EnrollResponse {
            device_id,
            user,
            cert_der,
            ca_der,
            signing_key,
        } => {
            if holdfast_shared::sha256_hex(&ca_der) != token.ca_sha256 {
                return Err(EnrollError::CaMismatch);
            }
            let id = Identity {
                enrollment: Enrollment {
                    device_id: device_id.clone(),
                    user: user.clone(),
                    collector: collector.to_string(),
                    signing_key: hex::encode(signing_key),
                },
                cert_der,
                key_der: key.serialize_der(),
                ca_der,
            };
            id.save(data_dir)?;
            Ok(Enrolled {
                device_id,
                user,
                when: When::Now,
            })
        }
        Message::Error { code, message } => {
            Err(EnrollError::Refused(format!("{message} ({code})")))
        }
        _ => Err(EnrollError::Unexpected),
    }
}
