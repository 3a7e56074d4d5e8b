//! The sending side of Standard Webhooks: one signed `POST`, shared by the callbacks, the
//! `send` command and `demo`.

use super::signature::WebhookSecret;

/// A `POST` of `body` (JSON) to `url` with the Standard Webhooks headers: `webhook-id`,
/// `webhook-timestamp` (now, Unix seconds) and `webhook-signature` (`v1,` HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` with `secret`). Send it with `.send()`.
pub fn signed_post(
    http: &reqwest::Client,
    url: reqwest::Url,
    secret: &WebhookSecret,
    webhook_id: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let timestamp = crate::clock::now_ms() / 1000;
    let signature = secret.sign(webhook_id, timestamp, &body);
    http.post(url)
        .header("content-type", "application/json")
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
}

/// A `conversation.handoff_to_human` envelope for `org` around a bare session (JSON text);
/// text that already has an `event` is returned as it is.
pub fn envelope_for(text: &str, org: &str) -> Result<Vec<u8>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if value.get("event").is_some() {
        return Ok(text.as_bytes().to_vec());
    }
    let envelope = serde_json::json!({
        "event": super::HANDOFF_EVENT,
        "organization_id": org,
        "data": { "session": value },
    });
    Ok(serde_json::to_vec(&envelope).expect("JSON serializes"))
}
