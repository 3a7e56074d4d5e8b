//! `GET /v1/status`: the facts of the troubleshooting page, per org.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{find, switchable_receiver, TestApp};

fn recent<'a>(org: &'a Value, session: &str) -> &'a Value {
    find(&org["recent"], "session_id", session)
}

#[tokio::test]
async fn status_explains_each_handoff_per_org_and_filters() {
    let t = TestApp::start().await;
    t.two_orgs_in_every_state().await;

    let (status, body) = t.admin(Method::GET, "/v1/status", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let orgs = body["orgs"].as_array().unwrap();
    assert_eq!(orgs.len(), 2);
    // Every org in one line: no handoffs, however many there are.
    assert!(orgs.iter().all(|o| o.get("recent").is_none()), "{body}");
    let (_, body) = t.admin(Method::GET, "/v1/status?org=acme", None).await;
    let a = find(&body["orgs"], "org_id", "acme");
    // fail_1 failed with missing_privilege, the connection's own fault: the card follows it.
    assert_eq!(a["connection"]["label"], "Failing");
    assert_eq!(
        a["connection"]["failing_check"]["code"],
        "missing_privilege"
    );
    assert_eq!(
        a["connection"]["workstream_name"], "Live chat – Support",
        "the name the workstream check found"
    );
    assert_eq!(
        a["counts_24h"],
        json!({ "queued": 1, "processing": 0, "succeeded": 1, "failed": 1, "skipped": 1 })
    );
    assert_eq!(a["queue"]["depth"], 1);
    assert!(a["queue"]["oldest_queued_age_ms"].as_i64().unwrap() >= 0);

    let ok = recent(a, "ok_1");
    assert_eq!(ok["explanation"]["side"], "dynamics_routing");
    assert!(ok["explanation"]["summary"]
        .as_str()
        .unwrap()
        .contains(ok["dynamics365_chat_id"].as_str().unwrap()));
    assert!(ok["explanation"]["hint"]
        .as_str()
        .unwrap()
        .contains("routing rules"));
    let failed = recent(a, "fail_1");
    assert_eq!(failed["last_error"]["code"], "missing_privilege");
    assert!(failed["explanation"]["hint"]
        .as_str()
        .unwrap()
        .contains("security role"));
    assert_eq!(failed["explanation"]["side"], "configuration");
    let mail = recent(a, "mail_1");
    assert!(mail["explanation"]["hint"]
        .as_str()
        .unwrap()
        .contains("incidents turned off"));
    let waiting = recent(a, "wait_1");
    assert_eq!(waiting["state"], "queued");
    assert!(waiting["explanation"]["summary"]
        .as_str()
        .unwrap()
        .starts_with("Waiting to try again"));
    assert_eq!(waiting["explanation"]["side"], "dynamics_service");

    let (_, body) = t.admin(Method::GET, "/v1/status?org=beta", None).await;
    let b = find(&body["orgs"], "org_id", "beta");
    assert_eq!(b["connection"]["label"], "Not connected");
    assert_eq!(b["queue"]["depth"], 1);
    assert_eq!(recent(b, "beta_1")["last_error"]["code"], "not_connected");

    // Filters: one org only, one state, a session search where '_' is not a wildcard.
    let (_, only) = t.admin(Method::GET, "/v1/status?org=beta", None).await;
    assert_eq!(only["orgs"].as_array().unwrap().len(), 1);
    assert!(
        !only.to_string().contains("acme"),
        "another org's data never appears"
    );
    let (_, failed_only) = t
        .admin(Method::GET, "/v1/status?org=acme&state=failed", None)
        .await;
    let sessions: Vec<&str> = failed_only["orgs"][0]["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(sessions, ["fail_1"]);
    let (_, search) = t
        .admin(Method::GET, "/v1/status?org=acme&session=l_1", None)
        .await;
    let found: Vec<&str> = search["orgs"][0]["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["fail_1", "mail_1"], "newest first");
    let (_, literal) = t
        .admin(Method::GET, "/v1/status?org=acme&session=_", None)
        .await;
    assert_eq!(
        literal["orgs"][0]["recent"].as_array().unwrap().len(),
        4,
        "every id here has a '_'"
    );
    let (_, none) = t
        .admin(Method::GET, "/v1/status?org=acme&session=%25", None)
        .await;
    assert!(
        none["orgs"][0]["recent"].as_array().unwrap().is_empty(),
        "'%' is text, not a wildcard"
    );
}

#[tokio::test]
async fn the_card_names_the_failing_check_after_a_secret_expires() {
    let t = TestApp::start().await;
    t.connected_org("acme").await;
    t.sandbox
        .expire_secret(&t.sandbox.demo_connection().client_secret);
    t.admin(Method::POST, "/v1/orgs/acme/connection/check", None)
        .await;
    let (_, body) = t.admin(Method::GET, "/v1/status", None).await;
    let card = &body["orgs"][0]["connection"];
    assert_eq!(card["label"], "Failing");
    assert_eq!(card["failing_check"]["name"], "token");
    assert_eq!(card["failing_check"]["code"], "entra_secret_expired");
    assert!(card["failing_check"]["hint"]
        .as_str()
        .unwrap()
        .contains("new client secret"));
}

async fn page(
    t: &TestApp,
    path: &str,
    auth: Option<(&str, &str)>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut req = t.http.get(format!("{}{path}", t.url));
    if let Some((user, password)) = auth {
        req = req.basic_auth(user, Some(password));
    }
    let response = req.send().await.unwrap();
    (
        response.status(),
        response.headers().clone(),
        response.text().await.unwrap(),
    )
}

#[tokio::test]
async fn the_page_asks_a_browser_to_sign_in_and_shows_the_facts() {
    let t = TestApp::start().await;
    let acme = t.connected_org("acme").await;
    let beta = t.connected_org("beta").await;
    t.hand_off("acme", &acme, json!({ "id": "acme-ok" })).await;
    t.refuse_next_create(403, None);
    t.hand_off("acme", &acme, json!({ "id": "acme-<b>denied</b>" }))
        .await;
    t.hand_off("beta", &beta, json!({ "id": "beta-only" }))
        .await;

    let (status, headers, _) = page(&t, "/status", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic "));
    let (status, _, _) = page(&t, "/status", Some(("admin", "not-the-token"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let token = t.admin_token.clone();
    let (status, headers, html) = page(&t, "/status", Some(("admin", &token))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // The overview: one line per org, linking to its page, no handoff listed.
    assert!(html.contains("href=\"/status?org=acme\""), "{html}");
    assert!(html.contains("href=\"/status?org=beta\""), "{html}");
    assert!(
        html.contains("<span class=\"badge active\">Active</span>"),
        "beta's line: {html}"
    );
    assert!(
        html.contains("missing_privilege"),
        "acme's line names why its connection fails: {html}"
    );
    assert!(!html.contains("acme-ok"), "no handoff on the overview");
    let (_, _, html) = page(&t, "/status?org=acme", Some(("admin", &token))).await;
    assert!(
        html.contains("Dynamics connection: <span class=\"badge failing\">Failing</span>"),
        "{html}"
    );
    assert!(
        html.contains("Give the application user a security role"),
        "the failed row's hint"
    );
    assert!(
        html.contains("acme-&lt;b&gt;denied"),
        "session ids are escaped"
    );
    assert!(!html.contains("<b>denied</b>"));
    assert!(html.contains("href=\"/status/acme/sessions/acme-ok\""));
    // Bearer works too, and filters narrow the page to one org.
    let response = t
        .http
        .get(format!("{}/status?org=beta", t.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let beta_only = response.text().await.unwrap();
    assert!(beta_only.contains("beta-only"));
    assert!(
        !beta_only.contains("acme-ok"),
        "one org's data never appears on another org's view"
    );

    let (status, _, detail) =
        page(&t, "/status/acme/sessions/acme-ok", Some(("admin", &token))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(detail.contains("work_item_created"), "the timeline");
    assert!(
        detail.contains("routing rules"),
        "the succeeded handoff points at Dynamics routing"
    );
    let (status, _, _) = page(&t, "/status/acme/sessions/acme-ok", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn orgs_that_need_attention_come_first_then_by_name() {
    let t = TestApp::start().await;
    // Healthy orgs whose names sort first, then one whose handoff failed for a reason of its
    // connection (missing_privilege: its card is Failing, so it comes first) and one
    // without a connection.
    for org in ["aaa", "bbb"] {
        let secret = t.connected_org(org).await;
        t.hand_off(org, &secret, json!({ "id": format!("{org}_ok") }))
            .await;
    }
    let failing = t.connected_org("yyy").await;
    t.refuse_next_create(403, None);
    t.hand_off("yyy", &failing, json!({ "id": "denied" })).await;
    t.create_org("xxx", None).await;

    let (_, body) = t.admin(Method::GET, "/v1/status", None).await;
    let order: Vec<(&str, bool)> = body["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["org_id"].as_str().unwrap(), o["needs_attention"] == true))
        .collect();
    assert_eq!(
        order,
        [("yyy", true), ("xxx", true), ("aaa", false), ("bbb", false)]
    );
    let page = t.admin_text("/status").await;
    let at = |org: &str| page.find(&format!("id=\"org-{org}\"")).unwrap();
    assert!(at("yyy") < at("xxx") && at("xxx") < at("aaa") && at("aaa") < at("bbb"));
}

#[tokio::test]
async fn a_refused_callback_shows_beside_dynamics_and_the_retry_resends_it() {
    let t = TestApp::start().await;
    let (url, refuse) = switchable_receiver().await;
    let secret = t.create_org("acme", Some(&url)).await;
    t.connect("acme").await;
    t.hand_off("acme", &secret, json!({ "id": "told-late" }))
        .await;
    let record = t.record("acme", "told-late").await;
    assert_eq!(record["state"], "succeeded");
    assert_eq!(record["callbacks"][0]["state"], "pending", "{record}");

    let (_, status) = t.admin(Method::GET, "/v1/status?org=acme", None).await;
    let row = recent(&status["orgs"][0], "told-late");
    let explanation = &row["explanation"];
    assert_eq!(explanation["side"], "widget_backend", "{row}");
    let summary = explanation["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("Dynamics ✓ (live work item "),
        "{summary}"
    );
    assert!(
        summary.ends_with("widget not told yet (handoff.succeeded), attempt 1, HTTP 500"),
        "{summary}"
    );
    assert!(explanation["hint"]
        .as_str()
        .unwrap()
        .contains("POST /v1/orgs/acme/sessions/told-late/retry"));
    let page = t.admin_text("/status?org=acme").await;
    assert!(
        page.contains("widget not told yet"),
        "the page shows it too"
    );

    // The receiver is fixed; the retry resends the callback now instead of in 300 s.
    refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    let (status, body) = t
        .admin(Method::POST, "/v1/orgs/acme/sessions/told-late/retry", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["requeued_callbacks"], 1);
    t.drain().await;
    let record = t.record("acme", "told-late").await;
    assert_eq!(record["callbacks"][0]["state"], "delivered", "{record}");
    let (_, status) = t.admin(Method::GET, "/v1/status?org=acme", None).await;
    let row = recent(&status["orgs"][0], "told-late");
    assert_eq!(row["explanation"]["side"], "dynamics_routing", "{row}");
    // Nothing is left to resend.
    let (status, _) = t
        .admin(Method::POST, "/v1/orgs/acme/sessions/told-late/retry", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

/// The `acme` card of `/v1/status`.
async fn acme_card(t: &TestApp) -> Value {
    let (_, status) = t.admin(Method::GET, "/v1/status?org=acme", None).await;
    status["orgs"][0]["connection"].clone()
}

#[tokio::test]
async fn the_card_follows_handoff_outcomes_both_ways() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    t.hand_off("acme", &secret, json!({ "id": "first" })).await;
    let card = acme_card(&t).await;
    assert_eq!(card["label"], "Active");
    assert!(card["last_success_at"].is_string(), "{card}");

    // The client secret expires after the check passed: handoffs fail for good, and the
    // card says so without a new check.
    let demo = t.sandbox.demo_connection();
    t.sandbox.expire_secret(&demo.client_secret);
    t.sandbox.expire_tokens();
    t.hand_off("acme", &secret, json!({ "id": "expired" }))
        .await;
    assert_eq!(
        t.record("acme", "expired").await["last_error"]["code"],
        "entra_secret_expired"
    );
    let card = acme_card(&t).await;
    assert_eq!(card["label"], "Failing", "{card}");
    assert_eq!(card["failing_check"]["name"], "handoffs");
    assert_eq!(card["failing_check"]["code"], "entra_secret_expired");
    assert_eq!(card["last_failure"]["code"], "entra_secret_expired");
    assert!(card["failing_since"].is_string());
    let (_, status) = t.admin(Method::GET, "/v1/status?org=acme", None).await;
    assert_eq!(status["orgs"][0]["needs_attention"], true);
    let page = t.admin_text("/status?org=acme").await;
    assert!(page.contains("failing since"), "the page shows it");

    // A session-level failure does not turn it Failing; a success turns it Active again.
    t.sandbox.edit_seed(|seed| {
        for app in seed.tenants.iter_mut().flat_map(|t| t.apps.iter_mut()) {
            for s in &mut app.secrets {
                s.expired = false;
            }
        }
    });
    t.hand_off("acme", &secret, json!({ "id": "renewed" }))
        .await;
    let card = acme_card(&t).await;
    assert_eq!(card["label"], "Active", "{card}");
    assert!(card.get("failing_since").is_none(), "{card}");
    assert_eq!(
        card["last_failure"]["code"], "entra_secret_expired",
        "kept for the record"
    );

    // The other way: a check that failed (a passing Dataverse refusal at that moment), and
    // a handoff that reaches Dynamics after it.
    t.refuse_next_create(400, None);
    t.hand_off("acme", &secret, json!({ "id": "refused" }))
        .await;
    assert_eq!(
        acme_card(&t).await["label"],
        "Active",
        "one request's refusal is not the connection's"
    );
    t.sandbox.inject(handoff_bridge::sandbox::Fault::next(
        "whoami",
        handoff_bridge::sandbox::FaultAction::status(400, None),
        5,
    ));
    let (_, checked) = t
        .admin(Method::POST, "/v1/orgs/acme/connection/check", None)
        .await;
    assert_eq!(checked["status"], "failing", "{checked}");
    t.sandbox.clear_faults();
    assert_eq!(acme_card(&t).await["label"], "Failing");
    t.advance(std::time::Duration::from_millis(5));
    t.hand_off("acme", &secret, json!({ "id": "works" })).await;
    let card = acme_card(&t).await;
    assert_eq!(card["label"], "Active", "{card}");
    assert!(
        card["hint"].as_str().unwrap().contains("works again"),
        "{card}"
    );
}

#[tokio::test]
async fn the_connection_is_checked_again_after_its_own_failure_and_on_a_schedule() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let demo = t.sandbox.demo_connection();
    t.sandbox.expire_secret(&demo.client_secret);
    t.sandbox.expire_tokens();
    t.hand_off("acme", &secret, json!({ "id": "expired" }))
        .await;
    // The failure was the connection's: its checks ran again at once and say which.
    let (_, saved) = t.admin(Method::GET, "/v1/orgs/acme/connection", None).await;
    assert_eq!(saved["status"], "failing", "{saved}");
    let token = find(&saved["checks"], "name", "token");
    assert_eq!(token["code"], "entra_secret_expired", "{saved}");
    let checked_at = saved["last_checked_at"].as_str().unwrap().to_owned();

    // Nothing is stale within the hour.
    let worker = t.app.worker().clone();
    let now = t.clock().now_ms();
    assert_eq!(
        handoff_bridge::handoff::worker::recheck_stale(&worker, now)
            .await
            .unwrap(),
        0
    );
    // The admin renews the secret in Entra ID; an hour later the schedule checks it again.
    t.sandbox.edit_seed(|seed| {
        for app in seed.tenants.iter_mut().flat_map(|t| t.apps.iter_mut()) {
            for s in &mut app.secrets {
                s.expired = false;
            }
        }
    });
    t.advance(handoff_bridge::handoff::worker::RECHECK_EVERY + std::time::Duration::from_secs(1));
    let now = t.clock().now_ms();
    assert_eq!(
        handoff_bridge::handoff::worker::recheck_stale(&worker, now)
            .await
            .unwrap(),
        1
    );
    let (_, saved) = t.admin(Method::GET, "/v1/orgs/acme/connection", None).await;
    assert_eq!(saved["status"], "active", "{saved}");
    assert_ne!(saved["last_checked_at"], checked_at.as_str());
    // The card still says handoffs failed until one succeeds.
    assert_eq!(acme_card(&t).await["failing_check"]["name"], "handoffs");
    t.hand_off("acme", &secret, json!({ "id": "renewed" }))
        .await;
    assert_eq!(acme_card(&t).await["label"], "Active");
}

/// The session ids of a `/v1/status?org=` page's `recent`, and its `next_before`.
fn page_of(body: &Value) -> (Vec<String>, Option<String>) {
    let org = &body["orgs"][0];
    let ids = org["recent"]
        .as_array()
        .unwrap_or_else(|| panic!("no recent in {body}"))
        .iter()
        .map(|h| h["session_id"].as_str().unwrap().to_owned())
        .collect();
    (ids, org["next_before"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn an_org_pages_by_cursor_and_finds_customers_by_name_or_email() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let customers = [
        ("Ada Lovelace", "ada@example.com"),
        ("Grace Hopper", "grace@example.com"),
        ("Alan Turing", "alan@example.org"),
        ("Edsger Dijkstra", "ewd@example.com"),
        ("Barbara Liskov", "liskov_b@example.com"),
    ];
    for (i, (name, email)) in customers.iter().enumerate() {
        t.hand_off(
            "acme",
            &secret,
            json!({ "id": format!("p{i}"), "contact": { "name": name, "email": email } }),
        )
        .await;
    }
    let (_, all) = t
        .admin(Method::GET, "/v1/status?org=acme&limit=500", None)
        .await;
    let (everything, last) = page_of(&all);
    assert_eq!(everything.len(), 5);
    assert_eq!(last, None, "one page holds them all");

    // Pages of two, each from the cursor of the one before: the same order, none twice.
    let mut seen = Vec::new();
    let mut path = "/v1/status?org=acme&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, body) = t.admin(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (ids, next) = page_of(&body);
        assert!(ids.len() <= 2);
        seen.extend(ids);
        pages += 1;
        match next {
            Some(cursor) => path = format!("/v1/status?org=acme&limit=2&before={cursor}"),
            None => break,
        }
    }
    assert_eq!((pages, &seen), (3, &everything));
    // The session list pages the same way.
    let (_, list) = t
        .admin(Method::GET, "/v1/orgs/acme/sessions?limit=3", None)
        .await;
    let cursor = list["next_before"].as_str().unwrap().to_owned();
    let (_, rest) = t
        .admin(
            Method::GET,
            &format!("/v1/orgs/acme/sessions?limit=3&before={cursor}"),
            None,
        )
        .await;
    assert_eq!(rest["sessions"].as_array().unwrap().len(), 2);
    assert!(rest.get("next_before").is_none(), "{rest}");
    // A cursor that is not one is refused, naming the option.
    let (status, problem) = t
        .admin(Method::GET, "/v1/status?org=acme&before=yesterday", None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(problem.to_string().contains("/before"), "{problem}");

    // Customers by a part of their name or email, ASCII case ignored; `_` is no wildcard.
    for (search, expected) in [
        ("LOVELACE", vec!["p0"]),
        ("example.org", vec!["p2"]),
        ("a", vec!["p4", "p3", "p2", "p1", "p0"]),
        ("liskov_", vec!["p4"]),
        ("v_b", vec!["p4"]),
        ("n_t", vec![]),
        ("%", vec![]),
    ] {
        let (_, body) = t
            .admin(
                Method::GET,
                &format!("/v1/status?org=acme&customer={}", urlencode(search)),
                None,
            )
            .await;
        let (mut ids, _) = page_of(&body);
        ids.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(ids, expected, "customer={search}");
    }

    // The page: the same search box, and an "Older handoffs" link to the next page.
    let html = t.admin_text("/status?org=acme&limit=2").await;
    let link = html
        .split("href=\"")
        .find_map(|rest| {
            let href = rest.split('"').next()?;
            href.contains("before=")
                .then(|| href.replace("&amp;", "&").replace("&#x2f;", "/"))
        })
        .unwrap_or_else(|| panic!("no link to the next page in {html}"));
    assert!(
        link.starts_with("/status?") && link.contains("limit=2") && link.contains("org=acme"),
        "{link}"
    );
    let older = t.admin_text(&link).await;
    assert!(older.contains(&format!(">{}<", everything[2])), "{older}");
    assert!(!older.contains(&format!(">{}<", everything[0])));
    let found = t.admin_text("/status?org=acme&customer=grace").await;
    assert!(found.contains(">p1<") && !found.contains(">p0<"), "{found}");
    // An org that does not exist is a 404 page, not an empty one.
    let missing = t
        .http
        .get(format!("{}/status?org=nobody", t.url))
        .bearer_auth(&t.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
