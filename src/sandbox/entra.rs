//! `POST /{tenant}/oauth2/v2.0/token`: client credentials with Entra-shaped errors
//! (`{"error","error_description":"AADSTSnnnn: …","error_codes":[n],"timestamp","trace_id",
//! "correlation_id","error_uri"}`), per the AADSTS codes in docs/sources.md#entra-id.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::json;
use uuid::Uuid;

use super::{respond, DropSwitch, Handled, IssuedToken, RequestMeta, Shared};

/// An Entra ID error answer.
pub(super) fn error_body(status: StatusCode, error: &str, code: u32, text: &str) -> Handled {
    let trace_id = Uuid::new_v4();
    let correlation_id = Uuid::new_v4();
    let timestamp = crate::clock::rfc3339(crate::clock::now_ms());
    let description = if code == 0 {
        text.to_owned()
    } else {
        format!("AADSTS{code}: {text} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}")
    };
    Handled::json(
        status,
        json!({
            "error": error,
            "error_description": description,
            "error_codes": if code == 0 { vec![] } else { vec![code] },
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

pub(super) async fn token(
    State(state): State<Shared>,
    Path(tenant): Path<String>,
    req: Request,
) -> Response {
    let switch = req.extensions().get::<DropSwitch>().cloned();
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let meta = RequestMeta::of("token", &parts, None);
    let basic = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let state2 = state.clone();
    respond(&state, meta, switch, || async move {
        issue(&state2, &tenant, &body, basic)
    })
    .await
}

fn issue(state: &Shared, tenant: &str, body: &[u8], basic: Option<String>) -> Handled {
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let (basic_id, basic_secret) = match basic.as_deref().and_then(|b| b.split_once(':')) {
        Some((id, secret)) => (Some(id.to_owned()), Some(secret.to_owned())),
        None => (None, None),
    };
    let client_id = field("client_id").or(basic_id).unwrap_or_default();
    let client_secret = field("client_secret").or(basic_secret).unwrap_or_default();

    let mut s = state.lock().expect("poisoned");
    let Some(tenant_row) = s.seed.tenant(tenant).cloned() else {
        return error_body(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        );
    };
    if field("grant_type").as_deref() != Some("client_credentials") {
        return error_body(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let Some(app) = tenant_row
        .apps
        .iter()
        .find(|a| a.client_id.eq_ignore_ascii_case(&client_id))
    else {
        return error_body(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."),
        );
    };
    match app.secrets.iter().find(|sec| sec.value == client_secret) {
        Some(sec) if sec.expired => {
            return error_body(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000222,
                &format!("The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app."),
            )
        }
        Some(_) => {}
        None => {
            return error_body(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."),
            )
        }
    }
    let scope = field("scope").unwrap_or_default();
    let expected = format!("{}/.default", s.url);
    if scope != expected {
        let resource = scope.trim_end_matches("/.default");
        return error_body(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!("The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."),
        );
    }
    let lifetime = s.seed.token_lifetime_secs;
    let token = format!("sbx.{}", Uuid::new_v4().simple());
    let now = s.clock.instant();
    s.tokens.insert(
        token.clone(),
        IssuedToken {
            client_id: app.client_id.clone(),
            expires_at: crate::outbound::deadline_after(
                now,
                std::time::Duration::from_secs(lifetime),
            ),
        },
    );
    Handled::json(
        StatusCode::OK,
        json!({ "token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token }),
    )
}
