//! The collector's HTTP side: the JSON API under `/api/v1` (with its OpenAPI document), the
//! web console, `/metrics` and `/healthz`. This module owns the TCP listener; handlers reach
//! the database only through [`Http::db`], on a connection of their own, off the async
//! threads.

mod api;
mod auth;
mod console;
mod endpoint;
mod html;
mod openapi;
mod params;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use auth::Caller;

/// Largest request body the API accepts.
pub const MAX_BODY: usize = 64 * 1024;

/// What every HTTP handler shares.
pub struct Http {
    store: Mutex<Store>,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// Failed logins per address (console and API alike).
    logins: Mutex<crate::limits::LoginGuard>,
}

impl Http {
    /// Opens the HTTP side's own database connection.
    pub fn open(config: &Config, metrics: Arc<Metrics>) -> Result<Arc<Http>, StoreError> {
        Ok(Arc::new(Http {
            store: Mutex::new(Store::open(&config.db_path())?),
            config: config.clone(),
            metrics,
            logins: Mutex::new(crate::limits::LoginGuard::default()),
        }))
    }

    /// Refuses `ip` while it has failed too often.
    pub fn login_allowed(&self, ip: std::net::IpAddr) -> Result<(), ApiError> {
        let g = self
            .logins
            .lock()
            .map_err(|_| ApiError::Internal("login guard".into()))?;
        g.check(ip, std::time::Instant::now())
            .map_err(|wait| ApiError::TooManyLogins(wait.as_secs().max(1)))
    }

    /// Counts a failed login from `ip` and writes its audit line.
    pub async fn login_failed(self: &Arc<Self>, ip: std::net::IpAddr, how: &'static str) {
        if let Ok(mut g) = self.logins.lock() {
            g.failed(ip, std::time::Instant::now());
        }
        let audited = self
            .db(move |s| {
                Ok(s.audit(&crate::store::AuditEntry {
                    id: 0,
                    time_ms: crate::now_ms(),
                    actor: "unknown".into(),
                    origin: format!("http {ip}"),
                    action: "login.failed".into(),
                    target: String::new(),
                    detail: how.into(),
                })?)
            })
            .await;
        if let Err(e) = audited {
            tracing::warn!(error = %e, "cannot audit a failed login");
        }
    }

    /// Runs `f` on the database on a blocking thread.
    pub async fn db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = me
                .store
                .lock()
                .map_err(|_| ApiError::Internal("database lock poisoned".into()))?;
            f(&mut store)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("database task: {e}")))?
    }
}

