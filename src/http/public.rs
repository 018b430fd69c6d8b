//! The public, read-only endpoints under `/public/`: the login-page banner (as JSON, as an
//! HTML fragment, and as a script that one `<script>` tag embeds), a status summary, and
//! the Atom feed of notices. No authentication: everything here is already public.
//!
//! - The banner is the newest notice published on a channel with transport `banner` whose
//!   incident has not had its resolution published since
//!   ([`crate::storage::Storage::current_banner`]).
//! - The feed holds the newest 50 notices published on a channel with transport `feed`.
//! - Every answer has a strong `ETag` over its bytes (`If-None-Match` answers 304),
//!   `Cache-Control: public, max-age=30`, and `Vary: Origin`. A browser on another origin
//!   may read them when its `Origin` is in a banner channel's `allowed_origins`; the
//!   origin is then echoed in `Access-Control-Allow-Origin`. `OPTIONS` answers preflights.
//! - Untrusted text (alert labels, operator text) is escaped for each format here: JSON by
//!   serde, HTML and XML by [`escape_markup`]; the script only ever sets `textContent`.
//!
//! Not built yet: a per-client rate limit. Until it is, put these paths behind a proxy
//! that limits them, since every request reads the database.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{ApiError, AppState};
use crate::config::{ChannelConfig, ChannelContent, ChannelTransport};
use crate::delivery::webhook::channel_text;
use crate::notice::NoticeKind;
use crate::storage::PublishedNoticeRecord;

/// The most entries the feed holds.
pub const FEED_ENTRIES: i64 = 50;
/// How many of the newest banner notices are searched for the incident's first one.
const BANNER_HISTORY: i64 = 10;

const CACHE_CONTROL: &str = "public, max-age=30";
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const ATOM: &str = "application/atom+xml; charset=utf-8";

/// The script behind `GET /public/banner.js`. One `<script src=".../public/banner.js">`
/// on the login page shows the banner: it reads `banner.json` from the origin the script
/// came from, puts the text at the top of the page with `textContent` (never as HTML),
/// hides it when no banner is active, and looks again every 60 seconds. No dependencies.
pub const BANNER_SCRIPT: &str = r##"/* samsa-relay: the SAMSA login-page banner. Embed with one tag:
   <script src="https://RELAY/public/banner.js" async></script> */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src || !window.fetch || !window.URL || window.samsaRelayBanner) {
    return;
  }
  window.samsaRelayBanner = true;
  var source = new URL("banner.json", script.src).href;
  var REFRESH_MILLISECONDS = 60000;
  var banner = null;

  function createBanner() {
    var element = document.createElement("div");
    element.className = "samsa-relay-banner";
    element.setAttribute("role", "alert");
    element.setAttribute("lang", "sv");
    var style = element.style;
    style.display = "none";
    style.boxSizing = "border-box";
    style.width = "100%";
    style.margin = "0";
    style.padding = "0.75em 1em";
    style.background = "#fff4ce";
    style.color = "#1f1f1f";
    style.borderBottom = "4px solid #b35900";
    style.fontFamily = "inherit";
    style.fontSize = "1rem";
    style.lineHeight = "1.5";
    style.fontWeight = "600";
    style.textAlign = "left";
    style.whiteSpace = "pre-line";
    style.position = "relative";
    style.zIndex = "2147483647";
    document.body.insertBefore(element, document.body.firstChild);
    return element;
  }

  function show(text) {
    if (!banner) {
      banner = createBanner();
    }
    if (banner.textContent !== text) {
      banner.textContent = text;
    }
    banner.style.display = "block";
    banner.hidden = false;
  }

  function hide() {
    if (banner) {
      banner.style.display = "none";
      banner.hidden = true;
      banner.textContent = "";
    }
  }

  function refresh() {
    window.fetch(source, { credentials: "omit", cache: "no-cache", mode: "cors" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("banner.json answered " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        if (data && data.active === true && typeof data.text === "string" && data.text) {
          show(data.text);
        } else {
          hide();
        }
      })
      .catch(function () {
        /* Keep what is shown; the next refresh tries again. */
      });
  }

  function start() {
    refresh();
    window.setInterval(refresh, REFRESH_MILLISECONDS);
  }

  if (document.body) {
    start();
  } else {
    document.addEventListener("DOMContentLoaded", start);
  }
})();
"##;

