//! QUIC ingest: the only module that owns the collector's socket. It authenticates each
//! connection by its client certificate, enrolls devices on the enrollment ALPN, stores
//! event batches and acknowledges them only after the commit, answers heartbeats with signed
//! updates and certificate renewals, and flags devices that fall silent.

use crate::limits::TokenBucket;
use crate::pki::Ca;
use crate::store::{Beat, Device, Store, StoreError, TokenRefusal};
use holdfast_shared::signed::Signed;
use holdfast_shared::token::EnrollToken;
use holdfast_shared::wire::{self, close, Message};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tracing::{info, info_span, warn, Instrument};

/// How often every agent connection, busy or idle, re-checks whether its device was revoked
/// (a revoked device is cut off within 2 s).
const REVOCATION_CHECK: std::time::Duration = std::time::Duration::from_secs(1);
/// Longest a request may take to arrive once its stream is open (no slow-loris streams).
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] holdfast_io::tls::TlsError),
    /// Issuing the server certificate failed.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// The UDP socket could not be bound.
    #[error("binding {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What every connection handler shares.
pub struct State {
    pub ca: Ca,
    pub store: Mutex<Store>,
    pub db_path: PathBuf,
    /// PKCS#8 Ed25519 key for signed updates, and its public half (given at enrollment).
    pub signing_key: Vec<u8>,
    pub signing_public: Vec<u8>,
    pub cert_lifetime: std::time::Duration,
    pub skew_tolerance: std::time::Duration,
    pub offline_after: std::time::Duration,
    pub max_events_per_sec: u32,
    /// Called at offboardings; see [`crate::connectors`].
    pub connectors: Vec<crate::config::Connector>,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Builds the QUIC server config: our CA's server certificate, client certificates
/// verified against our CA (optional at the TLS layer, so the enrollment ALPN can work;
/// required for the agent ALPN by [`handle`]).
pub fn server_config(ca: &Ca, names: &[String]) -> Result<quinn::ServerConfig, ServeError> {
    let provider = holdfast_io::tls::provider();
    let (cert, key) = ca.server_cert(names)?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der.clone()))
        .map_err(holdfast_io::tls::TlsError::from)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(holdfast_io::tls::TlsError::from)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(holdfast_io::tls::TlsError::from)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![
                CertificateDer::from(cert),
                CertificateDer::from(ca.cert_der.clone()),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .map_err(holdfast_io::tls::TlsError::from)?;
    tls.alpn_protocols = vec![wire::ALPN_AGENT.to_vec(), wire::ALPN_ENROLL.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(holdfast_io::tls::TlsError::from)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(holdfast_io::tls::transport());
    Ok(cfg)
}

/// Binds the QUIC endpoint. `reset_key` keys QUIC stateless resets: persisted across
/// restarts, it lets a restarted collector reset agents' stale connections at once instead
/// of leaving them to their idle timeout.
pub fn bind(
    cfg: quinn::ServerConfig,
    addr: SocketAddr,
    reset_key: &[u8],
) -> Result<quinn::Endpoint, ServeError> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset_key);
    let socket = std::net::UdpSocket::bind(addr).map_err(|e| ServeError::Bind(addr, e))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::new(Arc::new(key)),
        Some(cfg),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| ServeError::Bind(addr, e))
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    endpoint: quinn::Endpoint,
    state: Arc<State>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let liveness = tokio::spawn(liveness(state.clone(), shutdown.clone()));
    let connectors = tokio::spawn(run_connectors(state.clone(), shutdown.clone()));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = shutdown.changed() => None,
        };
        let Some(incoming) = incoming else { break };
        let state = state.clone();
        let remote = incoming.remote_address();
        tokio::spawn(
            async move {
                match incoming.await {
                    Ok(conn) => handle(conn, state).await,
                    Err(e) => warn!(error = %e, "handshake failed"),
                }
            }
            .instrument(info_span!("conn", %remote)),
        );
    }
    liveness.abort();
    connectors.abort();
    endpoint.close(0u32.into(), b"shutdown");
    endpoint.wait_idle().await;
}