/// Every error the HTTP layer returns: a status and a JSON body
/// `{"error": {"code": ..., "message": ...}}`. Internal details are logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter or body field is wrong; the message names it.
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or credentials that are unknown, revoked or expired.
    #[error("authentication required: send `Authorization: Bearer <token>` or log in")]
    Unauthorized,
    /// The caller's role lacks the capability the endpoint needs.
    #[error("your role `{role}` cannot {cap}; needed: {roles}")]
    Forbidden {
        role: &'static str,
        cap: &'static str,
        roles: String,
    },
    /// A state-changing request from a browser session without the session's CSRF token.
    #[error("missing or wrong CSRF token")]
    Csrf,
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Too many failed logins from this address.
    #[error("too many failed logins from this address; try again in {0} s")]
    TooManyLogins(u64),
    /// Anything else: logged with details, answered with a generic message.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Csrf => (StatusCode::FORBIDDEN, "csrf"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooManyLogins(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_logins"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let body = serde_json::json!({"error": {"code": code, "message": self.to_string()}});
        let mut r = (status, axum::Json(body)).into_response();
        if let ApiError::TooManyLogins(wait) = &self {
            if let Ok(v) = axum::http::HeaderValue::from_str(&wait.to_string()) {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::triage::TriageError> for ApiError {
    fn from(e: crate::triage::TriageError) -> Self {
        use crate::triage::TriageError as E;
        match e {
            E::NotFound(_) => ApiError::NotFound(e.to_string()),
            E::Transition { .. } => ApiError::Conflict(e.to_string()),
            E::BadStatus(_) => ApiError::BadRequest(format!("status: {e}")),
            E::BadNote => ApiError::BadRequest(format!("note: {e}")),
            E::BadAssignee => ApiError::BadRequest(format!("assignee: {e}")),
            E::Empty => ApiError::BadRequest(e.to_string()),
            E::Store(s) => s.into(),
        }
    }
}

impl From<crate::offboard::OffboardError> for ApiError {
    fn from(e: crate::offboard::OffboardError) -> Self {
        use crate::offboard::OffboardError as E;
        match e {
            E::UnknownUser(_) | E::NotOffboarded(_) => ApiError::NotFound(e.to_string()),
            E::EffectiveChanged { .. } => ApiError::Conflict(e.to_string()),
            E::BadSuccessor(..) => ApiError::BadRequest(e.to_string()),
            E::Store(s) => s.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::api_tokens::ApiTokenError> for ApiError {
    fn from(e: crate::api_tokens::ApiTokenError) -> Self {
        use crate::api_tokens::ApiTokenError as E;
        match e {
            E::BadName(_) => ApiError::BadRequest(format!("name: {e}")),
            E::BadRole(_) => ApiError::BadRequest(format!("role: {e}")),
            E::Exists(_) => ApiError::Conflict(e.to_string()),
            E::Unknown(_) => ApiError::NotFound(e.to_string()),
            E::Store(s) => s.into(),
        }
    }
}

/// The whole HTTP application.
pub fn router(state: Arc<Http>) -> Router {
    Router::new()
        .merge(api::routes(&state))
        .merge(console::routes())
        .route("/healthz", axum::routing::get(healthz))
        .route("/metrics", axum::routing::get(metrics))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such path: {}", uri.path()))
}

/// `/healthz`: 200 when the database answers.
async fn healthz(
    axum::extract::State(st): axum::extract::State<Arc<Http>>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let devices = st.db(|s| Ok(s.devices()?.len())).await?;
    Ok(axum::Json(
        serde_json::json!({"status": "ok", "devices": devices}),
    ))
}

/// `/metrics`: Prometheus text format (counts only: no user, path or customer data).
async fn metrics(
    axum::extract::State(st): axum::extract::State<Arc<Http>>,
) -> Result<Response, ApiError> {
    let snapshot = st
        .db(|s| {
            let devices = s.devices()?;
            Ok(crate::metrics::Snapshot {
                open_alerts: s.open_alerts_by_severity()?,
                backlogs: devices
                    .iter()
                    .filter(|d| d.revoked_ms.is_none())
                    .map(|d| (d.id.clone(), d.spool_backlog.unwrap_or(0)))
                    .collect(),
                devices: devices.len() as u64,
                forward_lags: s.forward_lags()?,
            })
        })
        .await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(&snapshot),
    )
        .into_response())
}

/// Why the HTTP side could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TCP socket could not be bound.
    #[error("binding the console/API listener {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Binds the listener (so a port conflict is reported before anything runs).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, HttpError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| HttpError::Bind(addr, e))
}

/// Binds the configured listener and serves in the background until `shutdown` turns
/// true. Returns the bound address and the task (`None` when `http_listen = "off"`).
pub async fn start(
    config: &Config,
    metrics: Arc<Metrics>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<(SocketAddr, tokio::task::JoinHandle<()>)>, HttpError> {
    let Some(addr) = config.http_listen else {
        return Ok(None);
    };
    let listener = bind(addr).await?;
    let local = listener
        .local_addr()
        .map_err(|e| HttpError::Bind(addr, e))?;
    let state = Http::open(config, metrics)?;
    Ok(Some((
        local,
        tokio::spawn(serve(listener, state, shutdown)),
    )))
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<Http>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "console/API server failed");
    }
}
