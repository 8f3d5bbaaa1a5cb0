//! The frame every page shares (navigation, styles, the session's name), the error and login
//! pages, and how times, ages and states are written.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Bytes;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::auth::Viewer;
use crate::domain::Timestamp;

/// Styles, inline so the console needs nothing but this server.
const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#cfd8e3;text-decoration:none}header a.on{color:#fff;font-weight:600}
header .who{margin-left:auto;color:#9fb0c3}header form{display:inline}
main{padding:1em 1.4em;max-width:1200px}
h1{font-size:1.35em;margin:.3em 0 .7em}h2{font-size:1.1em;margin:1.4em 0 .5em}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:1em}
th,td{border-bottom:1px solid #e3e7ec;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b3261e;font-weight:600}.warn{color:#8a5a00}.ok{color:#1b6e3a}.muted{color:#6b7785}
.empty{background:#fff;border:1px dashed #c5ccd6;padding:1em;color:#52606d}
form.filters{display:flex;flex-wrap:wrap;gap:.6em;align-items:end;margin-bottom:1em}
form.filters label{display:flex;flex-direction:column;font-size:.85em;color:#52606d}
input,select,button{font:inherit;padding:.25em .4em}
button{cursor:pointer;border:1px solid #8895a7;background:#fff;border-radius:3px}
button.act{background:#1d4ed8;color:#fff;border-color:#1d4ed8}
button.danger{background:#b3261e;color:#fff;border-color:#b3261e}
.note{background:#e8f0fe;border-left:4px solid #1d4ed8;padding:.5em .8em;margin-bottom:1em}
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{background:#fff;padding:.5em;border:1px solid #e3e7ec}
pre{background:#fff;border:1px solid #e3e7ec;padding:.6em;overflow:auto;max-height:30em}
ol.timeline{list-style:none;padding:0}ol.timeline li{background:#fff;border-left:4px solid #8895a7;
margin:.3em 0;padding:.35em .7em}ol.timeline li.t-bad{border-color:#b3261e}ol.timeline li.t-ok{border-color:#1b6e3a}
ol.timeline li.t-warn{border-color:#d99a00}
";

/// The pages in the navigation, by path.
const NAV: [(&str, &str); 5] = [
    ("/", "Overview"),
    ("/messages", "Messages"),
    ("/unresolved", "Unresolved"),
    ("/dead-letters", "Dead letters"),
    ("/subscriptions", "Subscriptions"),
];

/// A whole page: the frame around `body`. `refresh` reloads it every so many seconds.
pub fn page(
    title: &str,
    current: &str,
    viewer: &Viewer,
    csrf: &str,
    refresh: Option<u32>,
    body: Markup,
) -> Response<Full<Bytes>> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if let Some(seconds) = refresh { meta http-equiv="refresh" content=(seconds); }
                title { (title) " · Courier" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "Courier" }
                    @for (path, label) in NAV {
                        a href=(path) class=[(path == current).then_some("on")] { (label) }
                    }
                    span.who {
                        (viewer.name())
                        @if !viewer.can_act() { " (read only)" }
                    }
                    form method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Log out" }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

pub fn error_page(status: StatusCode, title: &str, text: &str) -> Response<Full<Bytes>> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (title) " · Courier" } style { (PreEscaped(STYLE)) } }
            body {
                header { strong { "Courier" } a href="/" { "Overview" } }
                main {
                    h1 { (title) }
                    p { (text) }
                    p.muted { "HTTP " (status.as_u16()) ". Use your browser's Back button, or " a href="/" { "go to the overview" } "." }
                }
            }
        }
    };
    html_response(status, markup)
}

pub fn login_page(problem: Option<&str>) -> Response<Full<Bytes>> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Log in · Courier" } style { (PreEscaped(STYLE)) } }
            body {
                header { strong { "Courier" } }
                main {
                    h1 { "Log in to the console" }
                    @if let Some(problem) = problem { p.bad { (problem) } }
                    p { "Paste a token from the server's tokens file, or a JWT, with scope "
                        code { "read" } " (to look) or " code { "admin" } " (to act)." }
                    form method="post" action="/login" {
                        input type="password" name="token" size="60" autofocus required;
                        " " button.act type="submit" { "Log in" }
                    }
                }
            }
        }
    };
    html_response(
        match problem {
            Some(_) => StatusCode::UNAUTHORIZED,
            None => StatusCode::OK,
        },
        markup,
    )
}

fn html_response(status: StatusCode, markup: Markup) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(markup.into_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        "text/html; charset=utf-8".parse().expect("a valid header"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        "no-store".parse().expect("a valid header"),
    );
    headers.insert(
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'"
            .parse()
            .expect("a valid header"),
    );
    headers.insert("x-frame-options", "DENY".parse().expect("a valid header"));
    response
}

/// A time as UTC with its age: `2026-01-31 08:00:00 UTC (3m ago)`.
pub fn when(at: Timestamp, now: Timestamp) -> Markup {
    html! {
        span title=(at.as_millis()) { (utc(at)) " " span.muted { "(" (age(at, now)) ")" } }
    }
}

/// `2026-01-31 08:00:00 UTC`.
pub fn utc(at: Timestamp) -> String {
    let millis = u64::try_from(at.as_millis()).unwrap_or(0);
    let time = UNIX_EPOCH + Duration::from_millis(millis);
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

/// How long ago (or from now) `at` is: `3m ago`, `in 12s`.
pub fn age(at: Timestamp, now: Timestamp) -> String {
    let (span, future) = match at.as_millis() > now.as_millis() {
        true => (at.since(now), true),
        false => (now.since(at), false),
    };
    let text = short_duration(span);
    match future {
        true => format!("in {text}"),
        false => format!("{text} ago"),
    }
}

/// A duration in its largest unit or two: `45s`, `3m 20s`, `2h 5m`, `3d 4h`.
pub fn short_duration(span: Duration) -> String {
    let seconds = span.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        3600..86400 => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d {}h", seconds / 86400, seconds % 86400 / 3600),
    }
}

/// The time a `datetime-local` style form field means (UTC): `2026-01-31T08:00` or with
/// seconds, or a full RFC 3339 time.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    let full = match text.len() {
        16 => format!("{text}:00Z"),
        19 => format!("{text}Z"),
        _ => text.to_owned(),
    };
    let time = humantime::parse_rfc3339_weak(&full).ok()?;
    let millis = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_millis();
    Some(Timestamp::from_millis(i64::try_from(millis).ok()?))
}

/// The hidden field every POST form carries.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A message that nothing matched, with what to do.
pub fn empty(text: &str) -> Markup {
    html! { p.empty { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_with_an_age() {
        let at = Timestamp::from_millis(1_769_846_400_000);
        assert_eq!(utc(at), "2026-01-31 08:00:00 UTC");
        assert_eq!(
            age(at, Timestamp::from_millis(1_769_846_600_000)),
            "3m 20s ago"
        );
        assert_eq!(age(Timestamp::from_millis(1_769_846_412_000), at), "in 12s");
    }

    #[test]
    fn form_times_are_utc() {
        assert_eq!(
            parse_time("2026-01-31T08:00"),
            Some(Timestamp::from_millis(1_769_846_400_000))
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
