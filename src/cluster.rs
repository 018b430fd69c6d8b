//! Roles that one replica at a time plays, under a lease in the database: `correlation`
//! (the incident worker: webhooks into incidents, in order, and the Watchdog check) and
//! `timers` (review escalation and next-update reminders). Everything else (HTTP, ingest,
//! delivery, operator mail) runs on every replica at once.
//!
//! Each [`Lease`] renews itself five times per `cluster.lease_ttl`. This replica counts
//! itself the holder only until `ttl` after the start of its last successful renewal: the
//! database judged expiry from a later moment, so the replica gives up its role before
//! another can take it (clocks run at the same rate; only their offsets differ). When the
//! holder dies, its lease expires and another replica takes it within `ttl` and one
//! renewal period. The work done under a lease is fenced too: the incident worker checks
//! the lease inside its write transaction ([`crate::storage::ClusterTx::hold_lease`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::storage::Storage;

/// The incident worker's lease.
pub const CORRELATION: &str = "correlation";
/// The operator timers' lease (escalation, reminders).
pub const TIMERS: &str = "timers";

/// Renewals per lease period.
const RENEWALS_PER_TTL: u32 = 5;

/// This replica's identity in leases: its configured name and a random suffix, so that a
/// restarted process (or two configured alike) never takes the other's lease for its own.
pub fn holder_id(replica_name: &str) -> String {
    format!("{replica_name}/{:08x}", fastrand::u32(..))
}

/// A lease this replica tries to hold; cloning shares it.
#[derive(Clone)]
pub struct Lease(Arc<LeaseInner>);

struct LeaseInner {
    name: &'static str,
    holder: String,
    ttl: Duration,
    /// Until when this replica may act as the holder; `None` when it does not hold it.
    held_until: std::sync::Mutex<Option<Instant>>,
    /// Counts the times this replica took the lease: state kept under an earlier term may
    /// have been changed by another holder since.
    term: AtomicU64,
    /// Woken when this replica takes the lease.
    taken: Arc<Notify>,
}

impl Lease {
    /// `taken` is notified each time this replica takes the lease (the worker that
    /// waits for it).
    pub fn new(name: &'static str, holder: &str, ttl: Duration, taken: Arc<Notify>) -> Lease {
        Lease(Arc::new(LeaseInner {
            name,
            holder: holder.to_owned(),
            ttl,
            held_until: std::sync::Mutex::new(None),
            term: AtomicU64::new(0),
            taken,
        }))
    }

    pub fn name(&self) -> &'static str {
        self.0.name
    }

    pub fn holder(&self) -> &str {
        &self.0.holder
    }

    /// Whether this replica holds the lease now.
    pub fn is_held(&self) -> bool {
        self.0
            .held_until
            .lock()
            .expect("lease lock")
            .is_some_and(|until| Instant::now() < until)
    }

    /// The current term: it changes each time this replica takes the lease anew.
    pub fn term(&self) -> u64 {
        self.0.term.load(Ordering::SeqCst)
    }

    /// Takes or renews the lease once. Returns whether this replica holds it.
    pub async fn renew(&self, storage: &Storage, metrics: &Metrics) -> bool {
        let started = Instant::now();
        let inner = &self.0;
        let held = match storage
            .acquire_lease(inner.name, &inner.holder, inner.ttl)
            .await
        {
            Ok(lease) => {
                let held = lease.holder == inner.holder;
                let mut held_until = inner.held_until.lock().expect("lease lock");
                let was_held = held_until.is_some_and(|until| Instant::now() < until);
                *held_until = held.then(|| started + inner.ttl);
                if held && !was_held {
                    inner.term.fetch_add(1, Ordering::SeqCst);
                    metrics
                        .lease_acquisitions
                        .with_label_values(&[inner.name])
                        .inc();
                    tracing::info!(lease = inner.name, holder = %inner.holder, "lease taken");
                    inner.taken.notify_one();
                } else if !held && was_held {
                    tracing::warn!(lease = inner.name, holder = %lease.holder, "lease lost to another replica");
                }
                held
            }
            Err(error) => {
                // Keep the role until the last renewal runs out: the database may be back
                // before then. After it, another replica may hold the lease.
                tracing::warn!(lease = inner.name, error = ?anyhow::Error::from(error), "cannot renew the lease");
                self.is_held()
            }
        };
        metrics
            .lease_held
            .with_label_values(&[inner.name])
            .set(i64::from(held));
        held
    }

    /// Renews the lease until `shutdown`, then gives it up so that another replica takes
    /// over at once.
    pub async fn run(self, storage: Storage, metrics: Metrics, shutdown: CancellationToken) {
        let period = self.0.ttl / RENEWALS_PER_TTL;
        loop {
            self.renew(&storage, &metrics).await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(period) => {}
            }
        }
        *self.0.held_until.lock().expect("lease lock") = None;
        metrics.lease_held.with_label_values(&[self.0.name]).set(0);
        if let Err(error) = storage.release_lease(self.0.name, &self.0.holder).await {
            tracing::warn!(lease = self.0.name, error = ?anyhow::Error::from(error), "cannot release the lease; it expires by itself");
        }
    }
}
