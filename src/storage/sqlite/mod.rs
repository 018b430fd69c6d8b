//! The SQLite backend: two files in WAL mode with `synchronous=FULL`, so that a commit is
//! on disk before the webhook is acknowledged. The receipts file holds only the webhooks
//! stored by ingest; the relay's database everything else. Each file has a writer pool of
//! one connection, so that a webhook's commit and the incident worker's commit run at the
//! same time, each with its own lock and fsync. Every write transaction starts with
//! `BEGIN IMMEDIATE` (the write lock up front, never an upgrade that can fail half-way).
//! The relay's writer attaches the receipts file read-only, so that its `BEGIN IMMEDIATE`
//! never takes the receipts file's lock; reads use their own pool, see both files, and
//! never wait for writers.
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
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    Backend, BackendTx, ReadTransaction, StorageError, WriteTransaction, format_time, parse_time,
};

/// Rows per multi-row INSERT: 10 parameters each stays far below SQLite's 32,766.
const ROWS_PER_STATEMENT: usize = 500;

/// WAL pages after which a commit checkpoints by itself, in the committing request's
/// time (80 MB with 4 KiB pages). The checkpointer ([`Backend::checkpoint`], run by the
/// app every [`super::CHECKPOINT_INTERVAL`]) copies the log into the file off the commit
/// path, so such a commit copies only what came since; but a passive checkpoint cannot
/// start the log again from its beginning, and under a steady stream of commits only such
/// a commit does (docs/performance.md).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 20_000;

/// A connection inside a transaction, as the query functions take it.
type Connection = sqlx::SqliteConnection;

/// The schema name under which every connection but the receipts writer's sees the
/// receipts file.
const RECEIPTS_SCHEMA: &str = "receipts";

#[derive(Clone)]
pub(super) struct SqliteStorage {
    /// The relay's database, with the receipts file attached read-only.
    writer: SqlitePool,
    /// Both files: the relay's database, the receipts file attached as `receipts`.
    reader: SqlitePool,
    /// The receipts file: ingest's group commits and nothing else.
    receipts_writer: SqlitePool,
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
        let folder = match path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
        {
            Some(folder) => {
                std::fs::create_dir_all(folder).with_context(|| {
                    format!("cannot create the database folder {}", folder.display())
                })?;
                folder.to_owned()
            }
            None => std::path::PathBuf::from("."),
        };
        let receipts_path = receipts_path(path);
        let options = connect_options(path, busy_timeout)?;
        let receipts_options = connect_options(&receipts_path, busy_timeout)?;
        migrate(&options, &receipts_options, path, &receipts_path).await?;

