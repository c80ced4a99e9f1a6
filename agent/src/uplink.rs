//! The uplink: the only module that opens QUIC connections. It drains the spool to the
//! collector in batches, deleting events only once the collector acknowledged their commit,
//! and reconnects with exponential backoff and jitter while the collector is away.

use crate::clock::now_ms;
use crate::identity::Identity;
use crate::spool::{Spool, SpoolError};
use crate::updates::{LiveEdm, LivePolicies};
use holdfast_io::tls::TlsError;
use holdfast_shared::session::{AgentSession, Step, Timing};
use holdfast_shared::wire::{self, Message};
use rand::Rng;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

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
    /// Nothing answered at the collector's address within the handshake's time.
    #[error(
        "no answer from the collector at {addr} ({target}, UDP): check the address and port, \
         that the collector is running, and that no firewall drops UDP to that port"
    )]
    NoAnswer { addr: String, target: SocketAddr },
    /// The handshake with the collector failed (a certificate refused, the peer closed).
    #[error("connecting to the collector at {addr}: {source}")]
    Handshake {
        addr: String,
        source: quinn::ConnectionError,
    },
    /// The connection failed or was closed (collector gone).
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
    /// Renewing the certificate failed (the old one stays in use).
    #[error("renewing the device certificate: {0}")]
    Renew(String),
}

/// Longest a heartbeat spends fetching customer-set pieces before it goes on with events.
const FETCH_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// What one heartbeat's customer-set fetch came to.
#[derive(Debug)]
enum Fetched {
    /// The set is whole and in force.
    Applied(String),
    /// Nothing to fetch: the set in force is this one or newer.
    Nothing,
    /// Out of time; the next heartbeat resumes.
    Paused,
    /// Refused for what it is; this version is not fetched again.
    Refused(String),
    /// Failed for now (a piece that did not match, the set replaced meanwhile, a disk error).
    Later(String),
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
    let conn = endpoint
        .connect_with(cfg, target, &host)?
        .await
        .map_err(|e| match e {
            quinn::ConnectionError::TimedOut => UplinkError::NoAnswer {
                addr: addr.into(),
                target,
            },
            source => UplinkError::Handshake {
                addr: addr.into(),
                source,
            },
        })?;
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
    pub data_dir: PathBuf,
    pub spool_path: PathBuf,
    /// `~` for policy bundles received from the collector.
    pub home: String,
    pub policies: LivePolicies,
    pub edm: LiveEdm,
    /// Signalled by the pipeline when it spooled something.
    pub wake: Arc<Notify>,
    pub heartbeat: Duration,
    /// Carries out revocation orders.
    pub orders: crate::orders::Executor,
    /// Hashes of order envelopes already refused (logged once, not at every heartbeat).
    pub refused_orders: std::collections::HashSet<String>,
    /// The stages' failures, sent in every heartbeat.
    pub health: crate::health::Health,
}