/// Flags devices silent for longer than `offline_after`. It starts only once the collector
/// has itself been up that long, so a collector restart does not flag every device.
async fn liveness(state: Arc<State>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let after = state.offline_after;
    let period = (after / 3).clamp(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(30),
    );
    tokio::select! {
        _ = tokio::time::sleep(after) => {}
        _ = shutdown.changed() => return,
    }
    loop {
        let after_ms = after.as_millis() as i64;
        match with_store(&state, move |s| s.sweep_offline(crate::now_ms(), after_ms)).await {
            Ok(ids) => {
                for id in ids {
                    warn!(device = %id, "agent offline");
                }
            }
            Err(e) => warn!(error = %e, "liveness sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Runs due connector calls (queued by `offboard` in the database, so they survive restarts),
/// one at a time, without holding the store while a call is under way.
async fn run_connectors(state: Arc<State>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    use crate::connectors::{backoff, call, payload};
    loop {
        let due = with_store(&state, |s| s.connector_runs_due(crate::now_ms(), 16)).await;
        for run in due.unwrap_or_else(|e| {
            warn!(error = %e, "cannot read due connector runs");
            Vec::new()
        }) {
            let user = run.user.clone();
            let off = with_store(&state, move |s| s.offboarding(&user))
                .await
                .ok()
                .flatten();
            let connector = state
                .connectors
                .iter()
                .find(|c| c.name == run.connector)
                .cloned();
            let (attempt, next) = match connector {
                None => (
                    crate::connectors::Attempt {
                        ok: false,
                        code: None,
                        detail: "connector no longer configured".into(),
                    },
                    None,
                ),
                Some(c) => {
                    let body = payload(&run, off.as_ref());
                    let user = run.user.clone();
                    let c2 = c.clone();
                    let attempt = tokio::task::spawn_blocking(move || call(&c2, &user, &body))
                        .await
                        .unwrap_or_else(|e| crate::connectors::Attempt {
                            ok: false,
                            code: None,
                            detail: format!("connector task failed: {e}"),
                        });
                    let tried = run.attempts + 1;
                    let next = (!attempt.ok && tried < c.max_attempts)
                        .then(|| crate::now_ms() + backoff(c.retry_base, tried).as_millis() as i64);
                    (attempt, next)
                }
            };
            if attempt.ok {
                info!(connector = %run.connector, user = %run.user, code = ?attempt.code, "connector done");
            } else {
                warn!(connector = %run.connector, user = %run.user, code = ?attempt.code, detail = %attempt.detail, retry = next.is_some(), "connector attempt failed");
            }
            let r = with_store(&state, move |s| {
                s.record_attempt(
                    &run,
                    attempt.ok,
                    attempt.code,
                    &attempt.detail,
                    next,
                    crate::now_ms(),
                )
            })
            .await;
            if let Err(e) = r {
                warn!(error = %e, "cannot record a connector attempt");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

fn peer_cert_sha256(conn: &quinn::Connection) -> Option<String> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(|c| holdfast_shared::sha256_hex(c))
}

async fn handle(conn: quinn::Connection, state: Arc<State>) {
    match alpn(&conn).as_deref() {
        Some(wire::ALPN_ENROLL) => enroll_conn(conn, state).await,
        Some(wire::ALPN_AGENT) => agent_conn(conn, state).await,
        _ => conn.close(close::PROTOCOL.into(), b"unknown protocol"),
    }
}

/// Reads one request frame from a stream (bounded by the frame cap and [`READ_TIMEOUT`]).
async fn read_request(recv: &mut quinn::RecvStream) -> Result<Message, String> {
    let bytes = tokio::time::timeout(
        READ_TIMEOUT,
        recv.read_to_end(wire::MAX_FRAME + wire::HEADER),
    )
    .await
    .map_err(|_| "request not completed in time".to_string())?
    .map_err(|e| e.to_string())?;
    wire::decode(&bytes).map_err(|e| e.to_string())
}

async fn reply(send: &mut quinn::SendStream, msg: &Message) {
    match wire::encode(msg) {
        Ok(bytes) => {
            let _ = send.write_all(&bytes).await;
            let _ = send.finish();
        }
        Err(e) => warn!(error = %e, "cannot encode reply"),
    }
}

fn error(code: &str, message: impl Into<String>) -> Message {
    Message::Error {
        code: code.into(),
        message: message.into(),
    }
}

/// Runs blocking store work off the async threads.
async fn with_store<T: Send + 'static>(
    state: &Arc<State>,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = state.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut store)
    })
    .await
    .unwrap_or_else(|e| Err(StoreError::Encode(format!("store task failed: {e}"))))
}

async fn enroll_conn(conn: quinn::Connection, state: Arc<State>) {
    let Ok((mut send, mut recv)) = conn.accept_bi().await else {
        return;
    };
    let answer = match read_request(&mut recv).await {
        Ok(Message::EnrollRequest {
            token_secret,
            csr_der,
            hostname,
            os,
            agent_version,
            first_seq,
        }) => {
            let facts = Device {
                id: String::new(),
                user: String::new(),
                hostname: hostname.chars().take(255).collect(),
                os: os.chars().take(64).collect(),
                agent_version: agent_version.chars().take(64).collect(),
                cert_sha256: String::new(),
                cert_serial: String::new(),
                cert_issued_ms: 0,
                cert_expires_ms: 0,
                enrolled_ms: 0,
                last_seen_ms: None,
                revoked_ms: None,
                last_seq: 0,
                spool_backlog: None,
                first_seq: first_seq.clamp(1, i64::MAX as u64),
                policy_version: String::new(),
                clock_skew_ms: None,
                offline_since_ms: None,
                coverage: None,
                last_stop: None,
                last_gap: None,
                health: String::new(),
            };
            enroll(&state, token_secret, csr_der, facts).await
        }
        Ok(_) => error(
            "protocol",
            "only enrollment is allowed without a device certificate",
        ),
        Err(e) => error("bad_frame", e),
    };
    reply(&mut send, &answer).await;
    // Let the agent read the answer and close.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn.closed()).await;
}

/// Redeems the token and registers the device described by `facts` (id, user and
/// certificate fields are filled in here).
async fn enroll(
    state: &Arc<State>,
    token_secret: String,
    csr_der: Vec<u8>,
    facts: Device,
) -> Message {
    let device_id = format!("dev-{}", hex::encode(rand::random::<[u8; 8]>()));
    let hash = EnrollToken::secret_hash(&token_secret);
    let now = crate::now_ms();
    let id = device_id.clone();
    let redeemed = with_store(state, move |s| s.redeem_token(&hash, &id, now)).await;
    let user = match redeemed {
        Ok(Ok(user)) => user,
        Ok(Err(refusal)) => {
            warn!(reason = %refusal, "enrollment refused");
            let code = match refusal {
                TokenRefusal::Unknown => "token_unknown",
                TokenRefusal::Expired => "token_expired",
                TokenRefusal::Used => "token_used",
            };
            return error(code, refusal.to_string());
        }
        Err(e) => {
            warn!(error = %e, "enrollment store error");
            return error("internal", "internal error");
        }
    };
    let cert = match state.ca.sign_device(
        &csr_der,
        &device_id,
        time::OffsetDateTime::now_utc(),
        state.cert_lifetime,
    ) {
        Ok(c) => c,
        Err(e) => return error("bad_csr", e.to_string()),
    };
    let device = Device {
        id: device_id.clone(),
        user: user.clone(),
        cert_sha256: holdfast_shared::sha256_hex(&cert.der),
        cert_serial: cert.serial_hex.clone(),
        cert_issued_ms: cert.issued_ms,
        cert_expires_ms: cert.not_after_ms,
        enrolled_ms: now,
        ..facts
    };
    if let Err(e) = with_store(state, move |s| s.add_device(&device)).await {
        warn!(error = %e, "cannot register device");
        return error("internal", "internal error");
    }
    info!(device = %device_id, %user, "device enrolled");
    Message::EnrollResponse {
        device_id,
        user,
        cert_der: cert.der,
        ca_der: state.ca.cert_der.clone(),
        signing_key: state.signing_public.clone(),
    }
}

async fn agent_conn(conn: quinn::Connection, state: Arc<State>) {
    let Some(fp) = peer_cert_sha256(&conn) else {
        warn!("agent connection without a client certificate refused");
        conn.close(
            close::UNAUTHENTICATED.into(),
            b"client certificate required",
        );
        return;
    };
    let lookup = fp.clone();
    let device = match with_store(&state, move |s| s.device_by_cert(&lookup)).await {
        Ok(Some(d)) if d.revoked_ms.is_none() => d,
        Ok(Some(_)) => {
            conn.close(close::REVOKED.into(), b"device revoked");
            return;
        }
        Ok(None) => {
            warn!(cert = %fp, "unknown device certificate refused");
            conn.close(close::UNAUTHENTICATED.into(), b"unknown device");
            return;
        }
        Err(e) => {
            warn!(error = %e, "store error");
            conn.close(close::INTERNAL.into(), b"internal error");
            return;
        }
    };
    let span = info_span!("device", id = %device.id, user = %device.user);
    async move {
        info!("agent connected");
        let _connected = crate::metrics::Connected::new(state.metrics.clone());
        let device = Arc::new(device);
        let mut bucket = TokenBucket::new(state.max_events_per_sec, std::time::Instant::now());
        // One clock for the whole connection, not a timer restarted per request: a device
        // that sends all the time is checked as often as an idle one.
        let mut revocation = tokio::time::interval(REVOCATION_CHECK);
        revocation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        revocation.tick().await;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = revocation.tick() => {
                    // A device revoked while connected is cut off within this period.
                    let id = device.id.clone();
                    if let Ok(true) = with_store(&state, move |s| s.is_revoked(&id)).await {
                        warn!("device revoked; closing its connection");
                        conn.close(close::REVOKED.into(), b"device revoked");
                        return;
                    }
                    continue;
                }
                a = conn.accept_bi() => a,
            };
            let (mut send, mut recv) = match accepted {
                Ok(s) => s,
                Err(e) => {
                    info!(reason = %e, "agent disconnected");
                    return;
                }
            };
            let msg = match read_request(&mut recv).await {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "bad frame; closing");
                    reply(&mut send, &error("bad_frame", e)).await;
                    conn.close(close::PROTOCOL.into(), b"bad frame");
                    return;
                }
            };
            let answer = match msg {
                Message::EventBatch { events } => {
                    if events.len() > wire::MAX_BATCH * 4 {
                        reply(&mut send, &error("bad_batch", "batch too large")).await;
                        conn.close(close::PROTOCOL.into(), b"bad batch");
                        return;
                    }
                    // Over its rate, an agent waits for its ack: backpressure, not loss.
                    let wait = bucket.take(events.len() as u64, std::time::Instant::now());
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    let through = events.iter().map(|e| e.seq).max().unwrap_or(0);
                    let n = events.len();
                    let d = device.clone();
                    let arrived = std::time::Instant::now();
                    match with_store(&state, move |s| s.ingest(&d, &events, crate::now_ms())).await
                    {
                        Ok(new) => {
                            state.metrics.batch(new as u64, arrived.elapsed());
                            info!(events = n, new, through_seq = through, "batch committed");
                            Message::Ack {
                                through_seq: through,
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "ingest failed; agent will resend");
                            error("internal", "could not store the batch")
                        }
                    }
                }
                Message::Heartbeat {
                    agent_version,
                    hostname,
                    os,
                    policy_version,
                    time_ms,
                    spool_backlog,
                    edm_version,
                    coverage,
                    health,
                } => {
                    let now = crate::now_ms();
                    let beat = Beat {
                        coverage,
                        health: health
                            .into_iter()
                            .take(16)
                            .map(|h| h.chars().take(500).collect())
                            .collect(),
                        agent_version,
                        hostname,
                        os,
                        policy_version: policy_version.clone(),
                        edm_version: edm_version.clone(),
                        skew_ms: time_ms.saturating_sub(now),
                        backlog: spool_backlog,
                    };
                    let d = device.clone();
                    let tolerance = state.skew_tolerance.as_millis() as i64;
                    let renew = renew_due(&device, &fp, now);
                    let result = with_store(&state, move |s| {
                        let seq = s.heartbeat(&d, &beat, now, tolerance)?;
                        let orders = s.orders_due(&d.id, now)?;
                        Ok((seq, s.current_policy()?, s.current_edm_info()?, orders))
                    })
                    .await;
                    match result {
                        Ok((through_seq, policy, edm, orders)) => {
                            let orders: Vec<Signed> = orders
                                .iter()
                                .filter_map(|b| Signed::from_bytes(b).ok())
                                .collect();
                            if !orders.is_empty() {
                                info!(orders = orders.len(), "revocation orders delivered");
                            }
                            let updates = policy
                                .filter(|p| p.version != policy_version)
                                .and_then(|p| Signed::from_bytes(&p.signed).ok())
                                .into_iter()
                                .collect();
                            let edm = edm.filter(|e| e.version != edm_version).and_then(|e| {
                                Some(wire::EdmOffer {
                                    version: e.version,
                                    size: e.size,
                                    manifest: Some(Signed::from_bytes(&e.manifest).ok()?),
                                })
                            });
                            Message::Sync {
                                through_seq,
                                time_ms: now,
                                renew,
                                updates,
                                edm,
                                orders,
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "heartbeat store error");
                            error("internal", "store error")
                        }
                    }
                }
                Message::EdmChunkRequest { version, offset } => {
                    let v = version.clone();
                    match with_store(&state, move |s| s.edm_chunk(&v, offset, wire::EDM_CHUNK))
                        .await
                    {
                        Ok(Some((total, bytes))) => {
                            state.metrics.edm_served(bytes.len());
                            Message::EdmChunk {
                                version,
                                offset,
                                total,
                                bytes,
                            }
                        }
                        Ok(None) => error("edm_changed", "that customer set is no longer current"),
                        Err(e) => {
                            warn!(error = %e, "edm store error");
                            error("internal", "store error")
                        }
                    }
                }
                Message::RenewRequest { csr_der } => renew(&state, &device, &csr_der).await,
                Message::OrderReceipt { order_id, receipts } => {
                    let id = device.id.clone();
                    let oid = order_id.clone();
                    let ok = receipts.iter().all(|r| r.ok);
                    match with_store(&state, move |s| {
                        s.record_receipt(&id, &oid, &receipts, crate::now_ms())
                    })
                    .await
                    {
                        Ok(true) => {
                            info!(order = %order_id, ok, "order receipt recorded");
                            Message::ReceiptAck { order_id }
                        }
                        Ok(false) => error("unknown_order", "no such order for this device"),
                        Err(e) => {
                            warn!(error = %e, "cannot record a receipt");
                            error("internal", "store error")
                        }
                    }
                }
                _ => {
                    reply(&mut send, &error("protocol", "unexpected message")).await;
                    conn.close(close::PROTOCOL.into(), b"unexpected message");
                    return;
                }
            };
            reply(&mut send, &answer).await;
        }
    }
    .instrument(span)
    .await
}

