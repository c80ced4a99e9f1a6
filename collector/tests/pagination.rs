//! Cursor pagination over 100,000 alerts through the real HTTP API on loopback: every alert
//! exactly once, in order, for each sort, with and without filters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use holdfast_collector::store::AlertFilter;

const ALERTS: usize = 100_000;

fn get(agent: &ureq::Agent, url: &str, token: &str) -> serde_json::Value {
    let mut r = agent
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

fn rank(s: &str) -> i64 {
    ["low", "medium", "high", "critical"]
        .iter()
        .position(|x| *x == s)
        .unwrap() as i64
}

/// Walks every page of `query`; returns the alerts in the order served.
fn walk(agent: &ureq::Agent, base: &str, token: &str, query: &str) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let mut total = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/api/v1/alerts?{query}&limit=500&cursor={c}"),
            None => format!("{base}/api/v1/alerts?{query}&limit=500"),
        };
        let page = get(agent, &url, token);
        let t = page["total"].as_u64().unwrap();
        assert_eq!(*total.get_or_insert(t), t, "total is stable across pages");
        let alerts = page["alerts"].as_array().unwrap();
        assert!(alerts.len() <= 500);
        all.extend(alerts.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(
        all.len() as u64,
        total.unwrap(),
        "every alert the total counts"
    );
    all
}

#[test]
fn every_alert_exactly_once_and_in_order_across_100k() {
    let api = support::SeededApi::start(ALERTS, 40, 11, "t", "auditor");
    let critical = api
        .store()
        .alert_count(&AlertFilter {
            severities: vec![holdfast_shared::event::Severity::Critical],
            ..Default::default()
        })
        .unwrap();
    assert!(critical > 10_000, "the seed spreads severities: {critical}");
    let (base, token) = (api.base.as_str(), api.token.as_str());
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();

    let all = walk(&agent, base, token, "sort=severity");
    assert_eq!(all.len(), ALERTS);
    let key = |a: &serde_json::Value| {
        (
            rank(a["severity"].as_str().unwrap()),
            a["last_seen_ms"].as_i64().unwrap(),
            a["id"].as_i64().unwrap(),
        )
    };
    assert!(
        all.windows(2).all(|w| key(&w[0]) > key(&w[1])),
        "strictly descending"
    );
    let mut ids: Vec<i64> = all.iter().map(|a| a["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), ALERTS, "no alert twice");

    let newest = walk(&agent, base, token, "sort=newest");
    let k = |a: &serde_json::Value| {
        (
            a["last_seen_ms"].as_i64().unwrap(),
            a["id"].as_i64().unwrap(),
        )
    };
    assert!(newest.windows(2).all(|w| k(&w[0]) > k(&w[1])));
    assert_eq!(newest.len(), ALERTS);

    let crit = walk(
        &agent,
        base,
        token,
        "sort=newest&severity=critical&since=30d",
    );
    assert_eq!(crit.len() as u64, critical);
    assert!(crit.iter().all(|a| a["severity"] == "critical"));

    let one_user = walk(&agent, base, token, "user=user007&status=new");
    assert!(!one_user.is_empty());
    assert!(one_user.iter().all(|a| a["user"] == "user007"));
}
