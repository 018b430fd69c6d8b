//! The backlog between ingest and the incident worker: how many stored receipts wait to be
//! processed, so that ingest refuses a webhook (503 with `Retry-After`) when the worker
//! falls too far behind, instead of letting the backlog grow without bound.
//!
//! Counted by receipt id, not by rows: ingest notes the highest id it stored, the incident
//! worker the highest id it processed (it takes receipts in id order), and the backlog is
//! the difference. The webhook's path then costs two atomic loads and no database read.
//! Ids are global over a shared database, so on PostgreSQL the figure is an estimate of
//! the whole cluster's backlog: a replica that does not correlate refreshes both ids from
//! the database once a second; ids that resends drew without storing a row count as
//! waiting, and a receipt whose id was drawn before, but committed after, a higher one
//! that was processed counts as done. An estimate to refuse by, not an exact count
//! (`samsa_relay_receipts_pending` is that, every 5 s).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntGauge;

/// `Retry-After` bounds: at least a second (0 would invite a busy loop), at most a minute
/// (Alertmanager keeps a notification for its group interval, and a longer pause only
/// delays alerts that the worker may have room for sooner).
pub const MIN_RETRY_AFTER_SECS: u64 = 1;
pub const MAX_RETRY_AFTER_SECS: u64 = 60;
/// `Retry-After` before the first drain rate is measured.
pub const UNKNOWN_RATE_RETRY_AFTER_SECS: u64 = 5;

/// How fast the drain-rate estimate forgets: a sample's weight halves in about 7 s. Long
/// enough to smooth batch-to-batch noise, short enough to follow a worker that slows down.
const RATE_TIME_CONSTANT: Duration = Duration::from_secs(10);

/// At most one warning about refused webhooks per this long: a full backlog refuses every
/// webhook, and one line per request would flood the log when it is least wanted.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// The backlog estimate and the drain rate. Cloning shares it.
#[derive(Clone)]
pub struct Backlog {
    inner: Arc<Inner>,
}

struct Inner {
    /// Most receipts waiting before ingest refuses more.
    limit: u64,
    /// The highest receipt id stored (by this process, or read from the database).
    stored: AtomicI64,
    /// Every receipt up to this id is processed.
    processed: AtomicI64,
    /// Set to the backlog after every change.
    gauge: IntGauge,
    /// Behind a lock, since its fields change together; touched once per worker batch and
    /// per refusal, never on an accepted webhook's path.
    drain: Mutex<Drain>,
    /// Refused webhooks since the last warning, and when that was (nanoseconds since
    /// `origin`; `u64::MAX` before the first).
    refused_since_warning: AtomicU64,
    last_warning: AtomicU64,
    origin: Instant,
}

#[derive(Debug, Default)]
struct Drain {
    /// When the watermark was last noted, and whether receipts were still waiting then:
    /// only then was the worker busy all the time since, and the interval a fair sample.
    last: Option<(Instant, bool)>,
    /// Receipts processed per second while busy, smoothed; `None` until measured.
    rate: Option<f64>,
}

impl Backlog {
    /// An empty backlog that refuses at `limit` receipts (at least 1) and shows its size
    /// in `gauge`.
    pub fn new(limit: u64, gauge: IntGauge) -> Backlog {
        gauge.set(0);
        Backlog {
            inner: Arc::new(Inner {
                limit: limit.max(1),
                stored: AtomicI64::new(0),
                processed: AtomicI64::new(0),
                gauge,
                drain: Mutex::new(Drain::default()),
                refused_since_warning: AtomicU64::new(0),
                last_warning: AtomicU64::new(u64::MAX),
                origin: Instant::now(),
            }),
        }
    }

    /// The limit it refuses at.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// A receipt with this id was stored (ids below it may be waiting too).
    pub fn note_stored(&self, receipt_id: i64) {
        self.inner.stored.fetch_max(receipt_id, Ordering::AcqRel);
        self.update_gauge();
    }

    /// Every receipt up to this id is processed: after a worker batch commits, or read
    /// from the database. Also a sample of the drain rate.
    pub fn note_processed(&self, up_to_receipt_id: i64) {
        self.note_processed_at(up_to_receipt_id, Instant::now());
    }

    fn note_processed_at(&self, up_to_receipt_id: i64, now: Instant) {
        let before = self
            .inner
            .processed
            .fetch_max(up_to_receipt_id, Ordering::AcqRel);
        let after = before.max(up_to_receipt_id);
        let waiting = self.inner.stored.load(Ordering::Acquire) > after;
        {
            let mut drain = self.inner.drain.lock().expect("backlog drain lock");
            if let Some((last_at, was_waiting)) = drain.last
                && was_waiting
            {
                let elapsed = now.saturating_duration_since(last_at);
                drain.rate = smoothed_rate(drain.rate, (after - before) as f64, elapsed);
            }
            drain.last = Some((now, waiting));
        }
        self.update_gauge();
    }

