//! The PostgreSQL backend: one database shared by every replica of the relay. A commit
//! returns once the WAL is flushed (`synchronous_commit = on`, set on every connection),
//! so a webhook is acknowledged only after its receipt is durable.
//!
//! **Write transactions.** SQLite has one writer; the domain relies on it where it reads,
//! decides and writes (the incident worker's correlation, publishing, drafting by hand,
//! numbering a new incident as the highest id + 1). Here [`Backend::begin_write`] and the
//! few write methods that read before they decide take one transaction-scoped advisory
//! lock (`pg_advisory_xact_lock`, [`WRITE_LOCK`]) right after `BEGIN`, so those
//! transactions run one at a time across all replicas, as on SQLite, and the lock goes
//! with the commit or rollback (nothing to release if a replica dies). SERIALIZABLE with
//! retries was the alternative: it would need every caller of `begin_write` to repeat its
//! whole read-decide-write on 40001, and the incident worker's batch would be retried
//! under contention rather than simply waiting its turn. The hot paths take no such lock
//! and stay concurrent: ingest (`INSERT … ON CONFLICT DO NOTHING` on the dedupe key, so
//! the same webhook stored by two replicas at once is one row and the other answer a
//! duplicate), outbox and operator mail claims (`FOR UPDATE SKIP LOCKED`), recording
//! sends, leases, heartbeats and token buckets (one row each, locked by the statement).
//! Waiting for any lock is bounded by `database.busy_timeout` (`lock_timeout`).
//!
//! **Time.** Times are stored as the same fixed-width UTC text as on SQLite (see the
//! migration): `timestamptz` would round nanoseconds away. Lease expiry is judged by the
//! database's clock (`relay_time_text(clock_timestamp())`), so replicas with skewed clocks
//! agree.
//!
//! **Errors.** Transient (503 and retry): connection and I/O errors, the pool timing out
//! or closed, SQLSTATE class 08 (connection), 40001 and 40P01 (serialisation, deadlock),
//! class 53 (insufficient resources: disk full, out of memory, too many connections),
//! 55P03 (lock timeout), 57014 (statement cancelled), 57P01–57P03 (the server shutting
//! down or starting). Anything else (a constraint, a row that does not parse) is permanent.
//!
//! This file holds the pool, migrations, the transaction type and the error mapping; one
//! file per aggregate implements its interface, as in `sqlite/`.

mod cluster;
mod followup;
mod incidents;
mod maintenance;
mod operator_mail;
mod outbox;
mod publications;
mod receipts;
mod rows;
mod subscriptions;

pub use incidents::TRACKED_ALERTS;
pub use publications::{FAILED_DELIVERIES, OUTBOX_BACKLOG};
pub use receipts::NEXT_RECEIPTS;

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    Backend, BackendTx, ReadTransaction, StorageError, WriteTransaction, format_time, parse_time,
};
use crate::config::PostgresUrl;

/// Rows per multi-row INSERT: at most 12 parameters each, far below PostgreSQL's 65,535.
const ROWS_PER_STATEMENT: usize = 500;

/// The advisory lock every serialised write transaction takes (`pg_advisory_xact_lock`):
/// "samsa" in ASCII. Other advisory locks in the same database (sqlx's migration lock is
/// derived from the database's name) do not collide with it in practice.
const WRITE_LOCK: i64 = 0x73_61_6d_73_61;

/// A connection inside a transaction, as the query functions take it.
type Connection = sqlx::PgConnection;

#[derive(Clone)]
pub(super) struct PgStorage {
    pool: PgPool,
}

