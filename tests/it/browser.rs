//! The `/status` page in a real headless Chromium, driven through WebDriver (`chromedriver`)
//! with `fantoccini`: the visible text of the connection cards and of a failed row's hint,
//! the link to a session's timeline, readability at 1280 px and 390 px, and basic
//! accessibility (headings in order, table headers, labelled controls, text contrast).
//!
//! Screenshots are saved as test artifacts under `target/browser-artifacts/`; with
//! `UPDATE_SCREENSHOTS=1` the two `/status` screenshots are also copied to `docs/`.
//! Without `chromedriver` on the PATH the test says it is skipped, unless
//! `HANDOFF_BROWSER_TESTS=require` (set by `.ci/run`), which turns that into a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use handoff_bridge::domain::catalog;
use serde_json::{json, Value};

use crate::helpers::{switchable_receiver, TestApp, TestOptions};

/// A chromedriver process on a free port; killed on drop.
struct Driver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts `chromedriver`, or `None` when it is not installed.
    async fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = match Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("chromedriver did not start: {e}"),
        };
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile: tempfile::tempdir().unwrap(),
        };
        let status = format!("{}/status", driver.url);
        for _ in 0..100 {
            if let Ok(r) = reqwest::get(&status).await {
                if r.status().is_success() {
                    return Some(driver);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not answer on {status}");
    }

    async fn session(&self) -> Client {
        let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let mut options = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--font-render-hinting=none",
                format!("--user-data-dir={}", self.profile.path().display()),
            ],
        });
        if let Some(binary) = binary {
            options["binary"] = json!(binary);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session starts")
    }
}

/// A Chrome DevTools Protocol command through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.expect("a session")
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({ "cmd": self.cmd, "params": self.params }).to_string()),
        )
    }
}

async fn cdp(client: &Client, cmd: &'static str, params: Value) -> Value {
    client
        .issue_cmd(Cdp { cmd, params })
        .await
        .unwrap_or_else(|e| panic!("CDP {cmd}: {e}"))
}

/// Emulates a screen `width` CSS pixels wide (a phone below 600).
async fn set_width(client: &Client, width: u32, height: u32) {
    cdp(
        client,
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600 }),
    )
    .await;
}

/// A screenshot of the whole page at `width`, saved as `target/browser-artifacts/{name}.png`.
async fn screenshot(client: &Client, width: u32, name: &str) -> PathBuf {
    let height = client
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap() as u32;
    set_width(client, width, height).await;
    let shot = cdp(client, "Page.captureScreenshot", json!({ "format": "png" })).await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    set_width(client, width, 900).await;
    path
}

/// Basic accessibility and layout checks run in the page; returns every problem found.
const AUDIT: &str = r#"
const problems = [];
if (!document.documentElement.lang) problems.push('html has no lang');
if (!document.title) problems.push('no title');
// Headings: one h1 first, no level skipped on the way down.
const levels = [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => +h.tagName[1]);
if (levels[0] !== 1) problems.push('the first heading is not h1: ' + levels);
for (let i = 1; i < levels.length; i++)
  if (levels[i] > levels[i - 1] + 1) problems.push('heading h' + levels[i] + ' follows h' + levels[i - 1]);
// Tables: header cells, with a scope.
for (const t of document.querySelectorAll('table')) {
  const ths = t.querySelectorAll('th');
  if (ths.length === 0) problems.push('a table without header cells');
  for (const th of ths) if (!th.getAttribute('scope')) problems.push('th without scope: ' + th.textContent);
}
// Form controls: a label or an accessible name.
for (const c of document.querySelectorAll('input, select, textarea')) {
  if (c.type === 'hidden' || c.type === 'submit') continue;
  if (c.labels.length === 0 && !c.getAttribute('aria-label')) problems.push('unlabelled control ' + c.name);
}
// Links and buttons have text.
for (const a of document.querySelectorAll('a, button'))
  if (!a.textContent.trim() && !a.getAttribute('aria-label')) problems.push('a link or button without text');