    /// The highest receipt id known to be stored.
    pub fn stored_up_to(&self) -> i64 {
        self.inner.stored.load(Ordering::Acquire)
    }

    /// Receipts stored and not yet processed (never below 0).
    pub fn len(&self) -> u64 {
        let stored = self.inner.stored.load(Ordering::Acquire);
        let processed = self.inner.processed.load(Ordering::Acquire);
        stored.saturating_sub(processed).max(0) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether ingest should refuse webhooks now. The limit is soft: requests already
    /// past this check when it is reached are still stored.
    pub fn is_full(&self) -> bool {
        self.len() >= self.inner.limit
    }

    /// Receipts processed per second, smoothed, once measured.
    pub fn drain_rate(&self) -> Option<f64> {
        self.inner.drain.lock().expect("backlog drain lock").rate
    }

    /// How long a refused sender should wait: the time to drain the backlog at the
    /// measured rate.
    pub fn retry_after_secs(&self) -> u64 {
        retry_after_secs(self.len(), self.drain_rate())
    }

    /// Counts a refused webhook; `Some(n)` when a warning is due (none in the last
    /// [`WARN_EVERY`]), with the webhooks refused since the last one, this one included.
    pub fn note_refused(&self) -> Option<u64> {
        self.note_refused_at(Instant::now())
    }

    fn note_refused_at(&self, now: Instant) -> Option<u64> {
        let inner = &self.inner;
        inner.refused_since_warning.fetch_add(1, Ordering::AcqRel);
        let now_nanos = u64::try_from(now.saturating_duration_since(inner.origin).as_nanos())
            .unwrap_or(u64::MAX - 1);
        let last = inner.last_warning.load(Ordering::Acquire);
        let due =
            last == u64::MAX || now_nanos.saturating_sub(last) >= WARN_EVERY.as_nanos() as u64;
        // Of requests refused at once, the one that moves the time warns.
        if due
            && inner
                .last_warning
                .compare_exchange(last, now_nanos, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(inner.refused_since_warning.swap(0, Ordering::AcqRel));
        }
        None
    }

    fn update_gauge(&self) {
        self.inner
            .gauge
            .set(i64::try_from(self.len()).unwrap_or(i64::MAX));
    }
}

/// The drain rate after one more sample of `processed` receipts in `elapsed`: an
/// exponential average weighted by time, so that many short batches count as much as one
/// long one over the same time.
fn smoothed_rate(previous: Option<f64>, processed: f64, elapsed: Duration) -> Option<f64> {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return previous;
    }
    let sample = processed / seconds;
    Some(match previous {
        None => sample,
        Some(rate) => {
            let weight = 1.0 - (-seconds / RATE_TIME_CONSTANT.as_secs_f64()).exp();
            rate + weight * (sample - rate)
        }
    })
}

