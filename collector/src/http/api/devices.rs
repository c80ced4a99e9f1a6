//! Devices with their health, and revocation.

use super::{Acting, St};
use crate::http::{ApiError, Http};
use crate::store::Device;
use axum::extract::{Path, State};
use axum::Json;
use holdfast_shared::time::UnixMs;
use schemars::JsonSchema;
use serde::Serialize;
use std::sync::Arc;

/// A device and its health.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeviceView {
    #[serde(flatten)]
    pub device: Device,
    /// ok, never_seen, offline, revoked, cert_expiring, clock_skew, backlog, or
    /// partial_coverage (a place could not be watched, or the watch limit was reached).
    pub health: String,
}

/// Devices.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceView>,
}

/// A device's health in one word.
pub(in crate::http) fn health(d: &Device, now_ms: UnixMs, skew_tolerance_ms: i64) -> &'static str {
    if d.revoked_ms.is_some() {
        "revoked"
    } else if d.removed_ms.is_some() {
        "agent_removed"
    } else if d.last_seen_ms.is_none() {
        "never_seen"
    } else if d.offline_since_ms.is_some() {
        "offline"
    } else if d.cert_expires_ms > UnixMs(0) && d.cert_expires_ms < now_ms + 7 * 86_400_000 {
        "cert_expiring"
    } else if d.clock_skew_ms.is_some_and(|s| s.abs() > skew_tolerance_ms) {
        "clock_skew"
    } else if d.spool_backlog.unwrap_or(0) > 10_000 {
        "backlog"
    } else if d
        .coverage
        .as_ref()
        .is_some_and(|c| c.failed_roots > 0 || c.limit_reached || c.index_full)
    {
        "partial_coverage"
    } else {
        "ok"
    }
}

/// Every device with its health.
pub(in crate::http) async fn devices(st: &Arc<Http>) -> Result<Vec<DeviceView>, ApiError> {
    let tolerance = st.config.skew_tolerance.as_millis() as i64;
    st.db(move |s| {
        let now = crate::now_ms();
        Ok(s.devices()?
            .into_iter()
            .map(|d| DeviceView {
                health: health(&d, now, tolerance).into(),
                device: d,
            })
            .collect())
    })
    .await
}

pub(super) async fn list_devices(State(st): St) -> Result<Json<DeviceList>, ApiError> {
    Ok(Json(DeviceList {
        devices: devices(&st).await?,
    }))
}

pub(super) async fn revoke_device(
    State(st): St,
    Acting(actor): Acting,
    Path(id): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let id = st
        .db(
            move |s| match s.revoke_device(&id, crate::now_ms(), &actor)? {
                true => Ok(id),
                false => Err(ApiError::NotFound(format!("no device `{id}`"))),
            },
        )
        .await?;
    devices(&st)
        .await?
        .into_iter()
        .find(|d| d.device.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no device `{id}`")))
}