        // Waiting for a writer connection is bounded like waiting for a lock.
        let acquire_timeout = busy_timeout + Duration::from_secs(1);
        let read_only_uri = file_uri(&receipts_path, true);
        let writer = writer_pool(acquire_timeout)
            .after_connect(move |connection, _| {
                let uri = read_only_uri.clone();
                Box::pin(async move { attach_receipts(connection, &uri).await })
            })
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        let receipts_writer = writer_pool(acquire_timeout)
            .connect_with(receipts_options)
            .await
            .with_context(|| {
                format!("cannot open the receipts file {}", receipts_path.display())
            })?;
        let uri = file_uri(&receipts_path, false);
        // Readers keep a small page cache per file: what they read (payloads of receipts
        // the worker takes once, incidents for pages) is seldom read again by the same
        // connection, and a write to either file empties it anyway. With SQLite's default
        // of 2 MiB per file, four readers held up to 16 MiB: the peak RSS of a 30 s
        // 20-alert storm and its drain came down from 66-72 to 55-57 MB with 512 KiB,
        // the drain as fast (docs/performance.md).
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            .after_connect(move |connection, _| {
                let uri = uri.clone();
                Box::pin(async move {
                    attach_receipts(connection, &uri).await?;
                    sqlx::query(&format!(
                        "PRAGMA {RECEIPTS_SCHEMA}.cache_size = {READER_CACHE_KIB}"
                    ))
                    .execute(&mut *connection)
                    .await
                    .map(|_| ())
                })
            })
            .connect_with(options.pragma("cache_size", READER_CACHE_KIB.to_string()))
            .await
            .with_context(|| format!("cannot open the database {} for reading", path.display()))?;
        Ok(SqliteStorage {
            writer,
            reader,
            receipts_writer,
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

    /// Copies committed WAL pages into both files without waiting for any reader or writer
    /// (a passive checkpoint), on a reading connection so that commits go on. Returns the
    /// two WALs' pages and how many of them are in the files now.
    async fn checkpoint(&self) -> Result<(i64, i64), StorageError> {
        let mut pages = 0;
        let mut checkpointed = 0;
        let mut connection = self
            .reader
            .acquire()
            .await
            .map_err(|source| storage_error("checkpoint", source))?;
        for schema in ["main", RECEIPTS_SCHEMA] {
            let (_, wal_pages, done): (i64, i64, i64) =
                sqlx::query_as(&format!("PRAGMA {schema}.wal_checkpoint(PASSIVE)"))
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(|source| storage_error("checkpoint", source))?;
            pages += wal_pages;
            checkpointed += done;
        }
        Ok((pages, checkpointed))
    }

    async fn check_writable(&self) -> Result<(), StorageError> {
        // A write of a few bytes can still succeed on a disk too full for a webhook. Both
        // files are in one folder.
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
        for pool in [&self.writer, &self.receipts_writer] {
            let error = |source: sqlx::Error| storage_error("check_writable", source);
            let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await.map_err(error)?;
            sqlx::query("UPDATE relay_heartbeat SET checked_at = ? WHERE id = 1")
                .bind(format_time(Timestamp::now()))
                .execute(&mut *transaction)
                .await
                .map_err(error)?;
            transaction.commit().await.map_err(error)?;
        }
        Ok(())
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
        self.receipts_writer.close().await;
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

/// The receipts file beside the database: `var/samsa-relay.db` keeps its receipts in
/// `var/samsa-relay-receipts.db`.
pub fn receipts_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_stem().unwrap_or_default().to_owned();
    name.push("-receipts");
    if let Some(extension) = path.extension() {
        name.push(".");
        name.push(extension);
    }
    path.with_file_name(name)
}

/// One file's options: WAL, `synchronous=FULL`, foreign keys, the busy timeout, the WAL's
/// size bound, and temporary storage in memory.
///
/// `temp_store = MEMORY` keeps statement journals in memory. A multi-row insert that can
/// meet a conflict (every batch insert here) journals each existing page it changes, and
/// past 64 KiB SQLite spilled that journal into a temporary file: an open, writes and a
/// close on every group commit, about 15 % of the receipts writer's time under load
/// (`perf`). The journal holds at most the pages one statement changes, which the batch
/// bounds.
fn connect_options(path: &Path, busy_timeout: Duration) -> anyhow::Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str("sqlite://")
        .context("sqlite options")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(busy_timeout)
        .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
        .pragma("temp_store", "memory"))
}

/// A pool of the one connection that writes a file.
fn writer_pool(acquire_timeout: Duration) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
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
}

/// Attaches the receipts file as `receipts` (run on each new connection of a pool). The
/// relay's writer attaches it read-only: `BEGIN IMMEDIATE` takes the write lock of every
/// attached file that can be written, and the receipts file's lock belongs to ingest.
/// A reading connection's page cache per file, as `PRAGMA cache_size` (negative: KiB).
const READER_CACHE_KIB: i64 = -512;

async fn attach_receipts(
    connection: &mut sqlx::SqliteConnection,
    uri: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("ATTACH DATABASE ? AS {RECEIPTS_SCHEMA}"))
        .bind(uri)
        .execute(&mut *connection)
        .await
        .map(|_| ())
}

/// The file as an SQLite URI (<https://sqlite.org/uri.html>), every byte but unreserved
/// ones and `/` percent-encoded, so that `?`, `#` and `%` in a path stay in the path.
fn file_uri(path: &Path, read_only: bool) -> String {
    use std::fmt::Write as _;
    use std::os::unix::ffi::OsStrExt as _;
    let mut uri = String::from(if path.is_absolute() {
        "file://"
    } else {
        "file:"
    });
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            write!(uri, "%{byte:02X}").expect("writing to a String");
        }
    }
    if read_only {
        uri.push_str("?mode=ro");
    }
    uri
}

