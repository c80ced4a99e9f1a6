//! The TLS and QUIC settings both ends agree on: the one crypto provider, the transport
//! limits, and the error for a configuration that could not be built.

use rustls::crypto::CryptoProvider;
use std::sync::Arc;
use std::time::Duration;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the certificates or keys.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// The root store could not be built into a verifier.
    #[error("TLS verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The rustls configuration is not usable for QUIC.
    #[error("QUIC crypto: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// The one crypto provider the project uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// QUIC transport settings shared by agent and collector: keep-alives well inside the idle
/// timeout, small stream limits (an agent needs one stream at a time) and bounded windows.
pub fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(20)) {
        t.max_idle_timeout(Some(idle));
    }
    // Memory per connection is bounded by flow control: one frame in flight per stream, a
    // few streams, and a connection-wide window of two frames.
    let frame = (holdfast_shared::wire::MAX_FRAME + holdfast_shared::wire::HEADER) as u32;
    t.stream_receive_window(frame.into());
    t.receive_window((2 * frame).into());
    t.send_window(2 * u64::from(frame));
    t.max_concurrent_bidi_streams(4u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    Arc::new(t)
}