// Contrast (WCAG 2.1 AA): 4.5:1, or 3:1 for large text, for every element with its own text.
const rgb = s => s.match(/[\d.]+/g).map(Number);
const lum = ([r, g, b]) => {
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = el => {
  for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
let checked = 0;
for (const el of document.querySelectorAll('body *')) {
  const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  const style = getComputedStyle(el);
  if (!own || style.display === 'none' || style.visibility === 'hidden') continue;
  const l1 = lum(rgb(style.color).slice(0, 3)), l2 = lum(background(el));
  const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  const size = parseFloat(style.fontSize), bold = +style.fontWeight >= 700;
  const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
  checked++;
  if (ratio < needed) problems.push('contrast ' + ratio.toFixed(2) + ' < ' + needed + ': ' + el.textContent.trim().slice(0, 40));
}
if (checked < 10) problems.push('contrast: only ' + checked + ' text elements checked');
// Readable at this width: nothing wider than the screen.
if (document.documentElement.scrollWidth > window.innerWidth)
  problems.push('horizontal scrolling: ' + document.documentElement.scrollWidth + ' > ' + window.innerWidth);
return problems;
"#;

async fn audit(client: &Client, what: &str) {
    let problems = client.execute(AUDIT, vec![]).await.unwrap();
    assert_eq!(problems, json!([]), "{what}");
}

/// The visible text of the element `css` selects.
async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_status_page_in_headless_chromium() {
    let Some(driver) = Driver::start().await else {
        assert_ne!(
            std::env::var("HANDOFF_BROWSER_TESTS").as_deref(),
            Ok("require"),
            "chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED the_status_page_in_headless_chromium: chromedriver is not on the PATH");
        return;
    };
    let t = TestApp::start_with(TestOptions {
        viewer_token: Some(VIEWER.to_owned()),
        ..TestOptions::default()
    })
    .await;
    // gamma's workstream was deleted after it was saved: a failing check with its detail.
    let sms_workstream = "b1e2c3d4-0002-4a5b-8c6d-7e8f9a0b1c2d";
    t.create_org("gamma", None).await;
    t.connect_with("gamma", json!({ "default_queue_id": sms_workstream }))
        .await;
    t.sandbox.edit_seed(|seed| {
        seed.workstreams
            .retain(|w| w["msdyn_liveworkstreamid"] != sms_workstream)
    });
    let (status, _) = t
        .admin(
            reqwest::Method::POST,
            "/v1/orgs/gamma/connection/check",
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    // delta's widget backend refuses the callback: Dynamics succeeded, the widget not told.
    let (receiver, refuse) = switchable_receiver().await;
    let delta = t.create_org("delta", Some(&receiver)).await;
    t.connect("delta").await;
    t.hand_off("delta", &delta, json!({ "id": "told_late" }))
        .await;
    // Before the others: their wait_1 pauses the environment for 300 s.
    t.two_orgs_in_every_state().await;
    let client = driver.session().await;
    // The browser signs in as after the Basic prompt: the header on every request. Its
    // time zone is New York's, so the page's times must show in it.
    sign_in(&client, &t.admin_token).await;
    cdp(
        &client,
        "Emulation.setTimezoneOverride",
        json!({ "timezoneId": "America/New_York" }),
    )
    .await;

    let mut saved = Vec::new();
    for (width, label) in [(1280, "1280"), (390, "390")] {
        set_width(&client, width, 900).await;
        // The overview: one line per org, the failing ones first with what fails.
        client.goto(&format!("{}/status", t.url)).await.unwrap();
        assert_eq!(
            text(&client, "h1").await,
            "handoff-bridge status",
            "signed in at {width}"
        );
        let source = client.source().await.unwrap();
        let at = |org: &str| source.find(&format!("id=\"org-{org}\"")).unwrap();
        assert!(at("acme") < at("gamma") && at("gamma") < at("beta") && at("beta") < at("delta"));
        let acme_line = text(&client, "#org-acme").await;
        assert!(acme_line.contains("Failing"), "{acme_line}");
        assert!(acme_line.contains("missing_privilege"), "{acme_line}");
        assert!(
            acme_line.contains("injected fault"),
            "the detail: {acme_line}"
        );
        let gamma_line = text(&client, "#org-gamma").await;
        assert!(
            gamma_line.contains(&format!("default_queue_id {sms_workstream}")),
            "the check's detail: {gamma_line}"
        );
        let beta_line = text(&client, "#org-beta").await;
        assert!(beta_line.contains("Not connected"), "{beta_line}");
        assert!(
            beta_line.contains("Connect Dynamics with PUT /v1/orgs/beta/connection"),
            "the hint names the org, not a placeholder: {beta_line}"
        );
        assert!(text(&client, "#org-delta").await.contains("Active"));
        // Times in the viewer's zone, with how long ago.
        let generated = text(&client, "p.muted").await;
        assert!(
            generated.contains("EST") && generated.contains("just now"),
            "{generated}"
        );
        audit(&client, &format!("/status at {width} px")).await;
        saved.push((
            label,
            screenshot(&client, width, &format!("status-{label}")).await,
        ));

        // acme's page: its card and its handoffs.
        client
            .find(Locator::LinkText("acme"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert_eq!(text(&client, "h1").await, "acme (acme)");
        let acme_card = text(&client, "[data-testid=connection-card]").await;
        assert!(
            acme_card.contains("Dynamics connection: Failing"),
            "{acme_card}"
        );
        assert!(acme_card.contains("Failing check: handoffs"), "{acme_card}");
        assert!(acme_card.contains("injected fault"), "{acme_card}");
        assert!(
            acme_card.contains("workstream Live chat – Support"),
            "the workstream's name: {acme_card}"
        );
        // The failed row names its code and the hint, visibly (also as a card on a phone).
        let row = client
            .find(Locator::XPath("//tr[.//a[normalize-space()='fail_1']]"))
            .await
            .unwrap();
        assert!(row.is_displayed().await.unwrap());
        let row_text = row.text().await.unwrap();
        assert!(row_text.contains("missing_privilege"), "{row_text}");
        assert!(
            row_text.contains(catalog::MISSING_PRIVILEGE.hint),
            "{row_text}"
        );
        // The one line that says what Dataverse refused is on the page, not only in JSON.
        assert!(row_text.contains("HTTP 403"), "the detail: {row_text}");
        assert!(
            row_text.contains("injected fault"),
            "the detail: {row_text}"
        );
        // Every state is on the page; beta's handoffs are not.
        let page = text(&client, "main").await;
        for state in ["succeeded", "failed", "skipped", "queued"] {
            assert!(page.contains(state), "{state} at {width}");
        }
        assert!(!page.contains("beta_1"), "{page}");
        // The work item opens in Dynamics.
        let record = client
            .find(Locator::XPath(
                "//tr[.//a[normalize-space()='ok_1']]//a[contains(@href, 'main.aspx')]",
            ))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        assert!(
            record.starts_with(&format!(
                "{}/main.aspx?pagetype=entityrecord&etn=msdyn_ocliveworkitem&id=",
                t.sandbox.url()
            )),
            "{record}"
        );
        audit(&client, &format!("acme's page at {width} px")).await;
        saved.push((
            if width == 1280 { "org-1280" } else { "org-390" },
            screenshot(&client, width, &format!("org-{label}")).await,
        ));

        // gamma's page: the failing check with its detail.
        client
            .goto(&format!("{}/status?org=gamma", t.url))
            .await
            .unwrap();
        let gamma_card = text(&client, "[data-testid=connection-card]").await;
        assert!(
            gamma_card.contains("Dynamics connection: Failing"),
            "{gamma_card}"
        );
        assert!(
            text(&client, "[data-testid=check-detail]")
                .await
                .contains(&format!("default_queue_id {sms_workstream}")),
            "{gamma_card}"
        );

        // Follow the link to the failed session's timeline.
        client
            .goto(&format!("{}/status?org=acme", t.url))
            .await
            .unwrap();
        client
            .find(Locator::LinkText("fail_1"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let url = client.current_url().await.unwrap();
        assert_eq!(url.path(), "/status/acme/sessions/fail_1");
        assert_eq!(text(&client, "h1").await, "Session fail_1");
        let timeline = text(&client, "table").await;
        for kind in ["received", "attempt_started", "attempt_failed", "failed"] {
            assert!(timeline.contains(kind), "{kind} in {timeline}");
        }
        // Events read as sentences, their data folded away, at the viewer's time.
        assert!(
            timeline.contains("The work_item step failed (missing_privilege): HTTP 403"),
            "{timeline}"
        );
        assert!(timeline.contains("EST"), "{timeline}");
        assert!(text(&client, ".card").await.contains("security role"));
        assert!(text(&client, "[data-testid=error-detail]")
            .await
            .contains("injected fault"));
        audit(&client, &format!("session timeline at {width} px")).await;
        screenshot(&client, width, &format!("session-{label}")).await;
    }
    // Act from the page: the failed handoff's Retry button, a POST form with its CSRF
    // token, then back to the session's page with a notice.
    client
        .goto(&format!("{}/status/acme/sessions/fail_1", t.url))
        .await
        .unwrap();
    click_and_wait_for_notice(&client, "Retry").await;
    let url = client.current_url().await.unwrap();
    assert_eq!(url.path(), "/status/acme/sessions/fail_1");
    assert_eq!(url.query(), Some("done=retried"));
    assert!(text(&client, "[role=status]").await.starts_with("Retried"));
    assert_eq!(t.record("acme", "fail_1").await["state"], "queued");
    audit(&client, "session page after a retry").await;

    // Resend a callback the widget backend refused, once it takes it again.
    client
        .goto(&format!("{}/status/delta/sessions/told_late", t.url))
        .await
        .unwrap();
    assert!(text(&client, ".card").await.contains("widget not told yet"));
    refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    click_and_wait_for_notice(&client, "Resend callback").await;
    t.drain().await;
    let record = t.record("delta", "told_late").await;
    assert_eq!(record["callbacks"][0]["state"], "delivered", "{record}");

    // A form on another site posts to the bridge with the browser's credentials but
    // without the token: refused, and nothing is retried.
    let attacker = cross_site_form(&format!("{}/status/acme/sessions/ok_1/retry", t.url)).await;
    let refusal = post_cross_site(&client, &attacker).await;
    assert!(refusal.contains("another site"), "{refusal}");
    let events = t.record("acme", "ok_1").await["events"].to_string();
    assert!(!events.contains("replayed"), "{events}");

    // The viewer token reads the page but has no form, and a post is refused.
    sign_in(&client, VIEWER).await;
    client
        .goto(&format!("{}/status?org=acme", t.url))
        .await
        .unwrap();
    assert_eq!(text(&client, "h1").await, "acme (acme)");
    assert!(client
        .find_all(Locator::Css("form.act"))
        .await
        .unwrap()
        .is_empty());
    client
        .goto(&format!("{}/status/acme/sessions/wait_1", t.url))
        .await
        .unwrap();
    assert!(client
        .find_all(Locator::Css("form.act"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(text(&client, "h1").await, "Session wait_1");
    audit(&client, "the viewer's session page").await;
    let refusal = post_cross_site(&client, &attacker).await;
    assert!(
        refusal.contains("viewer token can read the page but not act"),
        "{refusal}"
    );
    client.close().await.unwrap();

    if std::env::var("UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        for (label, path) in saved {
            std::fs::copy(path, docs.join(format!("status-{label}.png"))).unwrap();
        }
    }
}

/// The read-only token of this test's bridge.
const VIEWER: &str = "viewer-token-for-the-browser-0123";

/// Every request of the browser carries `Authorization: Basic` with `token`, as after the
/// sign-in prompt.
async fn sign_in(client: &Client, token: &str) {
    cdp(client, "Network.enable", json!({})).await;
    cdp(
        client,
        "Network.setExtraHTTPHeaders",
        json!({ "headers": { "Authorization": basic_auth(token) } }),
    )
    .await;
}

/// Clicks the button labelled `label` and waits for the page it leads to show its notice.
async fn click_and_wait_for_notice(client: &Client, label: &str) {
    let button = format!("//button[normalize-space()='{label}']");
    click_and_wait(client, Locator::XPath(&button), "[role=status]").await;
}

/// Clicks what `target` finds and waits up to 10 s for an element `css` on the next page.
async fn click_and_wait(client: &Client, target: Locator<'_>, css: &str) {
    client
        .find(target)
        .await
        .unwrap_or_else(|e| panic!("{target:?}: {e}"))
        .click()
        .await
        .unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
}

/// Submits the form of the page at `attacker` ([`cross_site_form`]) and returns the text of
/// the bridge's answer, after checking that it is the `403` page.
async fn post_cross_site(client: &Client, attacker: &str) -> String {
    client.goto(attacker).await.unwrap();
    click_and_wait(client, Locator::Css("button"), "h1").await;
    assert_eq!(text(client, "h1").await, "403: forbidden");
    text(client, "main").await
}

/// Another site (its own port): a page with a form that posts to `target` without a CSRF
/// token. Returns the page's URL.
async fn cross_site_form(target: &str) -> String {
    let html = format!(
        "<!doctype html><title>elsewhere</title><form method=post action=\"{target}\"><button>Win a prize</button></form>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://localhost:{}/",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// `Basic base64("admin:{token}")`: what a browser sends after the sign-in prompt.
fn basic_auth(token: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("admin:{token}"));
    format!("Basic {encoded}")
}
