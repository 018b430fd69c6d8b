//! The public endpoints under `/public/`, no authentication: the read-only ones (the
//! login-page [`banner`] as JSON, as an HTML fragment and as a script that one
//! `<script>` tag embeds, a status summary, and the Atom [`feed`] of notices; everything
//! there is already public), the [`feedback`] form every notice links to, the
//! subscribers' pages ([`subscribe`]: subscribe, confirm, manage, one-click unsubscribe),
//! planned [`maintenance`] (its pages; the banner and status parts) and its iCalendar
//! feed ([`calendar`]), and the [`accessibility`] statement every public page links to.
//!
//! - Every read answer has a strong `ETag` over its bytes (`If-None-Match` answers 304),
//!   `Cache-Control: public, max-age=30`, and `Vary: Origin`. They carry no credentials
//!   and nothing that is not public, so any login page may read them:
//!   `Access-Control-Allow-Origin: *`, unless a banner channel lists `allowed_origins`;
//!   then only a listed `Origin` may, echoed back. `OPTIONS` answers preflights.
//! - The reads take a token from a generous per-client limit ([`limit_public_reads`]), so
//!   that a flood from one client is cut off before it reaches the database.
//! - Untrusted text (alert labels, operator text) is escaped for each format here: JSON by
//!   serde, HTML and XML by [`escape_markup`]; the script only ever sets `textContent`.

mod accessibility;
mod banner;
mod calendar;
mod feed;
mod feedback;
mod maintenance;
mod subscribe;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use sha2::{Digest as _, Sha256};

use super::{ApiError, AppState, client_address};
use crate::config::ChannelTransport;
use feedback::FeedbackLimiter;
use subscribe::SubscribeLimiter;

/// Every route under `/public/`.
pub(super) fn routes(state: &AppState) -> Router<AppState> {
    // One feedback limiter per router, so each app (and each test) has its own.
    let feedback_limiter = Arc::new(FeedbackLimiter::new());
    Router::new()
        .route(
            "/public/feedback/{incident_id}",
            get(feedback::feedback_form).post(feedback::feedback_submit),
        )
        .route(
            "/public/feedback/{incident_id}/tack",
            get(feedback::feedback_thanks),
        )
        .route_layer(Extension(feedback_limiter))
        .route("/public/tillganglighet", get(accessibility::statement))
        .route("/public/maintenance", get(maintenance::list_page))
        .route("/public/maintenance/{id}", get(maintenance::window_page))
        .merge(
            Router::new()
                .route(
                    "/public/subscribe",
                    get(subscribe::subscribe_form).post(subscribe::subscribe_submit),
                )
                .route_layer(Extension(Arc::new(SubscribeLimiter::new()))),
        )
        .route(
            "/public/subscribe/confirm/{token}",
            get(subscribe::confirm_page).post(subscribe::confirm_submit),
        )
        .route(
            "/public/subscription/{token}",
            get(subscribe::manage).post(subscribe::manage_submit),
        )
        .route(
            "/public/subscription/{token}/unsubscribe",
            get(subscribe::unsubscribe_page).post(subscribe::unsubscribe_one_click),
        )
        .merge(
            Router::new()
                .route(
                    "/public/banner.json",
                    get(banner::banner_json).options(preflight),
                )
                .route(
                    "/public/banner.html",
                    get(banner::banner_html).options(preflight),
                )
                .route(
                    "/public/banner.js",
                    get(banner::banner_js).options(preflight),
                )
                .route(
                    "/public/status.json",
                    get(banner::status_json).options(preflight),
                )
                .route("/public/feed.atom", get(feed::feed_atom).options(preflight))
                .route(
                    "/public/maintenance.ics",
                    get(calendar::calendar_ics).options(preflight),
                )
                .route_layer(middleware::from_fn_with_state(
                    (state.clone(), Arc::new(public_read_limiter())),
                    limit_public_reads,
                )),
        )
}

const CACHE_CONTROL: &str = "public, max-age=30";

/// The per-client limit on the public read endpoints: generous, since a whole hospital may
/// sit behind one address and every login page polls the banner, yet a flood from one
/// client is cut off before it reaches the database. One per router (per app), like the
/// feedback form's.
fn public_read_limiter() -> FeedbackLimiter {
    FeedbackLimiter::with_quota(
        std::time::Duration::from_millis(50),
        std::num::NonZeroU32::new(200).expect("not zero"),
    )
}

async fn limit_public_reads(
    State((state, limiter)): State<(AppState, Arc<FeedbackLimiter>)>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let client = client_address(
        &state.config.server.trusted_proxies,
        peer,
        request.headers(),
    );
    match limiter.check(FeedbackLimiter::key(client)) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs().max(1).to_string();
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, seconds)],
                "too many requests; retry later\n",
            )
                .into_response()
        }
    }
}

/// `OPTIONS /public/*`: a CORS preflight. An allowed origin gets the CORS headers; any
/// other gets none, so its browser refuses the request.
async fn preflight(State(state): State<AppState>, request: HeaderMap) -> Response {
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

/// `Access-Control-Allow-Origin` for a read: `*` when no banner channel restricts the
/// origins (these answers carry no credentials and nothing that is not public, so any
/// login page may embed them); otherwise the request's `Origin` when a banner channel
/// lists it, and nothing for any other.
fn allowed_origin(state: &AppState, request: &HeaderMap) -> Option<HeaderValue> {
    if !origins_restricted(state) {
        return Some(HeaderValue::from_static("*"));
    }
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

/// Whether some banner channel lists `allowed_origins`: then only those may read.
fn origins_restricted(state: &AppState) -> bool {
    state.config.channels.values().any(|channel| {
        matches!(
            &channel.transport,
            ChannelTransport::Banner { allowed_origins, .. } if !allowed_origins.is_empty()
        )
    })
}

/// `"` + the first 128 bits of the body's SHA-256, in hex + `"`.
fn strong_etag(body: &[u8]) -> String {
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
fn escape_markup(text: &str) -> String {
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
}
