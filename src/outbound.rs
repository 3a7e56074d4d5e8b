//! What every outbound HTTP client of the bridge shares (Entra ID, Dataverse, callbacks):
//! reading and clamping `Retry-After`, deadlines that saturate instead of overflowing,
//! secret-free descriptions of transport failures, and the client builder.

use std::time::Duration;

/// The longest `Retry-After` honoured from any upstream (Dataverse, Entra ID, a callback
/// receiver): one hour. A larger value is read as one hour, so no answer can pause an
/// environment for longer or overflow a deadline.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Reads `Retry-After` as delta-seconds (the form Dataverse and Entra ID send; Microsoft
/// Learn, "Service protection API limits": "Retry-After … the duration in seconds"),
/// clamped to [`MAX_RETRY_AFTER`]. An HTTP-date or garbage gives `None`.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits: a parse failure can only be an overflow, which is "very long".
    let seconds = text.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// `now + wait` for a deadline, saturating instead of panicking on a huge `wait`.
pub fn deadline_after(now: tokio::time::Instant, wait: Duration) -> tokio::time::Instant {
    now.checked_add(wait)
        .unwrap_or_else(|| now + MAX_RETRY_AFTER)
}

/// A short, secret-free description of a transport failure (no URL query, no headers).
pub fn describe_transport_error(err: &reqwest::Error) -> String {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "the response body was cut off"
    } else {
        "the connection failed"
    };
    let host = err
        .url()
        .and_then(|u| {
            u.host_str().map(|h| {
                format!(
                    "{h}{}",
                    u.port().map(|p| format!(":{p}")).unwrap_or_default()
                )
            })
        })
        .unwrap_or_else(|| "the server".into());
    format!("{what} ({host})")
}

/// Builds the HTTP client for all outbound calls: timeouts on every request, no redirects
/// (a redirect could carry a bearer token or a client secret to another host).
pub fn http_client(request_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(Duration::from_secs(10).min(request_timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("handoff-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the TLS backend initialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    fn header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_is_clamped_to_an_hour_and_never_overflows() {
        assert_eq!(retry_after(&header("7")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&header(" 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&header("1000000000")), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after(&header("18446744073709551615")),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(&header("99999999999999999999999999")),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_after(&header("-1")), None);
        assert_eq!(retry_after(&header("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn deadlines_saturate() {
        let now = tokio::time::Instant::now();
        assert!(deadline_after(now, Duration::MAX) > now);
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}
