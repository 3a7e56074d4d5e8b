//! Acting from the status page (issue 13, item 4): POST forms that retry a handoff, resend
//! a callback, retry every failed one and check the connection again, each protected
//! against cross-site requests (a CSRF token and the `Origin`); a viewer token that reads
//! the page and `GET /v1/status` but cannot act; HTML error pages on HTML routes.

use reqwest::{Method, StatusCode};

use crate::helpers::{TestApp, TestOptions};

const VIEWER: &str = "viewer-token-0123456789abcdef";

fn basic(token: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("someone:{token}"))
    )
}

/// A client that follows no redirect (the tests read the 303s).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The page at `path` as `token` sees it: status and HTML.
async fn page(t: &TestApp, token: &str, path: &str) -> (StatusCode, String) {
    let response = client()
        .get(format!("{}{path}", t.url))
        .header("authorization", basic(token))
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The CSRF token in a page's forms.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Posts a form as `token` with `csrf` (none: no field) and an optional `Origin`.
async fn post(
    t: &TestApp,
    token: &str,
    path: &str,
    csrf: Option<&str>,
    origin: Option<&str>,
) -> reqwest::Response {
    let mut request = client()
        .post(format!("{}{path}", t.url))
        .header("authorization", basic(token))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(csrf.map(|c| format!("csrf={c}")).unwrap_or_default());
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_page_forms_act_and_refuse_what_is_not_the_admins_own() {
    let t = TestApp::start_with(TestOptions {
        viewer_token: Some(VIEWER.to_owned()),
        ..Default::default()
    })
    .await;
    t.two_orgs_in_every_state().await;
    let admin = t.admin_token.clone();
    let (status, html) = page(&t, &admin, "/status/acme/sessions/fail_1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(">Retry</button>"), "{html}");
    let csrf = csrf_of(&html);
    assert!(!csrf.contains(&admin), "the token is not the admin token");
    let retry = "/status/acme/sessions/fail_1/retry";

    // Refused: no token, a wrong one, another site's form, the viewer.
    for (who, csrf, origin) in [
        (admin.as_str(), None, None),
        (admin.as_str(), Some("0123"), None),
        (
            admin.as_str(),
            Some(csrf.as_str()),
            Some("https://evil.example"),
        ),
        (VIEWER, Some(csrf.as_str()), None),
    ] {
        let response = post(&t, who, retry, csrf, origin).await;
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{csrf:?} {origin:?}"
        );
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let body = response.text().await.unwrap();
        assert!(body.contains("403: forbidden"), "{body}");
    }
    assert_eq!(
        t.record("acme", "fail_1").await["state"],
        "failed",
        "nothing acted"
    );

    // The admin's own form, from this page's origin.
    let origin = t.url.clone();
    let response = post(&t, &admin, retry, Some(&csrf), Some(&origin)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/status/acme/sessions/fail_1?done=retried");
    assert_eq!(t.record("acme", "fail_1").await["state"], "queued");
    let (_, html) = page(&t, &admin, &location).await;
    assert!(html.contains("Retried: the handoff"), "the notice");
    // wait_1's 429 paused the environment for 300 s.
    t.advance(std::time::Duration::from_secs(301));
    t.drain().await;
    assert_eq!(t.record("acme", "fail_1").await["state"], "succeeded");

    // Check again and retry all failed, back to the org's page.
    for (path, done) in [
        ("/status/acme/connection/check", "checked"),
        ("/status/acme/retry-failed", "retried_all"),
    ] {
        let response = post(&t, &admin, path, Some(&csrf), None).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(
            response.headers()["location"],
            format!("/status?org=acme&done={done}").as_str()
        );
    }
    let response = post(
        &t,
        &admin,
        "/status/beta/connection/check",
        Some(&csrf),
        None,
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "beta has no connection"
    );
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("404: not_connected"));

    // The viewer reads the page and /v1/status, sees no form, and has no admin route.
    let (status, html) = page(&t, VIEWER, "/status").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("name=\"csrf\""), "no form for the viewer");
    let read = |path: &str| {
        client()
            .get(format!("{}{path}", t.url))
            .bearer_auth(VIEWER)
            .send()
    };
    assert_eq!(read("/v1/status").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        read("/v1/orgs/acme").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = t.admin(Method::GET, "/v1/orgs/acme", None).await;
    assert_eq!(status, StatusCode::OK, "the admin token keeps full rights");

    // An HTML route answers its errors as a page.
    let (status, html) = page(&t, &admin, "/status/nobody/sessions/x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        html.contains("404: unknown_org") && html.contains("<html"),
        "{html}"
    );
}
