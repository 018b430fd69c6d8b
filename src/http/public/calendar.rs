//! The iCalendar feed of planned maintenance (`GET /public/maintenance.ics`, RFC 5545):
//! one `VEVENT` per announced, running, overrun, completed or cancelled window that ended
//! in the last 30 days or lies ahead, written by hand (one fixed shape). Each event keeps
//! its `UID` (`maintenance-{id}@{public host}`) for good and carries the window's
//! `SEQUENCE`, raised by every change people were told of, so that a calendar that
//! subscribed updates the event in place when a window is moved or called off.
//!
//! Text values are escaped (`\\`, `\;`, `\,`, `\n`), control characters dropped, and
//! every line folded at 75 octets without splitting a UTF-8 character; lines end in CRLF.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use super::cacheable;
use super::maintenance::{FINISHED_KEPT, public_windows, scope_words, window_path};
use crate::config::Config;
use crate::http::AppState;
use crate::maintenance::{Window, WindowState};

const CALENDAR: &str = "text/calendar; charset=utf-8";

/// Longest line in octets, without its CRLF (RFC 5545 3.1).
const MAX_LINE_OCTETS: usize = 75;

pub(super) async fn calendar_ics(State(state): State<AppState>, request: HeaderMap) -> Response {
    let now = Timestamp::now();
    let since = now - FINISHED_KEPT;
    let windows = match public_windows(&state, since).await {
        Ok(windows) => windows,
        Err(error) => return error.into_response(),
    };
    let windows: Vec<&Window> = windows
        .iter()
        .filter(|window| !window.state.is_final() || window.plan.ends_at >= since)
        .collect();
    let body = calendar(&state.config, &windows);
    cacheable(&state, &request, CALENDAR, body.into_bytes())
}

/// The whole calendar. Its bytes depend only on the windows, so the ETag is stable.
fn calendar(config: &Config, windows: &[&Window]) -> String {
    let service = &config.notices.service_name;
    let mut lines: Vec<String> = vec![
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        format!("PRODID:-//{} förvaltning//samsa-relay//SV", text(service)),
        "CALSCALE:GREGORIAN".to_owned(),
        "METHOD:PUBLISH".to_owned(),
        format!("X-WR-CALNAME:Planerat underhåll i {}", text(service)),
        "X-WR-TIMEZONE:Europe/Stockholm".to_owned(),
    ];
    let host = public_host(config);
    for window in windows {
        lines.extend(event(config, &host, window));
    }
    lines.push("END:VCALENDAR".to_owned());
    let mut body = String::new();
    for line in &lines {
        fold_into(&mut body, line);
    }
    body
}

/// One window's `VEVENT`, unfolded.
fn event(config: &Config, host: &str, window: &Window) -> Vec<String> {
    let service = &config.notices.service_name;
    let url = config.public_link(&window_path(window.incident_id));
    let mut description = vec![
        format!("Berör: {}.", scope_words(&window.plan.scope, config)),
        format!("Påverkan: {}", window.plan.impact),
        format!("Gör så här: {}", window.plan.advice),
        format!("Mer information: {url}"),
    ];
    if window.state == WindowState::Cancelled {
        description.insert(0, "Underhållet är inställt.".to_owned());
    }
    let status = if window.state == WindowState::Cancelled {
        "CANCELLED"
    } else {
        "CONFIRMED"
    };
    vec![
        "BEGIN:VEVENT".to_owned(),
        format!("UID:maintenance-{}@{}", window.incident_id, host),
        format!("SEQUENCE:{}", window.sequence.max(0)),
        format!("DTSTAMP:{}", utc(window.updated_at)),
        format!("LAST-MODIFIED:{}", utc(window.updated_at)),
        format!("DTSTART:{}", utc(window.plan.starts_at)),
        format!("DTEND:{}", utc(window.plan.ends_at)),
        format!(
            "SUMMARY:{}",
            text(&format!(
                "Planerat underhåll i {service}: {}",
                window.plan.title
            ))
        ),
        format!("DESCRIPTION:{}", text(&description.join("\n\n"))),
        format!("URL:{url}"),
        format!("STATUS:{status}"),
        "TRANSP:OPAQUE".to_owned(),
        "END:VEVENT".to_owned(),
    ]
}

/// The host of `server.public_url`, for the events' `UID`s.
fn public_host(config: &Config) -> String {
    config
        .server
        .public_url
        .host_str()
        .unwrap_or("samsa-relay.invalid")
        .to_owned()
}

/// A UTC date-time (`20261128T220000Z`), to the second.
fn utc(timestamp: Timestamp) -> String {
    timestamp.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// A TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and line breaks escaped;
/// other control characters dropped.
fn text(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let mut characters = value.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            ';' => escaped.push_str("\\;"),
            ',' => escaped.push_str("\\,"),
            '\r' => {
                if characters.peek() != Some(&'\n') {
                    escaped.push_str("\\n");
                }
            }
            '\n' => escaped.push_str("\\n"),
            '\t' => escaped.push(' '),
            character if character.is_control() => {}
            character => escaped.push(character),
        }
    }
    escaped
}

/// Appends `line` folded at [`MAX_LINE_OCTETS`] (continuations start with a space, which
/// counts), never inside a UTF-8 character, each part ending in CRLF.
fn fold_into(out: &mut String, line: &str) {
    let mut limit = MAX_LINE_OCTETS;
    let mut used = 0;
    for character in line.chars() {
        let octets = character.len_utf8();
        if used + octets > limit {
            out.push_str("\r\n ");
            // The leading space is one of the next line's octets.
            used = 1;
            limit = MAX_LINE_OCTETS;
        }
        out.push(character);
        used += octets;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(text("a\\b;c,d\ne\r\nf\u{7}"), "a\\\\b\\;c\\,d\\ne\\nf");
    }

    #[test]
    fn lines_fold_at_75_octets_without_splitting_a_character() {
        let line = format!("SUMMARY:{}", "åäö€".repeat(40));
        let mut out = String::new();
        fold_into(&mut out, &line);
        assert!(out.ends_with("\r\n"));
        let physical: Vec<&str> = out.trim_end_matches("\r\n").split("\r\n").collect();
        assert!(physical.len() > 1);
        for (index, part) in physical.iter().enumerate() {
            assert!(part.len() <= MAX_LINE_OCTETS, "{part:?}");
            assert_eq!(index > 0, part.starts_with(' '));
        }
        let unfolded: String = physical
            .iter()
            .enumerate()
            .map(|(index, part)| if index == 0 { *part } else { &part[1..] })
            .collect();
        assert_eq!(unfolded, line);
    }

    #[test]
    fn a_short_line_is_not_folded() {
        let mut out = String::new();
        fold_into(&mut out, "VERSION:2.0");
        assert_eq!(out, "VERSION:2.0\r\n");
    }
}
