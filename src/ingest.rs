//! Ingest: the domain operation behind `POST /webhook/alertmanager`. Parse the body once
//! into a [`Notification`], store it durably (or recognise a resend), count it.

use jiff::Timestamp;

use crate::alertmanager::{AlertStatus, Notification, PayloadError};
use crate::http::AppState;
use crate::storage::{StorageError, StoredReceipt};

/// What happened to an accepted webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    pub receipt: StoredReceipt,
    pub n_alerts: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not a valid version 4 payload: the sender must fix it.
    #[error("invalid payload: {}", .0.error)]
    Invalid(PayloadError),
    /// Storage could not take it now: the sender should retry.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Parses, deduplicates and durably stores one webhook body, then wakes the incident
/// worker. Returns after the commit.
pub async fn ingest_webhook(state: &AppState, body: &[u8]) -> Result<IngestOutcome, IngestError> {
    let (storage, metrics) = (&state.storage, &state.metrics);
    let notification = Notification::parse(body).map_err(IngestError::Invalid)?;
    // Notification::parse accepted it as JSON, so it is UTF-8.
    let raw_payload = std::str::from_utf8(body).map_err(|_| {
        IngestError::Invalid(PayloadError {
            error: "invalid JSON: not UTF-8".to_owned(),
            detail: "body".to_owned(),
        })
    })?;
    let dedupe_key = notification.dedupe_key();
    let _timer = metrics
        .storage_duration
        .with_label_values(&["store_notification"])
        .start_timer();
    let receipt = storage
        .store_notification(&notification, &dedupe_key, raw_payload, Timestamp::now())
        .await
        .inspect_err(|error| {
            metrics
                .storage_errors
                .with_label_values(&[error.operation])
                .inc();
        })?;
    // A resend of the Watchdog is a duplicate, and still proves that the chain works.
    state.watchdog.observe(
        &notification,
        &state.config.incidents.watchdog_alertname,
        Timestamp::now(),
    );
    if receipt.duplicate {
        metrics.webhook_duplicates.inc();
    } else {
        state.incident_wake.notify_one();
        let n_firing = notification
            .alerts
            .iter()
            .filter(|alert| alert.status == AlertStatus::Firing)
            .count() as u64;
        let n_resolved = notification.alerts.len() as u64 - n_firing;
        metrics
            .alerts_received
            .with_label_values(&["firing"])
            .inc_by(n_firing);
        metrics
            .alerts_received
            .with_label_values(&["resolved"])
            .inc_by(n_resolved);
    }
    Ok(IngestOutcome {
        receipt,
        n_alerts: notification.alerts.len(),
    })
}
