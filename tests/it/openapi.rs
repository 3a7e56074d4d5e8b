//! `GET /openapi.json`: the route table is the OpenAPI 3.1 document (`utoipa-axum`); every
//! annotated handler is in it, and every documented operation reaches its handler.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::TestApp;

/// How many handlers carry a `#[utoipa::path]` in the HTTP sources: each must be in the
/// route table (which is also the document), so the document has exactly this many
/// operations.
fn annotated_handlers() -> usize {
    [
        include_str!("../../src/http/mod.rs"),
        include_str!("../../src/http/webhooks.rs"),
        include_str!("../../src/http/status.rs"),
        include_str!("../../src/http/operations.rs"),
        include_str!("../../src/http/admin/orgs.rs"),
        include_str!("../../src/http/admin/connection.rs"),
        include_str!("../../src/http/admin/opencx.rs"),
        include_str!("../../src/http/admin/sessions.rs"),
    ]
    .iter()
    .map(|source| source.matches("#[utoipa::path(").count())
    .sum()
}

fn documented(spec: &Value) -> BTreeSet<(String, String)> {
    spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes() {
    let t = TestApp::start().await;
    let response = t
        .http
        .get(format!("{}/openapi.json", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let spec: Value = response.json().await.unwrap();
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );

    // Each operation declares each parameter once (OpenAPI: parameters are unique by name
    // and location), and every `{…}` of its path as a path parameter.
    for (path, ops) in spec["paths"].as_object().unwrap() {
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in ops.as_object().unwrap() {
            let params: Vec<(&str, &str)> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
                        .collect()
                })
                .unwrap_or_default();
            let unique: BTreeSet<_> = params.iter().copied().collect();
            assert_eq!(unique.len(), params.len(), "{method} {path}: {params:?}");
            let in_path: BTreeSet<&str> = params
                .iter()
                .filter(|(_, at)| *at == "path")
                .map(|(name, _)| *name)
                .collect();
            assert_eq!(in_path, templated, "{method} {path}");
        }
    }

    let documented = documented(&spec);
    assert!(annotated_handlers() >= 21, "the handlers were read");
    assert_eq!(
        documented.len(),
        annotated_handlers(),
        "every annotated handler is in the route table: {documented:?}"
    );

    // Every documented operation reaches a handler: not the router's bare 404 or a 405.
    for (method, path) in &documented {
        let url = format!(
            "{}{}",
            t.url,
            path.replace("{org_id}", "nobody")
                .replace("{session_id}", "s1")
        );
        let response = t
            .http
            .request(Method::from_bytes(method.as_bytes()).unwrap(), url)
            .bearer_auth(&t.admin_token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            status != StatusCode::NOT_FOUND || body.contains("unknown_org"),
            "{method} {path}: {status} {body}"
        );
    }

    // The admin routes ask for the admin token; the webhook and the probes do not.
    let secured: BTreeSet<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, ops)| {
            ops.as_object()
                .unwrap()
                .values()
                .any(|op| op.get("security").is_some())
        })
        .map(|(p, _)| p.as_str())
        .collect();
    assert!(secured.contains("/v1/status") && secured.contains("/metrics"));
    assert!(!secured.contains("/v1/webhooks/{org_id}") && !secured.contains("/healthz"));
    assert!(
        spec["components"]["schemas"]["ConnectionInput"]["properties"]["client_secret"].is_object()
    );
}

/// Resolves a `$ref` to `#/components/schemas/…` (other schemas are returned as they are).
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            &spec["components"]["schemas"][name]
        }
        None => schema,
    }
}

#[tokio::test]
async fn every_json_body_has_a_real_schema() {
    let spec: Value =
        serde_json::from_str(&handoff_bridge::http::api_document().to_json().unwrap()).unwrap();
    let mut bodies = 0;
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let request = op["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flatten();
            let responses = op["responses"]
                .as_object()
                .unwrap()
                .values()
                .flat_map(|r| r["content"].as_object().into_iter().flatten());
            for (content_type, content) in request.chain(responses) {
                if !content_type.contains("json") || content["schema"].is_null() {
                    continue;
                }
                bodies += 1;
                let schema = resolve(&spec, &content["schema"]);
                let typed = schema["properties"].is_object()
                    || schema["allOf"].is_array()
                    || schema["oneOf"].is_array();
                assert!(
                    typed,
                    "{method} {path} ({content_type}): a body without properties: {schema}"
                );
            }
        }
    }
    assert!(bodies > 40, "the bodies were read: {bodies}");
}
