//! Times on the page: each one in UTC with how long ago it was ("3 min ago"), rendered on
//! the server, and turned into the viewer's time zone by the page's one script (allowed by
//! its hash in the Content-Security-Policy; without it the UTC time stays).

use std::sync::LazyLock;

use minijinja::value::Value;
use minijinja::State;

/// Rewrites every `<time datetime>` of the page into the browser's time zone and locale.
pub const LOCAL_TIMES_SCRIPT: &str = r#"document.querySelectorAll("time[datetime]").forEach(function(t){var d=new Date(t.getAttribute("datetime"));if(!isNaN(d))t.textContent=d.toLocaleString(undefined,{year:"numeric",month:"short",day:"numeric",hour:"2-digit",minute:"2-digit",second:"2-digit",timeZoneName:"short"});});"#;

/// `'sha256-…'` of [`LOCAL_TIMES_SCRIPT`], the CSP source that lets it (and nothing else) run.
pub static LOCAL_TIMES_HASH: LazyLock<String> = LazyLock::new(|| {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(LOCAL_TIMES_SCRIPT.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
});

/// How far `at` is from `now` (both Unix ms), in words: "just now", "42 s ago", "3 min ago",
/// "5 h ago", "12 days ago", or "in 3 days" for a time to come.
pub fn relative(at: i64, now: i64) -> String {
    let delta = now.saturating_sub(at);
    if delta.unsigned_abs() < 5_000 {
        return "just now".to_owned();
    }
    let span = duration(delta.saturating_abs());
    if delta >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// A length of time given in ms, in words: "0 s", "42 s", "3 min", "5 h", "12 days" (the
/// template filter `duration`; a negative one reads as 0 s).
pub fn duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// The template filter `when`: an RFC 3339 time as `<time>` (UTC, the script makes it the
/// viewer's) followed by how long ago it was against the page's `now_ms`. Anything that is not
/// an RFC 3339 time is shown as it is, escaped.
pub fn when(state: &State, at: String) -> Value {
    let format = time::format_description::well_known::Rfc3339;
    let Ok(parsed) = time::OffsetDateTime::parse(&at, &format) else {
        return Value::from(at);
    };
    let at_ms = i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let now = state
        .lookup("now_ms")
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or(at_ms);
    let utc = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let shown = parsed
        .to_offset(time::UtcOffset::UTC)
        .format(&utc)
        .unwrap_or_default();
    // `at` parsed as RFC 3339, so it holds no character HTML would read.
    Value::from_safe_string(format!(
        "<time datetime=\"{at}\" class=\"time\">{shown} UTC</time> <span class=\"muted\">({})</span>",
        relative(at_ms, now)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_as_words() {
        let now = 1_000_000_000_000;
        assert_eq!(relative(now - 2_000, now), "just now");
        assert_eq!(relative(now - 42_000, now), "42 s ago");
        assert_eq!(relative(now - 3 * 60_000 - 10_000, now), "3 min ago");
        assert_eq!(relative(now - 5 * 3_600_000, now), "5 h ago");
        assert_eq!(relative(now - 12 * 86_400_000, now), "12 days ago");
        assert_eq!(relative(now + 3 * 86_400_000, now), "in 3 days");
        assert_eq!(relative(i64::MIN, i64::MAX), "106751991167 days ago");
        assert_eq!(duration(-5), "0 s");
        assert_eq!(duration(90_000), "1 min");
    }

    #[test]
    fn the_script_hash_is_a_csp_source() {
        assert!(LOCAL_TIMES_HASH.starts_with("'sha256-") && LOCAL_TIMES_HASH.ends_with("='"));
    }
}
