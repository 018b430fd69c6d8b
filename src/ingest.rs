//! Ingest: the domain operation behind `POST /webhook/alertmanager`. Parse the body once
//! into a [`Notification`], store it durably (or recognise a resend), count it. [`Ingest`]
//! is the service the HTTP handler calls; it knows nothing of HTTP.
//!
//! Storing uses group commit: every request hands its webhook to one committer task
//! ([`IngestQueue`]), which stores whatever is waiting in one transaction and answers
//! each request after that commit. One fsync then serves many webhooks, and every 2xx
//! still follows a durable commit. Nothing waits on purpose: a webhook that arrives while
//! the write connection is idle is committed alone, at once.
//!
//! The backlog behind the committer is bounded: while `webhook.max_backlog` or more
//! stored receipts wait for the incident worker ([`Backlog`]), a webhook is refused before
//! it is even parsed, and the sender told when to retry.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::alertmanager::{AlertStatus, Notification, PayloadError, Received};
use crate::backlog::Backlog;
use crate::incident_worker::{WatchdogClock, carries_watchdog};
use crate::metrics::Metrics;
use crate::storage::{NewReceipt, Storage, StorageError, StoredReceipt};

/// Most webhooks in one commit. Bounds one transaction's time, so that the incident
/// worker and the operators' writes get the write connection in between.
pub const MAX_BATCH: usize = 256;

/// Most payload bytes in one commit: a storm of 10,000-alert webhooks (3 MB each) is
/// committed a few at a time, so that no transaction (and write-ahead log) grows huge. A
/// larger webhook is committed alone.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

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
    /// Too many stored webhooks wait for the incident worker: the sender should retry in
    /// about this many seconds. A resend of a stored webhook is refused too, since a
    /// duplicate cannot be told before it is stored; its retry is answered as one.
    #[error("the backlog of webhooks waiting for the incident worker is full")]
    BacklogFull { retry_after_secs: u64 },
}

/// The ingest service: what `POST /webhook/alertmanager` calls once it has the body.
/// Cloning shares the committer.
#[derive(Clone)]
pub struct Ingest {
    queue: IngestQueue,
    metrics: Metrics,
    /// Told whenever a webhook carries the Watchdog alert.
    watchdog: Arc<WatchdogClock>,
    /// The Watchdog's `alertname` (`incidents.watchdog_alertname`).
    watchdog_alertname: Arc<str>,
    /// Woken after a new receipt is stored.
    incident_wake: Arc<Notify>,
    /// Receipts waiting for the incident worker: refuses webhooks when full.
    backlog: Backlog,
}

impl Ingest {
    /// The service over a running committer.
    pub fn new(
        queue: IngestQueue,
        metrics: Metrics,
        watchdog: Arc<WatchdogClock>,
        watchdog_alertname: &str,
        incident_wake: Arc<Notify>,
        backlog: Backlog,
    ) -> Ingest {
        Ingest {
            queue,
            metrics,
            watchdog,
            watchdog_alertname: Arc::from(watchdog_alertname),
            incident_wake,
            backlog,
        }
    }

    /// False once the committer task has ended: readiness reports it.
    pub fn is_running(&self) -> bool {
        self.queue.is_running()
    }

    /// Parses, deduplicates and durably stores one webhook body, then wakes the incident
    /// worker. Returns after the commit. Refuses it at once while the backlog is full.
    pub async fn ingest_webhook(&self, body: &[u8]) -> Result<IngestOutcome, IngestError> {
        let metrics = &self.metrics;
        // Before parsing: under overload the refusal should cost as little as possible.
        if self.backlog.is_full() {
            let retry_after_secs = self.backlog.retry_after_secs();
            if let Some(n_refused) = self.backlog.note_refused() {
                tracing::warn!(
                    backlog = self.backlog.len(),
                    limit = self.backlog.limit(),
                    drain_rate_per_second = self.backlog.drain_rate(),
                    retry_after_secs,
                    n_refused,
                    "webhooks refused: the incident worker is behind (n_refused since the last warning)"
                );
            }
            return Err(IngestError::BacklogFull { retry_after_secs });
        }
        // Cut to the limits of `alertmanager`: what is stored is what the relay acts on.
        let received = Received::parse(body).map_err(IngestError::Invalid)?;
        let notification = received.notification;
        let raw_payload = match received.cut_payload {
            Some(cut_payload) => {
                tracing::warn!(cut = ?received.cut, "a webhook was over the size limits; stored cut");
                for (kind, count) in received.cut.by_kind() {
                    metrics
                        .webhook_values_cut
                        .with_label_values(&[kind])
                        .inc_by(count);
                }
                cut_payload
            }
            // Received::parse accepted it as JSON, so it is UTF-8.
            None => std::str::from_utf8(body)
                .map_err(|_| {
                    IngestError::Invalid(PayloadError {
                        error: "invalid JSON: not UTF-8".to_owned(),
                        detail: "body".to_owned(),
                    })
                })?
                .to_owned(),
        };
        let dedupe_key = notification.dedupe_key();
        let n_alerts = notification.alerts.len();
        let n_firing = notification
            .alerts
            .iter()
            .filter(|alert| alert.status == AlertStatus::Firing)
            .count();
        let watchdog_seen = carries_watchdog(&notification, &self.watchdog_alertname);
        let receipt = self
            .queue
            .store(notification, dedupe_key, raw_payload, Timestamp::now())
            .await?;
        // A resend of the Watchdog is a duplicate, and still proves that the chain works.
        if watchdog_seen {
            self.watchdog.seen(Timestamp::now());
        }
        if receipt.duplicate {
            metrics.webhook_duplicates.inc();
        } else {
            self.backlog.note_stored(receipt.receipt_id);
            self.incident_wake.notify_one();
            metrics
                .alerts_received
                .with_label_values(&["firing"])
                .inc_by(n_firing as u64);
            metrics
                .alerts_received
                .with_label_values(&["resolved"])
                .inc_by((n_alerts - n_firing) as u64);
        }
        Ok(IngestOutcome { receipt, n_alerts })
    }
}

