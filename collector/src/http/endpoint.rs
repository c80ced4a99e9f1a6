//! One API operation as data ([`Endpoint`]): the API's table of them builds the router,
//! enforces each capability and generates the OpenAPI document.

use super::params::Param;
use super::Http;
use crate::api_tokens::Cap;
use axum::routing::MethodRouter;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use std::sync::Arc;

/// Writes a type's JSON schema into the document being generated.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One API operation.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    /// What the caller's role must allow; `None`: public.
    pub cap: Option<Cap>,
    pub summary: &'static str,
    pub params: &'static [Param],
    pub body: Option<SchemaFn>,
    /// The success status and body.
    pub ok: u16,
    pub response: SchemaFn,
    /// The handler, as axum routes it.
    pub route: fn() -> MethodRouter<Arc<Http>>,
}

/// The schema of `T`, for [`Endpoint::body`] and [`Endpoint::response`].
pub fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}
