//! Who is calling: a bearer API token (scripts, HR systems) or a browser session cookie set
//! at login. Sessions must echo their CSRF token on every state-changing request; bearer
//! calls carry no ambient credential, so they need none.

use super::{ApiError, Http};
use crate::api_tokens::{digest, Cap, Role};
use crate::Actor;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The session cookie's name.
pub const COOKIE: &str = "hf_session";
/// The header scripts send the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The API token's name.
    pub name: String,
    pub role: Role,
    pub ip: IpAddr,
    /// Set when the caller came with a session cookie: the session's CSRF token.
    pub csrf: Option<String>,
    /// The session id's hash, for logout.
    pub session: Option<String>,
}

impl Caller {
    /// Refuses a caller whose role lacks `cap`.
    pub fn require(&self, cap: Cap) -> Result<(), ApiError> {
        if self.role.can(cap) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                role: self.role.as_str(),
                cap: cap.as_str(),
                roles: cap
                    .roles()
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// For the audit log.
    pub fn actor(&self) -> Actor {
        Actor {
            who: format!("api:{}", self.name),
            origin: format!("http {}", self.ip),
        }
    }

    /// For a form post from the console: the form's CSRF field must match the session's.
    pub fn check_csrf(&self, given: &str) -> Result<(), ApiError> {
        match &self.csrf {
            None => Ok(()),
            Some(want) if constant_time_eq(want.as_bytes(), given.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::Csrf),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in a request.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The peer's address (loopback when the server runs without connect info, as in tests).
pub fn peer(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

impl FromRequestParts<Arc<Http>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<Http>) -> Result<Self, ApiError> {
        let ip = peer(parts);
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|s| s.trim().to_string());
        let now = crate::now_ms();
        if let Some(secret) = bearer {
            st.login_allowed(ip)?;
            let token = st
                .db(move |s| {
                    let t = s.api_token_by_secret(&digest(&secret))?;
                    if let Some(t) = &t {
                        s.touch_api_token(&t.name, now)?;
                    }
                    Ok(t)
                })
                .await?
                // A one-time login is for the browser only.
                .filter(|t| !t.once);
            let Some(token) = token else {
                st.login_failed(ip, "unknown, revoked or browser-only API token")
                    .await;
                return Err(ApiError::Unauthorized);
            };
            let role = Role::parse(&token.role).ok_or(ApiError::Unauthorized)?;
            return Ok(Caller {
                name: token.name,
                role,
                ip,
                csrf: None,
                session: None,
            });
        }
        let id = cookie(parts, COOKIE)
            .ok_or(ApiError::Unauthorized)?
            .to_string();
        let id_hash = digest(&id);
        let key = id_hash.clone();
        let session = st
            .db(move |s| Ok(s.session(&key, now)?))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let role = Role::parse(&session.role).ok_or(ApiError::Unauthorized)?;
        let caller = Caller {
            name: session.token_name,
            role,
            ip,
            csrf: Some(session.csrf),
            session: Some(id_hash),
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe && parts.uri.path().starts_with("/api/") {
            let given = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            caller.check_csrf(given)?;
        }
        Ok(caller)
    }
}
