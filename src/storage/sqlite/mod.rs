//! The SQLite backend: one file in WAL mode with `synchronous=FULL`, so that a commit is on
//! disk before the webhook is acknowledged. Writes go through a pool of one connection and
//! start with `BEGIN IMMEDIATE` (the write lock up front, never an upgrade that can fail
//! half-way); reads use their own pool and never wait for writers.
//!
//! This file holds the pools, pragmas, migrations, the transaction type and the error
//! mapping; one file per aggregate implements its interface, sharing row helpers through
//! `rows.rs` (which uses only this file) and the two outboxes' lease logic through
//! `outbox.rs`.

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

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    Backend, BackendTx, ReadTransaction, StorageError, WriteTransaction, format_time, parse_time,
};

/// Rows per multi-row INSERT: 10 parameters each stays far below SQLite's 32,766.
const ROWS_PER_STATEMENT: usize = 500;

/// WAL pages after which a commit checkpoints by itself, in the committing request's
/// time. The checkpointer ([`Backend::checkpoint`], run by the app every
/// [`super::CHECKPOINT_INTERVAL`]) does it long before, off the commit path; this is the
/// bound if it cannot (80 MB with 4 KiB pages).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 20_000;

/// A connection inside a transaction, as the query functions take it.
type Connection = sqlx::SqliteConnection;

#[derive(Clone)]
pub(super) struct SqliteStorage {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The database file's folder and the free space it must keep.
    folder: std::path::PathBuf,
    min_free_bytes: u64,
}

