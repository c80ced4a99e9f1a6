//! The uplink: the only module that opens QUIC connections. It drains the spool to the
//! collector in batches, deleting events only once the collector acknowledged their commit,
//! and reconnects with exponential backoff and jitter while the collector is away.

use crate::clock::now_ms;
use crate::identity::Identity;
use crate::spool::{Spool, SpoolError};
use crate::updates::{LiveEdm, LivePolicies};
use holdfast_io::tls::TlsError;
use holdfast_shared::wire::{self, Message, MAX_BATCH};
use rand::Rng;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

/// Backoff bounds between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// After an established connection is lost, the first retry is spread uniformly over this
/// window: a collector restarting under 10,000 agents sees them return over seconds, not at
/// once.
const RECONNECT_SPREAD: Duration = Duration::from_secs(3);

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

/// Why a drain ended without an error.
enum DrainEnd {
    Shutdown,
    /// The certificate was renewed: reconnect at once with the new one.
    Renewed,
}

impl Uplink {
    /// Runs until `shutdown` turns true: connect, drain, wait, reconnect.
    pub async fn run(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), UplinkError> {
        let spool = Spool::open(&self.spool_path)?;
        let addr = self.identity.enrollment.collector.clone();
        let mut backoff = BACKOFF_MIN;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let cfg = crate::tls::identity_client(&self.identity)?;
            let mut drain_shutdown = shutdown.clone();
            let this = &mut *self;
            let connected = std::cell::Cell::new(false);
            let attempt = async {
                let (endpoint, conn) = connect(&addr, cfg).await?;
                connected.set(true);
                info!(collector = %addr, "connected to collector");
                // Status values: a spool that takes no writes must not stop the heartbeats
                // that report it.
                let _ = spool.set_meta("last_connected_ms", &now_ms().to_string());
                let _ = spool.set_meta("last_error", "");
                let result = this.drain(&spool, &conn, &mut drain_shutdown).await;
                conn.close(0u32.into(), b"bye");
                endpoint.wait_idle().await;
                result
            };
            let result = tokio::select! {
                r = attempt => r,
                _ = shutdown.changed() => return Ok(()),
            };
            match result {
                Ok(DrainEnd::Shutdown) => return Ok(()),
                Ok(DrainEnd::Renewed) => {
                    backoff = BACKOFF_MIN;
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "uplink interrupted; events stay spooled");
                    let _ = spool.set_meta("last_error", &e.to_string());
                    if matches!(e, UplinkError::Spool(_)) {
                        return Err(e);
                    }
                }
            }
            if connected.get() {
                backoff = BACKOFF_MIN;
            }
            let delay = retry_delay(
                connected.get(),
                backoff,
                rand::thread_rng().gen_range(0.0..1.0),
            );
            if !connected.get() {
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    /// Heartbeats first, then sends batches until the spool is empty, then waits for more
    /// or for the next heartbeat.
    async fn drain(
        &mut self,
        spool: &Spool,
        conn: &quinn::Connection,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<DrainEnd, UplinkError> {
        let mut limit = MAX_BATCH;
        let mut next_heartbeat = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                return Ok(DrainEnd::Shutdown);
            }
            if tokio::time::Instant::now() >= next_heartbeat {
                next_heartbeat = tokio::time::Instant::now() + self.heartbeat;
                if self.heartbeat_once(spool, conn).await? {
                    return Ok(DrainEnd::Renewed);
                }
            }
            if send_pending(spool, conn, &mut limit).await? {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(next_heartbeat) => {}
                e = conn.closed() => return Err(e.into()),
                _ = shutdown.changed() => return Ok(DrainEnd::Shutdown),
            }
        }
    }

    /// Sends what is spooled, for at most `within`: the last thing a stopping agent does, so
    /// its stop notice reaches the collector. What does not make it stays spooled for the
    /// next start.
    pub async fn flush(&mut self, within: std::time::Duration) {
        let attempt = async {
            let spool = Spool::open(&self.spool_path)?;
            if spool.backlog()? == 0 {
                return Ok::<u64, UplinkError>(0);
            }
            let cfg = crate::tls::identity_client(&self.identity)?;
            let (endpoint, conn) = connect(&self.identity.enrollment.collector, cfg).await?;
            let mut limit = MAX_BATCH;
            while send_pending(&spool, &conn, &mut limit).await? {}
            conn.close(0u32.into(), b"bye");
            endpoint.wait_idle().await;
            Ok(spool.backlog()?)
        };
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
/// scaled by 0.5..1.5, so agents cut off together do not come back together.
pub fn retry_delay(was_connected: bool, backoff: Duration, u: f64) -> Duration {
    let u = u.clamp(0.0, 1.0);
    if was_connected {
        RECONNECT_SPREAD.mul_f64(u)
    } else {
        backoff.mul_f64(0.5 + u)
    }
}

/// Sends one batch of what is spooled and deletes it once the collector acknowledged its
/// commit. Returns false when nothing was waiting. A batch too large for one frame is
/// halved (`limit`) and tried again.
async fn send_pending(
    spool: &Spool,
    conn: &quinn::Connection,
    limit: &mut usize,
) -> Result<bool, UplinkError> {
    let batch = spool.pending(*limit)?;
    if batch.is_empty() {
        return Ok(false);
    }
    let n = batch.len();
    let sent = batch.first().map(|e| e.seq).unwrap_or(0)..=batch.last().map(|e| e.seq).unwrap_or(0);
    match exchange(conn, &Message::EventBatch { events: batch }).await {
        Err(UplinkError::Encode(wire::EncodeError::TooLarge(_))) if *limit > 1 => {
            *limit = (*limit / 2).max(1);
            return Ok(true);
        }
        Err(e) => return Err(e),
        Ok(Message::Ack { through_seq }) => {
            // Only what this batch carried, and only as far as the collector says.
            spool.ack(*sent.start()..=through_seq.min(*sent.end()), now_ms())?;
            spool.set_meta("last_ack_ms", &now_ms().to_string())?;
            debug!(events = n, through_seq, "batch committed");
        }
        Ok(other) => return Err(refused(other)),
    }
    *limit = MAX_BATCH;
    Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 10,000 agents cut off by one collector restart: how many retry in the busiest 100 ms,
    /// for evenly spread draws (what a uniform random source gives on average).
    fn busiest_100ms(was_connected: bool, backoff: Duration) -> usize {
        let mut buckets = std::collections::BTreeMap::new();
        for i in 0..10_000 {
            let d = retry_delay(was_connected, backoff, (i as f64 + 0.5) / 10_000.0);
            *buckets.entry(d.as_millis() / 100).or_insert(0usize) += 1;
        }
        buckets.values().copied().max().unwrap_or(0)
    }

    #[test]
    fn a_restart_under_10000_agents_is_not_a_herd() {
        // Spread over 3 s: no 100 ms window sees more than ~3.4 % of the fleet.
        assert!(busiest_100ms(true, BACKOFF_MIN) <= 340);
        // Later failures spread over a window as wide as the backoff itself.
        assert!(busiest_100ms(false, Duration::from_secs(8)) <= 130);
        assert_eq!(
            retry_delay(false, Duration::from_secs(2), 0.0),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry_delay(false, Duration::from_secs(2), 7.0),
            Duration::from_secs(3)
        );
        assert_eq!(retry_delay(true, BACKOFF_MAX, 1.0), RECONNECT_SPREAD);
    }
}
