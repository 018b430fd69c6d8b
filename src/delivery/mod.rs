//! Delivery: the outbox workers. One [`DeliveryWorker`] per channel; its single step
//! [`DeliveryWorker::try_deliver_next`] claims due outbox rows with a lease, sends them
//! (concurrently, within the channel's rate limit, each under a timeout), and records each
//! outcome. No transaction is held while sending: claiming and recording are separate
//! short transactions, and a row whose lease ran out (its worker died) is claimed again.
//!
//! Transient failures (connection errors, timeouts, SMTP 4xx, HTTP 5xx and 429) are
//! retried with exponential backoff and jitter, honouring Retry-After; permanent ones
//! (SMTP 5xx, HTTP 4xx) stop the row as failed, in the log and the metrics, until an
//! operator retries it.

pub mod email;
pub mod rate;
pub mod smtp;
pub mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{ChannelConfig, ChannelTransport, Config};
use crate::metrics::Metrics;
use crate::storage::{ClaimedDelivery, DeliveryResult, Storage};
use rate::RateLimit;

/// How a send failed, which decides retry or give up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("transient: {reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("permanent: {reason}")]
    Permanent { reason: String },
}

impl DeliveryError {
    pub fn transient(reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Permanent {
            reason: reason.into(),
        }
    }
}

/// What sends one channel's messages.
pub enum ChannelSender {
    /// Banner and feed: the relay serves them itself, so a publication is delivered the
    /// moment it is committed; a banner's push URL, if any, is a webhook.
    Local {
        push: Option<webhook::WebhookSender>,
    },
    Email(email::EmailSender),
    Webhook(webhook::WebhookSender),
}

impl ChannelSender {
    /// Builds the sender for a channel. Email channels share one SMTP transport (and its
    /// connection pool).
    pub fn for_channel(
        config: &Config,
        channel: &ChannelConfig,
        smtp: &email::EmailTransport,
    ) -> anyhow::Result<ChannelSender> {
        Ok(match &channel.transport {
            ChannelTransport::Banner { push_url: None, .. } | ChannelTransport::Feed => {
                ChannelSender::Local { push: None }
            }
            ChannelTransport::Banner {
                push_url: Some(_), ..
            } => ChannelSender::Local {
                push: Some(webhook::WebhookSender::new(config, channel)?),
            },
            ChannelTransport::Email { .. } => {
                ChannelSender::Email(email::EmailSender::new(config, channel, smtp.clone())?)
            }
            ChannelTransport::Webhook { .. } => {
                ChannelSender::Webhook(webhook::WebhookSender::new(config, channel)?)
            }
        })
    }

    pub async fn send(&self, delivery: &ClaimedDelivery) -> Result<(), DeliveryError> {
        match self {
            ChannelSender::Local { push } => match push {
                Some(sender) if delivery.recipient != "login-page" => sender.send(delivery).await,
                _ => Ok(()),
            },
            ChannelSender::Email(sender) => sender.send(delivery).await,
            ChannelSender::Webhook(sender) => sender.send(delivery).await,
        }
    }

    /// The longest one send may take before it counts as a transient failure.
    pub fn timeout(&self, config: &Config) -> Duration {
        match self {
            ChannelSender::Email(_) => config.smtp.details.timeout,
            ChannelSender::Webhook(sender) => sender.timeout(),
            ChannelSender::Local { push: Some(sender) } => sender.timeout(),
            ChannelSender::Local { push: None } => Duration::from_secs(5),
        }
    }
}

/// How long a claim keeps its rows: long enough for every claimed send to wait its turn
/// under the rate limit and then take its whole timeout, twice over for the send, and
/// short enough that when a replica dies mid-send, another takes its rows over soon.
fn claim_lease(
    timeout: Duration,
    concurrency: usize,
    rate_limit_per_minute: Option<u32>,
) -> Duration {
    let rate_waits = rate_limit_per_minute.map_or(Duration::ZERO, |per_minute| {
        (Duration::from_secs(60) / per_minute.max(1)).mul_f64(1.01) * concurrency as u32
    });
    timeout * 2 + rate_waits + Duration::from_secs(10)
}