impl Uplink {
    /// Runs until `shutdown` turns true. What to do when (connect, back off, heartbeat, send
    /// a batch of what size, delete what was acknowledged, reconnect after a renewal) is
    /// decided by the sans-IO [`AgentSession`]; this is its driver over QUIC and the spool.
    pub async fn run(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), UplinkError> {
        let spool = Spool::open(&self.spool_path)?;
        let addr = self.identity.enrollment.collector.clone();
        let mut session = AgentSession::new(
            Timing::with_heartbeat(self.heartbeat.as_millis() as u64),
            now_ms(),
        );
        let mut link: Option<(quinn::Endpoint, quinn::Connection)> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let step = session.poll(now_ms());
            let result = match (step, &link) {
                (Step::Connect, _) => {
                    let cfg = crate::tls::identity_client(&self.identity)?;
                    let attempt = tokio::select! {
                        r = connect(&addr, cfg) => r,
                        _ = shutdown.changed() => break,
                    };
                    attempt.map(|(endpoint, conn)| {
                        info!(collector = %addr, "connected to collector");
                        // Status values: a spool that takes no writes must not stop the
                        // heartbeats that report it.
                        let _ = spool.set_meta("last_connected_ms", &now_ms().to_string());
                        let _ = spool.set_meta("last_error", "");
                        session.connected(now_ms());
                        link = Some((endpoint, conn));
                    })
                }
                (Step::Heartbeat, Some((_, conn))) => {
                    let conn = conn.clone();
                    // A stop does not wait for a collector that may never answer.
                    let answered = tokio::select! {
                        r = self.heartbeat_once(&spool, &conn) => r,
                        _ = shutdown.changed() => break,
                    };
                    match answered {
                        Ok(renewed) => {
                            if renewed {
                                close(link.take()).await;
                            }
                            session.synced(now_ms(), renewed);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                (Step::SendBatch { limit }, Some((_, conn))) => {
                    let conn = conn.clone();
                    tokio::select! {
                        r = send_batch(&spool, &conn, &mut session, limit) => r,
                        _ = shutdown.changed() => break,
                    }
                }
                (Step::WaitUntil(t), Some((_, conn))) => {
                    let until = tokio::time::Instant::now()
                        + Duration::from_millis(t.since(now_ms()).max(0) as u64);
                    tokio::select! {
                        _ = self.wake.notified() => { session.spooled(); Ok(()) }
                        _ = tokio::time::sleep_until(until) => Ok(()),
                        e = conn.closed() => Err(e.into()),
                        _ = shutdown.changed() => break,
                    }
                }
                (Step::WaitUntil(t), None) => {
                    let wait = Duration::from_millis(t.since(now_ms()).max(0) as u64);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => Ok(()),
                        _ = shutdown.changed() => break,
                    }
                }
                // The session says "connected" only after `connected()`: a step that needs a
                // connection without one means it was just closed (a renewal).
                (Step::Heartbeat | Step::SendBatch { .. }, None) => {
                    session.lost(now_ms(), rand::thread_rng().gen_range(0.0..1.0));
                    Ok(())
                }
            };
            if let Err(e) = result {
                warn!(error = %e, "uplink interrupted; events stay spooled");
                let _ = spool.set_meta("last_error", &e.to_string());
                close(link.take()).await;
                if matches!(e, UplinkError::Spool(_)) {
                    return Err(e);
                }
                session.lost(now_ms(), rand::thread_rng().gen_range(0.0..1.0));
            }
        }
        close(link.take()).await;
        Ok(())
    }

    /// Sends what is spooled, for at most `within`: the last thing a stopping agent does, so
    /// its stop notice reaches the collector. What does not make it stays spooled for the
    /// next start.
    pub async fn flush(&mut self, within: std::time::Duration) {
        let attempt = deliver_spooled(&self.identity, &self.spool_path);
        match tokio::time::timeout(within, attempt).await {
            Ok(Ok(0)) => info!("everything spooled was delivered before stopping"),
            Ok(Ok(left)) => warn!(left, "events stay spooled for the next start"),
            Ok(Err(e)) => warn!(error = %e, "cannot deliver before stopping; events stay spooled"),
            Err(_) => warn!(
                within = ?within,
                "the collector did not answer in time; events stay spooled"
            ),
        }
    }

    /// One heartbeat: report, take the collector's sync (acks, signed updates), renew the
    /// certificate when told to. Returns true when the certificate was renewed.
    async fn heartbeat_once(
        &mut self,
        spool: &Spool,
        conn: &quinn::Connection,
    ) -> Result<bool, UplinkError> {
        let health = self.health.problems();
        let hello = Message::Heartbeat {
            agent_version: crate::VERSION.into(),
            hostname: holdfast_io::host::hostname(),
            os: std::env::consts::OS.into(),
            policy_version: self.policies.current().set.version.clone(),
            time_ms: now_ms(),
            spool_backlog: spool.backlog()?,
            edm_version: self.edm.current().map(|a| a.version).unwrap_or_default(),
            coverage: spool
                .meta("coverage")?
                .and_then(|c| serde_json::from_str(&c).ok()),
            health: health.clone(),
        };
        // A heartbeat answered means the uplink works: its own failure is over.
        self.health.ok("uplink");
        let (through_seq, renew, updates, edm, orders) = match exchange(conn, &hello).await? {
            Message::Sync {
                through_seq,
                renew,
                updates,
                edm,
                orders,
                ..
            } => (through_seq, renew, updates, edm, orders),
            other => return Err(refused(other)),
        };
        self.health.delivered(&health);
        // The heartbeat deletes nothing (a batch's own ack does): the collector's highest
        // sequence number may be another agent's or an earlier spool's. It is where a
        // pending drop report is written.
        let _ = through_seq;
        if let Err(e) = spool.report_drops(now_ms()) {
            warn!(error = %e, "cannot write the drop report now; it stays pending");
        }
        let _ = spool.set_meta("health", &self.health.problems().join("\n"));
        for update in &updates {
            match crate::updates::apply(
                update,
                &self.identity,
                &self.data_dir,
                &self.home,
                &self.policies,
            ) {
                Ok(Some(version)) => {
                    spool.set_meta("policy_version", &version)?;
                    spool.set_meta("policy_source", "collector")?;
                    spool.set_meta("last_update_error", "")?;
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, "signed update refused; keeping the last good one");
                    spool.set_meta("last_update_error", &e.to_string())?;
                }
            }
        }
        // A set refused once for what it is (too large, a bad signature) is not fetched
        // again: the next version is.
        let refused_before = |offer: &wire::EdmOffer| {
            spool
                .meta("edm_refused")
                .ok()
                .flatten()
                .is_some_and(|v| v == offer.version)
        };
        if let Some(offer) = edm.filter(|o| !refused_before(o)) {
            match self.fetch_edm(spool, conn, &offer).await? {
                Fetched::Applied(v) => {
                    spool.set_meta("edm_version", &v)?;
                    spool.set_meta("edm_fetching", "")?;
                    spool.set_meta("last_update_error", "")?;
                }
                Fetched::Nothing | Fetched::Paused => {}
                Fetched::Refused(why) => {
                    warn!(error = %why, version = %offer.version, "customer set refused; keeping the last good one, and not fetching this version again");
                    spool.set_meta("edm_refused", &offer.version)?;
                    spool.set_meta("edm_fetching", "")?;
                    spool.set_meta("last_update_error", &why)?;
                }
                Fetched::Later(why) => {
                    warn!(error = %why, version = %offer.version, "customer set not fetched; retrying at a later heartbeat");
                    spool.set_meta("last_update_error", &why)?;
                }
            }
        }
        for env in &orders {
            self.order(spool, conn, env).await?;
        }
        if renew {
            self.renew(conn).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Verifies one revocation order, carries it out once (off the async threads: it reads
    /// and moves files), and sends its receipts until the collector acknowledges them.
    async fn order(
        &mut self,
        spool: &Spool,
        conn: &quinn::Connection,
        env: &holdfast_shared::signed::Signed,
    ) -> Result<(), UplinkError> {
        let order = match crate::orders::verify(env, &self.identity) {
            Ok(o) => o,
            Err(e) => {
                let hash = holdfast_shared::sha256_hex(&env.signature);
                if self.refused_orders.len() < 1024 && self.refused_orders.insert(hash) {
                    warn!(error = %e, "revocation order refused; nothing done");
                    spool.set_meta("last_order_error", &e.to_string())?;
                }
                return Ok(());
            }
        };
        info!(order = %order.id, user = %order.user, actions = order.actions.len(), "carrying out a revocation order");
        let exec = self.orders.clone();
        let edm = self.edm.matcher();
        let id = order.id.clone();
        let receipts = tokio::task::spawn_blocking(move || exec.carry_out(&order, edm, now_ms()))
            .await
            .map_err(|e| UplinkError::Refused {
                code: "order_panicked".into(),
                message: e.to_string(),
            })?;
        for r in &receipts {
            info!(order = %id, action = %r.action, ok = r.ok, items = r.items, "order action done");
        }
        match exchange(
            conn,
            &Message::OrderReceipt {
                order_id: id.clone(),
                receipts,
            },
        )
        .await?
        {
            Message::ReceiptAck { order_id } if order_id == id => {
                spool.set_meta("last_order", &id)?;
                Ok(())
            }
            other => Err(refused(other)),
        }
    }

    /// Fetches the pieces of an offered customer set that are not held yet, each checked
    /// against the signed manifest, for at most [`FETCH_BUDGET`] per heartbeat (events wait
    /// meanwhile); the rest follows at the next heartbeats. Applies the set once whole.
    async fn fetch_edm(
        &self,
        spool: &Spool,
        conn: &quinn::Connection,
        offer: &wire::EdmOffer,
    ) -> Result<Fetched, UplinkError> {
        let Some(manifest) = &offer.manifest else {
            return Ok(Fetched::Refused(
                "the collector offers a customer set without a signed manifest (a collector older than this agent)".into(),
            ));
        };
        let mut fetch = match crate::updates::EdmFetch::begin(
            &self.data_dir,
            manifest,
            &self.identity,
            &self.edm,
        ) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(Fetched::Nothing),
            Err(e) if e.is_final() => return Ok(Fetched::Refused(e.to_string())),
            Err(e) => return Ok(Fetched::Later(e.to_string())),
        };
        let (held, pieces) = fetch.resumed();
        if held > 0 {
            info!(version = %fetch.version(), held, pieces, "resuming the customer set where it stopped");
        }
        let deadline = std::time::Instant::now() + FETCH_BUDGET;
        while let Some(offset) = fetch.next_offset() {
            if std::time::Instant::now() >= deadline {
                let (held, pieces) = fetch.progress();
                spool.set_meta(
                    "edm_fetching",
                    &format!("{}: {held} of {pieces} pieces", fetch.version()),
                )?;
                info!(version = %fetch.version(), held, pieces, "customer set fetch continues at the next heartbeat");
                return Ok(Fetched::Paused);
            }
            let ask = Message::EdmChunkRequest {
                version: fetch.version().to_string(),
                offset,
            };
            match exchange(conn, &ask).await? {
                Message::EdmChunk {
                    version,
                    offset: at,
                    total,
                    bytes,
                } if version == fetch.version() && at == offset && total == fetch.size() => {
                    if let Err(e) = fetch.accept(&bytes) {
                        return Ok(Fetched::Later(e.to_string()));
                    }
                }
                Message::EdmChunk { .. } => {
                    return Ok(Fetched::Later(
                        "the customer set changed while it was fetched".into(),
                    ))
                }
                Message::Error { message, .. } => return Ok(Fetched::Later(message)),
                other => return Err(refused(other)),
            }
        }
        let (data_dir, live) = (self.data_dir.clone(), self.edm.clone());
        match tokio::task::spawn_blocking(move || fetch.finish(&data_dir, &live)).await {
            Ok(Ok(v)) => Ok(Fetched::Applied(v)),
            Ok(Err(e)) if e.is_final() => Ok(Fetched::Refused(e.to_string())),
            Ok(Err(e)) => Ok(Fetched::Later(e.to_string())),
            Err(e) => Ok(Fetched::Later(e.to_string())),
        }
    }

    /// Asks for a new certificate for the same key and saves it.
    async fn renew(&mut self, conn: &quinn::Connection) -> Result<(), UplinkError> {
        let key = rcgen::KeyPair::try_from(self.identity.key_der.as_slice())
            .map_err(|e| UplinkError::Renew(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| UplinkError::Renew(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, holdfast_io::host::hostname());
        let csr = params
            .serialize_request(&key)
            .map_err(|e| UplinkError::Renew(e.to_string()))?;
        match exchange(
            conn,
            &Message::RenewRequest {
                csr_der: csr.der().to_vec(),
            },
        )
        .await?
        {
            Message::RenewResponse { cert_der } => {
                self.identity
                    .save_cert(&self.data_dir, cert_der)
                    .map_err(|e| UplinkError::Renew(e.to_string()))?;
                info!("device certificate renewed");
                Ok(())
            }
            other => Err(refused(other)),
        }
    }
}

/// The wait before the next connection attempt, for a uniform draw `u` in 0..1. Right after
/// an established connection was lost, the wait is spread over [`RECONNECT_SPREAD`] (a
/// collector restart cuts every agent off at once); after a failed attempt it is `backoff`
/// Closes a connection politely and gives the peer a moment to hear it: at most 500 ms,
/// since a collector that is gone never answers and a stopping agent must not wait for its
/// idle timeout.
/// Sends everything spooled at `spool_path` to the identity's collector, in batches and
/// without a heartbeat (a heartbeat says the agent runs). Returns what is left unsent.
pub async fn deliver_spooled(identity: &Identity, spool_path: &Path) -> Result<u64, UplinkError> {
    let spool = Spool::open(spool_path)?;
    if spool.backlog()? == 0 {
        return Ok(0);
    }
    let cfg = crate::tls::identity_client(identity)?;
    let (endpoint, conn) = connect(&identity.enrollment.collector, cfg).await?;
    let mut session = AgentSession::new(Timing::with_heartbeat(u64::MAX >> 2), now_ms());
    session.connected(now_ms());
    // Batches only: the heartbeat the session asks for first is skipped.
    let _ = session.poll(now_ms());
    while let Step::SendBatch { limit } = session.poll(now_ms()) {
        send_batch(&spool, &conn, &mut session, limit).await?;
    }
    close(Some((endpoint, conn))).await;
    Ok(spool.backlog()?)
}

async fn close(link: Option<(quinn::Endpoint, quinn::Connection)>) {
    if let Some((endpoint, conn)) = link {
        conn.close(0u32.into(), b"bye");
        let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
    }
}

/// Sends one batch of at most `limit` spooled events and deletes what the collector
/// acknowledged having committed, as the session allows (only the batch's own events).
async fn send_batch(
    spool: &Spool,
    conn: &quinn::Connection,
    session: &mut AgentSession,
    limit: usize,
) -> Result<(), UplinkError> {
    let batch = spool.pending(limit)?;
    let (Some(first), Some(last)) = (batch.first().map(|e| e.seq), batch.last().map(|e| e.seq))
    else {
        session.idle();
        return Ok(());
    };
    let n = batch.len();
    session.sent(first, last);
    match exchange(conn, &Message::EventBatch { events: batch }).await {
        Err(UplinkError::Encode(wire::EncodeError::TooLarge(size))) => {
            if session.too_large() {
                Ok(())
            } else {
                Err(UplinkError::Encode(wire::EncodeError::TooLarge(size)))
            }
        }
        Err(e) => Err(e),
        Ok(Message::Ack { through_seq }) => {
            if let Some(done) = session.acked(through_seq) {
                spool.ack(done, now_ms())?;
            }
            spool.set_meta("last_ack_ms", &now_ms().to_string())?;
            debug!(events = n, through_seq, "batch committed");
            Ok(())
        }
        Ok(other) => Err(refused(other)),
    }
}

fn refused(answer: Message) -> UplinkError {
    match answer {
        Message::Error { code, message } => UplinkError::Refused { code, message },
        other => UplinkError::Refused {
            code: "unexpected".into(),
            message: format!("unexpected answer {:?}", std::mem::discriminant(&other)),
        },
    }
}
