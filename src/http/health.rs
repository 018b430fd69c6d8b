//! `GET /healthz` (the process answers), `GET /readyz` (storage takes a durable write),
//! `GET /metrics` (Prometheus text format).

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;

/// Readiness must answer before a probe gives up, even when storage hangs.
const READINESS_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    use std::sync::atomic::Ordering;
    let running = state.workers_running.load(Ordering::Relaxed);
    let expected = state.workers_expected.load(Ordering::Relaxed);
    if running < expected {
        tracing::warn!(running, expected, "not ready: a background worker stopped");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: a background worker stopped\n",
        );
    }
    if !state.ingest.is_running() {
        tracing::error!("not ready: the ingest committer stopped");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the ingest committer stopped\n",
        );
    }
    let check = tokio::time::timeout(READINESS_TIMEOUT, state.storage.check_writable()).await;
    match check {
        Ok(Ok(())) => {
            state.metrics.storage_writable.set(1);
            (StatusCode::OK, "ready\n")
        }
        Ok(Err(error)) => {
            state
                .metrics
                .storage_errors
                .with_label_values(&[error.operation])
                .inc();
            state.metrics.storage_writable.set(0);
            tracing::warn!(error = ?anyhow::Error::from(error), "not ready: storage is not writable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: storage is not writable\n",
            )
        }
        Err(_) => {
            state
                .metrics
                .storage_errors
                .with_label_values(&["check_writable"])
                .inc();
            state.metrics.storage_writable.set(0);
            tracing::warn!("not ready: storage did not answer in time");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: storage did not answer in time\n",
            )
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
