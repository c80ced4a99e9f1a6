//! API tokens: list, create (the secret shown once), revoke.

use super::{Acting, ApiBody, St};
use crate::http::ApiError;
use crate::store::ApiToken;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API tokens.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenList {
    pub tokens: Vec<ApiToken>,
}

/// Create a token.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub name: String,
    /// analyst, it_admin, auditor or admin.
    pub role: String,
}

/// A revoked token.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Revoked {
    pub name: String,
    pub revoked: bool,
}

// ----- handlers -----

pub(super) async fn list_tokens(State(st): St) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(TokenList {
        tokens: st.db(|s| Ok(s.api_tokens()?)).await?,
    }))
}

pub(super) async fn create_token(
    State(st): St,
    Acting(actor): Acting,
    ApiBody(b): ApiBody<TokenBody>,
) -> Result<Response, ApiError> {
    let created = st
        .db(move |s| {
            Ok(crate::api_tokens::create(
                s,
                &b.name,
                &b.role,
                false,
                &actor,
                crate::now_ms(),
            )?)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(super) async fn revoke_token(
    State(st): St,
    Acting(actor): Acting,
    Path(name): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    st.db(move |s| {
        crate::api_tokens::revoke(s, &name, &actor, crate::now_ms())?;
        Ok(Json(Revoked {
            name,
            revoked: true,
        }))
    })
    .await
}
