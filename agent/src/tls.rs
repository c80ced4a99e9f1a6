//! TLS and QUIC client configuration: the pinned-CA verifier used during enrollment, and
//! mutual TLS for enrolled agents (the settings both sides share are `holdfast_io::tls`).

use crate::identity::Identity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

use holdfast_io::tls::{provider, transport, TlsError};

/// Accepts a server only if its chain carries the CA whose SHA-256 the enrollment token
/// pinned, and the leaf verifies against that CA for the name we dialled.
#[derive(Debug)]
struct PinnedCa {
    ca_sha256: String,
    provider: Arc<CryptoProvider>,
}

/// How rustls checks a handshake signature with a provider's algorithms (TLS 1.2 or 1.3).
type VerifySignature = fn(
    &[u8],
    &CertificateDer<'_>,
    &DigitallySignedStruct,
    &rustls::crypto::WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error>;

impl PinnedCa {
    /// A handshake signature (message, certificate, signature) checked by `verify` with this
    /// provider's algorithms.
    fn signature(
        &self,
        verify: VerifySignature,
        (message, cert, dss): (&[u8], &CertificateDer<'_>, &DigitallySignedStruct),
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| holdfast_shared::sha256_hex(c) == self.ca_sha256)
            .ok_or_else(|| {
                rustls::Error::General(
                    "collector CA does not match the fingerprint in the enrollment token".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(rustls::crypto::verify_tls12_signature, (message, cert, dss))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(rustls::crypto::verify_tls13_signature, (message, cert, dss))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn quic(mut cfg: rustls::ClientConfig, alpn: &[u8]) -> Result<quinn::ClientConfig, TlsError> {
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(cfg)?;
    let mut c = quinn::ClientConfig::new(Arc::new(crypto));
    c.transport_config(transport());
    Ok(c)
}

/// Client config for enrollment: no client certificate, server pinned by CA fingerprint.
pub fn enroll_client(ca_sha256: &str) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedCa {
        ca_sha256: ca_sha256.to_ascii_lowercase(),
        provider: provider.clone(),
    });
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    quic(cfg, holdfast_shared::wire::ALPN_ENROLL)
}

/// Client config for an enrolled agent: mutual TLS, the collector's CA as the only root.
pub fn agent_client(
    ca_der: &[u8],
    cert_chain: Vec<CertificateDer<'static>>,
    key_der: &[u8],
) -> Result<quinn::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec()));
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(cert_chain, key)?;
    quic(cfg, holdfast_shared::wire::ALPN_AGENT)
}

/// Client config from a saved identity.
pub fn identity_client(id: &Identity) -> Result<quinn::ClientConfig, TlsError> {
    agent_client(
        &id.ca_der,
        vec![CertificateDer::from(id.cert_der.clone())],
        &id.key_der,
    )
}

/// Client config with the CA as root but no client certificate (tests of refusal use it).
pub fn anonymous_client(ca_der: &[u8]) -> Result<quinn::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec()))?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    quic(cfg, holdfast_shared::wire::ALPN_AGENT)
}

/// Splits `HOST:PORT` (or `[v6]:PORT`) into the TLS server name and the port.
pub fn split_host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert_eq!(
            split_host_port("127.0.0.1:7443"),
            Some(("127.0.0.1".into(), 7443))
        );
        assert_eq!(split_host_port("[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(
            split_host_port("collector.corp:1"),
            Some(("collector.corp".into(), 1))
        );
        assert_eq!(split_host_port("nohost"), None);
        assert_eq!(split_host_port(":1"), None);
        assert_eq!(split_host_port("h:99999"), None);
    }
}
