//! `cargo bench -p holdfast-collector --bench api`: the console and API with 100,000 alerts
//! in the database, over real HTTP on loopback. Prints the median and the 95th percentile of
//! each request, and how long seeding took.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_collector::config::Config;
use holdfast_collector::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: usize = 50;

fn time(
    agent: &ureq::Agent,
    url: &str,
    token: Option<&str>,
    cookie: Option<&str>,
) -> (Duration, String) {
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let start = Instant::now();
    let mut r = req.call().unwrap();
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 26)
        .read_to_string()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(r.status().as_u16(), 200, "{url}: {body}");
    (took, body)
}

fn stats(name: &str, mut d: Vec<Duration>) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    println!(
        "{name:<44} median {:>7.2} ms   p95 {:>7.2} ms   ({} runs)",
        ms(d[d.len() / 2]),
        ms(d[d.len() * 95 / 100]),
        d.len()
    );
}

fn main() {
    let alerts: usize = std::env::var("HOLDFAST_BENCH_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(dir.path().to_path_buf());
    config.http_listen = Some("127.0.0.1:0".parse().unwrap());
    let now = holdfast_collector::now_ms();
    let seeded = Instant::now();
    let token = {
        let mut store = Store::open(&config.db_path()).unwrap();
        holdfast_collector::demo::seed_alerts(&mut store, alerts, 200, 30 * 86_400_000, now, 5)
            .unwrap();
        let actor = holdfast_collector::Actor {
            who: "bench".into(),
            origin: "bench".into(),
        };
        holdfast_collector::api_tokens::create(&mut store, "bench", "admin", false, &actor, now)
            .unwrap()
            .secret
    };
    println!(
        "seeded {alerts} alerts through ingest in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(holdfast_collector::metrics::Metrics::default());
    let (addr, _task) = rt
        .block_on(holdfast_collector::http::start(&config, metrics, stop_rx))
        .unwrap()
        .unwrap();
    let base = format!("http://{addr}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .build()
        .into();
    let t = Some(token.as_str());

    // A console session, as a browser would have.
    let login = agent
        .post(&format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(format!("token={token}"))
        .unwrap();
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();

    // The cursor of page 100 (50 alerts a page), walked once.
    let mut cursor = String::new();
    for _ in 0..99 {
        let url = if cursor.is_empty() {
            format!("{base}/api/v1/alerts?limit=50")
        } else {
            format!("{base}/api/v1/alerts?limit=50&cursor={cursor}")
        };
        let (_, body) = time(&agent, &url, t, None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        cursor = v["next_cursor"].as_str().unwrap().to_string();
    }
    let first_id = {
        let (_, body) = time(&agent, &format!("{base}/api/v1/alerts?limit=1"), t, None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["alerts"][0]["id"].as_i64().unwrap()
    };

    let cases: Vec<(&str, String, bool)> = vec![
        (
            "console: alert queue (first paint HTML)",
            format!("{base}/"),
            true,
        ),
        (
            "console: alert detail page",
            format!("{base}/alerts/{first_id}"),
            true,
        ),
        (
            "API: first page, most severe first",
            format!("{base}/api/v1/alerts?limit=50"),
            false,
        ),
        (
            "API: page 100 by cursor",
            format!("{base}/api/v1/alerts?limit=50&cursor={cursor}"),
            false,
        ),
        (
            "API: newest first, 500 per page",
            format!("{base}/api/v1/alerts?sort=newest&limit=500"),
            false,
        ),
        (
            "API: one user's open critical alerts",
            format!("{base}/api/v1/alerts?user=user042&severity=critical&status=new"),
            false,
        ),
        (
            "API: users with 30-day risk",
            format!("{base}/api/v1/users"),
            false,
        ),
        (
            "API: event search by path substring",
            format!("{base}/api/v1/events?path=export-00123&limit=50"),
            false,
        ),
    ];
    for (name, url, console) in cases {
        let mut d = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let (took, _) = if console {
                time(&agent, &url, None, Some(&cookie))
            } else {
                time(&agent, &url, t, None)
            };
            d.push(took);
        }
        stats(name, d);
    }
}
