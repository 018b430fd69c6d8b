//! A channel's rate limit (`channels.NAME.rate_limit_per_minute`), held for the whole
//! cluster: every replica's sends on the channel take their tokens from one bucket in the
//! database ([`crate::storage::Cluster::take_tokens`]), so three replicas together send no
//! more than one would.

use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::storage::{Storage, StorageError};

pub struct RateLimit {
    storage: Storage,
    key: String,
    /// The bucket's refill rate: one token per `period`.
    per_minute: f64,
    period: Duration,
}

impl RateLimit {
    /// One send every 60/`per_minute` seconds plus 1 % (so that a closed 60-second
    /// window, its end included, holds at most the limit despite timer jitter), with no
    /// burst (a burst would let a window hold up to twice the limit).
    pub fn new(storage: Storage, channel: &str, per_minute: u32) -> RateLimit {
        let period = (Duration::from_secs(60) / per_minute.max(1)).mul_f64(1.01);
        RateLimit {
            storage,
            key: format!("channel:{channel}"),
            per_minute: 60.0 / period.as_secs_f64(),
            period,
        }
    }

    /// Takes a token if one is there now.
    pub async fn try_take(&self, now: Timestamp) -> Result<bool, StorageError> {
        let granted = self
            .storage
            .take_tokens(&self.key, 1, self.per_minute, 1, now)
            .await?;
        Ok(granted == 1)
    }

    /// Waits until a send may start, at most `max_wait`. Returns how long it waited, or
    /// `None` when the time ran out (the database unreachable, or the channel's backlog
    /// longer than the claim's lease): the send is then retried later.
    pub async fn until_ready(&self, max_wait: Duration) -> Option<Duration> {
        let started = Instant::now();
        loop {
            match self.try_take(Timestamp::now()).await {
                Ok(true) => return Some(started.elapsed()),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(key = %self.key, error = ?anyhow::Error::from(error), "cannot take a rate-limit token");
                }
            }
            // Look again within a quarter period (at most a second), jittered so that
            // replicas waiting on one bucket do not ask in step.
            let wait = (self.period / 4)
                .min(Duration::from_secs(1))
                .mul_f64(0.75 + fastrand::f64() / 2.0);
            if started.elapsed() + wait > max_wait {
                return None;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::config::DatabaseConfig;

    #[tokio::test]
    async fn one_send_per_period_and_no_burst_for_all_replicas_together() {
        let folder = tempfile::tempdir().unwrap();
        let storage = Storage::open(&DatabaseConfig::sqlite(folder.path().join("relay.db")))
            .await
            .unwrap();
        // Two replicas' limits on one channel share the bucket.
        let first = RateLimit::new(storage.clone(), "email", 30);
        let second = RateLimit::new(storage.clone(), "email", 30);
        let start: Timestamp = "2026-12-03T08:00:00Z".parse().unwrap();
        assert!(first.try_take(start).await.unwrap());
        assert!(!second.try_take(start).await.unwrap());
        // 30 a minute is one every 2.02 s.
        let early = start + SignedDuration::from_millis(2_000);
        assert!(!first.try_take(early).await.unwrap());
        let due = start + SignedDuration::from_millis(2_030);
        assert!(second.try_take(due).await.unwrap());
        assert!(!first.try_take(due).await.unwrap());
        // Other channels have their own bucket.
        let other = RateLimit::new(storage.clone(), "itnytt", 30);
        assert!(other.try_take(due).await.unwrap());
    }
}
