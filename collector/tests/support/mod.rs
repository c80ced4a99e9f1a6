//! What the API pagination test and the API benchmark share: a collector database seeded with
//! demo alerts and one API token, served over real HTTP on a loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use holdfast_collector::config::Config;
use holdfast_collector::store::Store;
use std::sync::Arc;

/// A seeded collector API on loopback; stops when dropped.
pub struct SeededApi {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The secret of an API token with the role asked for.
    pub token: String,
    pub config: Config,
    _stop: tokio::sync::watch::Sender<bool>,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl SeededApi {
    /// `alerts` demo alerts over `users` users in the last 30 days (seeded by `seed`), and a
    /// token named `name` with `role`.
    pub fn start(alerts: usize, users: usize, seed: u64, name: &str, role: &str) -> SeededApi {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::with_data_dir(dir.path().to_path_buf());
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
        let now = holdfast_collector::now_ms();
        let mut store = Store::open(&config.db_path()).unwrap();
        holdfast_collector::demo::seed_alerts(
            &mut store,
            alerts,
            users,
            30 * 86_400_000,
            now,
            seed,
        )
        .unwrap();
        let actor = holdfast_collector::Actor {
            who: name.into(),
            origin: name.into(),
        };
        let token =
            holdfast_collector::api_tokens::create(&mut store, name, role, false, &actor, now)
                .unwrap()
                .secret;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let metrics = Arc::new(holdfast_collector::metrics::Metrics::default());
        let (addr, _task) = rt
            .block_on(holdfast_collector::http::start(&config, metrics, stop_rx))
            .unwrap()
            .unwrap();
        SeededApi {
            base: format!("http://{addr}"),
            token,
            config,
            _stop: stop,
            _rt: rt,
            _dir: dir,
        }
    }

    /// The seeded store, opened again.
    pub fn store(&self) -> Store {
        Store::open(&self.config.db_path()).unwrap()
    }
}
