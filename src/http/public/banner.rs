//! The login-page banner (`GET /public/banner.json`, `banner.html`, `banner.js`) and the
//! status summary (`GET /public/status.json`). The banner is the newest notice published
//! on a channel with transport `banner` whose incident has not had its resolution
//! published since ([`crate::storage::Storage::current_banner`]).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;

use super::{cacheable, escape_markup, storage_unavailable};
use crate::config::ChannelTransport;
use crate::http::{ApiError, AppState};
use crate::notice::NoticeKind;

/// How many of the newest banner notices are searched for the incident's first one.
const BANNER_HISTORY: i64 = 10;

const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The script behind `GET /public/banner.js`. One `<script src=".../public/banner.js">`
/// on the login page shows the banner: it reads `banner.json` from the origin the script
/// came from, puts the text at the top of the page with `textContent` (never as HTML),
/// hides it when no banner is active, and looks again every 60 seconds. No dependencies.
const BANNER_SCRIPT: &str = r##"/* samsa-relay: the SAMSA login-page banner. Embed with one tag:
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
struct BannerJson {
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
struct StatusJson {
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

pub(super) async fn banner_json(State(state): State<AppState>, request: HeaderMap) -> Response {
    match current_banner(&state).await {
        Ok(banner) => {
            let body = serde_json::to_vec(&banner).expect("the banner serializes");
            cacheable(&state, &request, JSON, body)
        }
        Err(error) => error.into_response(),
    }
}

pub(super) async fn banner_html(State(state): State<AppState>, request: HeaderMap) -> Response {
    match current_banner(&state).await {
        Ok(banner) => {
            let body = match banner.text {
                Some(text) => format!(
                    "<div class=\"samsa-relay-banner\" role=\"alert\" lang=\"sv\">{}</div>\n",
                    escape_markup(&text)
                ),
                None => String::new(),
            };
            let mut response = cacheable(&state, &request, HTML, body.into_bytes());
            if let Ok(policy) = HeaderValue::from_str(&banner_html_policy(&state)) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_SECURITY_POLICY, policy);
            }
            response
        }
        Err(error) => error.into_response(),
    }
}

/// The `Content-Security-Policy` of `banner.html`: nothing to load or run, and framed
/// only by the login pages of `allowed_origins` (every banner channel's), or, with none
/// configured, by pages of the relay's own origin (`'self'`: a login page behind the same
/// proxy). A login page on another origin that frames the fragment must be listed there,
/// as it must for the script's CORS read.
fn banner_html_policy(state: &AppState) -> String {
    let mut ancestors: Vec<String> = state
        .config
        .channels
        .values()
        .filter_map(|channel| match &channel.transport {
            ChannelTransport::Banner {
                allowed_origins, ..
            } => Some(allowed_origins),
            _ => None,
        })
        .flatten()
        // Written as the origin the URL parser sees, so the header holds no more than
        // scheme, host and port whatever the config's text.
        .filter_map(|origin| url::Url::parse(origin).ok())
        .map(|origin| origin.origin().ascii_serialization())
        .filter(|origin| origin != "null")
        .collect();
    ancestors.sort();
    ancestors.dedup();
    let frame_ancestors = if ancestors.is_empty() {
        "'self'".to_owned()
    } else {
        ancestors.join(" ")
    };
    format!(
        "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors {frame_ancestors}"
    )
}

pub(super) async fn banner_js(State(state): State<AppState>, request: HeaderMap) -> Response {
    cacheable(
        &state,
        &request,
        JAVASCRIPT,
        BANNER_SCRIPT.as_bytes().to_vec(),
    )
}

pub(super) async fn status_json(State(state): State<AppState>, request: HeaderMap) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

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