/// One webhook waiting for the committer.
struct Pending {
    notification: Notification,
    dedupe_key: String,
    raw_payload: String,
    received_at: Timestamp,
    reply: oneshot::Sender<Result<StoredReceipt, StorageError>>,
}

/// The queue in front of the group committer. Cloning shares the queue. The committer
/// task ends when the last clone is dropped.
#[derive(Clone)]
pub struct IngestQueue {
    sender: mpsc::Sender<Pending>,
}

impl IngestQueue {
    /// Starts the committer task on the current Tokio runtime. `capacity` bounds the
    /// webhooks waiting (the server's connection limit bounds them anyway).
    pub fn start(storage: Storage, metrics: Metrics, capacity: usize) -> IngestQueue {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        tokio::spawn(run_committer(storage, metrics, receiver));
        IngestQueue { sender }
    }

    /// False once the committer task has ended (it only ends after a panic while the
    /// queue is still in use): readiness reports it.
    pub fn is_running(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Stores one webhook in the next group commit and waits for that commit.
    async fn store(
        &self,
        notification: Notification,
        dedupe_key: String,
        raw_payload: String,
        received_at: Timestamp,
    ) -> Result<StoredReceipt, StorageError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            notification,
            dedupe_key,
            raw_payload,
            received_at,
            reply,
        };
        let committer_gone = || {
            StorageError::new(
                "store_notification",
                anyhow::anyhow!("the ingest committer is not running"),
            )
        };
        self.sender
            .send(pending)
            .await
            .map_err(|_| committer_gone())?;
        answer.await.map_err(|_| committer_gone())?
    }
}

/// Takes whatever is queued (at least one, at most [`MAX_BATCH`]), stores it in one
/// transaction per [`MAX_BATCH_BYTES`] and answers each request. A request that gave up
/// meanwhile (its deadline passed and it answered 503) is still stored: the resend is
/// then a duplicate, and nothing that was received is lost.
async fn run_committer(storage: Storage, metrics: Metrics, mut receiver: mpsc::Receiver<Pending>) {
    let mut queued: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut queued, MAX_BATCH).await > 0 {
        let sizes: Vec<usize> = queued
            .iter()
            .map(|pending| pending.raw_payload.len())
            .collect();
        let mut rest = queued.drain(..);
        for n_in_batch in batch_lengths(&sizes, MAX_BATCH_BYTES) {
            let batch: Vec<Pending> = rest.by_ref().take(n_in_batch).collect();
            commit_batch(&storage, &metrics, batch).await;
        }
    }
}

/// Splits queued webhooks of these payload sizes into consecutive batches of at most
/// `max_bytes` each (a larger one alone); returns each batch's length.
fn batch_lengths(sizes: &[usize], max_bytes: usize) -> Vec<usize> {
    let mut lengths = Vec::new();
    let (mut length, mut bytes) = (0_usize, 0_usize);
    for &size in sizes {
        if length > 0 && bytes.saturating_add(size) > max_bytes {
            lengths.push(length);
            (length, bytes) = (0, 0);
        }
        length += 1;
        bytes = bytes.saturating_add(size);
    }
    if length > 0 {
        lengths.push(length);
    }
    lengths
}

/// Stores one batch in one transaction and answers each of its requests.
async fn commit_batch(storage: &Storage, metrics: &Metrics, batch: Vec<Pending>) {
    let receipts: Vec<NewReceipt<'_>> = batch
        .iter()
        .map(|pending| NewReceipt {
            notification: &pending.notification,
            dedupe_key: &pending.dedupe_key,
            raw_payload: &pending.raw_payload,
            received_at: pending.received_at,
        })
        .collect();
    let result = {
        let _timer = metrics
            .storage_duration
            .with_label_values(&["store_notification"])
            .start_timer();
        storage.store_notifications(&receipts).await
    };
    drop(receipts);
    metrics.ingest_batch_size.observe(batch.len() as f64);
    match result {
        Ok(stored) => {
            for (pending, receipt) in batch.into_iter().zip(stored) {
                let _ = pending.reply.send(Ok(receipt));
            }
        }
        Err(error) => {
            metrics
                .storage_errors
                .with_label_values(&[error.operation])
                .inc();
            // Every webhook of the batch gets the error (and answers 503): the first the
            // error itself, the others its text.
            let text = format!("{:#}", error.source);
            let operation = error.operation;
            let mut first = Some(error);
            for pending in batch {
                let error = first.take().unwrap_or_else(|| {
                    StorageError::new(
                        operation,
                        anyhow::anyhow!("the group commit failed: {text}"),
                    )
                });
                let _ = pending.reply.send(Err(error));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::batch_lengths;

    #[test]
    fn batches_are_cut_by_payload_bytes_and_a_large_webhook_goes_alone() {
        assert_eq!(batch_lengths(&[], 10), Vec::<usize>::new());
        assert_eq!(batch_lengths(&[3, 3, 3], 10), [3]);
        assert_eq!(batch_lengths(&[3, 3, 3, 3], 10), [3, 1]);
        assert_eq!(batch_lengths(&[4, 25, 4, 4], 10), [1, 1, 2]);
        assert_eq!(batch_lengths(&[25], 10), [1]);
        assert_eq!(batch_lengths(&[10, 1], 10), [1, 1]);
    }
}