impl SqliteStorage {
    pub async fn open(
        path: &Path,
        busy_timeout: Duration,
        min_free_bytes: u64,
    ) -> anyhow::Result<SqliteStorage> {
        if let Some(folder) = path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
        {
            std::fs::create_dir_all(folder).with_context(|| {
                format!("cannot create the database folder {}", folder.display())
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .context("sqlite options")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(busy_timeout)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        // Waiting for the single writer connection is bounded like waiting for a lock.
        let acquire_timeout = busy_timeout + Duration::from_secs(1);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(acquire_timeout)
            // A connection whose transaction could neither commit nor roll back (a full
            // disk, an I/O error) would refuse every later BEGIN: close it instead of
            // reusing it, and the pool opens a fresh one.
            .after_release(|connection, _| {
                Box::pin(async move {
                    use sqlx::Connection as _;
                    Ok(!connection.is_in_transaction())
                })
            })
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .context("cannot migrate the database")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open the database {} for reading", path.display()))?;
        let folder = match path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
        {
            Some(folder) => folder.to_owned(),
            None => std::path::PathBuf::from("."),
        };
        Ok(SqliteStorage {
            writer,
            reader,
            folder,
            min_free_bytes,
        })
    }

    /// Begins a write transaction on the one writer connection, the lock taken up front.
    async fn begin_immediate(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StorageError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|source| storage_error("begin_write", source))
    }
}

#[async_trait]
impl Backend for SqliteStorage {
    async fn begin_write(&self) -> Result<WriteTransaction, StorageError> {
        Ok(Box::new(SqliteTx(self.begin_immediate().await?)))
    }

    /// A deferred transaction on a reading connection: its first read fixes the
    /// snapshot (WAL), and no write lock is ever taken.
    async fn begin_read(&self) -> Result<ReadTransaction, StorageError> {
        let transaction = self
            .reader
            .begin()
            .await
            .map_err(|source| storage_error("begin_read", source))?;
        Ok(Box::new(SqliteRead(transaction)))
    }

    /// Copies committed WAL pages into the database file without waiting for any reader or
    /// writer (a passive checkpoint), on a reading connection so that commits go on.
    /// Returns the WAL's pages and how many of them are in the database now.
    async fn checkpoint(&self) -> Result<(i64, i64), StorageError> {
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&self.reader)
            .await
            .map_err(|source| storage_error("checkpoint", source))?;
        let pages: i64 = row
            .try_get(1)
            .map_err(|source| storage_error("checkpoint", source))?;
        let checkpointed: i64 = row
            .try_get(2)
            .map_err(|source| storage_error("checkpoint", source))?;
        Ok((pages, checkpointed))
    }

    async fn check_writable(&self) -> Result<(), StorageError> {
        let error = |source: sqlx::Error| storage_error("check_writable", source);
        // A write of a few bytes can still succeed on a disk too full for a webhook.
        let free = rustix::fs::statvfs(&self.folder)
            .map(|stats| stats.f_bavail.saturating_mul(stats.f_frsize))
            .map_err(|source| storage_error("check_free_space", std::io::Error::from(source)))?;
        if free < self.min_free_bytes {
            return Err(storage_error(
                "check_free_space",
                anyhow::anyhow!(
                    "{free} bytes free, below the {} required",
                    self.min_free_bytes
                ),
            ));
        }
        let mut transaction = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(error)?;
        sqlx::query("UPDATE relay_heartbeat SET checked_at = ? WHERE id = 1")
            .bind(format_time(Timestamp::now()))
            .execute(&mut *transaction)
            .await
            .map_err(error)?;
        transaction.commit().await.map_err(error)?;
        Ok(())
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// One process per file: the writer pool of one connection is this process's.
    fn is_shared(&self) -> bool {
        false
    }

    async fn installation_id(&self) -> Result<String, StorageError> {
        sqlx::query_scalar("SELECT installation_id FROM installation WHERE id = 1")
            .fetch_one(&self.reader)
            .await
            .map_err(|source| storage_error("installation_id", source))
    }
}

/// A write transaction (`BEGIN IMMEDIATE`); dropped uncommitted, sqlx rolls it back.
struct SqliteTx(sqlx::Transaction<'static, sqlx::Sqlite>);

#[async_trait]
impl BackendTx for SqliteTx {
    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        self.0
            .commit()
            .await
            .map_err(|source| storage_error("commit", source))
    }
}

/// A read snapshot (a deferred `BEGIN` on a reading connection); only reads run on it, and
/// dropping it rolls it back.
struct SqliteRead(sqlx::Transaction<'static, sqlx::Sqlite>);

/// A failure of `operation`, transient or not by what failed (see [`is_transient`]).
fn storage_error(operation: &'static str, source: impl Into<anyhow::Error>) -> StorageError {
    let source = source.into();
    if is_transient(&source) {
        StorageError::transient(operation, source)
    } else {
        StorageError::permanent(operation, source)
    }
}

/// SQLite's primary result codes that clear up by themselves: BUSY, LOCKED, NOMEM,
/// READONLY (a file made read-only, a remount), INTERRUPT, IOERR, FULL, CANTOPEN,
/// PROTOCOL. CONSTRAINT, CORRUPT, MISMATCH and the rest meet the same input again.
const TRANSIENT_RESULT_CODES: [i64; 9] = [5, 6, 7, 8, 9, 10, 13, 14, 15];

/// Whether trying again later can succeed: the database busy or locked, no connection in
/// time, I/O, a full disk, a lost connection. A row that does not parse, an unknown state
/// text or a violated constraint cannot.
fn is_transient(source: &anyhow::Error) -> bool {
    for cause in source.chain() {
        if let Some(error) = cause.downcast_ref::<sqlx::Error>() {
            return match error {
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Io(_)
                | sqlx::Error::Protocol(_) => true,
                sqlx::Error::Database(database) => database
                    .code()
                    .and_then(|code| code.parse::<i64>().ok())
                    // Extended result codes carry the primary code in their low byte.
                    .is_some_and(|code| TRANSIENT_RESULT_CODES.contains(&(code & 0xff))),
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
    fn stored_times_sort_as_text_in_time_order() {
        let earlier: Timestamp = "2026-11-28T05:12:00Z".parse().unwrap();
        let later: Timestamp = "2026-11-28T05:12:00.5Z".parse().unwrap();
        assert_eq!(format_time(earlier), "2026-11-28T05:12:00.000000000Z");
        assert!(format_time(earlier) < format_time(later));
        assert_eq!(parse_time(&format_time(later)).unwrap(), later);
    }

    #[test]
    fn busy_and_io_are_transient_and_bad_rows_are_not() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut.into()));
        assert!(is_transient(&std::io::Error::other("disk gone").into()));
        assert!(!is_transient(&sqlx::Error::RowNotFound.into()));
        assert!(!is_transient(&anyhow::anyhow!(
            "unknown stored draft state \"x\""
        )));
    }
}