impl PgStorage {
    /// Connects, and migrates the schema (sqlx's migrator holds a session advisory lock
    /// while it runs, so replicas starting at once migrate one after the other and the
    /// later ones find nothing to do).
    pub async fn open(
        url: &PostgresUrl,
        busy_timeout: Duration,
        max_connections: u32,
    ) -> anyhow::Result<PgStorage> {
        let redacted = &url.redacted;
        let mut options = PgConnectOptions::from_str(url.url.expose())
            .map_err(|error| anyhow::anyhow!("the database URL {redacted}: {error}"))?
            .application_name("samsa-relay")
            .options([
                ("synchronous_commit", "on".to_owned()),
                ("lock_timeout", format!("{}ms", busy_timeout.as_millis())),
                // A transaction left open by a stalled replica must not hold locks for
                // ever; no transaction of the relay lasts anywhere near this.
                ("idle_in_transaction_session_timeout", "60s".to_owned()),
                ("TimeZone", "UTC".to_owned()),
            ]);
        if let Some(password) = &url.password {
            options = options.password(password.expose());
        }
        if let Some(pem) = &url.ca_certificates_pem {
            options = options.ssl_root_cert_from_pem(pem.clone());
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            // Waiting for a connection is bounded like waiting for a lock.
            .acquire_timeout(busy_timeout + Duration::from_secs(1))
            // A connection whose transaction could neither commit nor roll back is closed,
            // not reused.
            .after_release(|connection, _| {
                Box::pin(async move {
                    use sqlx::Connection as _;
                    Ok(!connection.is_in_transaction())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to the database {redacted}"))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .with_context(|| format!("cannot migrate the database {redacted}"))?;
        Ok(PgStorage { pool })
    }

    /// Begins a transaction that runs alone among the serialised writers (see the top of
    /// this file).
    async fn begin_serialised(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StorageError> {
        let error = |source: sqlx::Error| storage_error("begin_write", source);
        let mut transaction = self.pool.begin().await.map_err(error)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *transaction)
            .await
            .map_err(error)?;
        Ok(transaction)
    }

    /// Begins a transaction that needs no serialisation: its statements lock the rows
    /// they change.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StorageError> {
        self.pool
            .begin()
            .await
            .map_err(|source| storage_error("begin", source))
    }
}

#[async_trait]
impl Backend for PgStorage {
    async fn begin_write(&self) -> Result<WriteTransaction, StorageError> {
        Ok(Box::new(PgTx(self.begin_serialised().await?)))
    }

    /// A read-only transaction with one snapshot for all its statements (REPEATABLE
    /// READ); it takes no lock that a writer waits for.
    async fn begin_read(&self) -> Result<ReadTransaction, StorageError> {
        let transaction = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|source| storage_error("begin_read", source))?;
        Ok(Box::new(PgRead(transaction)))
    }

    /// PostgreSQL checkpoints by itself; there is no log to move off the commit path.
    async fn checkpoint(&self) -> Result<(i64, i64), StorageError> {
        Ok((0, 0))
    }

    /// A one-row update, committed: proves the server is reachable, writable (not a
    /// standby, not out of disk) and flushes its WAL.
    async fn check_writable(&self) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE relay_heartbeat SET checked_at = relay_time_text(clock_timestamp()) WHERE id = 1",
        )
        .execute(&self.pool)
        .await
        .map_err(|source| storage_error("check_writable", source))?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    /// Any number of replicas share the database: a lease found at start-up may be
    /// another replica's, alive.
    fn is_shared(&self) -> bool {
        true
    }

    async fn installation_id(&self) -> Result<String, StorageError> {
        sqlx::query_scalar("SELECT installation_id FROM installation WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(|source| storage_error("installation_id", source))
    }
}

/// A serialised write transaction; dropped uncommitted, sqlx rolls it back.
struct PgTx(sqlx::Transaction<'static, sqlx::Postgres>);

#[async_trait]
impl BackendTx for PgTx {
    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        self.0
            .commit()
            .await
            .map_err(|source| storage_error("commit", source))
    }
}

/// A read snapshot (REPEATABLE READ, READ ONLY); dropping it rolls it back.
struct PgRead(sqlx::Transaction<'static, sqlx::Postgres>);

/// A failure of `operation`, transient or not by what failed (see [`is_transient`]).
fn storage_error(operation: &'static str, source: impl Into<anyhow::Error>) -> StorageError {
    let source = source.into();
    if is_transient(&source) {
        StorageError::transient(operation, source)
    } else {
        StorageError::permanent(operation, source)
    }
}

/// Whether a SQLSTATE clears up by itself; see the top of this file.
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03"
        )
}

/// Whether trying again later can succeed: a lost or refused connection, no connection
/// in time, a deadlock, a server shutting down or out of resources.
fn is_transient(source: &anyhow::Error) -> bool {
    for cause in source.chain() {
        if let Some(error) = cause.downcast_ref::<sqlx::Error>() {
            return match error {
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_) => true,
                sqlx::Error::Database(database) => database
                    .code()
                    .is_some_and(|code| is_transient_sqlstate(&code)),
                _ => false,
            };
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_loss_and_conflicts_are_transient_and_constraints_are_not() {
        for code in [
            "08006", "08001", "40001", "40P01", "53100", "53300", "55P03", "57P01", "57P03",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "23503", "22P02", "42P01", "57P04"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
        assert!(is_transient(&sqlx::Error::PoolTimedOut.into()));
        assert!(!is_transient(&sqlx::Error::RowNotFound.into()));
    }
}