/// `GET /public/banner.json`.
#[derive(Debug, Serialize)]
pub struct BannerJson {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<i64>,
    /// `initial` or `update`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// When the incident's first banner was published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_at: Option<Timestamp>,
    /// When the text shown was published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

/// `GET /public/status.json`.
#[derive(Debug, Serialize)]
pub struct StatusJson {
    /// `disruption` while a banner is shown, otherwise `ok`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    /// When the disruption was first announced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

pub async fn banner_json(State(state): State<AppState>, request: HeaderMap) -> Response {
    match current_banner(&state).await {
        Ok(banner) => {
            let body = serde_json::to_vec(&banner).expect("the banner serializes");
            cacheable(&state, &request, JSON, body)
        }
        Err(error) => error.into_response(),
    }
}

pub async fn banner_html(State(state): State<AppState>, request: HeaderMap) -> Response {
    match current_banner(&state).await {
        Ok(banner) => {
            let body = match banner.text {
                Some(text) => format!(
                    "<div class=\"samsa-relay-banner\" role=\"alert\" lang=\"sv\">{}</div>\n",
                    escape_markup(&text)
                ),
                None => String::new(),
            };
            cacheable(&state, &request, HTML, body.into_bytes())
        }
        Err(error) => error.into_response(),
    }
}

pub async fn banner_js(State(state): State<AppState>, request: HeaderMap) -> Response {
    cacheable(
        &state,
        &request,
        JAVASCRIPT,
        BANNER_SCRIPT.as_bytes().to_vec(),
    )
}

pub async fn status_json(State(state): State<AppState>, request: HeaderMap) -> Response {
    match current_banner(&state).await {
        Ok(banner) => {
            let status = StatusJson {
                status: if banner.active { "disruption" } else { "ok" },
                incident_id: banner.incident_id,
                level: banner.level,
                since: banner.published_at,
                text: banner.text,
            };
            let body = serde_json::to_vec(&status).expect("the status serializes");
            cacheable(&state, &request, JSON, body)
        }
        Err(error) => error.into_response(),
    }
}

pub async fn feed_atom(State(state): State<AppState>, request: HeaderMap) -> Response {
    let feed_channels: Vec<&ChannelConfig> = state
        .config
        .channels
        .values()
        .filter(|channel| matches!(channel.transport, ChannelTransport::Feed))
        .collect();
    let names: Vec<String> = feed_channels
        .iter()
        .map(|channel| channel.name.clone())
        .collect();
    let notices = match state
        .storage
        .published_notices(Some(&names), FEED_ENTRIES)
        .await
    {
        Ok(notices) => notices,
        Err(error) => return storage_unavailable(&state, error).into_response(),
    };
    let public_url = state
        .config
        .server
        .public_url
        .as_str()
        .trim_end_matches('/');
    let feed = atom_feed(&AtomContext {
        public_url,
        service_name: &state.config.notices.service_name,
        info_address: &state.config.notices.info_address,
        feed_channels: &feed_channels,
        notices: &notices,
    });
    cacheable(&state, &request, ATOM, feed.into_bytes())
}

/// `OPTIONS /public/*`: a CORS preflight. An allowed origin gets the CORS headers; any
/// other gets none, so its browser refuses the request.
pub async fn preflight(State(state): State<AppState>, request: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    headers.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    if let Some(origin) = allowed_origin(&state, &request) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("If-None-Match, Cache-Control"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    response
}

/// The banner as it is now.
async fn current_banner(state: &AppState) -> Result<BannerJson, ApiError> {
    let banner_channels: Vec<String> = state
        .config
        .channels
        .values()
        .filter(|channel| matches!(channel.transport, ChannelTransport::Banner { .. }))
        .map(|channel| channel.name.clone())
        .collect();
    let Some(notice) = state
        .storage
        .current_banner(&banner_channels)
        .await
        .map_err(|error| storage_unavailable(state, error))?
    else {
        return Ok(BannerJson {
            active: false,
            incident_id: None,
            kind: None,
            level: None,
            text: None,
            published_at: None,
            updated_at: None,
        });
    };
    // The incident's first banner: the notice itself when it is the first notice, else
    // searched among the newest few (an incident rarely has more notices than that; an
    // older one would only move `published_at`).
    let first_published_at = if notice.kind == NoticeKind::Initial {
        notice.published_at
    } else {
        state
            .storage
            .published_notices(Some(&banner_channels), BANNER_HISTORY)
            .await
            .map_err(|error| storage_unavailable(state, error))?
            .iter()
            .filter(|earlier| earlier.incident_id == notice.incident_id)
            .map(|earlier| earlier.published_at)
            .min()
            .unwrap_or(notice.published_at)
            .min(notice.published_at)
    };
    Ok(BannerJson {
        active: true,
        incident_id: Some(notice.incident_id),
        kind: Some(notice.kind.as_str()),
        level: Some(notice.level.as_number()),
        text: Some(notice.rendered.banner_text.clone()),
        published_at: Some(first_published_at),
        updated_at: Some(notice.published_at),
    })
}

fn storage_unavailable(state: &AppState, error: crate::storage::StorageError) -> ApiError {
    state
        .metrics
        .storage_errors
        .with_label_values(&[error.operation])
        .inc();
    tracing::warn!(error = ?anyhow::Error::from(error), "a public endpoint cannot read storage");
    ApiError::Unavailable
}

/// A 200 with the body, or a 304 when the client has it already; with the caching and
/// CORS headers either way.
fn cacheable(state: &AppState, request: &HeaderMap, content_type: &str, body: Vec<u8>) -> Response {
    let etag = strong_etag(&body);
    let not_modified = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| etag_matches(value, &etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("a static content type"),
        );
        response
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(origin) = allowed_origin(state, request) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}

/// The request's `Origin`, when a banner channel allows it.
fn allowed_origin(state: &AppState, request: &HeaderMap) -> Option<HeaderValue> {
    let origin = request.get(header::ORIGIN)?;
    let origin_text = origin.to_str().ok()?;
    let allowed = state.config.channels.values().any(|channel| {
        matches!(
            &channel.transport,
            ChannelTransport::Banner { allowed_origins, .. }
                if allowed_origins.iter().any(|allowed| allowed == origin_text)
        )
    });
    allowed.then(|| origin.clone())
}

/// `"` + the first 128 bits of the body's SHA-256, in hex + `"`.
pub fn strong_etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", &crate::alertmanager::hex(&digest)[..32])
}

/// `If-None-Match` uses the weak comparison: `W/"x"` matches `"x"`.
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// Escapes text for HTML and XML content and attribute values, and drops the characters
/// XML 1.0 does not allow (control characters but tab and newlines, U+FFFE, U+FFFF).
pub fn escape_markup(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            '\t' | '\n' | '\r' => escaped.push(character),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {}
            _ => escaped.push(character),
        }
    }
    escaped
}

