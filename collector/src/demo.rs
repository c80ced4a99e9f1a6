//! Seeded demonstration data: many devices' worth of CRM-export events, put through the real
//! ingest path (hash chains, alert raising), for the pagination test, the API benchmark and
//! anyone who wants to see the console full.

use crate::store::{Device, Store, StoreError};
use holdfast_shared::event::{
    Action, ContentSummary, EventBody, FileActivity, RuleMatch, SealedEvent, Severity, GENESIS,
};
use holdfast_shared::time::UnixMs;
use rand::{Rng, SeedableRng};

const RULES: &[(&str, Severity)] = &[
    ("crm-export.salesforce", Severity::High),
    ("crm-export.hubspot", Severity::High),
    ("crm-export.bulk-contacts", Severity::Medium),
    ("customer-data.real-customers", Severity::Critical),
    ("customer-data.small-list", Severity::Low),
];

/// Ingests `n` events that each raise one alert, spread over `users` users (one device
/// each) and the `span_ms` before `now_ms`, from `seed`. Returns the devices.
pub fn seed_alerts(
    store: &mut Store,
    n: usize,
    users: usize,
    span_ms: i64,
    now_ms: UnixMs,
    seed: u64,
) -> Result<Vec<Device>, StoreError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let users = users.max(1);
    let devices: Vec<Device> = (0..users)
        .map(|u| Device {
            id: format!("dev-demo-{seed}-{u}"),
            user: format!("user{u:03}"),
            hostname: format!("laptop-{u:03}"),
            os: "linux".into(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            cert_sha256: format!("{:064x}", (seed << 20) + u as u64),
            cert_serial: format!("{u:x}"),
            cert_expires_ms: now_ms + 90 * 86_400_000,
            enrolled_ms: now_ms - span_ms,
            first_seq: 1,
            ..Default::default()
        })
        .collect();
    for d in &devices {
        store.add_device(d)?;
    }
    // Times ascend per device, as a real agent's do.
    let mut times: Vec<UnixMs> = (0..n)
        .map(|_| now_ms - rng.gen_range(0..span_ms.max(1)))
        .collect();
    times.sort_unstable();
    let mut chains: Vec<(u64, [u8; 32], Vec<SealedEvent>)> =
        devices.iter().map(|_| (0, GENESIS, Vec::new())).collect();
    for (i, t) in times.into_iter().enumerate() {
        let u = rng.gen_range(0..users);
        let (rule, severity) = RULES[rng.gen_range(0..RULES.len())];
        let records = rng.gen_range(50..20_000u64);
        let body = EventBody::File(FileActivity {
            size: Some(records * 80),
            sha256: Some(format!("{:064x}", rng.gen::<u128>())),
            summary: Some(ContentSummary {
                file_type: "csv".into(),
                records,
                customer_table: true,
                ..Default::default()
            }),
            rules: vec![RuleMatch {
                id: rule.into(),
                severity,
            }],
            ..FileActivity::new(
                Action::Created,
                format!("/home/user{u:03}/Downloads/export-{i:07}.csv"),
            )
        });
        let (seq, prev, batch) = &mut chains[u];
        *seq += 1;
        let e = SealedEvent::seal(*seq, t, &devices[u].user, *prev, &body)
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        *prev = e.hash();
        batch.push(e);
        if batch.len() == 1000 {
            store.ingest(&devices[u], batch, now_ms)?;
            batch.clear();
        }
    }
    for (u, (_, _, batch)) in chains.iter().enumerate() {
        if !batch.is_empty() {
            store.ingest(&devices[u], batch, now_ms)?;
        }
    }
    Ok(devices)
}
