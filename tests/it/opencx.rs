//! OpenCX over loopback: the sandbox's OpenCX API (API key, sessions, paginated history,
//! `send` with `custom_data`, the rate limit, injected faults), and the bridge's OpenCX
//! client against it.

use handoff_bridge::opencx::{OpenCx, OpenCxClient, OpenCxError, MAX_HISTORY_PAGES};
use handoff_bridge::sandbox::{Fault, FaultAction, Sandbox, Seed};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};

const KEY: &str = "ocx_sandbox_key_0123456789abcdef";

async fn sandbox() -> (Sandbox, reqwest::Client) {
    let sandbox = Sandbox::start(Seed::builtin(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (sandbox, reqwest::Client::new())
}

async fn get(http: &reqwest::Client, url: String, key: Option<&str>) -> (StatusCode, Value) {
    let mut req = http.get(url);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let response = req.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn sessions_and_their_history_need_the_api_key_and_page_by_cursor() {
    let (sandbox, http) = sandbox().await;
    let base = sandbox.url();
    let (status, problem) = get(&http, format!("{base}/chat/sessions/ocx-web-1"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(problem["message"], "Unauthorized");
    let (status, _) = get(
        &http,
        format!("{base}/chat/sessions/ocx-web-1"),
        Some("ocx_wrong_key"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, session) = get(&http, format!("{base}/chat/sessions/ocx-web-1"), Some(KEY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["channel"]["type"], "web");
    assert_eq!(session["handoff"]["sentiment"], "angry");
    assert_eq!(session["contact"]["email"], "ada@example.com");
    let (status, _) = get(&http, format!("{base}/chat/sessions/nope"), Some(KEY)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Five items in pages of two, followed by the `next` cursor to the end.
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/chat/sessions/ocx-web-1/history?cursor={c}"),
            None => format!("{base}/chat/sessions/ocx-web-1/history"),
        };
        let (status, page) = get(&http, url, Some(KEY)).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!((pages, items.len()), (3, 5));
    assert_eq!(items[0]["event"]["sender"], "contact");
    assert_eq!(items[4]["event"]["type"], "handoff");
    let (status, _) = get(
        &http,
        format!("{base}/chat/sessions/ocx-web-1/history?cursor=99"),
        Some(KEY),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, empty) = get(
        &http,
        format!("{base}/chat/sessions/ocx-phone-1/history"),
        Some(KEY),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(empty, json!({ "items": [], "next": null }));
}

#[tokio::test]
async fn send_records_the_message_and_merges_flat_custom_data() {
    let (sandbox, http) = sandbox().await;
    let url = format!("{}/chat/sessions/ocx-web-1/send", sandbox.url());
    let send = |body: Value| http.post(&url).bearer_auth(KEY).json(&body).send();

    let sent = send(json!({
        "message": { "type": "text", "text": "A member of our team will join you shortly." },
        "custom_data": { "dynamics365_chat_id": "9f3c…", "attempt": 1, "linked": true },
    }))
    .await
    .unwrap();
    assert_eq!(sent.status(), StatusCode::CREATED);
    let answer: Value = sent.json().await.unwrap();
    assert_eq!(answer["success"], true);
    assert!(answer["data"]["message"]["id"].is_string());

    for refused in [
        json!({ "custom_data": { "a": "b" } }),
        json!({ "message": { "text": "x" }, "custom_data": { "nested": { "a": 1 } } }),
        json!({ "message": { "text": "x" }, "custom_data": ["not", "an", "object"] }),
    ] {
        assert_eq!(
            send(refused.clone()).await.unwrap().status(),
            StatusCode::BAD_REQUEST,
            "{refused}"
        );
    }
    let recorded = sandbox.opencx_sent();
    assert_eq!(recorded.len(), 1, "only the accepted send is recorded");
    assert_eq!(recorded[0]["session_id"], "ocx-web-1");
    assert_eq!(recorded[0]["custom_data"]["dynamics365_chat_id"], "9f3c…");
    let session = sandbox.opencx_session("ocx-web-1").unwrap();
    assert_eq!(session["custom_data"]["linked"], true);
}

#[tokio::test]
async fn past_100_requests_a_minute_a_key_gets_429_with_retry_after_and_faults_apply() {
    let (sandbox, http) = sandbox().await;
    let url = format!("{}/chat/sessions/ocx-sms-1", sandbox.url());
    for i in 0..100 {
        let (status, _) = get(&http, url.clone(), Some(KEY)).await;
        assert_eq!(status, StatusCode::OK, "request {i}");
    }
    let response = http.get(&url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");

    // Injected faults answer in OpenCX's shape.
    let (sandbox, http) = self::sandbox().await;
    sandbox.inject(Fault::next(
        "opencx_history",
        FaultAction::status(503, Some(2)),
        1,
    ));
    let response = http
        .get(format!("{}/chat/sessions/ocx-web-1/history", sandbox.url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "2");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["message"], "injected fault");
    let kinds: Vec<String> = sandbox.requests().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["opencx_history"]);
}

fn client<'a>(
    http: &'a reqwest::Client,
    sandbox: &Sandbox,
    key: &'a SecretString,
) -> OpenCxClient<'a> {
    OpenCxClient::new(http, sandbox.url().parse().unwrap(), key)
}

#[tokio::test]
async fn the_client_reads_a_session_its_whole_history_and_sends_with_custom_data() {
    let (sandbox, _) = sandbox().await;
    let http = handoff_bridge::outbound::http_client(std::time::Duration::from_secs(5));
    let key = SecretString::from(KEY.to_owned());
    let opencx = client(&http, &sandbox, &key);

    let session = opencx.session("ocx-web-1").await.unwrap();
    assert_eq!(session.channel.kind, "web");
    assert_eq!(session.verified, Some(true));
    let handoff = session.handoff.unwrap();
    assert_eq!(handoff.sentiment.as_deref(), Some("angry"));
    assert!(handoff.summary.contains("1042"));
    assert_eq!(
        session.contact.unwrap().email.as_deref(),
        Some("ada@example.com")
    );
    let sms = opencx.session("ocx-sms-1").await.unwrap();
    assert!(sms.handoff.is_none() && sms.verified.is_none());

    let history = opencx.history("ocx-web-1").await.unwrap();
    assert_eq!(history.items.len(), 5, "three pages followed");
    assert!(!history.truncated);
    let pages = sandbox
        .requests()
        .iter()
        .filter(|r| r.kind == "opencx_history")
        .count();
    assert_eq!(pages, 3);

    let mut custom = serde_json::Map::new();
    custom.insert("dynamics365_chat_id".into(), json!("9f3c"));
    let id = opencx
        .send(
            "ocx-web-1",
            "agent",
            &json!({ "type": "text", "text": "Hi" }),
            &custom,
        )
        .await
        .unwrap();
    assert!(id.is_some());
    assert_eq!(
        sandbox.opencx_sent()[0]["custom_data"]["dynamics365_chat_id"],
        "9f3c"
    );
    assert_eq!(sandbox.opencx_sent()[0]["sender"], "agent");

    // An id is one path segment, whatever it holds.
    match opencx.session("a/b?c").await {
        Err(OpenCxError::Status { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_client_says_which_failures_may_pass_and_bounds_the_history() {
    let mut seed = Seed::builtin();
    seed.opencx.history_page_size = 1;
    seed.opencx.sessions.push(handoff_bridge::sandbox::opencx::SeededSession {
        session: json!({ "id": "long", "channel": { "type": "web" } }),
        history: (0..MAX_HISTORY_PAGES + 10)
            .map(|i| json!({ "created_at": "2026-11-23T00:00:00Z", "event": { "type": "message", "sender": "contact", "text": i.to_string() } }))
            .collect(),
    });
    let sandbox = Sandbox::start(seed, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = handoff_bridge::outbound::http_client(std::time::Duration::from_secs(5));
    let key = SecretString::from(KEY.to_owned());
    let opencx = client(&http, &sandbox, &key);

    let history = opencx.history("long").await.unwrap();
    assert_eq!(history.items.len(), MAX_HISTORY_PAGES);
    assert!(history.truncated, "cut at the page bound, and says so");

    let wrong = SecretString::from("ocx_not_the_key".to_owned());
    let refused = client(&http, &sandbox, &wrong)
        .session("ocx-web-1")
        .await
        .unwrap_err();
    assert!(matches!(refused, OpenCxError::Status { status: 401, .. }));
    assert!(!refused.is_transient());
    let missing = opencx.session("nope").await.unwrap_err();
    assert!(matches!(missing, OpenCxError::Status { status: 404, .. }));
    assert!(!missing.is_transient());

    sandbox.inject(Fault::next(
        "opencx_session",
        FaultAction::status(429, Some(3)),
        1,
    ));
    let throttled = opencx.session("ocx-web-1").await.unwrap_err();
    assert!(throttled.is_transient());
    assert_eq!(
        throttled.retry_after(),
        Some(std::time::Duration::from_secs(3))
    );
    sandbox.inject(Fault::next("opencx_session", FaultAction::Reset, 1));
    let reset = opencx.session("ocx-web-1").await.unwrap_err();
    assert!(matches!(reset, OpenCxError::Transport { .. }) && reset.is_transient());
    assert!(!reset.to_string().contains(KEY));
}

#[tokio::test]
async fn the_pacer_holds_requests_back_per_api_key_without_sending_them() {
    let (sandbox, http) = sandbox().await;
    let pacing = OpenCx::paced(http, 2, 2);
    let key = SecretString::from(KEY.to_owned());
    let other = SecretString::from("ocx_other_key".to_owned());
    let base = reqwest::Url::parse(&sandbox.url()).unwrap();
    let client = pacing.client(base.clone(), &key);
    assert!(client.session("ocx-web-1").await.is_ok());
    assert!(client.session("ocx-web-1").await.is_ok());
    match client.session("ocx-web-1").await {
        Err(OpenCxError::Paced { wait }) => {
            assert!(
                wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_secs(30),
                "{wait:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sandbox.requests().len(), 2, "the third was not sent");
    // Another key has its own budget (the sandbox refuses it: it was sent).
    let status = pacing.client(base, &other).session("ocx-web-1").await;
    assert!(
        matches!(status, Err(OpenCxError::Status { status: 401, .. })),
        "{status:?}"
    );
    assert_eq!(sandbox.requests().len(), 3);
}

#[tokio::test]
async fn a_request_waits_its_turn_when_the_wait_is_short() {
    let (sandbox, http) = sandbox().await;
    // A request every 100 ms after a burst of 10: the 11th and 12th wait their turn.
    let pacing = OpenCx::paced(http, 600, 10);
    let key = SecretString::from(KEY.to_owned());
    let client = pacing.client(reqwest::Url::parse(&sandbox.url()).unwrap(), &key);
    for i in 0..12 {
        let session = client.session("ocx-web-1").await;
        assert!(session.is_ok(), "request {i}: {session:?}");
    }
    assert_eq!(sandbox.requests().len(), 12);
}
