//! The login-page banner (`GET /public/banner.json`, `banner.html`, `banner.js`) and the
//! status summary (`GET /public/status.json`). The banner is the newest notice published
//! on a channel with transport `banner` whose incident has not had its resolution
//! published since ([`crate::storage::Storage::current_banner`], which leaves maintenance
//! windows out); when there is none, a planned maintenance window within its banner
//! phase, or a window's final notice for `banner.all_clear_for`
//! ([`super::maintenance::maintenance_banner`]), in a calm informational style.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;

use super::maintenance::{MaintenanceBanner, Shown, StatusWindow, maintenance_banner};
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
   <script src="https://RELAY/public/banner.js" async></script>
   On a test login page, add ?ovning=1 to the script's URL to see drills too. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src || !window.fetch || !window.URL || window.samsaRelayBanner) {
    return;
  }
  window.samsaRelayBanner = true;
  var scriptUrl = new URL(script.src);
  var source = new URL("banner.json", scriptUrl);
  if (scriptUrl.searchParams.get("ovning") === "1") {
    source.searchParams.set("ovning", "1");
  }
  var REFRESH_MILLISECONDS = 60000;
  var banner = null;
  var shown = "";

  function createBanner() {
    var element = document.createElement("div");
    element.className = "samsa-relay-banner";
    element.setAttribute("lang", "sv");
    var style = element.style;
    style.display = "none";
    style.boxSizing = "border-box";
    style.width = "100%";
    style.margin = "0";
    style.padding = "0.75em 1em";
    style.color = "#1f1f1f";
    style.fontFamily = "inherit";
    style.fontSize = "1rem";
    style.lineHeight = "1.5";
    style.textAlign = "left";
    style.overflowWrap = "break-word";
    style.position = "relative";
    style.zIndex = "2147483647";
    document.body.insertBefore(element, document.body.firstChild);
    return element;
  }

  function paragraph(text, strong) {
    var element = document.createElement("p");
    element.style.margin = "0.25em 0";
    element.style.whiteSpace = "pre-line";
    if (strong) {
      element.style.fontWeight = "700";
    }
    element.textContent = text;
    return element;
  }

  /* Only a web link (the relay's feedback page), never a script URL. */
  function webLink(href) {
    try {
      var protocol = new URL(href).protocol;
      return protocol === "https:" || protocol === "http:";
    } catch (error) {
      return false;
    }
  }

  function show(data) {
    var signature = JSON.stringify([data.text, data.lines, data.feedback_url, data.kind, data.phase, data.drill]);
    if (!banner) {
      banner = createBanner();
    }
    if (signature !== shown) {
      shown = signature;
      var maintenance = data.kind === "maintenance";
      var calm = data.kind === "resolved" || maintenance || data.drill === true;
      /* A drill, planned maintenance or an all-clear is news, not an alarm: announced
         politely; maintenance in an informational blue, not the disruption's yellow. */
      banner.setAttribute("role", calm ? "status" : "alert");
      banner.style.background = data.kind === "resolved" ? "#e7f3e8" : (maintenance ? "#e8f1fb" : "#fff4ce");
      banner.style.borderBottom = data.kind === "resolved" ? "4px solid #1e6b25" : (maintenance ? "4px solid #0b5cad" : "4px solid #b35900");
      while (banner.firstChild) {
        banner.removeChild(banner.firstChild);
      }
      banner.appendChild(paragraph(data.text, true));
      if (Array.isArray(data.lines)) {
        data.lines.forEach(function (line) {
          if (typeof line === "string" && line) {
            banner.appendChild(paragraph(line, false));
          }
        });
      }
      if (typeof data.feedback_url === "string" && webLink(data.feedback_url)) {
        var link = document.createElement("a");
        link.href = data.feedback_url;
        link.textContent = typeof data.feedback_text === "string" ? data.feedback_text : "Lämna synpunkter";
        link.style.color = "#00507a";
        link.style.textDecoration = "underline";
        var holder = paragraph("", false);
        holder.appendChild(link);
        banner.appendChild(holder);
      }
    }
    banner.style.display = "block";
    banner.hidden = false;
  }

  function hide() {
    if (banner) {
      banner.style.display = "none";
      banner.hidden = true;
      while (banner.firstChild) {
        banner.removeChild(banner.firstChild);
      }
      shown = "";
    }
  }

  function refresh() {
    window.fetch(source.href, { credentials: "omit", cache: "no-cache", mode: "cors" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("banner.json answered " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        if (data && data.active === true && typeof data.text === "string" && data.text) {
          show(data);
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
    /// `initial`, `update`, `resolved` (the all-clear, for `banner.all_clear_for`), or
    /// `maintenance` (a planned window; `incident_id` is the window's id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// A maintenance window's: `upcoming` or `running` (kind `maintenance`), `completed`
    /// or `cancelled` (kind `resolved`, its final notice as the all-clear).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<&'static str>,
    /// A maintenance window's times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    /// The notice is a drill (shown only with `?ovning=1` or `banner.show_drills`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Further lines in Swedish, in order: the next update, the operator's extra
    /// information, the backup routine at levels 2 and 3.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_update: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<String>,
    /// The incident's public feedback page (a maintenance window's public page), and the
    /// link's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback_text: Option<&'static str>,
    /// When the incident's first banner was published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_at: Option<Timestamp>,
    /// When the text shown was published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// For the all-clear: when the banner turns inactive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

impl BannerJson {
    fn inactive() -> BannerJson {
        BannerJson {
            active: false,
            incident_id: None,
            kind: None,
            phase: None,
            starts_at: None,
            ends_at: None,
            level: None,
            drill: None,
            text: None,
            lines: Vec::new(),
            next_update: None,
            additional_information: None,
            feedback_url: None,
            feedback_text: None,
            published_at: None,
            updated_at: None,
            until: None,
        }
    }
}

/// Longest "övrig information" on the banner, in characters; the notice has it whole.
const MAX_BANNER_INFORMATION_CHARS: usize = 300;

/// What the banner says of the backup routine (the plan's levels 2 and 3).
fn backup_routine_line(kind: NoticeKind, level: u8) -> Option<&'static str> {
    match (kind, level) {
        (NoticeKind::Resolved, 2..) => {
            Some("Verksamheter som har gått över till reservrutin kan återgå till ordinarie rutin.")
        }
        (NoticeKind::Resolved, _) => None,
        (_, 2) => Some(
            "Reservrutin: berörda verksamheter kan behöva gå över till reservrutin. Beslut fattas på delregional nivå.",
        ),
        (_, 3..) => Some(
            "Reservrutin: alla verksamheter kan behöva gå över till reservrutin. Beslut fattas av ordförande eller vice ordförande i Ledningsråd Samordnad hälsa, vård och omsorg.",
        ),
        _ => None,
    }
}

/// `GET /public/status.json`.
#[derive(Debug, Serialize)]
struct StatusJson {
    /// `disruption` while a notice of an ongoing incident is shown, `resolved` while the
    /// all-clear is, `maintenance` while a running maintenance window is (and no
    /// disruption), otherwise `ok`.
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
    /// Announced, running and overrun maintenance windows, and those completed or
    /// cancelled in the last 24 hours, by start time.
    pub maintenance: Vec<StatusWindow>,
}

pub(super) async fn banner_json(
    State(state): State<AppState>,
    uri: Uri,
    request: HeaderMap,
) -> Response {
    match current_banner(&state, &uri).await {
        Ok(banner) => {
            let body = serde_json::to_vec(&banner).expect("the banner serializes");
            cacheable(&state, &request, JSON, body)
        }
        Err(error) => error.into_response(),
    }
}

pub(super) async fn banner_html(
    State(state): State<AppState>,
    uri: Uri,
    request: HeaderMap,
) -> Response {
    match current_banner(&state, &uri).await {
        Ok(banner) => {
            let body = match &banner.text {
                Some(text) => {
                    let calm = matches!(banner.kind, Some("resolved" | "maintenance"))
                        || banner.drill == Some(true);
                    let mut html = format!(
                        "<div class=\"samsa-relay-banner\" role=\"{}\" lang=\"sv\">\n<p><strong>{}</strong></p>\n",
                        if calm { "status" } else { "alert" },
                        escape_markup(text)
                    );
                    for line in &banner.lines {
                        html.push_str(&format!("<p>{}</p>\n", escape_markup(line)));
                    }
                    if let (Some(url), Some(link_text)) =
                        (&banner.feedback_url, banner.feedback_text)
                    {
                        html.push_str(&format!(
                            "<p><a href=\"{}\" target=\"_blank\" rel=\"noopener\">{}</a></p>\n",
                            escape_markup(url),
                            escape_markup(link_text)
                        ));
                    }
                    html.push_str("</div>\n");
                    html
                }
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
/// configured, by any page (`*`: the fragment is public and offers nothing to click but
/// a link that opens a new tab), as the script's CORS read is open to any.
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
        "*".to_owned()
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

pub(super) async fn status_json(
    State(state): State<AppState>,
    uri: Uri,
    request: HeaderMap,
) -> Response {
    let banner = match current_banner(&state, &uri).await {
        Ok(banner) => banner,
        Err(error) => return error.into_response(),
    };
    let maintenance = match super::maintenance::status_windows(&state, Timestamp::now()).await {
        Ok(windows) => windows,
        Err(error) => return error.into_response(),
    };
    let status = match (banner.active, banner.kind, banner.phase) {
        (false, _, _) => "ok",
        (true, Some("resolved"), _) => "resolved",
        (true, Some("maintenance"), Some("running")) => "maintenance",
        (true, Some("maintenance"), _) => "ok",
        (true, _, _) => "disruption",
    };
    // An upcoming window is no state of the service: it is in `maintenance` only.
    let described = status != "ok";
    let status = StatusJson {
        status,
        incident_id: banner.incident_id.filter(|_| described),
        level: banner.level.filter(|_| described),
        since: banner.published_at.filter(|_| described),
        text: banner.text.filter(|_| described),
        maintenance,
    };
    let body = serde_json::to_vec(&status).expect("the status serializes");
    cacheable(&state, &request, JSON, body)
}

/// Whether the request asks for drills too (`?ovning=1`: a test login page).
fn asks_for_drills(uri: &Uri) -> bool {
    uri.query()
        .is_some_and(|query| query.split('&').any(|pair| pair == "ovning=1"))
}

/// The banner as it is now: an ongoing incident's newest notice, else a resolution's
/// all-clear within `banner.all_clear_for`; drills only when asked for.
async fn current_banner(state: &AppState, uri: &Uri) -> Result<BannerJson, ApiError> {
    let banner_channels: Vec<String> = state
        .config
        .channels
        .values()
        .filter(|channel| matches!(channel.transport, ChannelTransport::Banner { .. }))
        .map(|channel| channel.name.clone())
        .collect();
    let now = Timestamp::now();
    let all_clear_for = state.config.banner.all_clear_for;
    let resolved_since = if all_clear_for.is_zero() {
        now + jiff::SignedDuration::from_secs(1)
    } else {
        now - jiff::SignedDuration::try_from(all_clear_for).unwrap_or(jiff::SignedDuration::ZERO)
    };
    let include_drills = state.config.banner.show_drills || asks_for_drills(uri);
    let Some(banner) = state
        .storage
        .current_banner(&banner_channels, include_drills, resolved_since)
        .await
        .map_err(|error| storage_unavailable(state, error))?
    else {
        return Ok(
            match maintenance_banner(state, &banner_channels, now, resolved_since).await? {
                Some(shown) => maintenance_json(state, &shown),
                None => BannerJson::inactive(),
            },
        );
    };
    let notice = &banner.notice;
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
    let level = notice.level.as_number();
    let resolved = notice.kind == NoticeKind::Resolved;
    let next_update = banner.fields.next_update.filter(|_| !resolved);
    let additional_information = banner
        .fields
        .additional_information
        .as_deref()
        .map(|text| crate::swedish::single_line(text, MAX_BANNER_INFORMATION_CHARS))
        .filter(|text| !text.is_empty());
    let mut lines = Vec::new();
    if let Some(next) = next_update {
        lines.push(format!(
            "Nästa uppdatering: {}.",
            crate::swedish::format_swedish_time(next)
        ));
    }
    if let Some(information) = &additional_information {
        lines.push(format!("Övrig information: {information}"));
    }
    if let Some(line) = backup_routine_line(notice.kind, level) {
        lines.push(line.to_owned());
    }
    Ok(BannerJson {
        active: true,
        incident_id: Some(notice.incident_id),
        kind: Some(notice.kind.as_str()),
        phase: None,
        starts_at: None,
        ends_at: None,
        level: Some(level),
        drill: Some(banner.drill),
        text: Some(notice.rendered.banner_text.clone()),
        lines,
        next_update,
        additional_information,
        feedback_url: Some(
            state
                .config
                .public_link(&format!("/public/feedback/{}", notice.incident_id)),
        ),
        feedback_text: Some(if resolved {
            "Lämna synpunkter inför uppföljningen"
        } else {
            "Lämna synpunkter eller rapportera problem"
        }),
        published_at: Some(first_published_at),
        updated_at: Some(notice.published_at),
        until: resolved.then(|| {
            notice.published_at
                + jiff::SignedDuration::try_from(all_clear_for)
                    .unwrap_or(jiff::SignedDuration::ZERO)
        }),
    })
}

/// The banner of a maintenance window: its latest banner notice's text and its times, a
/// link to its public page; its final notice as an all-clear (kind `resolved`) until
/// `banner.all_clear_for` has passed.
fn maintenance_json(state: &AppState, shown: &MaintenanceBanner) -> BannerJson {
    let window = &shown.window;
    let notice = &shown.notice;
    let finished = matches!(shown.shown, Shown::Completed | Shown::Cancelled);
    let all_clear_for = jiff::SignedDuration::try_from(state.config.banner.all_clear_for)
        .unwrap_or(jiff::SignedDuration::ZERO);
    let mut lines = vec![format!("Tid: {}.", super::maintenance::when_words(window))];
    if shown.shown == Shown::Cancelled {
        lines.clear();
    }
    BannerJson {
        active: true,
        incident_id: Some(window.incident_id),
        kind: Some(if finished { "resolved" } else { "maintenance" }),
        phase: Some(shown.shown.as_str()),
        starts_at: Some(window.plan.starts_at),
        ends_at: Some(window.plan.ends_at),
        level: None,
        drill: None,
        text: Some(notice.rendered.banner_text.clone()),
        lines,
        next_update: None,
        additional_information: None,
        feedback_url: Some(
            state
                .config
                .public_link(&super::maintenance::window_path(window.incident_id)),
        ),
        feedback_text: Some("Mer om underhållet"),
        published_at: Some(window.announced_at.unwrap_or(notice.published_at)),
        updated_at: Some(notice.published_at),
        until: finished.then(|| notice.published_at + all_clear_for),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WCAG 2.x relative luminance of `#rrggbb`.
    fn luminance(hex: &str) -> f64 {
        let channel = |index: usize| {
            let value = f64::from(u8::from_str_radix(&hex[index..index + 2], 16).unwrap()) / 255.0;
            if value <= 0.039_28 {
                value / 12.92
            } else {
                ((value + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
    }

    fn contrast(foreground: &str, background: &str) -> f64 {
        let (a, b) = (luminance(foreground) + 0.05, luminance(background) + 0.05);
        a.max(b) / a.min(b)
    }

    #[test]
    fn the_maintenance_banner_is_blue_and_meets_wcag_aa_contrast() {
        assert!(BANNER_SCRIPT.contains("\"#e8f1fb\""));
        assert!(BANNER_SCRIPT.contains("4px solid #0b5cad"));
        // The text and the link on the blue background.
        assert!(contrast("#1f1f1f", "#e8f1fb") >= 4.5);
        assert!(contrast("#00507a", "#e8f1fb") >= 4.5);
        // The border against the page, as a non-text element (WCAG 1.4.11).
        assert!(contrast("#0b5cad", "#ffffff") >= 3.0);
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
