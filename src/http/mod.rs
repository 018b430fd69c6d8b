//! The HTTP layer: the only module that knows HTTP. Routes, shared state, and the
//! per-route metrics middleware. Handlers extract, call the domain, respond.

mod error;
mod feedback;
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
use crate::links::LinkSigner;
use crate::metrics::Metrics;
use crate::notice::NoticeRenderer;
use crate::publishing::{Publication, PublishError, PublishRequest};
use crate::storage::Storage;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub storage: Storage,
    pub metrics: Metrics,
    /// The group committer that stores webhooks.
    pub ingest: crate::ingest::IngestQueue,
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

impl AppState {
    /// Publishes (see [`crate::publishing::publish`]) and wakes the delivery workers.
    pub async fn publish(&self, request: &PublishRequest) -> Result<Publication, PublishError> {
        let publication = crate::publishing::publish(&self.storage, &self.config, request).await?;
        self.delivery_wake.notify_waiters();
        self.metrics
            .notices_published
            .with_label_values(&[publication.kind.as_str(), &publication.level.to_string()])
            .inc();
        if let Some(waited) = publication.first_notice_after {
            self.metrics.first_notice.observe(waited.as_secs_f64());
        }
        Ok(publication)
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/webhook/alertmanager",
            post(webhook::receive_alertmanager_webhook),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(ops::routes())
        .merge(feedback::routes())
        .merge(
            Router::new()
                .route(
                    "/public/banner.json",
                    get(public::banner_json).options(public::preflight),
                )
                .route(
                    "/public/banner.html",
                    get(public::banner_html).options(public::preflight),
                )
                .route(
                    "/public/banner.js",
                    get(public::banner_js).options(public::preflight),
                )
                .route(
                    "/public/status.json",
                    get(public::status_json).options(public::preflight),
                )
                .route(
                    "/public/feed.atom",
                    get(public::feed_atom).options(public::preflight),
                )
                .route_layer(middleware::from_fn(limit_public_reads)),
        )
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

/// The per-client limit on the public read endpoints: generous, since a whole hospital may
/// sit behind one address and every login page polls the banner, yet a flood from one
/// client is cut off before it reaches the database.
static PUBLIC_READ_LIMITER: std::sync::LazyLock<feedback::FeedbackLimiter> =
    std::sync::LazyLock::new(|| {
        feedback::FeedbackLimiter::with_quota(
            std::time::Duration::from_millis(50),
            std::num::NonZeroU32::new(200).expect("not zero"),
        )
    });

async fn limit_public_reads(request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    match PUBLIC_READ_LIMITER.check(feedback::FeedbackLimiter::key(client)) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs().max(1).to_string();
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [(axum::http::header::RETRY_AFTER, seconds)],
                "too many requests; retry later\n",
            )
                .into_response()
        }
    }
}
