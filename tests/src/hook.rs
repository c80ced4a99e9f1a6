//! A local HTTP server that stands in for a third party we cannot run here (a CRM's or a
//! SOAR's webhook endpoint, a vendor's API): it records every request and answers with
//! scripted statuses, or with a handler built from the vendor's documentation.

use std::time::Duration;

/// What the hook server received: request line, headers (names lowercased), body.
pub type Received = Vec<(String, Vec<(String, String)>, Vec<u8>)>;

/// A local HTTP server standing in for a CRM's webhook endpoint: answers each request with
/// the next status of `statuses` (the last one repeats) and records what it received.
pub struct Hook {
    pub port: u16,
    pub requests: std::sync::Arc<std::sync::Mutex<Received>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What a [`Hook::serve`] handler answers: status, content type and body.
pub type Answer = (u16, &'static str, String);

impl Hook {
    pub fn start(statuses: Vec<u16>, ok_body: &'static str) -> Hook {
        let mut n = 0usize;
        Hook::serve(move |_, _, _| {
            let status = statuses[n.min(statuses.len() - 1)];
            n += 1;
            let text = if status == 200 { ok_body } else { "try later" };
            // A page (the upload form) is served as one, so a browser renders it.
            let kind = if text.starts_with("<!doctype html>") {
                "text/html; charset=utf-8"
            } else {
                "text/plain"
            };
            (status, kind, text.to_string())
        })
    }

    /// A local HTTP server that records every request and answers each with `handler`'s
    /// answer to its request line (`POST /path?query HTTP/1.1`), headers and body: the
    /// stand-in of a vendor's API, built from its documentation.
    pub fn serve(
        mut handler: impl FnMut(&str, &[(String, String)], &[u8]) -> Answer + Send + 'static,
    ) -> Hook {
        use std::io::{BufRead, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (reqs, halt) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                // A connection that says nothing or hangs up (a browser's preconnect) is
                // let go; the next one is served.
                let served = (|| -> Option<()> {
                    conn.set_nonblocking(false).ok()?;
                    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                    let mut r = std::io::BufReader::new(conn);
                    let mut line = String::new();
                    r.read_line(&mut line).ok()?;
                    if line.trim().is_empty() {
                        return None;
                    }
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).ok()?;
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':')?;
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    r.read_exact(&mut body).ok()?;
                    let line = line.trim_end().to_string();
                    let (status, kind, text) = handler(&line, &headers, &body);
                    reqs.lock().unwrap().push((line, headers, body));
                    let mut conn = r.into_inner();
                    write!(
                        conn,
                        "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    )
                    .ok()
                })();
                let _ = served;
            }
        });
        Hook {
            port,
            requests,
            stop,
        }
    }
}

impl Hook {
    /// The request lines received whose path starts with `prefix`, in order.
    pub fn calls(&self, prefix: &str) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(l, _, _)| l.clone())
            .filter(|l| l.split(' ').nth(1).is_some_and(|p| p.starts_with(prefix)))
            .collect()
    }
}

/// The value of request header `name` (lowercase), if sent.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A request line's method, path and decoded query pairs.
pub fn request_parts(line: &str) -> (&str, &str, Vec<(String, String)>) {
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (method, path, crate::salesforce::form(query.as_bytes()))
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The JSON body of a request the collector signed with `secret`: its `x-holdfast-signature`
/// header must be the body's HMAC-SHA-256 (checked here).
pub fn signed_json(headers: &[(String, String)], body: &[u8], secret: &str) -> serde_json::Value {
    let sig = headers
        .iter()
        .find(|(k, _)| k == "x-holdfast-signature")
        .map(|(_, v)| v.as_str());
    let want = format!("sha256={}", hmac_sha256(secret.as_bytes(), body));
    assert_eq!(sig, Some(want.as_str()), "the body's signature");
    serde_json::from_slice(body).expect("a JSON body")
}

/// HMAC-SHA-256, written out here so the test checks the collector against the RFC, not
/// against its own code.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> String {
    use sha2::Digest;
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    let outer = sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    hex::encode(outer)
}
