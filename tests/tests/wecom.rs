//! The `wecom` connector against the 企业微信 stand-in (`holdfast_tests::wecom`, built from
//! WeCom's documentation): `offboard zhangsan --successor lisi` hands zhangsan's 150
//! customers (two transfer calls of at most 100) and customer groups to lisi and nobody
//! else's, through a rate-limited first attempt; the handover report lists every customer
//! with where its transfer stands; a wrong secret is a failed run that says so and never shows
//! the secret; an offboarding without a successor is a failed run that says what to do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::wecom::{Corp, WeComApi};
use holdfast_tests::{secret_file, wait_for, Collector};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
const SECRET: &str = "wecom-contact-secret-0123456789";

/// `user`'s run of `connector` once it has an attempt matching `done`.
fn run_of(
    c: &Collector,
    user: &str,
    connector: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(&format!("{user}'s run of {connector}"), DEADLINE, || {
        c.offboard_status(user)["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["connector"] == connector && done(r))
            .cloned()
    })
}

#[test]
fn offboarding_with_a_successor_hands_the_leavers_wecom_customers_and_groups_over() {
    let tmp = tempfile::tempdir().unwrap();
    let mut unassigned: Vec<(String, String)> = (0..150)
        .map(|i| ("zhangsan".to_string(), format!("wmZ{i:03}")))
        .collect();
    unassigned.extend((0..3).map(|i| ("wangwu".to_string(), format!("wmW{i:03}"))));
    let api = WeComApi::start(Corp {
        corpid: "ww-acme".into(),
        secret: SECRET.into(),
        members: vec!["lisi".into(), "zhaoliu".into()],
        unassigned,
        refusing: vec!["wmZ007".into()],
        groups: [
            ("wrZ1".to_string(), ("zhangsan".to_string(), true)),
            ("wrZ2".to_string(), ("zhangsan".to_string(), true)),
            ("wrW1".to_string(), ("wangwu".to_string(), true)),
        ]
        .into_iter()
        .collect(),
        rate_limit_transfers: 1,
        ..Corp::default()
    });
    let good = secret_file(tmp.path(), "wecom.secret", SECRET);
    let old = secret_file(tmp.path(), "old.secret", "wecom-rotated-away-9876543210");
    let c = Collector::start_with(
        tmp.path(),
        &format!(
            "[[connector]]\nname = \"wecom\"\nkind = \"wecom\"\nurl = \"{base}\"\ncorpid = \"ww-acme\"\nsecret_file = \"{good}\"\nretry_base = \"200ms\"\n\n\
             [[connector]]\nname = \"wecom-old\"\nkind = \"wecom\"\nurl = \"{base}\"\ncorpid = \"ww-acme\"\nsecret_file = \"{old}\"\nmax_attempts = 1\n",
            base = api.base,
            good = good.display(),
            old = old.display(),
        ),
    );
    c.token("zhangsan");
    let started = c.cli(&["offboard", "zhangsan", "--successor", "lisi"]);
    assert!(started.contains("offboarding started"), "{started}");
    let run = run_of(&c, "zhangsan", "wecom", |r| r["status"] == "ok");
    // The first attempt met WeCom's rate limit (45009); the retry did the work.
    assert_eq!(run["attempts"], 2, "{run}");
    assert_eq!(
        run["last"]["detail"],
        "150 customer(s) of zhangsan handed to lisi: 149 taken over, 0 waiting (24 h to object), 1 refused by the customer, 0 over the successor's limit, 0 refused by WeCom; 2 customer group(s) transferred",
        "{run}"
    );
    {
        let corp = api.corp.lock().unwrap();
        let to_lisi = corp
            .transferred
            .values()
            .filter(|(h, t)| h == "zhangsan" && t == "lisi")
            .count();
        assert_eq!(to_lisi, 150);
        // wangwu's customers and group were not touched.
        assert_eq!(
            corp.unassigned
                .iter()
                .filter(|(h, _)| h == "wangwu")
                .count(),
            3
        );
        assert_eq!(corp.groups["wrZ1"], ("lisi".to_string(), false));
        assert_eq!(corp.groups["wrZ2"], ("lisi".to_string(), false));
        assert_eq!(corp.groups["wrW1"], ("wangwu".to_string(), true));
    }
    // At most 100 customers a call: 100 then 50 (after the rate-limited call).
    let sizes: Vec<usize> = api
        .calls("/cgi-bin/externalcontact/resigned/transfer_customer")
        .iter()
        .map(|(_, b)| b["external_userid"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
    // The handover report names the successor and every customer with its state.
    let report: serde_json::Value =
        serde_json::from_str(c.cli(&["offboard", "report", "zhangsan", "--json"]).trim()).unwrap();
    assert_eq!(report["handover"]["successor"], "lisi");
    let handed = report["handover"]["customers"].as_array().unwrap();
    assert_eq!(handed.len(), 150);
    let state_of = |id: &str| {
        handed
            .iter()
            .find(|h| h["customer"] == id)
            .map(|h| h["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state_of("wmZ007").as_deref(), Some("refused"));
    assert_eq!(state_of("wmZ149").as_deref(), Some("done"));
    assert_eq!(state_of("wmW000"), None);
    // The connector with a rotated-away secret failed on its one attempt, saying why.
    let stale = run_of(&c, "zhangsan", "wecom-old", |r| r["status"] == "failed");
    assert_eq!(
        stale["last"]["detail"],
        "gettoken: errcode 40001: invalid credential (check corpid and secret_file)",
        "{stale}"
    );
    let shown = c.shown_of_offboarding("zhangsan");
    assert!(
        !shown.contains(SECRET) && !shown.contains("rotated-away"),
        "{shown}"
    );
    // A member still in the directory has nothing waiting for a successor yet: a failed
    // attempt that says why, retried.
    c.token("zhaoliu");
    c.cli(&["offboard", "zhaoliu", "--successor", "lisi"]);
    let early = run_of(&c, "zhaoliu", "wecom", |r| r["last"].is_object());
    assert_eq!(
        early["last"]["detail"],
        "no customers or groups of zhaoliu wait for a successor: WeCom lists them once the member has left the directory (离职); retried until then",
        "{early}"
    );
    // Without a successor there is nobody to hand the customers to: a failed attempt that
    // says what to do, and nothing transferred.
    c.token("wangwu");
    c.cli(&["offboard", "wangwu"]);
    let none = run_of(&c, "wangwu", "wecom", |r| r["last"].is_object());
    assert_eq!(
        none["last"]["detail"],
        "no successor to hand the customers to: offboard USER --successor USER2",
        "{none}"
    );
    assert_eq!(
        api.corp
            .lock()
            .unwrap()
            .unassigned
            .iter()
            .filter(|(h, _)| h == "wangwu")
            .count(),
        3
    );
}