struct AtomContext<'a> {
    public_url: &'a str,
    service_name: &'a str,
    info_address: &'a str,
    feed_channels: &'a [&'a ChannelConfig],
    /// Newest first.
    notices: &'a [PublishedNoticeRecord],
}

/// The Atom 1.0 feed (RFC 4287), written by hand: one fixed shape, every value through
/// [`escape_markup`]. Its bytes depend only on the notices, so the ETag is stable.
fn atom_feed(context: &AtomContext<'_>) -> String {
    use std::fmt::Write as _;
    let self_url = format!("{}/public/feed.atom", context.public_url);
    let updated = context
        .notices
        .iter()
        .map(|notice| notice.published_at)
        .max()
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let host = url::Url::parse(context.public_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_else(|| "samsa-relay.invalid".to_owned());
    let mut xml = String::new();
    xml.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    xml.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"sv\">\n");
    let _ = writeln!(xml, "  <id>{}</id>", escape_markup(&self_url));
    let _ = writeln!(
        xml,
        "  <title type=\"text\">Driftinformation {}</title>",
        escape_markup(context.service_name)
    );
    let _ = writeln!(
        xml,
        "  <subtitle type=\"text\">Driftstörningar i {} och när de är åtgärdade</subtitle>",
        escape_markup(context.service_name)
    );
    let _ = writeln!(xml, "  <updated>{}</updated>", atom_time(updated));
    let _ = writeln!(
        xml,
        "  <link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>",
        escape_markup(&self_url)
    );
    let _ = writeln!(
        xml,
        "  <author><name>{} förvaltning</name><email>{}</email></author>",
        escape_markup(context.service_name),
        escape_markup(context.info_address)
    );
    for notice in context.notices {
        let content = feed_content(notice, context.feed_channels);
        let (title, body) = channel_text(&notice.rendered, content);
        let feedback_url = format!(
            "{}/public/feedback/{}",
            context.public_url, notice.incident_id
        );
        // A tag URI (RFC 4151): the relay's host, the day of publication and the notice
        // id never change for a notice.
        let entry_id = format!(
            "tag:{},{}:samsa-relay/notice/{}",
            host,
            notice.published_at.strftime("%Y-%m-%d"),
            notice.notice_id
        );
        let published = atom_time(notice.published_at);
        xml.push_str("  <entry>\n");
        let _ = writeln!(xml, "    <id>{}</id>", escape_markup(&entry_id));
        let _ = writeln!(
            xml,
            "    <title type=\"text\">{}</title>",
            escape_markup(title)
        );
        let _ = writeln!(xml, "    <updated>{published}</updated>");
        let _ = writeln!(xml, "    <published>{published}</published>");
        let _ = writeln!(
            xml,
            "    <link rel=\"alternate\" type=\"text/html\" title=\"Lämna återkoppling\" href=\"{}\"/>",
            escape_markup(&feedback_url)
        );
        let _ = writeln!(
            xml,
            "    <category term=\"{}\" label=\"{}\"/>",
            notice.kind.as_str(),
            escape_markup(crate::notice::kind_label(notice.kind))
        );
        let _ = writeln!(
            xml,
            "    <summary type=\"text\">{}</summary>",
            escape_markup(&notice.rendered.banner_text)
        );
        let _ = writeln!(
            xml,
            "    <content type=\"text\">{}</content>",
            escape_markup(body)
        );
        xml.push_str("  </entry>\n");
    }
    xml.push_str("</feed>\n");
    xml
}