/// Exponential backoff with jitter: attempt n waits about `base * 2^(n-1)`, at most `max`,
/// drawn uniformly from its upper half so that retries spread out.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(5),
            max: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    pub fn delay(&self, attempt: i64, retry_after: Option<Duration>) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let ceiling = self
            .base
            .saturating_mul(2_u32.saturating_pow(exponent))
            .min(self.max);
        let jittered = ceiling.mul_f64(0.5 + fastrand::f64() * 0.5);
        // The receiver's Retry-After wins when it asks for longer; it is capped so that a
        // bad header cannot park a notice for days.
        match retry_after {
            Some(asked) => asked.min(Duration::from_secs(3600)),
            None => jittered,
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepCounts {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

impl StepCounts {
    pub fn attempted(&self) -> usize {
        self.sent + self.retried + self.failed
    }
}

/// The results of one step's sends, to record together, and their counts. Shared by the
/// delivery worker and the operator mail worker.
pub struct Outcomes {
    pub policy: RetryPolicy,
    pub results: Vec<DeliveryResult>,
    pub counts: StepCounts,
}

impl Outcomes {
    pub fn new(policy: RetryPolicy) -> Outcomes {
        Outcomes {
            policy,
            results: Vec::new(),
            counts: StepCounts::default(),
        }
    }

    /// Adds the outcome of a send of outbox row `outbox_id` (its `attempt`-th): sent; a
    /// transient failure retried after the policy's delay for that attempt; a permanent
    /// failure failed for good. Returns the result to record.
    pub fn add(
        &mut self,
        outbox_id: i64,
        attempt: i64,
        outcome: Result<(), DeliveryError>,
        now: Timestamp,
    ) -> &DeliveryResult {
        let result = match outcome {
            Ok(()) => {
                self.counts.sent += 1;
                DeliveryResult::Sent { outbox_id, at: now }
            }
            Err(DeliveryError::Transient {
                reason,
                retry_after,
            }) => {
                self.counts.retried += 1;
                let delay = self.policy.delay(attempt, retry_after);
                DeliveryResult::Retry {
                    outbox_id,
                    next_attempt_at: now
                        + SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX),
                    error: reason,
                }
            }
            Err(DeliveryError::Permanent { reason }) => {
                self.counts.failed += 1;
                DeliveryResult::Failed {
                    outbox_id,
                    at: now,
                    error: reason,
                }
            }
        };
        self.results.push(result);
        self.results.last().expect("just pushed")
    }
}

pub struct DeliveryWorker {
    pub storage: Storage,
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub channel: ChannelConfig,
    pub sender: Arc<ChannelSender>,
    pub wake: Arc<Notify>,
    pub policy: RetryPolicy,
    /// How long a claimed row stays with this worker: longer than any send.
    pub lease: Duration,
    rate_limit: Option<Arc<RateLimit>>,
}

impl DeliveryWorker {
    pub fn new(
        storage: Storage,
        config: Arc<Config>,
        metrics: Metrics,
        channel: ChannelConfig,
        sender: ChannelSender,
        wake: Arc<Notify>,
    ) -> DeliveryWorker {
        let timeout = sender.timeout(&config);
        let lease = claim_lease(timeout, channel.concurrency, channel.rate_limit_per_minute);
        DeliveryWorker {
            rate_limit: channel
                .rate_limit_per_minute
                .map(|limit| Arc::new(RateLimit::new(storage.clone(), &channel.name, limit))),
            storage,
            config,
            metrics,
            channel,
            sender: Arc::new(sender),
            wake,
            policy: RetryPolicy::default(),
            lease,
        }
    }

    /// Claims up to `concurrency` due rows, sends them, records the outcomes.
    pub async fn try_deliver_next(&self) -> anyhow::Result<StepCounts> {
        let claim_timer = self
            .metrics
            .storage_duration
            .with_label_values(&["claim_deliveries"])
            .start_timer();
        let claimed = self
            .storage
            .claim_deliveries(
                &self.channel.name,
                self.channel.concurrency,
                Timestamp::now(),
                self.lease,
            )
            .await?;
        claim_timer.observe_duration();
        if claimed.is_empty() {
            return Ok(StepCounts::default());
        }
        let reclaimed = claimed.iter().filter(|delivery| delivery.reclaimed).count();
        if reclaimed > 0 {
            // Their replica died or stalled mid-send: the recipients may get them twice
            // (with the same delivery id, so that a receiver can tell).
            self.metrics
                .deliveries_reclaimed
                .with_label_values(&[&self.channel.name])
                .inc_by(reclaimed as u64);
            tracing::warn!(
                channel = %self.channel.name,
                reclaimed,
                "taking over deliveries whose attempt never recorded a result"
            );
        }
        let timeout = self.sender.timeout(&self.config);
        // A send waits for the rate limit only as long as leaves it time to finish within
        // the claim's lease; beyond that (other replicas took the turns) it is retried.
        let max_rate_wait = self.lease.saturating_sub(timeout + Duration::from_secs(5));
        let mut sends = tokio::task::JoinSet::new();
        for delivery in claimed {
            let sender = self.sender.clone();
            let rate_limit = self.rate_limit.clone();
            let metrics = self.metrics.clone();
            let channel = self.channel.name.clone();
            sends.spawn(async move {
                if let Some(rate_limit) = &rate_limit {
                    let Some(waited) = rate_limit.until_ready(max_rate_wait).await else {
                        let error = DeliveryError::transient(
                            "the channel's rate limit left no room in time".to_owned(),
                        );
                        return (delivery, Err(error));
                    };
                    metrics
                        .delivery_rate_limit_wait
                        .with_label_values(&[&channel])
                        .observe(waited.as_secs_f64());
                }
                let started = Instant::now();
                let result = match tokio::time::timeout(timeout, sender.send(&delivery)).await {
                    Ok(result) => result,
                    Err(_) => Err(DeliveryError::transient(format!(
                        "no answer within {} s",
                        timeout.as_secs_f64()
                    ))),
                };
                metrics
                    .delivery_attempt_duration
                    .with_label_values(&[&channel])
                    .observe(started.elapsed().as_secs_f64());
                (delivery, result)
            });
        }
        let mut outcomes = Outcomes::new(self.policy);
        while let Some(joined) = sends.join_next().await {
            let (delivery, result) = joined?;
            let now = Timestamp::now();
            match outcomes.add(delivery.outbox_id, delivery.attempt, result, now) {
                DeliveryResult::Sent { .. } => {
                    let latency = now.duration_since(delivery.notice.published_at);
                    self.metrics
                        .delivery_latency
                        .with_label_values(&[&self.channel.name])
                        .observe(latency.as_secs_f64().max(0.0));
                }
                DeliveryResult::Retry {
                    next_attempt_at,
                    error,
                    ..
                } => {
                    tracing::warn!(
                        channel = %self.channel.name,
                        outbox_id = delivery.outbox_id,
                        attempt = delivery.attempt,
                        retry_in_seconds = next_attempt_at.duration_since(now).as_secs_f64(),
                        error = %error,
                        "delivery failed; will retry"
                    );
                }
                DeliveryResult::Failed { error, .. } => {
                    tracing::error!(
                        channel = %self.channel.name,
                        outbox_id = delivery.outbox_id,
                        error = %error,
                        "delivery failed permanently; an operator can retry it"
                    );
                }
            }
        }
        let Outcomes {
            results, counts, ..
        } = outcomes;
        let record_timer = self
            .metrics
            .storage_duration
            .with_label_values(&["record_deliveries"])
            .start_timer();
        self.storage.record_deliveries(&results).await?;
        record_timer.observe_duration();
        let channel = self.channel.name.as_str();
        self.metrics
            .deliveries
            .with_label_values(&[channel, "sent"])
            .inc_by(counts.sent as u64);
        self.metrics
            .deliveries
            .with_label_values(&[channel, "retry"])
            .inc_by(counts.retried as u64);
        self.metrics
            .deliveries
            .with_label_values(&[channel, "failed"])
            .inc_by(counts.failed as u64);
        Ok(counts)
    }

    /// The loop: deliver while there is work, otherwise wait for a wake-up or the idle
    /// poll (which also picks up retries as they fall due).
    pub async fn run_shared(self: Arc<Self>, shutdown: CancellationToken) {
        const IDLE_POLL: Duration = Duration::from_millis(500);
        let mut backoff = Duration::ZERO;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let wait = match self.try_deliver_next().await {
                Ok(counts) if counts.attempted() > 0 => {
                    backoff = Duration::ZERO;
                    continue;
                }
                Ok(_) => IDLE_POLL,
                Err(error) => {
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
                    tracing::error!(channel = %self.channel.name, error = ?error, "delivery step failed");
                    backoff
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(channel = %self.channel.name, "delivery worker stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_honours_retry_after() {
        let policy = RetryPolicy {
            base: Duration::from_secs(5),
            max: Duration::from_secs(900),
        };
        for attempt in 1..=12 {
            let delay = policy.delay(attempt, None);
            let ceiling = Duration::from_secs(5 * 2_u64.pow((attempt - 1) as u32))
                .min(Duration::from_secs(900));
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "attempt {attempt}: {delay:?}"
            );
        }
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(999_999))),
            Duration::from_secs(3600)
        );
    }
}
