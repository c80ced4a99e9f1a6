//! The OpenAPI 3.1 document, generated from the API's table of [`Endpoint`]s (paths, parameters,
//! capabilities) and the Rust types of bodies and responses (schemas): it cannot drift from
//! what the server does.

use super::endpoint::Endpoint;
use super::params::Kind;
use crate::api_tokens::Cap;
use serde_json::{json, Map, Value};

fn param_schema(kind: Kind) -> Value {
    match kind {
        Kind::Text => json!({"type": "string", "maxLength": 512}),
        Kind::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Kind::Time => {
            json!({"type": "string", "description": "RFC 3339, epoch milliseconds, or a duration before now (24h)"})
        }
        Kind::OneOf(v) => json!({"type": "string", "enum": v}),
        Kind::ListOf(v) => {
            json!({"type": "string", "description": format!("comma-separated: {}", v.join(", "))})
        }
        Kind::Bool => json!({"type": "boolean"}),
    }
}

fn error_response(what: &str) -> Value {
    json!({"description": what, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn build(endpoints: &[Endpoint]) -> Value {
    let mut g = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let mut paths = Map::new();
    for e in endpoints {
        let mut params: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(e.params.iter().map(|p| {
            json!({"name": p.name, "in": "query", "required": false, "description": p.doc, "schema": param_schema(p.kind)})
        }));
        let mut responses = Map::new();
        let ok = (e.response)(&mut g);
        let content = if e.path.ends_with("/report") {
            json!({"application/json": {"schema": ok}, "text/csv": {"schema": {"type": "string"}}})
        } else {
            json!({"application/json": {"schema": ok}})
        };
        responses.insert(
            e.ok.to_string(),
            json!({"description": "success", "content": content}),
        );
        if e.ok == 201 {
            responses.insert("200".into(), json!({"description": "already done: nothing changed", "content": {"application/json": {"schema": (e.response)(&mut g)}}}));
        }
        responses.insert(
            "400".into(),
            error_response("a parameter or field is wrong; the message names it"),
        );
        let mut op = json!({
            "operationId": format!("{}{}", e.method, e.path.replace(['/', '{', '}', '.'], "_")),
            "summary": e.summary,
            "parameters": params,
        });
        if let Some(cap) = e.cap {
            responses.insert("401".into(), error_response("no valid token or session"));
            responses.insert(
                "403".into(),
                error_response(
                    "the role lacks the capability, or a session request lacks its CSRF token",
                ),
            );
            responses.insert("404".into(), error_response("no such thing"));
            op["security"] = json!([{"bearer": []}, {"session": []}]);
            op["x-holdfast-capability"] = json!(cap.as_str());
            op["x-holdfast-roles"] = json!(Cap::roles(cap)
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>());
        } else {
            op["security"] = json!([]);
        }
        op["responses"] = Value::Object(responses);
        if let Some(body) = e.body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": body(&mut g)}}});
        }
        let entry = paths
            .entry(e.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[e.method] = op;
    }
    let mut schemas = g.take_definitions(true);
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Holdfast collector API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Alerts, triage, users, devices, offboarding, events and the audit log. Authenticate with `Authorization: Bearer <API token>`; browser sessions must send `X-CSRF-Token` on state-changing requests."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": super::auth::COOKIE}
            }
        }
    })
}

/// The document for `endpoints`.
pub fn document(endpoints: &[Endpoint]) -> Value {
    build(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_documented_with_resolvable_schemas() {
        use crate::http::api::ENDPOINTS;
        let doc = document(ENDPOINTS);
        for e in ENDPOINTS {
            let op = &doc["paths"][e.path][e.method];
            assert!(op.is_object(), "{} {} missing", e.method, e.path);
            assert_eq!(op["summary"], e.summary);
        }
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for (i, _) in text.match_indices("#/components/schemas/") {
            let rest = &text[i + "#/components/schemas/".len()..];
            let name: String = rest.chars().take_while(|c| *c != '"').collect();
            assert!(schemas.contains_key(&name), "dangling $ref {name}");
        }
        let alerts = &doc["paths"]["/api/v1/alerts"]["get"];
        let params = alerts["parameters"].as_array().unwrap();
        let has = |name: &str| params.iter().any(|p| p["name"] == name);
        assert!(has("severity") && has("cursor"), "{params:?}");
        assert_eq!(
            doc["paths"]["/api/v1/offboardings"]["post"]["x-holdfast-roles"],
            json!(["it_admin", "admin"])
        );
        assert!(schemas.contains_key("AlertPage"), "{:?}", schemas.keys());
    }
}
