//! Counters the collector keeps in memory for `/metrics` (Prometheus text format): events
//! ingested, agents connected, and how long a batch takes from arrival to commit. Values
//! that live in the database (alerts by severity, spool backlogs) are read at scrape time.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds (seconds) of the ingest latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Shared by ingest (which counts) and the HTTP layer (which renders).
#[derive(Debug, Default)]
pub struct Metrics {
    events: AtomicU64,
    batches: AtomicU64,
    connected: AtomicI64,
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    /// Bytes of customer-set pieces sent to agents.
    edm_bytes: AtomicU64,
    /// Per forwarder: alerts delivered and failed rounds since start.
    forwards: std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
}

/// Counts one open agent connection for as long as it lives.
pub struct Connected(std::sync::Arc<Metrics>);

impl Connected {
    pub fn new(m: std::sync::Arc<Metrics>) -> Connected {
        m.connected(1);
        Connected(m)
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.connected(-1);
    }
}

/// What the database knows, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub open_alerts: crate::store::BySeverity,
    /// Per device: the spool backlog its agent last reported.
    pub backlogs: Vec<(String, u64)>,
    pub devices: u64,
    /// Per forwarder: alert changes past its cursor (not yet confirmed delivered).
    pub forward_lags: Vec<(String, i64)>,
}

