//! Gauges of stored state (queue depth, oldest undelivered, open incidents, receipts
//! waiting, storage writable, the Watchdog's last arrival), refreshed every few seconds by
//! one loop so that /metrics stays cheap and scrapes never touch the database.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::incident_worker::WatchdogClock;
use crate::metrics::Metrics;
use crate::storage::Storage;

const REFRESH_EVERY: Duration = Duration::from_secs(5);

pub struct GaugeRefresher {
    pub storage: Storage,
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub watchdog: Arc<WatchdogClock>,
}

impl GaugeRefresher {
    /// Reads the stored state once and sets every gauge.
    pub async fn refresh(&self, now: Timestamp) -> anyhow::Result<()> {
        let metrics = &self.metrics;
        metrics
            .watchdog_last_seen
            .set(self.watchdog.last_seen().as_millisecond() as f64 / 1000.0);
        match self.storage.check_writable().await {
            Ok(()) => metrics.storage_writable.set(1),
            Err(error) => {
                metrics.storage_writable.set(0);
                metrics
                    .storage_errors
                    .with_label_values(&[error.operation])
                    .inc();
            }
        }
        // Every channel shows, with 0 when nothing waits, so that alerts and panels see
        // the series disappear never.
        for name in self.config.channels.keys() {
            metrics.outbox_pending.with_label_values(&[name]).set(0);
            metrics
                .outbox_oldest_pending_age
                .with_label_values(&[name])
                .set(0.0);
        }
        for (channel, waiting, oldest) in self.storage.outbox_backlog().await? {
            metrics
                .outbox_pending
                .with_label_values(&[&channel])
                .set(waiting);
            let age = oldest
                .map(|oldest| now.duration_since(oldest).as_secs_f64().max(0.0))
                .unwrap_or(0.0);
            metrics
                .outbox_oldest_pending_age
                .with_label_values(&[&channel])
                .set(age);
        }
        metrics
            .receipts_pending
            .set(self.storage.n_unprocessed_receipts().await?);
        metrics.incidents_open.reset();
        for kind in ["outage", "monitoring", "drill"] {
            for level in ["1", "2", "3"] {
                metrics
                    .incidents_open
                    .with_label_values(&[kind, level])
                    .set(0);
            }
        }
        for record in self.storage.recent_incidents(200).await? {
            if record.resolved_at.is_none() {
                let level = record.incident.classification.level.as_number().to_string();
                metrics
                    .incidents_open
                    .with_label_values(&[record.kind.as_str(), &level])
                    .inc();
            }
        }
        Ok(())
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.refresh(Timestamp::now()).await {
                tracing::warn!(error = ?error, "gauge refresh failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(REFRESH_EVERY) => {}
            }
        }
    }
}
