//! QUIC ingest: the only module that owns the collector's socket. It authenticates each
//! connection by its client certificate, enrolls devices on the enrollment ALPN, stores
//! event batches and acknowledges them only after the commit, answers heartbeats with signed
//! updates and certificate renewals, and flags devices that fall silent.

use crate::pki::Ca;
use crate::store::{AfterAttempt, Device, LastAttempt, Store, StoreError, TokenRefusal};
use holdfast_shared::session::collector::{
    self as session, error, Cert, CollectorSession, Current, Decision, Outcome, Work,
};
use holdfast_shared::token::EnrollToken;
use holdfast_shared::wire::{self, close, Message};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tracing::{info, info_span, warn, Instrument};

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
    let crm = tokio::spawn(poll_crms(state.clone(), shutdown.clone()));
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
    crm.abort();
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

/// How far back a CRM is asked again at every poll: its event log may record an export a
/// little after it happened, and exports polled twice are dropped by the store.
const CRM_SETTLE_MS: i64 = 15 * 60_000;
/// How far back the first poll of a CRM looks.
const CRM_FIRST_LOOK_MS: i64 = 86_400_000;

/// Polls each CRM connector with `poll` set for exports, every `poll` (a failed poll again
/// after the connector's backoff), and stores them as `crm` events under the policy in force.
async fn poll_crms(state: Arc<State>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    use crate::connectors::crm;
    let pollers: Vec<crate::connectors::Connector> = state
        .connectors
        .iter()
        .filter(|c| crm::poll_every(c).is_some())
        .cloned()
        .collect();
    if pollers.is_empty() {
        return;
    }
    let mut due = vec![0i64; pollers.len()];
    let mut failures = vec![0u32; pollers.len()];
    loop {
        for (i, c) in pollers.iter().enumerate() {
            let now = crate::now_ms();
            if due[i] > now.ms() {
                continue;
            }
            let every = crm::poll_every(c).unwrap_or(std::time::Duration::from_secs(300));
            let name = c.name.clone();
            let start = holdfast_shared::time::UnixMs(now.ms() - CRM_FIRST_LOOK_MS);
            let cursor = match with_store(&state, move |s| s.crm_poll(&name, start)).await {
                Ok(p) => p.cursor_ms,
                Err(e) => {
                    warn!(connector = %c.name, error = %e, "cannot read the CRM poll cursor");
                    continue;
                }
            };
            let c2 = c.clone();
            let got = tokio::task::spawn_blocking(move || crm::poll(&c2, cursor))
                .await
                .unwrap_or_else(|e| Err(format!("poll task failed: {e}")));
            let (name, vendor, device) = (c.name.clone(), crm::vendor(c), crm::device_of(c));
            let users = crm::users(c).cloned().unwrap_or_default();
            let outcome = with_store(&state, move |s| {
                let polled = crate::now_ms();
                match got {
                    Ok(exports) => {
                        let events: Vec<crate::store::CrmEvent> = exports
                            .into_iter()
                            .map(|e| crate::store::CrmEvent {
                                user: users.user_of(&e.login).unwrap_or_else(|| e.login.clone()),
                                id: e.id,
                                time_ms: e.time_ms,
                                login: e.login,
                                report: e.report,
                                records: e.records,
                                entity: e.entity,
                                format: e.format,
                                how: e.how,
                            })
                            .collect();
                        let policy = crate::offboard::policy_in_force(s)
                            .map_err(|e| StoreError::Encode(e.to_string()))?;
                        let new = s.ingest_crm(&device, vendor, &events, &policy, polled)?;
                        let next = holdfast_shared::time::UnixMs(
                            cursor.ms().max(polled.ms() - CRM_SETTLE_MS),
                        );
                        let detail = format!("{} export(s) read, {new} new", events.len());
                        s.record_crm_poll(&name, next, polled, true, &detail)?;
                        Ok(Ok(new))
                    }
                    Err(detail) => {
                        s.record_crm_poll(&name, cursor, polled, false, &detail)?;
                        Ok(Err(detail))
                    }
                }
            })
            .await;
            let now = crate::now_ms().ms();
            match outcome {
                Ok(Ok(new)) => {
                    failures[i] = 0;
                    due[i] = now + every.as_millis() as i64;
                    if new > 0 {
                        info!(connector = %c.name, new, "CRM exports stored");
                    }
                }
                Ok(Err(detail)) => {
                    failures[i] += 1;
                    let wait = crate::connectors::backoff(c.retry_base, failures[i]).min(every);
                    due[i] = now + wait.as_millis() as i64;
                    warn!(connector = %c.name, %detail, "CRM poll failed");
                }
                Err(e) => {
                    due[i] = now + every.as_millis() as i64;
                    warn!(connector = %c.name, error = %e, "cannot store CRM exports");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
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
            let mut handed_over = Vec::new();
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
                    let (user, event) = (run.user.clone(), run.event.clone());
                    let successor = off.as_ref().and_then(|o| o.successor.clone());
                    let c2 = c.clone();
                    let called = tokio::task::spawn_blocking(move || {
                        let who = crate::connectors::Leaver {
                            user: &user,
                            event: &event,
                            successor: successor.as_deref(),
                            body: &body,
                        };
                        call(&c2, &who)
                    })
                    .await
                    .unwrap_or_else(|e| {
                        crate::connectors::Attempt {
                            ok: false,
                            code: None,
                            detail: format!("connector task failed: {e}"),
                        }
                        .into()
                    });
                    handed_over = called.handed_over;
                    let attempt = called.attempt;
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
            let after = match (attempt.ok, next) {
                (true, _) => AfterAttempt::Done,
                (false, Some(at)) => AfterAttempt::RetryAt(at),
                (false, None) => AfterAttempt::GiveUp,
            };
            let last = LastAttempt {
                ended_ms: crate::now_ms(),
                code: attempt.code,
                detail: attempt.detail,
            };
            let handed: Vec<crate::store::HandedCustomer> = handed_over
                .iter()
                .map(|h| crate::store::HandedCustomer {
                    connector: run.connector.clone(),
                    customer: h.external_userid.clone(),
                    successor: off
                        .as_ref()
                        .and_then(|o| o.successor.clone())
                        .unwrap_or_default(),
                    state: h.state.label(),
                    time_ms: last.ended_ms,
                })
                .collect();
            let r = with_store(&state, move |s| {
                s.record_handed_over(&run.user, &handed)?;
                s.record_attempt(&run, &last, after)
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
    let answer = match session::enrollment(read_request(&mut recv).await) {
        Ok(e) => {
            let facts = Device {
                hostname: e.hostname,
                os: e.os,
                agent_version: e.agent_version,
                first_seq: e.first_seq,
                ..Device::default()
            };
            enroll(&state, e.token_secret, e.csr_der, facts).await
        }
        Err(refusal) => *refusal,
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
        let cert = Cert {
            presented_is_current: fp == device.cert_sha256,
            issued_ms: device.cert_issued_ms,
            expires_ms: device.cert_expires_ms,
        };
        let mut session = CollectorSession::new(cert, state.max_events_per_sec, crate::now_ms());
        let device = Arc::new(device);
        loop {
            let check_in = session.next_check_ms().since(crate::now_ms()).max(0) as u64;
            let accepted = tokio::select! {
                biased;
                _ = tokio::time::sleep(std::time::Duration::from_millis(check_in)) => {
                    // A device revoked while connected is cut off within the check period.
                    let id = device.id.clone();
                    let revoked = matches!(with_store(&state, move |s| s.is_revoked(&id)).await, Ok(true));
                    if let Some((code, reason)) = session.checked(crate::now_ms(), revoked) {
                        warn!("device revoked; closing its connection");
                        conn.close(code.into(), reason.as_bytes());
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
            let request = read_request(&mut recv).await;
            let answer = match session.request(request, crate::now_ms()) {
                Decision::Answer(answer) => answer,
                Decision::Close { answer, code, reason } => {
                    warn!(reason, "closing the connection");
                    reply(&mut send, &answer).await;
                    conn.close(code.into(), reason.as_bytes());
                    return;
                }
                Decision::Do { work, at_ms } => {
                    // Over its rate, an agent waits for its answer: backpressure, not loss.
                    let wait = at_ms.since(crate::now_ms());
                    if wait > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
                    }
                    let outcome = perform(&state, &device, work).await;
                    session.done(outcome, crate::now_ms())
                }
            };
            reply(&mut send, &answer).await;
        }
    }
    .instrument(span)
    .await
}

/// Does the store work a request needs; every failure is logged here and answered as
/// [`Outcome::Failed`] (the agent asks again).
async fn perform(state: &Arc<State>, device: &Arc<Device>, work: Work) -> Outcome {
    let d = device.clone();
    let done = match work {
        Work::Ingest { events } => {
            let n = events.len();
            let through = events.iter().map(|e| e.seq).max().unwrap_or(0);
            let arrived = std::time::Instant::now();
            let r = with_store(state, move |s| s.ingest(&d, &events, crate::now_ms())).await;
            r.map(|new| {
                state.metrics.batch(new as u64, arrived.elapsed());
                info!(events = n, new, through_seq = through, "batch committed");
                Outcome::Ingested { new }
            })
        }
        Work::Heartbeat { beat } => {
            let now = crate::now_ms();
            let tolerance = state.skew_tolerance.as_millis() as i64;
            let r = with_store(state, move |s| {
                let through_seq = s.heartbeat(&d, &beat, now, tolerance)?;
                let orders = s.orders_due(&d.id, now)?;
                let policy = s.current_policy()?.map(|p| Current {
                    version: p.version,
                    signed: p.signed,
                    size: 0,
                });
                let edm = s.current_edm_info()?.map(|e| Current {
                    version: e.version,
                    signed: e.manifest,
                    size: e.size,
                });
                Ok(Outcome::Synced {
                    through_seq,
                    policy,
                    edm,
                    orders,
                })
            })
            .await;
            if let Ok(Outcome::Synced { orders, .. }) = &r {
                if !orders.is_empty() {
                    info!(orders = orders.len(), "revocation orders delivered");
                }
            }
            r
        }
        Work::EdmChunk {
            version,
            offset,
            max,
        } => {
            let r = with_store(state, move |s| s.edm_chunk(&version, offset, max)).await;
            r.map(|chunk| {
                if let Some((_, bytes)) = &chunk {
                    state.metrics.edm_served(bytes.len());
                }
                Outcome::Chunk(chunk)
            })
        }
        Work::Renew { csr_der } => return renew(state, device, &csr_der).await,
        Work::Receipt { order_id, receipts } => {
            let ok = receipts.iter().all(|r| r.ok);
            let oid = order_id.clone();
            let r = with_store(state, move |s| {
                s.record_receipt(&d.id, &oid, &receipts, crate::now_ms())
            })
            .await;
            if let Ok(true) = r {
                info!(order = %order_id, ok, "order receipt recorded");
            }
            r.map(Outcome::Receipted)
        }
    };
    done.unwrap_or_else(|e| {
        warn!(error = %e, "store error; the agent will ask again");
        Outcome::Failed
    })
}

/// Signs a renewed certificate for the connected device and records it.
async fn renew(state: &Arc<State>, device: &Device, csr_der: &[u8]) -> Outcome {
    let cert = match state.ca.sign_device(
        csr_der,
        &device.id,
        time::OffsetDateTime::now_utc(),
        state.cert_lifetime,
    ) {
        Ok(c) => c,
        Err(e) => return Outcome::Renewed(Err(e.to_string())),
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
            Outcome::Renewed(Ok(cert.der))
        }
        Err(e) => {
            warn!(error = %e, "cannot record renewal");
            Outcome::Failed
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