/// True when the connection's certificate should be renewed now: past two thirds of its
/// lifetime, or it is the certificate the device already renewed from.
fn renew_due(device: &Device, presented_sha256: &str, now_ms: i64) -> bool {
    if presented_sha256 != device.cert_sha256 {
        return true;
    }
    let life = device.cert_expires_ms - device.cert_issued_ms;
    life > 0 && now_ms >= device.cert_issued_ms + life / 3 * 2
}

/// Signs a renewed certificate for the connected device and records it.
async fn renew(state: &Arc<State>, device: &Device, csr_der: &[u8]) -> Message {
    let cert = match state.ca.sign_device(
        csr_der,
        &device.id,
        time::OffsetDateTime::now_utc(),
        state.cert_lifetime,
    ) {
        Ok(c) => c,
        Err(e) => return error("bad_csr", e.to_string()),
    };
    let id = device.id.clone();
    let (sha, serial, issued, expires) = (
        holdfast_shared::sha256_hex(&cert.der),
        cert.serial_hex.clone(),
        cert.issued_ms,
        cert.not_after_ms,
    );
    match with_store(state, move |s| {
        s.renew_cert(&id, &sha, &serial, issued, expires)
    })
    .await
    {
        Ok(()) => {
            info!(serial = %cert.serial_hex, expires = %crate::fmt_ms(cert.not_after_ms), "device certificate renewed");
            Message::RenewResponse { cert_der: cert.der }
        }
        Err(e) => {
            warn!(error = %e, "cannot record renewal");
            error("internal", "internal error")
        }
    }
}