/// Which text of a notice its feed entry carries: that of the feed channels it was
/// published on, preferring the website's news over the newsletter's and IT-Nytt's.
fn feed_content(
    notice: &PublishedNoticeRecord,
    feed_channels: &[&ChannelConfig],
) -> ChannelContent {
    const PREFERENCE: [ChannelContent; 6] = [
        ChannelContent::Website,
        ChannelContent::Newsletter,
        ChannelContent::Itnytt,
        ChannelContent::Email,
        ChannelContent::Banner,
        ChannelContent::Crisis,
    ];
    let published_on: Vec<ChannelContent> = feed_channels
        .iter()
        .filter(|channel| notice.channels.contains(&channel.name))
        .map(|channel| channel.content)
        .collect();
    PREFERENCE
        .into_iter()
        .find(|content| published_on.contains(content))
        .unwrap_or(ChannelContent::Website)
}

/// RFC 3339 in UTC, to the second (Atom's date construct).
fn atom_time(timestamp: Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_and_invalid_xml_characters_dropped() {
        assert_eq!(
            escape_markup("<script>alert('x')</script> & \"y\"\u{1}\u{ffff}\n"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;\n"
        );
        assert_eq!(escape_markup("Störning i Göteborg"), "Störning i Göteborg");
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists() {
        let etag = strong_etag(b"banner");
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34);
        assert!(etag_matches(&etag, &etag));
        assert!(etag_matches(&format!("W/{etag}"), &etag));
        assert!(etag_matches(&format!("\"other\", {etag}"), &etag));
        assert!(etag_matches("*", &etag));
        assert!(!etag_matches("\"other\"", &etag));
        assert_ne!(strong_etag(b"banner"), strong_etag(b"banner2"));
    }

    #[test]
    fn the_script_never_parses_html() {
        assert!(BANNER_SCRIPT.contains("textContent"));
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!BANNER_SCRIPT.contains(forbidden), "{forbidden}");
        }
    }
}
