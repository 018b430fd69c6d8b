//! `POST /webhook/alertmanager`: authenticate, read the body within the limit, hand it to
//! the [`crate::ingest::Ingest`] service, answer. 2xx only after the commit; 503 for anything
//! transient, a full backlog included.

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::error::ApiError;
use crate::config::WebhookConfig;
use crate::ingest::IngestError;

#[derive(Debug, Serialize)]
pub struct WebhookAccepted {
    pub receipt_id: i64,
    pub duplicate: bool,
    pub alerts: usize,
}

pub async fn receive_alertmanager_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<WebhookAccepted>, ApiError> {
    let started = Instant::now();
    let result = receive(&state, &headers, body).await;
    let outcome = match &result {
        Ok(accepted) if accepted.duplicate => "duplicate",
        Ok(_) => "accepted",
        Err(ApiError::Unauthorized) => "unauthorized",
        Err(ApiError::BadRequest { .. }) => "bad_request",
        Err(ApiError::PayloadTooLarge { .. }) => "too_large",
        Err(ApiError::Unavailable) => "unavailable",
        Err(ApiError::BacklogFull { .. }) => "backlog_full",
    };
    state
        .metrics
        .webhook_requests
        .with_label_values(&[outcome])
        .inc();
    if matches!(result, Ok(_) | Err(ApiError::Unavailable)) {
        state
            .metrics
            .ingest_duration
            .observe(started.elapsed().as_secs_f64());
    }
    result.map(Json)
}

async fn receive(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<WebhookAccepted, ApiError> {
    if !is_authorized(&state.config.webhook, headers) {
        return Err(ApiError::Unauthorized);
    }
    let limit = state.config.server.max_body_bytes;
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(error) => {
            // to_bytes fails either on the limit or on the connection; only the first is
            // the sender's fault.
            let is_limit = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            return Err(if is_limit {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadRequest {
                    error: "incomplete body".to_owned(),
                    detail: "the request body could not be read to its end".to_owned(),
                }
            });
        }
    };
    match state.ingest.ingest_webhook(&body).await {
        Ok(outcome) => {
            tracing::info!(
                receipt_id = outcome.receipt.receipt_id,
                duplicate = outcome.receipt.duplicate,
                n_alerts = outcome.n_alerts,
                "webhook stored"
            );
            Ok(WebhookAccepted {
                receipt_id: outcome.receipt.receipt_id,
                duplicate: outcome.receipt.duplicate,
                alerts: outcome.n_alerts,
            })
        }
        Err(IngestError::Invalid(problem)) => {
            tracing::warn!(error = %problem.error, detail = %problem.detail, "webhook refused");
            Err(ApiError::BadRequest {
                error: problem.error,
                detail: problem.detail,
            })
        }
        Err(IngestError::Storage(error)) => {
            tracing::error!(error = ?anyhow::Error::from(error), "webhook not stored; answering 503");
            Err(ApiError::Unavailable)
        }
        // Ingest logs these at most once per 10 s: one line per request would flood.
        Err(IngestError::BacklogFull { retry_after_secs }) => {
            Err(ApiError::BacklogFull { retry_after_secs })
        }
    }
}

/// Bearer token or basic auth, compared in constant time. Both sides are hashed first so
/// that the comparison takes the same time whatever the lengths.
fn is_authorized(config: &WebhookConfig, headers: &HeaderMap) -> bool {
    let Some(authorization) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let (scheme, credentials) = authorization.split_once(' ').unwrap_or((authorization, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if let Some(token) = &config.bearer_token {
            return equal_in_constant_time(credentials.as_bytes(), token.expose().as_bytes());
        }
        return false;
    }
    if scheme.eq_ignore_ascii_case("basic")
        && let Some(basic) = &config.basic_auth
    {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
            return false;
        };
        let expected = format!("{}:{}", basic.username, basic.password.expose());
        return equal_in_constant_time(&decoded, expected.as_bytes());
    }
    false
}

/// Whether two secrets are equal, in constant time (both hashed first, so that the time
/// does not depend on their lengths either).
pub(super) fn equal_in_constant_time(given: &[u8], expected: &[u8]) -> bool {
    let given = Sha256::digest(given);
    let expected = Sha256::digest(expected);
    given.ct_eq(&expected).into()
}
