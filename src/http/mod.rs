//! The HTTP layer: the only module that knows HTTP. Routes, shared state, and the
//! per-route metrics middleware. Handlers extract, call the domain (the [`Ingest`] and
//! [`Publisher`] services, the follow-up, storage reads), and map errors to responses.
//!
//! - [`webhook`] and [`health`]: the JSON and text endpoints for machines.
//! - [`public`]: `/public/…`, the banner, status, feed and feedback form.
//! - [`ops`]: `/ops/…`, the operator pages, each reached by signed link or single sign-on.
//! - [`api`]: `/api/maintenance`, planned maintenance windows for scripts (bearer token).
//! - [`pages`]: what the HTML pages of both share.

mod api;
mod error;
mod health;
mod ops;
mod pages;
mod public;
pub mod server;
mod webhook;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};

pub use error::ApiError;
pub use webhook::WebhookAccepted;

use crate::config::Config;
use crate::incident_worker::WatchdogClock;
use crate::ingest::Ingest;
use crate::links::LinkSigner;
use crate::metrics::Metrics;
use crate::notice::NoticeRenderer;
use crate::publishing::Publisher;
use crate::storage::Storage;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub storage: Storage,
    pub metrics: Metrics,
    /// Stores webhooks (through the group committer) and wakes the incident worker.
    pub ingest: Ingest,
    /// Publishes reviewed drafts and wakes the delivery workers.
    pub publisher: Publisher,
    /// Wakes the incident worker after a new receipt is stored.
    pub incident_wake: Arc<tokio::sync::Notify>,
    /// Wakes the delivery workers after a publication.
    pub delivery_wake: Arc<tokio::sync::Notify>,
    pub watchdog: Arc<WatchdogClock>,
    pub renderer: Arc<NoticeRenderer>,
    /// Signs and checks operator links.
    pub signer: LinkSigner,
    /// Wakes the operator mail worker.
    pub mail_wake: Arc<tokio::sync::Notify>,
    /// Background loops running now, and how many should be (readiness).
    pub workers_running: Arc<std::sync::atomic::AtomicUsize>,
    pub workers_expected: Arc<std::sync::atomic::AtomicUsize>,
}

pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route(
            "/webhook/alertmanager",
            post(webhook::receive_alertmanager_webhook),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(metrics_on_main_listener(&state))
        .merge(ops::routes())
        .merge(api::routes())
        .merge(public::routes(&state))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            record_http_metrics,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_deadline,
        ));
    let router = if state.config.server.tls.is_some() {
        router.layer(middleware::map_response(pages::strict_transport_security))
    } else {
        router
    };
    router.with_state(state)
}

/// Any path no route matches: under `/ops/` a Swedish page in the operators' layout, elsewhere
/// an empty 404 as before.
async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/ops/") {
        ops::not_found_page()
    } else {
        axum::http::StatusCode::NOT_FOUND.into_response()
    }
}

/// `/metrics` on the main listener, unless `server.metrics_listen` gives it its own.
fn metrics_on_main_listener(state: &AppState) -> Router<AppState> {
    match state.config.server.metrics_listen {
        Some(_) => Router::new(),
        None => Router::new().route("/metrics", get(health::metrics)),
    }
}

/// The router of `server.metrics_listen`: `GET /metrics` only, counted and bounded like
/// every other request.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            record_http_metrics,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_deadline,
        ))
        .with_state(state)
}

/// Counts and times every request by its route pattern (never the raw path).
async fn record_http_metrics(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status_class = format!("{}xx", response.status().as_u16() / 100);
    state
        .metrics
        .http_requests
        .with_label_values(&[&route, &method, &status_class])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Bounds every request, body included (slow senders). A webhook that runs out of time is
/// answered 503 so that Alertmanager retries (a resend is recognised as a duplicate);
/// anything else 408.
async fn request_deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let is_webhook = request.uri().path().starts_with("/webhook/");
    match tokio::time::timeout(state.config.server.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            state.metrics.requests_timed_out.inc();
            if is_webhook {
                ApiError::Unavailable.into_response()
            } else {
                (
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    "the request took too long\n",
                )
                    .into_response()
            }
        }
    }
}

/// The client's address for per-client limits: the connection's peer, or, when the peer
/// is one of `server.trusted_proxies`, the nearest address in `X-Forwarded-For` (read
/// from the right) that is not a trusted proxy itself. A client cannot choose its key by
/// sending the header: only what trusted proxies appended is read.
pub fn client_address(
    trusted_proxies: &[ipnet::IpNet],
    peer: Option<std::net::IpAddr>,
    headers: &axum::http::HeaderMap,
) -> Option<std::net::IpAddr> {
    let is_trusted = |address: &std::net::IpAddr| {
        let address = address.to_canonical();
        trusted_proxies
            .iter()
            .any(|network| network.contains(&address))
    };
    let mut client = peer?;
    if !is_trusted(&client) {
        return Some(client);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        // A malformed entry ends the trusted chain: nothing left of it can be believed.
        let Ok(address) = hop.parse::<std::net::IpAddr>() else {
            break;
        };
        client = address;
        if !is_trusted(&address) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod client_address_tests {
    use std::net::IpAddr;

    use axum::http::HeaderMap;

    use super::client_address;

    fn networks(texts: &[&str]) -> Vec<ipnet::IpNet> {
        texts.iter().map(|text| text.parse().unwrap()).collect()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = networks(&["10.0.0.0/8"]);
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            client_address(&trusted, ip("198.51.100.7"), &headers),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(&[], ip("10.1.2.3"), &headers),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted = networks(&["10.0.0.0/8", "192.0.2.1/32"]);
        // The client put a made-up address first; the proxies appended the real one.
        let headers = forwarded(&["203.0.113.9, 198.51.100.7", "192.0.2.1"]);
        assert_eq!(
            client_address(&trusted, ip("10.0.0.5"), &headers),
            ip("198.51.100.7")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_address(&trusted, ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5")
        );
        // A malformed entry ends the chain at the last address that could be read.
        let headers = forwarded(&["198.51.100.7, nonsense, 10.0.0.9"]);
        assert_eq!(
            client_address(&trusted, ip("10.0.0.5"), &headers),
            ip("10.0.0.9")
        );
        // An IPv4 peer seen as IPv4-mapped IPv6 is still trusted.
        let headers = forwarded(&["198.51.100.7"]);
        assert_eq!(
            client_address(&trusted, ip("::ffff:10.0.0.5"), &headers),
            ip("198.51.100.7")
        );
        assert_eq!(client_address(&trusted, None, &headers), None);
    }
}