/// Migrates both files, each on a connection of its own before any pool is opened, then
/// moves receipts that a database from before the receipts file kept ([`move_receipts`]).
async fn migrate(
    options: &SqliteConnectOptions,
    receipts_options: &SqliteConnectOptions,
    path: &Path,
    receipts_path: &Path,
) -> anyhow::Result<()> {
    // Pools of one connection: the migrator takes a pool (its future is Send then).
    let database = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&database)
        .await
        .context("cannot migrate the database")?;
    let receipts = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(receipts_options.clone())
        .await
        .with_context(|| format!("cannot open the receipts file {}", receipts_path.display()))?;
    sqlx::migrate!("./migrations/sqlite-receipts")
        .run(&receipts)
        .await
        .context("cannot migrate the receipts file")?;
    let moved = async {
        let mut receipts_connection = receipts.acquire().await?;
        let mut database_connection = database.acquire().await?;
        move_receipts(&mut receipts_connection, &mut database_connection, path).await
    }
    .await
    .context("cannot move the receipts into the receipts file");
    receipts.close().await;
    database.close().await;
    moved
}

/// Makes the receipts file whole against the database, at every start:
///
/// - Receipts still in the database (written before migration 0013) are copied into the
///   receipts file, then dropped from the database: two commits, in that order, each
///   repeatable, so that a stop between them loses nothing.
/// - Receipt ids continue above every receipt the database has taken into account, even
///   when the receipts file is new or older (a lost file, a restore from an older backup):
///   otherwise a new webhook could get an id the incident worker counts as processed.
async fn move_receipts(
    receipts: &mut sqlx::SqliteConnection,
    database: &mut sqlx::SqliteConnection,
    path: &Path,
) -> anyhow::Result<()> {
    sqlx::query("ATTACH DATABASE ? AS relay")
        .bind(file_uri(path, false))
        .execute(&mut *receipts)
        .await?;
    let legacy: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM relay.sqlite_master \
         WHERE type = 'table' AND name = 'webhook_receipts')",
    )
    .fetch_one(&mut *receipts)
    .await?;
    if legacy {
        let copied = sqlx::query(
            "INSERT OR IGNORE INTO main.webhook_receipts (id, dedupe_key, received_at, group_key, \
             status, receiver, external_url, n_alerts, truncated_alerts, payload) \
             SELECT id, dedupe_key, received_at, group_key, status, receiver, external_url, \
             n_alerts, truncated_alerts, payload FROM relay.webhook_receipts ORDER BY id",
        )
        .execute(&mut *receipts)
        .await?
        .rows_affected();
        tracing::info!(
            copied,
            "receipts copied from the database into the receipts file"
        );
    }
    // One primary-key lookup: the highest receipt the database has processed.
    let processed: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(receipt_id), 0) FROM relay.receipts_processed")
            .fetch_one(&mut *receipts)
            .await?;
    let issued: i64 = sqlx::query_scalar(
        "SELECT MAX((SELECT COALESCE(MAX(id), 0) FROM main.webhook_receipts), \
         (SELECT COALESCE(MAX(seq), 0) FROM main.sqlite_sequence WHERE name = 'webhook_receipts'))",
    )
    .fetch_one(&mut *receipts)
    .await?;
    if issued < processed {
        tracing::warn!(
            highest_id_in_receipts_file = issued,
            highest_id_processed = processed,
            "the receipts file is behind the database (lost, or restored from an older backup): \
             receipt ids continue above the highest processed"
        );
        let updated =
            sqlx::query("UPDATE main.sqlite_sequence SET seq = ? WHERE name = 'webhook_receipts'")
                .bind(processed)
                .execute(&mut *receipts)
                .await?
                .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO main.sqlite_sequence (name, seq) VALUES ('webhook_receipts', ?)",
            )
            .bind(processed)
            .execute(&mut *receipts)
            .await?;
        }
    }
    sqlx::query("DETACH DATABASE relay")
        .execute(&mut *receipts)
        .await?;
    if legacy {
        sqlx::query("DROP TABLE main.webhook_receipts")
            .execute(&mut *database)
            .await?;
    }
    Ok(())
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

