//! Leases, heartbeats and token buckets on PostgreSQL, shared by every replica. A lease is
//! taken by one upsert that locks its row, and its expiry is judged by the database's
//! clock; a token bucket is read and written under its row lock.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row as _;

use super::{PgStorage, PgTx, format_time, parse_time, storage_error};
use crate::storage::cluster::{refill, take};
use crate::storage::{Cluster, ClusterTx, LeaseRecord, StorageError};

#[async_trait]
impl Cluster for PgStorage {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseRecord, StorageError> {
        let error = |source| storage_error("acquire_lease", source);
        // The row lock of the upsert makes two replicas asking at once take turns: the
        // second sees the first's lease and takes it only if it has expired.
        let row = sqlx::query(
            "WITH now AS (SELECT relay_time_text(clock_timestamp()) AS now, \
                    relay_time_text(clock_timestamp() + make_interval(secs => $3)) AS until) \
             INSERT INTO leases (name, holder, acquired_at, expires_at) \
             SELECT $1, $2, now.now, now.until FROM now \
             ON CONFLICT (name) DO UPDATE SET \
                 acquired_at = CASE WHEN leases.holder = excluded.holder \
                     THEN leases.acquired_at ELSE excluded.acquired_at END, \
                 holder = excluded.holder, \
                 expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.acquired_at \
             RETURNING name, holder, acquired_at, expires_at",
        )
        .bind(name)
        .bind(holder)
        .bind(ttl.as_secs_f64())
        .fetch_optional(&self.pool)
        .await
        .map_err(error)?;
        match row {
            Some(row) => lease_row(&row),
            // Held by another replica: as it stands.
            None => lease(&self.pool, name)
                .await?
                .ok_or_else(|| error(sqlx::Error::RowNotFound)),
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(|source| storage_error("release_lease", source))?;
        Ok(())
    }

    async fn clear_leases(&self) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM leases")
            .execute(&self.pool)
            .await
            .map_err(|source| storage_error("clear_leases", source))?;
        Ok(done.rows_affected())
    }

    async fn leases(&self) -> Result<Vec<LeaseRecord>, StorageError> {
        let rows =
            sqlx::query("SELECT name, holder, acquired_at, expires_at FROM leases ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(|source| storage_error("leases", source))?;
        rows.iter().map(lease_row).collect()
    }

    async fn record_heartbeat(&self, name: &str, at: Timestamp) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO heartbeats (name, last_seen) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen \
             WHERE excluded.last_seen > heartbeats.last_seen",
        )
        .bind(name)
        .bind(format_time(at))
        .execute(&self.pool)
        .await
        .map_err(|source| storage_error("record_heartbeat", source))?;
        Ok(())
    }

    async fn last_heartbeat(&self, name: &str) -> Result<Option<Timestamp>, StorageError> {
        let error = |source| storage_error("last_heartbeat", source);
        let text: Option<String> =
            sqlx::query_scalar("SELECT last_seen FROM heartbeats WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(error)?;
        text.map(|text| parse_time(&text).map_err(|source| storage_error("last_heartbeat", source)))
            .transpose()
    }

    async fn take_tokens(
        &self,
        key: &str,
        want: u32,
        per_minute: f64,
        burst: u32,
        now: Timestamp,
    ) -> Result<u32, StorageError> {
        let error = |source| storage_error("take_tokens", source);
        let mut transaction = self.begin().await?;
        // A new bucket starts full; then its row is locked until the commit, so that two
        // replicas never both take what only one of them may.
        sqlx::query(
            "INSERT INTO rate_buckets (key, tokens, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(f64::from(burst))
        .bind(format_time(now))
        .execute(&mut *transaction)
        .await
        .map_err(error)?;
        let row =
            sqlx::query("SELECT tokens, updated_at FROM rate_buckets WHERE key = $1 FOR UPDATE")
                .bind(key)
                .fetch_one(&mut *transaction)
                .await
                .map_err(error)?;
        let tokens: f64 = row.try_get("tokens").map_err(error)?;
        let updated_at: String = row.try_get("updated_at").map_err(error)?;
        let updated_at =
            parse_time(&updated_at).map_err(|source| storage_error("take_tokens", source))?;
        let (granted, left) = take(refill(tokens, updated_at, now, per_minute, burst), want);
        // A replica whose clock is behind never moves the bucket's time back.
        sqlx::query("UPDATE rate_buckets SET tokens = $2, updated_at = GREATEST(updated_at, $3) WHERE key = $1")
            .bind(key)
            .bind(left)
            .bind(format_time(now))
            .execute(&mut *transaction)
            .await
            .map_err(error)?;
        transaction.commit().await.map_err(error)?;
        Ok(granted)
    }
}

#[async_trait]
impl ClusterTx for PgTx {
    /// Locks the lease's row until the commit (another replica's `acquire_lease` waits for
    /// it) and checks it against the database's clock.
    async fn hold_lease(&mut self, name: &str, holder: &str) -> Result<bool, StorageError> {
        sqlx::query_scalar(
            "SELECT COALESCE((SELECT holder = $2 AND expires_at > relay_time_text(clock_timestamp()) \
             FROM leases WHERE name = $1 FOR UPDATE), FALSE)",
        )
        .bind(name)
        .bind(holder)
        .fetch_one(&mut *self.0)
        .await
        .map_err(|source| storage_error("hold_lease", source))
    }
}

async fn lease(
    connection: impl sqlx::PgExecutor<'_>,
    name: &str,
) -> Result<Option<LeaseRecord>, StorageError> {
    let row =
        sqlx::query("SELECT name, holder, acquired_at, expires_at FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(connection)
            .await
            .map_err(|source| storage_error("lease", source))?;
    row.as_ref().map(lease_row).transpose()
}

fn lease_row(row: &sqlx::postgres::PgRow) -> Result<LeaseRecord, StorageError> {
    let error = |source| storage_error("lease", source);
    let time = |column: &str| -> Result<Timestamp, StorageError> {
        let text: String = row.try_get(column).map_err(error)?;
        parse_time(&text).map_err(|source| storage_error("lease", source))
    };
    Ok(LeaseRecord {
        name: row.try_get("name").map_err(error)?,
        holder: row.try_get("holder").map_err(error)?,
        acquired_at: time("acquired_at")?,
        expires_at: time("expires_at")?,
    })
}
