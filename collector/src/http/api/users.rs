//! Users with their risk: the ranking and one user's reasons.

use super::{ApiQuery, St};
use crate::http::params::{Kind, Param};
use crate::http::{ApiError, Http};
use crate::risk::UserRisk;
use axum::extract::{Path, State};
use axum::Json;
use schemars::JsonSchema;
use serde::Serialize;
use std::sync::Arc;

pub(super) const USER_PARAMS: &[Param] = &[Param::new(
    "state",
    Kind::ListOf(&["active", "departing", "offboarded", "restored"]),
    "Comma-separated states.",
)];

/// Users, riskiest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UserList {
    pub users: Vec<UserRisk>,
}

/// Every user with their risk, riskiest first.
pub(in crate::http) async fn users(st: &Arc<Http>) -> Result<Vec<UserRisk>, ApiError> {
    st.db(|s| Ok(crate::risk::users(s, crate::now_ms())?)).await
}

pub(super) async fn list_users(
    State(st): St,
    ApiQuery(q): ApiQuery,
) -> Result<Json<UserList>, ApiError> {
    let states = q.list("state");
    let users = users(&st)
        .await?
        .into_iter()
        .filter(|u| states.is_empty() || states.contains(&u.state))
        .collect();
    Ok(Json(UserList { users }))
}

pub(super) async fn one_user(
    State(st): St,
    Path(user): Path<String>,
) -> Result<Json<UserRisk>, ApiError> {
    users(&st)
        .await?
        .into_iter()
        .find(|u| u.user == user)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("unknown user `{user}`")))
}
