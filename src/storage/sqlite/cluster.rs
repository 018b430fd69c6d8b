//! Leases, heartbeats and token buckets on SQLite: one replica, so every operation is a
//! short write transaction and the clock is this process's.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row as _;

use super::{Connection, SqliteStorage, SqliteTx, format_time, parse_time, storage_error};
use crate::storage::cluster::{refill, take};
use crate::storage::{Cluster, ClusterTx, LeaseRecord, StorageError};

#[async_trait]
impl Cluster for SqliteStorage {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseRecord, StorageError> {
        let error = |source| storage_error("acquire_lease", source);
        let now = Timestamp::now();
        let expires_at = now + ttl;
        let mut transaction = self.begin_immediate().await?;
        sqlx::query(
            "INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET
                 acquired_at = CASE WHEN leases.holder = excluded.holder
                     THEN leases.acquired_at ELSE excluded.acquired_at END,
                 holder = excluded.holder,
                 expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= ?3",
        )
        .bind(name)
        .bind(holder)
        .bind(format_time(now))
        .bind(format_time(expires_at))
        .execute(&mut *transaction)
        .await
        .map_err(error)?;
        let lease = lease(&mut transaction, name).await?;
        transaction.commit().await.map_err(error)?;
        lease.ok_or_else(|| error(sqlx::Error::RowNotFound))
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.writer)
            .await
            .map_err(|source| storage_error("release_lease", source))?;
        Ok(())
    }

    async fn clear_leases(&self) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM leases")
            .execute(&self.writer)
            .await
            .map_err(|source| storage_error("clear_leases", source))?;
        Ok(done.rows_affected())
    }

    async fn leases(&self) -> Result<Vec<LeaseRecord>, StorageError> {
        let rows =
            sqlx::query("SELECT name, holder, acquired_at, expires_at FROM leases ORDER BY name")
                .fetch_all(&self.reader)
                .await
                .map_err(|source| storage_error("leases", source))?;
        rows.iter().map(lease_row).collect()
    }

    async fn record_heartbeat(&self, name: &str, at: Timestamp) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO heartbeats (name, last_seen) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen
             WHERE excluded.last_seen > heartbeats.last_seen",
        )
        .bind(name)
        .bind(format_time(at))
        .execute(&self.writer)
        .await
        .map_err(|source| storage_error("record_heartbeat", source))?;
        Ok(())
    }

    async fn last_heartbeat(&self, name: &str) -> Result<Option<Timestamp>, StorageError> {
        let error = |source| storage_error("last_heartbeat", source);
        let text: Option<String> =
            sqlx::query_scalar("SELECT last_seen FROM heartbeats WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.reader)
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
        let mut transaction = self.begin_immediate().await?;
        let row = sqlx::query("SELECT tokens, updated_at FROM rate_buckets WHERE key = ?")
            .bind(key)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(error)?;
        let tokens = match row {
            Some(row) => {
                let tokens: f64 = row.try_get("tokens").map_err(error)?;
                let updated_at: String = row.try_get("updated_at").map_err(error)?;
                let updated_at = parse_time(&updated_at)
                    .map_err(|source| storage_error("take_tokens", source))?;
                refill(tokens, updated_at, now, per_minute, burst)
            }
            None => f64::from(burst),
        };
        let (granted, left) = take(tokens, want);
        sqlx::query(
            "INSERT INTO rate_buckets (key, tokens, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens,
                 updated_at = excluded.updated_at",
        )
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
impl ClusterTx for SqliteTx {
    /// The write lock (`BEGIN IMMEDIATE`) already keeps every other writer out until the
    /// commit, so reading the lease is enough.
    async fn hold_lease(&mut self, name: &str, holder: &str) -> Result<bool, StorageError> {
        let lease = lease(&mut self.0, name).await?;
        Ok(lease.is_some_and(|lease| lease.is_held_by(holder, Timestamp::now())))
    }
}

async fn lease(
    connection: &mut Connection,
    name: &str,
) -> Result<Option<LeaseRecord>, StorageError> {
    let row =
        sqlx::query("SELECT name, holder, acquired_at, expires_at FROM leases WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *connection)
            .await
            .map_err(|source| storage_error("lease", source))?;
    row.as_ref().map(lease_row).transpose()
}

fn lease_row(row: &sqlx::sqlite::SqliteRow) -> Result<LeaseRecord, StorageError> {
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