impl Metrics {
    /// A batch of `events` new events was committed `elapsed` after it arrived.
    pub fn batch(&self, events: u64, elapsed: std::time::Duration) {
        self.events.fetch_add(events, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// A forwarder's round delivered `delivered` alerts, or failed.
    pub fn forwarded(&self, name: &str, delivered: usize, failed: bool) {
        if let Ok(mut m) = self.forwards.lock() {
            let e = m.entry(name.to_string()).or_default();
            e.0 += delivered as u64;
            e.1 += u64::from(failed);
        }
    }

    /// A piece of `bytes` bytes of the customer set was sent to an agent.
    pub fn edm_served(&self, bytes: usize) {
        self.edm_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// An agent connection was authenticated (`+1`) or closed (`-1`).
    pub fn connected(&self, delta: i64) {
        self.connected.fetch_add(delta, Ordering::Relaxed);
    }

    /// Events ingested since start.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self, s: &Snapshot) -> String {
        let mut out = String::new();
        let mut block = |name: &str, kind: &str, help: &str, rows: Vec<String>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for r in rows {
                let _ = writeln!(out, "{name}{r}");
            }
        };
        block(
            "holdfast_events_ingested_total",
            "counter",
            "Events stored since the collector started.",
            vec![format!(" {}", self.events())],
        );
        block(
            "holdfast_batches_ingested_total",
            "counter",
            "Event batches committed since the collector started.",
            vec![format!(" {}", self.batches.load(Ordering::Relaxed))],
        );
        block(
            "holdfast_edm_bytes_served_total",
            "counter",
            "Bytes of customer-set pieces sent to agents since the collector started.",
            vec![format!(" {}", self.edm_bytes.load(Ordering::Relaxed))],
        );
        let a = s.open_alerts;
        block(
            "holdfast_open_alerts",
            "gauge",
            "Alerts in status new or triaged, by severity.",
            vec![
                format!("{{severity=\"critical\"}} {}", a.critical),
                format!("{{severity=\"high\"}} {}", a.high),
                format!("{{severity=\"medium\"}} {}", a.medium),
                format!("{{severity=\"low\"}} {}", a.low),
            ],
        );
        block(
            "holdfast_agents_connected",
            "gauge",
            "Agent connections open now.",
            vec![format!(
                " {}",
                self.connected.load(Ordering::Relaxed).max(0)
            )],
        );
        block(
            "holdfast_devices",
            "gauge",
            "Enrolled devices.",
            vec![format!(" {}", s.devices)],
        );
        let total: u64 = s.backlogs.iter().map(|(_, b)| b).sum();
        block(
            "holdfast_spool_backlog_events",
            "gauge",
            "Events waiting in agents' spools, as last reported by the agents.",
            vec![format!(" {total}")],
        );
        block(
            "holdfast_device_spool_backlog_events",
            "gauge",
            "Events waiting in one agent's spool, as it last reported.",
            s.backlogs
                .iter()
                .map(|(d, b)| format!("{{device=\"{}\"}} {b}", label(d)))
                .collect(),
        );
        let mut rows = Vec::new();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            rows.push(format!(
                "_bucket{{le=\"{le}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            ));
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        rows.push(format!("_bucket{{le=\"+Inf\"}} {count}"));
        rows.push(format!(
            "_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        ));
        rows.push(format!("_count {count}"));
        block(
            "holdfast_ingest_latency_seconds",
            "histogram",
            "Time from a batch's arrival to its commit.",
            rows,
        );
        let forwards = self.forwards.lock().map(|m| m.clone()).unwrap_or_default();
        block(
            "holdfast_forward_lag_alerts",
            "gauge",
            "Alert changes a forwarder has not yet delivered (confirmed).",
            s.forward_lags
                .iter()
                .map(|(n, l)| format!("{{forwarder=\"{}\"}} {l}", label(n)))
                .collect(),
        );
        block(
            "holdfast_forward_delivered_total",
            "counter",
            "Alerts a forwarder delivered since the collector started (resends included).",
            forwards
                .iter()
                .map(|(n, (d, _))| format!("{{forwarder=\"{}\"}} {d}", label(n)))
                .collect(),
        );
        block(
            "holdfast_forward_failures_total",
            "counter",
            "Forwarding rounds that failed (unreachable, refused, closed before confirmed).",
            forwards
                .iter()
                .map(|(n, (_, f))| format!("{{forwarder=\"{}\"}} {f}", label(n)))
                .collect(),
        );
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }

    #[test]
    fn renders_counters_gauges_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.batch(3, std::time::Duration::from_millis(2));
        m.batch(5, std::time::Duration::from_millis(30));
        m.edm_served(4096);
        m.edm_served(100);
        m.connected(1);
        m.connected(1);
        m.connected(-1);
        let text = m.render(&Snapshot {
            open_alerts: crate::store::BySeverity {
                critical: 1,
                high: 2,
                medium: 0,
                low: 4,
            },
            backlogs: vec![("dev-\"1\"".into(), 7), ("dev-2".into(), 3)],
            devices: 2,
            forward_lags: vec![("siem".into(), 12)],
        });
        m.forwarded("siem", 3, false);
        m.forwarded("siem", 0, true);
        let text = format!(
            "{text}{}",
            m.render(&Snapshot {
                forward_lags: vec![("siem".into(), 12)],
                ..Snapshot::default()
            })
        );
        // Lines the exposition must hold, each exactly.
        let want = r#"
holdfast_forward_lag_alerts{forwarder="siem"} 12
holdfast_edm_bytes_served_total 4196
holdfast_forward_delivered_total{forwarder="siem"} 3
holdfast_forward_failures_total{forwarder="siem"} 1
holdfast_events_ingested_total 8
holdfast_agents_connected 1
holdfast_open_alerts{severity="high"} 2
holdfast_spool_backlog_events 10
holdfast_device_spool_backlog_events{device="dev-\"1\""} 7
holdfast_ingest_latency_seconds_bucket{le="0.001"} 0
holdfast_ingest_latency_seconds_bucket{le="0.0025"} 1
holdfast_ingest_latency_seconds_bucket{le="0.05"} 2
holdfast_ingest_latency_seconds_bucket{le="+Inf"} 2
holdfast_ingest_latency_seconds_count 2
# TYPE holdfast_ingest_latency_seconds histogram
"#;
        for line in want.lines().filter(|l| !l.is_empty()) {
            check(&text, line);
        }
    }
}
