//! The uplink: the only module that opens QUIC connections. It drains the spool to the
//! collector in batches, deleting events only once the collector acknowledged their commit,
//! and reconnects with exponential backoff and jitter while the collector is away.

use crate::clock::now_ms;
use crate::identity::Identity;
use crate::spool::{Spool, SpoolError};
use crate::tls::TlsError;
use holdfast_shared::wire::{self, Message, MAX_BATCH};
use rand::Rng;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

/// Heartbeat period while the spool is empty.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Backoff bounds between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why talking to the collector failed.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// `HOST:PORT` is malformed or does not resolve.
    #[error("collector address `{0}`: {1}")]
    Address(String, String),
    /// The local UDP socket could not be opened.
    #[error("opening a UDP socket: {0}")]
    Socket(std::io::Error),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The connection could not be started.
    #[error("connecting to the collector: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed (handshake refused, collector gone).
    #[error("collector connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing a request failed.
    #[error("sending to the collector: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading the answer failed.
    #[error("reading the collector's answer: {0}")]
    Read(#[from] quinn::ReadToEndError),
    /// A frame could not be encoded.
    #[error(transparent)]
    Encode(#[from] wire::EncodeError),
    /// The collector's answer could not be decoded.
    #[error("collector sent a bad frame: {0}")]
    Decode(#[from] wire::DecodeError),
    /// The collector answered with an error.
    #[error("collector refused: {message} ({code})")]
    Refused { code: String, message: String },
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Resolves `HOST:PORT` and connects with `cfg`, returning the endpoint and connection.
pub async fn connect(
    addr: &str,
    cfg: quinn::ClientConfig,
) -> Result<(quinn::Endpoint, quinn::Connection), UplinkError> {
    let (host, _) = crate::tls::split_host_port(addr)
        .ok_or_else(|| UplinkError::Address(addr.into(), "expected HOST:PORT".into()))?;
    let target: SocketAddr = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| UplinkError::Address(addr.into(), e.to_string()))?
        .next()
        .ok_or_else(|| UplinkError::Address(addr.into(), "no address".into()))?;
    let bind: SocketAddr = if target.is_ipv6() {
        "[::]:0"
            .parse()
            .map_err(|_| UplinkError::Address(addr.into(), "bind".into()))?
    } else {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| UplinkError::Address(addr.into(), "bind".into()))?
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(UplinkError::Socket)?;
    let conn = endpoint.connect_with(cfg, target, &host)?.await?;
    Ok((endpoint, conn))
}

/// Sends one request on a fresh bidirectional stream and reads the one-frame answer.
pub async fn exchange(conn: &quinn::Connection, msg: &Message) -> Result<Message, UplinkError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&wire::encode(msg)?).await?;
    // The peer may already have closed its side; the answer (or its absence) tells.
    let _ = send.finish();
    let bytes = recv.read_to_end(wire::MAX_FRAME + wire::HEADER).await?;
    Ok(wire::decode(&bytes)?)
}

/// The uplink task's state.
pub struct Uplink {
    pub identity: Identity,
    pub spool_path: PathBuf,
    /// Signalled by the pipeline when it spooled something.
    pub wake: Arc<Notify>,
}

impl Uplink {
    /// Runs until `shutdown` turns true: connect, drain, wait, reconnect.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), UplinkError> {
        let spool = Spool::open(&self.spool_path)?;
        let cfg = crate::tls::identity_client(&self.identity)?;
        let addr = self.identity.enrollment.collector.clone();
        let mut backoff = BACKOFF_MIN;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let mut drain_shutdown = shutdown.clone();
            let attempt = async {
                let (endpoint, conn) = connect(&addr, cfg.clone()).await?;
                info!(collector = %addr, "connected to collector");
                spool.set_meta("last_connected_ms", &now_ms().to_string())?;
                spool.set_meta("last_error", "")?;
                let result = self.drain(&spool, &conn, &mut drain_shutdown).await;
                conn.close(0u32.into(), b"bye");
                endpoint.wait_idle().await;
                result
            };
            let result = tokio::select! {
                r = attempt => r,
                _ = shutdown.changed() => return Ok(()),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    warn!(error = %e, "uplink interrupted; events stay spooled");
                    let _ = spool.set_meta("last_error", &e.to_string());
                    if matches!(e, UplinkError::Spool(_)) {
                        return Err(e);
                    }
                }
            }
            let jitter = rand::thread_rng().gen_range(0.5..1.5);
            let delay = backoff.mul_f64(jitter);
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    /// Sends batches until the spool is empty, then waits for more (or heartbeats).
    /// Returns `Ok` only on shutdown.
    async fn drain(
        &self,
        spool: &Spool,
        conn: &quinn::Connection,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), UplinkError> {
        let device_id = self.identity.enrollment.device_id.clone();
        let mut limit = MAX_BATCH;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let batch = spool.pending(&device_id, limit)?;
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(HEARTBEAT) => {
                        let backlog = spool.backlog()?;
                        self.send(conn, &Message::Heartbeat { agent_version: crate::VERSION.into(), spool_backlog: backlog }, spool).await?;
                    }
                    e = conn.closed() => return Err(e.into()),
                    _ = shutdown.changed() => return Ok(()),
                }
                continue;
            }
            let n = batch.len();
            match self
                .send(conn, &Message::EventBatch { events: batch }, spool)
                .await
            {
                Err(UplinkError::Encode(wire::EncodeError::TooLarge(_))) if limit > 1 => {
                    limit = (limit / 2).max(1);
                    continue;
                }
                Err(e) => return Err(e),
                Ok(()) => debug!(events = n, "batch committed"),
            }
            limit = MAX_BATCH;
        }
    }

    async fn send(
        &self,
        conn: &quinn::Connection,
        msg: &Message,
        spool: &Spool,
    ) -> Result<(), UplinkError> {
        match exchange(conn, msg).await? {
            Message::Ack { through_seq } => {
                if through_seq > 0 {
                    spool.ack(through_seq)?;
                    spool.set_meta("last_ack_ms", &now_ms().to_string())?;
                }
                Ok(())
            }
            Message::Error { code, message } => Err(UplinkError::Refused { code, message }),
            other => Err(UplinkError::Refused {
                code: "unexpected".into(),
                message: format!("unexpected answer {:?}", std::mem::discriminant(&other)),
            }),
        }
    }
}