/// Opens everything `serve` needs from a config: CA (created on first start), store, endpoint.
pub fn start(config: &crate::config::Config) -> Result<(quinn::Endpoint, Arc<State>), ServeError> {
    let ca = Ca::load_or_create(&config.data_dir)?;
    let signing_key = crate::pki::signing_key(&config.data_dir)?;
    let signing_public = holdfast_shared::signed::public_key(&signing_key).map_err(|e| {
        crate::pki::PkiError::Io {
            path: config.data_dir.join("signing.key").display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        }
    })?;
    let mut store = Store::open(&config.db_path())?;
    store.set_correlation(config.correlation);
    if store.legacy_edm_sets()? > 0 && store.current_edm_info()?.is_none() {
        warn!("the stored customer set is in a format this version no longer sends; import the customer list again (`holdfast-collector edm import`)");
    }
    let cfg = server_config(&ca, &config.server_names)?;
    let reset_key = crate::pki::reset_key(&config.data_dir)?;
    let endpoint = bind(cfg, config.listen, &reset_key)?;
    Ok((
        endpoint,
        Arc::new(State {
            ca,
            store: Mutex::new(store),
            db_path: config.db_path(),
            signing_key,
            signing_public,
            cert_lifetime: config.cert_lifetime,
            skew_tolerance: config.skew_tolerance,
            offline_after: config.offline_after,
            max_events_per_sec: config.max_events_per_sec,
            connectors: config.connectors.clone(),
            metrics: Arc::new(crate::metrics::Metrics::default()),
        }),
    ))
}