/// A fresh store in a temporary folder (kept while the folder lives), for the backend's
/// unit tests.
#[cfg(test)]
pub(super) async fn test_storage() -> (tempfile::TempDir, SqliteStorage) {
    let folder = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(&folder.path().join("relay.db"), Duration::from_secs(1), 0)
        .await
        .unwrap();
    (folder, storage)
}

/// SQLite's plan for `explain` (an `EXPLAIN QUERY PLAN …` with its values bound), one
/// `detail` text per step, as the plan tests of the backend check them.
#[cfg(test)]
pub(super) async fn query_plan<'q>(
    pool: &SqlitePool,
    explain: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
) -> Vec<String> {
    use sqlx::Row as _;
    explain
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect()
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
    fn the_receipts_file_is_named_beside_the_database() {
        assert_eq!(
            receipts_path(Path::new("var/samsa-relay.db")),
            Path::new("var/samsa-relay-receipts.db")
        );
        assert_eq!(
            receipts_path(Path::new("/data/relay")),
            Path::new("/data/relay-receipts")
        );
    }

    #[test]
    fn a_file_uri_keeps_every_character_of_the_path() {
        assert_eq!(
            file_uri(Path::new("/var/lib/a b?c#d%e.db"), true),
            "file:///var/lib/a%20b%3Fc%23d%25e.db?mode=ro"
        );
        assert_eq!(
            file_uri(Path::new("var/relay-receipts.db"), false),
            "file:var/relay-receipts.db"
        );
    }

    /// Both files under a folder whose name needs escaping in a URI: a webhook is stored in
    /// the receipts file and read back through the attached schema.
    #[tokio::test]
    async fn readers_keep_a_small_page_cache_for_both_files_and_the_writer_the_default() {
        let (_folder, storage) = test_storage().await;
        let mut reader = storage.reader.acquire().await.unwrap();
        for schema in ["main", RECEIPTS_SCHEMA] {
            let size: i64 = sqlx::query_scalar(&format!("PRAGMA {schema}.cache_size"))
                .fetch_one(&mut *reader)
                .await
                .unwrap();
            assert_eq!(size, READER_CACHE_KIB, "{schema}");
        }
        drop(reader);
        let size: i64 = sqlx::query_scalar("PRAGMA main.cache_size")
            .fetch_one(&storage.writer)
            .await
            .unwrap();
        assert_eq!(size, -2000, "SQLite's default");
    }

    #[tokio::test]
    async fn a_path_with_uri_characters_opens_and_attaches_the_receipts_file() {
        use crate::storage::{Backend as _, Receipts as _};
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("a b?c#d%e").join("relay.db");
        let storage = SqliteStorage::open(&path, Duration::from_secs(1), 0)
            .await
            .unwrap();
        let body = r#"{"version":"4","groupKey":"g","truncatedAlerts":0,"status":"firing","receiver":"r","groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am","alerts":[]}"#;
        let notification = crate::alertmanager::Notification::parse(body.as_bytes()).unwrap();
        let stored = storage
            .store_notifications(&[crate::storage::NewReceipt {
                notification: &notification,
                dedupe_key: "k",
                raw_payload: body,
                received_at: Timestamp::now(),
            }])
            .await
            .unwrap();
        assert_eq!(
            storage.receipts().await.unwrap()[0].receipt_id,
            stored[0].receipt_id
        );
        assert_eq!(storage.n_unprocessed_receipts().await.unwrap(), 1);
        assert!(receipts_path(&path).is_file());
        storage.check_writable().await.unwrap();
        storage.checkpoint().await.unwrap();
        // Statement journals stay in memory on every pool (see connect_options).
        for pool in [&storage.writer, &storage.receipts_writer, &storage.reader] {
            let temp_store: i64 = sqlx::query_scalar("PRAGMA temp_store")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(temp_store, 2, "MEMORY");
        }
        storage.close().await;
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
