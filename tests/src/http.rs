//! A small blocking HTTP client for the collector's API and console in tests: bearer tokens,
//! session cookies and JSON, with redirects not followed (so tests see them).

use std::time::Duration;

/// An answer: status, headers and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The first header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The error message of an API error body.
    pub fn error(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A client bound to one base URL and one identity.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    bearer: Option<String>,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client {
            agent,
            base: base.trim_end_matches('/').to_string(),
            bearer: None,
            cookie: None,
            csrf: None,
        }
    }

    /// The same client, calling with `Authorization: Bearer <token>`.
    pub fn bearer(&self, token: &str) -> Client {
        Client {
            bearer: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// The same client with a session cookie and the CSRF token to echo (`None`: send none).
    pub fn session(&self, cookie: &str, csrf: Option<&str>) -> Client {
        Client {
            cookie: Some(cookie.to_string()),
            csrf: csrf.map(str::to_string),
            ..self.clone()
        }
    }

    fn finish(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        what: &str,
    ) -> Reply {
        let mut resp = r.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(t) = &self.bearer {
            h.push(("authorization", format!("Bearer {t}")));
        }
        if let Some(c) = &self.cookie {
            h.push(("cookie", c.clone()));
        }
        if let Some(c) = &self.csrf {
            h.push(("x-csrf-token", c.clone()));
        }
        h
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Reply {
        let url = format!("{}{path}", self.base);
        self.bodiless(self.agent.get(&url), &url)
    }

    /// DELETE `path`.
    pub fn delete(&self, path: &str) -> Reply {
        let url = format!("{}{path}", self.base);
        self.bodiless(self.agent.delete(&url), &url)
    }

    /// Sends a request without a body, with this client's headers.
    fn bodiless(
        &self,
        mut req: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
        url: &str,
    ) -> Reply {
        for (k, v) in self.headers() {
            req = req.header(k, &v);
        }
        self.finish(req.call(), url)
    }

    /// `method` (POST or PATCH) with a JSON body.
    pub fn send(&self, method: &str, path: &str, body: &serde_json::Value) -> Reply {
        self.send_raw(method, path, "application/json", &body.to_string())
    }

    /// `method` (POST or PATCH) with a body as given.
    pub fn send_raw(&self, method: &str, path: &str, content_type: &str, body: &str) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "PATCH" => self.agent.patch(&url),
            "PUT" => self.agent.put(&url),
            _ => self.agent.post(&url),
        };
        for (k, v) in self.headers() {
            req = req.header(k, &v);
        }
        req = req.header("content-type", content_type);
        self.finish(req.send(body), &url)
    }

    /// POST a URL-encoded form, as a browser would.
    pub fn form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send_raw("POST", path, "application/x-www-form-urlencoded", &body)
    }

    /// Logs in at `/login` with `token`; returns the session cookie (`name=value`).
    pub fn login(&self, token: &str) -> Option<String> {
        let r = self.form("/login", &[("token", token)]);
        r.header("set-cookie")
            .and_then(|c| c.split(';').next())
            .filter(|c| c.starts_with("hf_session=") && c.len() > "hf_session=".len())
            .map(str::to_string)
    }
}

/// Percent-encodes a form value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The CSRF token a console page carries in its `csrf-token` meta tag.
pub fn csrf_of(page: &str) -> Option<String> {
    let i = page.find("name=\"csrf-token\" content=\"")? + "name=\"csrf-token\" content=\"".len();
    Some(page[i..].split('"').next()?.to_string())
}
