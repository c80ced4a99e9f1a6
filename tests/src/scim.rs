//! A real SCIM 2.0 server for the connector scenarios: `scim2-server` from PyPI (python-scim,
//! in memory, RFC 7643/7644), started on a free loopback port with a bearer token, and a small
//! client that creates and reads users on it the way an identity provider's admin would.

use crate::{free_tcp_port, wait_for, Proc};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where `.ci/run` installs it: a virtual environment under the workspace's `target/`.
const DEFAULT: &str = "target/scim2/bin/scim2-server";

/// A running `scim2-server`, stopped when dropped.
pub struct ScimServer {
    pub base: String,
    pub token: String,
    _proc: Proc,
}

/// The `scim2-server` program: `HOLDFAST_SCIM2_SERVER`, else the one `.ci/run` installs.
/// `None` (said on stderr) when it is missing outside CI; under CI a missing server fails the
/// test, which must have run.
pub fn program() -> Option<PathBuf> {
    let exe = std::env::var_os("HOLDFAST_SCIM2_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(DEFAULT)
        });
    if exe.exists() {
        return Some(exe);
    }
    let how =
        "python3 -m venv target/scim2 && target/scim2/bin/pip install scim2-server (.ci/run does)";
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: {how}",
        exe.display()
    );
    eprintln!("{} is missing, scenario not run: {how}", exe.display());
    None
}

impl ScimServer {
    /// Starts the server with `token` as its one accepted bearer token; `None` when the
    /// program is not installed (outside CI).
    pub fn start(dir: &Path, token: &str) -> Option<ScimServer> {
        let exe = program()?;
        let port = free_tcp_port();
        let proc = Proc::spawn_path(
            &exe,
            &[
                "--hostname",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--bearer-token",
                token,
            ],
            dir.join(format!("scim2-server-{port}.log")),
        );
        let s = ScimServer {
            base: format!("http://127.0.0.1:{port}"),
            token: token.to_string(),
            _proc: proc,
        };
        wait_for("scim2-server to answer", Duration::from_secs(30), || {
            s.get("/ServiceProviderConfig").ok().map(|_| ())
        });
        Some(s)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// GET `path`; the JSON answer of a 2xx, else the status and body.
    pub fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        let r = Self::agent()
            .get(format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call();
        Self::json(r)
    }

    fn json(
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<serde_json::Value, String> {
        let mut resp = r.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        if !(200..300).contains(&status) {
            return Err(format!("HTTP {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }

    /// Creates an active user named `user_name` with that work email; returns its id.
    pub fn create_user(&self, user_name: &str) -> String {
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "active": true,
            "emails": [{"value": user_name, "type": "work", "primary": true}],
        });
        let r = Self::agent()
            .post(format!("{}/Users", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/scim+json")
            .send(body.to_string().as_bytes());
        let v = Self::json(r).unwrap_or_else(|e| panic!("creating {user_name}: {e}"));
        v["id"].as_str().unwrap_or_default().to_string()
    }

    /// Whether the user `id` is active, as the server holds it.
    pub fn active(&self, id: &str) -> bool {
        let v = self
            .get(&format!("/Users/{id}"))
            .unwrap_or_else(|e| panic!("reading user {id}: {e}"));
        v["active"]
            .as_bool()
            .unwrap_or_else(|| panic!("user {id} has no `active`: {v}"))
    }
}
