//! A real headless Chromium, driven through ChromeDriver's W3C WebDriver protocol (plain
//! JSON over HTTP): enough to log in, read and fill pages, press keys and take screenshots.

use crate::{free_tcp_port, wait_for, Proc};
use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where the browser and its driver are (Debian's chromium and chromium-driver packages).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A ChromeDriver process with one browser session; both end on drop.
pub struct Browser {
    _driver: Proc,
    agent: ureq::Agent,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

/// An element on the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver on a free port and opens a headless session. Screenshots go to
    /// `shots`. Panics, naming the package to install, when Chromium is missing.
    pub fn start(shots: &Path) -> Browser {
        for (bin, pkg) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install the Debian package {pkg} (.ci/run does)"
            );
        }
        std::fs::create_dir_all(shots).expect("screenshot dir");
        let port = free_tcp_port();
        let driver = Proc::spawn_path(
            Path::new(CHROMEDRIVER),
            &[&format!("--port={port}")],
            shots.join(format!("chromedriver-{port}.log")),
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver to be ready", Duration::from_secs(30), || {
            let r = agent.get(&format!("{base}/status")).call().ok()?;
            let v: Value = serde_json::from_str(&r.into_body().read_to_string().ok()?).ok()?;
            (v["value"]["ready"] == true).then_some(())
        });
        let profile = tempfile::tempdir().expect("browser profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut b = Browser {
            _driver: driver,
            agent,
            base,
            session: String::new(),
            _profile: profile,
            shots: shots.to_path_buf(),
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let r = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        };
        let text = r
            .map_err(|e| format!("webdriver {method} {path}: {e}"))?
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(err) = v["value"]["error"].as_str() {
            return Err(format!(
                "webdriver {method} {path}: {err}: {}",
                v["value"]["message"]
            ));
        }
        Ok(v["value"].clone())
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The visible text of the first element matching `css` as the page is now; `None` when
    /// there is none, or when the page changed under the lookup (a form just submitted).
    pub fn text_of(&self, css: &str) -> Option<String> {
        self.element_string(css, "text")
    }

    /// An attribute of the first element matching `css`, as [`Browser::text_of`].
    pub fn attr_of(&self, css: &str, name: &str) -> Option<String> {
        self.element_string(css, &format!("attribute/{name}"))
    }

    /// The string at `/element/{id}/{what}` of the first element matching `css`.
    fn element_string(&self, css: &str, what: &str) -> Option<String> {
        let found = self
            .try_call(
                "POST",
                &self.s("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        let id = found[ELEMENT].as_str()?;
        self.try_call("GET", &self.s(&format!("/element/{id}/{what}")), None)
            .ok()?
            .as_str()
            .map(str::to_string)
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({"url": url})));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.call("GET", &self.s("/url"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's HTML as it is now.
    pub fn source(&self) -> String {
        self.call("GET", &self.s("/source"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The elements matching a CSS selector.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.call(
            "POST",
            &self.s("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching a CSS selector, waiting up to 10 s for it.
    pub fn find(&self, css: &str) -> Element {
        wait_for(&format!("element `{css}`"), Duration::from_secs(10), || {
            self.find_all(css).into_iter().next()
        })
    }

    /// Types into an element.
    pub fn type_into(&self, e: &Element, text: &str) {
        self.call(
            "POST",
            &self.s(&format!("/element/{}/value", e.0)),
            Some(json!({"text": text})),
        );
    }

    /// Clicks an element.
    pub fn click(&self, e: &Element) {
        self.call("POST", &self.s(&format!("/element/{}/click", e.0)), None);
    }

    /// An element's visible text.
    pub fn text(&self, e: &Element) -> String {
        self.call("GET", &self.s(&format!("/element/{}/text", e.0)), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// An element's attribute (or property).
    pub fn attr(&self, e: &Element, name: &str) -> String {
        self.call(
            "GET",
            &self.s(&format!("/element/{}/attribute/{name}", e.0)),
            None,
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Presses and releases one key on whatever has focus.
    pub fn press(&self, key: &str) {
        self.call(
            "POST",
            &self.s("/actions"),
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                    {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
                ]}]}),
            ),
        );
    }

    /// Accepts the page's `confirm()` dialog, once it shows.
    pub fn accept_dialog(&self) {
        wait_for("a dialog", Duration::from_secs(10), || {
            let url = format!("{}{}", self.base, self.s("/alert/text"));
            let r = self.agent.get(&url).call().ok()?;
            let v: Value = serde_json::from_str(&r.into_body().read_to_string().ok()?).ok()?;
            v["value"].is_string().then_some(())
        });
        self.call("POST", &self.s("/alert/accept"), None);
    }

    /// Saves a PNG screenshot as `<name>.png` in the screenshot directory; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.call("GET", &self.s("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("saving a screenshot");
        path
    }

    /// Waits until the page's HTML contains `needle`; returns the HTML.
    pub fn wait_for_text(&self, needle: &str) -> String {
        wait_for(
            &format!("page to show {needle:?}"),
            Duration::from_secs(10),
            || {
                let s = self.source();
                s.contains(needle).then_some(s)
            },
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(&format!("{}/session/{}", self.base, self.session))
                .call();
        }
    }
}
