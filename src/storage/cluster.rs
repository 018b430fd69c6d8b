//! Coordination between replicas that share one database: leases (one holder at a time,
//! with an expiry, so that a replica that dies is replaced within the lease's time),
//! heartbeats that any replica may record, and cluster-wide token buckets for channel rate
//! limits. With SQLite there is one replica, and these are the same tables used by one.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::StorageError;

/// Leases, heartbeats and rate budgets, outside a transaction.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Takes the lease `name` for `holder` until `ttl` from now when it is free, expired, or
    /// already `holder`'s (then it is renewed). Returns the lease as it stands afterwards,
    /// whoever holds it. Expiry is judged by the database's clock where it has one, so that
    /// replicas with skewed clocks agree.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseRecord, StorageError>;

    /// Gives up the lease if `holder` holds it (at shutdown), so another replica takes over
    /// at once instead of after the expiry.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError>;

    /// Drops every lease: at start-up when the database is not shared
    /// ([`super::Backend::is_shared`]), since any lease was left by a run that died.
    /// Returns how many there were.
    async fn clear_leases(&self) -> Result<u64, StorageError>;

    /// Every lease with its holder and expiry, by name.
    async fn leases(&self) -> Result<Vec<LeaseRecord>, StorageError>;

    /// Records that the heartbeat `name` (the Watchdog alert) arrived at `at`; an earlier
    /// time than the one stored changes nothing.
    async fn record_heartbeat(&self, name: &str, at: Timestamp) -> Result<(), StorageError>;

    /// When the heartbeat `name` last arrived, on any replica.
    async fn last_heartbeat(&self, name: &str) -> Result<Option<Timestamp>, StorageError>;

    /// Takes up to `want` tokens from the cluster-wide bucket `key`, which holds at most
    /// `burst` and refills at `per_minute` a minute (see [`refill`]). Returns how many were
    /// granted (0 to `want`); two replicas asking at once never get more than the bucket
    /// holds.
    async fn take_tokens(
        &self,
        key: &str,
        want: u32,
        per_minute: f64,
        burst: u32,
        now: Timestamp,
    ) -> Result<u32, StorageError>;
}

/// What runs inside a write transaction.
#[async_trait]
pub trait ClusterTx: Send {
    /// Whether `holder` holds the lease `name`, unexpired, locking the lease until the
    /// transaction ends so that it cannot pass to another replica before the commit: the
    /// fence that keeps a replica that stalled past its lease from writing.
    async fn hold_lease(&mut self, name: &str, holder: &str) -> Result<bool, StorageError>;
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub name: String,
    pub holder: String,
    /// When the holder took it (renewals keep this time).
    pub acquired_at: Timestamp,
    pub expires_at: Timestamp,
}

impl LeaseRecord {
    /// Whether `holder` holds it at `now`.
    pub fn is_held_by(&self, holder: &str, now: Timestamp) -> bool {
        self.holder == holder && self.expires_at > now
    }
}

/// A token bucket's content after refilling it from `updated_at` to `now`: `per_minute`
/// tokens a minute, at most `burst`. A clock that went back refills nothing.
pub fn refill(
    tokens: f64,
    updated_at: Timestamp,
    now: Timestamp,
    per_minute: f64,
    burst: u32,
) -> f64 {
    let elapsed = now.duration_since(updated_at).as_secs_f64().max(0.0);
    (tokens + elapsed * per_minute / 60.0).min(f64::from(burst))
}

/// Takes up to `want` whole tokens from a bucket holding `tokens`: (granted, left).
pub fn take(tokens: f64, want: u32) -> (u32, f64) {
    let granted = (tokens.floor().max(0.0) as u32).min(want);
    (granted, tokens - f64::from(granted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let start: Timestamp = "2026-12-03T08:00:00Z".parse().unwrap();
        let later = start + jiff::SignedDuration::from_secs(10);
        // 30 a minute is one every 2 s: 5 in 10 s.
        assert_eq!(refill(0.0, start, later, 30.0, 30), 5.0);
        assert_eq!(refill(28.0, start, later, 30.0, 30), 30.0);
        // A clock that went back refills nothing.
        assert_eq!(refill(3.0, later, start, 30.0, 30), 3.0);
        assert_eq!(take(5.0, 3), (3, 2.0));
        assert_eq!(take(2.5, 3), (2, 0.5));
        assert_eq!(take(0.9, 3), (0, 0.9));
    }
}
