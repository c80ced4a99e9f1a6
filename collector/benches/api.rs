//! `cargo bench -p holdfast-collector --bench api`: the console and API with 100,000 alerts
//! in the database, over real HTTP on loopback. Prints the median and the 95th percentile of
//! each request, and how long seeding took.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

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
    let seeded = Instant::now();
    let api = support::SeededApi::start(alerts, 200, 5, "bench", "admin");
    println!(
        "seeded {alerts} alerts through ingest in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );
    let (base, token) = (api.base.clone(), api.token.clone());
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