/// `backlog / rate` seconds, rounded up and clamped to
/// [`MIN_RETRY_AFTER_SECS`]..=[`MAX_RETRY_AFTER_SECS`]; [`UNKNOWN_RATE_RETRY_AFTER_SECS`]
/// before a rate is measured. A rate of 0 (a worker that makes no progress) gives the
/// maximum.
fn retry_after_secs(backlog: u64, rate: Option<f64>) -> u64 {
    let Some(rate) = rate else {
        return UNKNOWN_RATE_RETRY_AFTER_SECS;
    };
    let seconds = (backlog as f64 / rate).ceil();
    if seconds.is_nan() || seconds >= MAX_RETRY_AFTER_SECS as f64 {
        return MAX_RETRY_AFTER_SECS;
    }
    (seconds as u64).clamp(MIN_RETRY_AFTER_SECS, MAX_RETRY_AFTER_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(limit: u64) -> (Backlog, IntGauge) {
        let gauge = IntGauge::new("backlog_test", "test").unwrap();
        (Backlog::new(limit, gauge.clone()), gauge)
    }

    #[test]
    fn the_backlog_is_stored_minus_processed_and_never_negative() {
        let (backlog, gauge) = backlog(3);
        assert_eq!((backlog.len(), backlog.is_full()), (0, false));
        backlog.note_stored(2);
        assert_eq!((backlog.len(), gauge.get()), (2, 2));
        backlog.note_stored(3);
        assert!(backlog.is_full(), "full at the limit");
        // An earlier id (a duplicate, or a slower request) does not move it back.
        backlog.note_stored(1);
        assert_eq!(backlog.len(), 3);
        backlog.note_processed(2);
        assert_eq!((backlog.len(), gauge.get()), (1, 1));
        assert!(!backlog.is_full());
        // Another replica's receipts processed beyond what this one stored.
        backlog.note_processed(10);
        assert_eq!((backlog.len(), gauge.get()), (0, 0));
        // A stale refresh does not move the watermark back.
        backlog.note_processed(5);
        assert_eq!(backlog.len(), 0);
        backlog.note_stored(14);
        assert_eq!(backlog.len(), 4);
        assert!(backlog.is_full());
    }

    #[test]
    fn a_limit_of_zero_is_taken_as_one() {
        let (backlog, _) = backlog(0);
        assert_eq!(backlog.limit(), 1);
        assert!(!backlog.is_full());
        backlog.note_stored(1);
        assert!(backlog.is_full());
    }

    #[test]
    fn retry_after_is_backlog_over_rate_rounded_up_and_clamped() {
        assert_eq!(retry_after_secs(1000, None), 5);
        assert_eq!(retry_after_secs(1000, Some(100.0)), 10);
        assert_eq!(retry_after_secs(1001, Some(100.0)), 11);
        assert_eq!(retry_after_secs(10, Some(100.0)), 1);
        assert_eq!(retry_after_secs(0, Some(100.0)), 1);
        assert_eq!(retry_after_secs(100_000, Some(100.0)), 60);
        assert_eq!(retry_after_secs(5, Some(0.0)), 60);
        assert_eq!(retry_after_secs(0, Some(0.0)), 60);
        assert_eq!(retry_after_secs(20_000, Some(1e-300)), 60);
    }

    #[test]
    fn the_drain_rate_is_measured_only_over_busy_intervals() {
        let (backlog, _) = backlog(1000);
        let start = Instant::now();
        backlog.note_stored(100);
        // The first note is a baseline, not a sample.
        backlog.note_processed_at(0, start);
        assert_eq!(backlog.drain_rate(), None);
        assert_eq!(backlog.retry_after_secs(), 5);
        // Busy since the baseline: 50 receipts in 2 s.
        backlog.note_processed_at(50, start + Duration::from_secs(2));
        assert_eq!(backlog.drain_rate(), Some(25.0));
        assert_eq!(backlog.retry_after_secs(), 2, "50 left at 25 a second");
        // Drained; the quiet minute after is waiting for ingest, not a slow worker.
        backlog.note_processed_at(100, start + Duration::from_secs(3));
        let rate = backlog.drain_rate().unwrap();
        assert!(rate > 25.0 && rate < 50.0, "{rate}");
        backlog.note_stored(101);
        backlog.note_processed_at(101, start + Duration::from_secs(63));
        assert_eq!(backlog.drain_rate(), Some(rate));
    }

    #[test]
    fn a_worker_that_makes_no_progress_drives_the_rate_down() {
        let (backlog, _) = backlog(1000);
        let start = Instant::now();
        backlog.note_stored(200);
        backlog.note_processed_at(0, start);
        backlog.note_processed_at(100, start + Duration::from_secs(1));
        assert_eq!(backlog.drain_rate(), Some(100.0));
        // Refreshes from the database that find the same watermark.
        for second in 2..=60 {
            backlog.note_processed_at(100, start + Duration::from_secs(second));
        }
        let rate = backlog.drain_rate().unwrap();
        assert!(rate < 1.0, "{rate}");
        assert_eq!(backlog.retry_after_secs(), 60);
    }

    #[test]
    fn the_rate_follows_a_change_with_the_time_constant() {
        let ten_seconds = RATE_TIME_CONSTANT;
        let rate = smoothed_rate(Some(100.0), 0.0, ten_seconds).unwrap();
        // After one time constant, 1/e of the old rate is left.
        assert!((rate - 100.0 / std::f64::consts::E).abs() < 1e-9, "{rate}");
        // Ten samples of a second weigh as much as one of ten seconds.
        let mut stepped = Some(100.0);
        for _ in 0..10 {
            stepped = smoothed_rate(stepped, 0.0, Duration::from_secs(1));
        }
        assert!((stepped.unwrap() - rate).abs() < 1e-9);
        assert_eq!(smoothed_rate(Some(7.0), 5.0, Duration::ZERO), Some(7.0));
        assert_eq!(smoothed_rate(None, 5.0, Duration::ZERO), None);
    }

    #[test]
    fn a_refusal_warning_is_due_at_most_once_per_interval_and_counts_the_rest() {
        let (backlog, _) = backlog(1);
        let start = backlog.inner.origin;
        assert_eq!(backlog.note_refused_at(start), Some(1));
        for second in 1..10 {
            assert_eq!(
                backlog.note_refused_at(start + Duration::from_secs(second)),
                None
            );
        }
        assert_eq!(
            backlog.note_refused_at(start + Duration::from_secs(10)),
            Some(10)
        );
        assert_eq!(
            backlog.note_refused_at(start + Duration::from_secs(15)),
            None
        );
        assert_eq!(
            backlog.note_refused_at(start + Duration::from_secs(21)),
            Some(2)
        );
    }
}
