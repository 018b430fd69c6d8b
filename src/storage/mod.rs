//! Storage: the only module that knows SQL. The rest of the relay sees the cloneable
//! handle [`Storage`], the per-aggregate interfaces, their record types and
//! [`StorageError`]; it never names a backend or `sqlx`.
//!
//! One interface per aggregate, each a file here with its record types: [`Receipts`]
//! (`receipts.rs`), [`Incidents`] and drafts (`incidents.rs`), [`Publications`] and the
//! outbox (`publications.rs`), [`OperatorMail`] (`operator_mail.rs`), [`Followup`]
//! (`followup.rs`), [`Cluster`] (`cluster.rs`: leases, heartbeats and rate budgets
//! shared by replicas), [`Subscriptions`] (`subscriptions.rs`: the subscribers of the
//! notices), and [`Maintenance`] (`maintenance.rs`: planned maintenance windows). Each has a twin (`IncidentsTx`, `PublicationsTx`, …) for what runs inside a
//! write transaction. [`Backend`] combines the aggregates and begins a [`WriteTransaction`]
//! ([`BackendTx`] combines the transaction twins and commits).
//!
//! Why trait objects rather than a generic backend parameter or an associated transaction
//! type: with `Storage(Arc<dyn Backend>)` nothing above storage is generic over the
//! backend (no type parameter threading through `AppState`, the workers and every test
//! helper), and choosing the backend is a runtime decision made from the configured URL,
//! as it must be for one binary that serves SQLite and PostgreSQL. An
//! associated `type Tx` would make `Backend` unusable as a trait object, so the
//! transaction is a `Box<dyn BackendTx>` instead. The cost is one boxed future per call
//! (`async-trait`), nothing beside a database round trip. The methods of a trait object
//! and of its supertraits are callable without importing the traits, so call sites read
//! `storage.incidents()` and `transaction.load_correlation(…)` as before.
//!
//! A backend is a folder implementing these traits (`sqlite/`, `postgres/`), opened by
//! [`Storage::open`] from the configured URL; the contract suite (`tests/it/storage.rs`)
//! checks the interface through [`Storage`] only and runs against both backends. States are typed ([`IncidentKind`],
//! [`DraftState`], [`DeliveryState`], [`Level`]) and parsed once, in the backend: an
//! unknown stored text is a (non-transient) [`StorageError`].
//!
//! [`IncidentKind`]: crate::incident::IncidentKind
//! [`DraftState`]: crate::incident::DraftState
//! [`DeliveryState`]: crate::incident::DeliveryState
//! [`Level`]: crate::classify::Level

pub mod cluster;
mod followup;
mod incidents;
mod maintenance;
mod operator_mail;
mod postgres;
mod publications;
mod receipts;
mod sqlite;
mod stored_text;
mod subscriptions;

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::alertmanager::Notification;
use crate::config::{DatabaseConfig, DatabaseUrl};

pub use cluster::{Cluster, ClusterTx, LeaseRecord};
pub use followup::*;
pub use incidents::*;
pub use maintenance::*;
pub use operator_mail::*;
pub use publications::*;
pub use receipts::*;
pub use sqlite::receipts_path as sqlite_receipts_path;
pub use subscriptions::*;

/// PostgreSQL statements whose plans the tests check against a real server: those that
/// run every batch or every few seconds and must not slow down as the tables grow.
#[doc(hidden)]
pub mod postgres_statements {
    pub use super::postgres::{FAILED_DELIVERIES, NEXT_RECEIPTS, OUTBOX_BACKLOG, TRACKED_ALERTS};
}

/// How often the write-ahead log (or its backend's equivalent) is checkpointed off the
/// commit path.
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// A storage backend: every aggregate, write transactions, and the backend's upkeep.
#[async_trait]
pub trait Backend:
    Receipts
    + Incidents
    + Publications
    + OperatorMail
    + Followup
    + Cluster
    + Subscriptions
    + Maintenance
{
    /// Starts a write transaction, the write lock taken up front (SQLite: `BEGIN
    /// IMMEDIATE`). Dropping it without [`BackendTx::commit`] rolls it back.
    async fn begin_write(&self) -> Result<WriteTransaction, StorageError>;

    /// Starts a read-only snapshot for the incident worker's planning: it sees the state
    /// of one moment and never waits for, or holds up, a writer.
    async fn begin_read(&self) -> Result<ReadTransaction, StorageError>;

    /// Proves that the database takes a durable write (and has room for more).
    async fn check_writable(&self) -> Result<(), StorageError>;

    /// Moves committed log pages into the database off the commit path. Returns (pages
    /// in the log, pages moved); a backend without such a log returns (0, 0).
    async fn checkpoint(&self) -> Result<(i64, i64), StorageError>;

    /// Closes the connections (SQLite: flushing the write-ahead log).
    async fn close(&self);

    /// Whether several relay processes may use this database at once (PostgreSQL) or
    /// only one (SQLite). With one, whatever an earlier run left leased was left by a
    /// process that is gone, and is released at start.
    fn is_shared(&self) -> bool;

    /// This installation's random id, created once with the database and never changed:
    /// mixed into delivery ids and Message-IDs so that no two installations share them.
    async fn installation_id(&self) -> Result<String, StorageError>;
}

/// A write transaction: the domain reads state through it, decides, and writes the
/// decision before committing, with no other writer in between. Never hold one across a
/// network call.
#[async_trait]
pub trait BackendTx:
    CorrelationReads
    + IncidentsTx
    + PublicationsTx
    + OperatorMailTx
    + FollowupTx
    + ClusterTx
    + SubscriptionsTx
    + MaintenanceTx
{
    async fn commit(self: Box<Self>) -> Result<(), StorageError>;
}

/// An open write transaction of whichever backend; see [`BackendTx`].
pub type WriteTransaction = Box<dyn BackendTx>;

/// The relay's durable state: a cheap, cloneable handle on the configured backend. Every
/// method of [`Backend`] and of the aggregate traits is callable on it directly.
#[derive(Clone)]
pub struct Storage(Arc<dyn Backend>);

impl std::ops::Deref for Storage {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl Storage {
    /// Opens (creating if missing) and migrates the configured database.
    pub async fn open(config: &DatabaseConfig) -> anyhow::Result<Storage> {
        match &config.url {
            DatabaseUrl::Sqlite { path } => {
                let backend =
                    sqlite::SqliteStorage::open(path, config.busy_timeout, config.min_free_bytes)
                        .await?;
                Ok(Storage(Arc::new(backend)))
            }
            DatabaseUrl::Postgres(url) => {
                let backend =
                    postgres::PgStorage::open(url, config.busy_timeout, config.max_connections)
                        .await?;
                Ok(Storage(Arc::new(backend)))
            }
        }
    }

    /// Opens an existing database (migrating it); refuses to create one. For commands that
    /// only read, such as `samsa-relay report`.
    pub async fn open_existing(config: &DatabaseConfig) -> anyhow::Result<Storage> {
        match &config.url {
            DatabaseUrl::Sqlite { path } => {
                anyhow::ensure!(
                    path.is_file(),
                    "the database {} does not exist",
                    path.display()
                );
                Storage::open(config).await
            }
            // The database must exist (the relay never creates one on a server); an empty
            // one gets the schema.
            DatabaseUrl::Postgres(_) => Storage::open(config).await,
        }
    }

    /// Stores one notification's receipt in its own transaction; see
    /// [`Receipts::store_notifications`].
    pub async fn store_notification(
        &self,
        notification: &Notification,
        dedupe_key: &str,
        raw_payload: &str,
        received_at: Timestamp,
    ) -> Result<StoredReceipt, StorageError> {
        let receipt = NewReceipt {
            notification,
            dedupe_key,
            raw_payload,
            received_at,
        };
        let mut stored = self.store_notifications(&[receipt]).await?;
        Ok(stored.pop().expect("one answer per notification"))
    }

    /// Checkpoints every [`CHECKPOINT_INTERVAL`] until `shutdown`, so that no commit (and
    /// no webhook waiting for one) pays for a checkpoint.
    pub async fn run_checkpointer(self, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(CHECKPOINT_INTERVAL) => {}
            }
            if let Err(error) = self.checkpoint().await {
                tracing::warn!(error = ?anyhow::Error::from(error), "checkpoint failed; retrying");
            }
        }
    }
}

/// The one text form of a time in the database, on every backend: UTC, fixed width with
/// nanoseconds (as Alertmanager's own times have), so text order is time order and nothing
/// is rounded.
fn format_time(timestamp: Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        timestamp.strftime("%Y-%m-%dT%H:%M:%S"),
        timestamp.subsec_nanosecond()
    )
}

fn parse_time(text: &str) -> anyhow::Result<Timestamp> {
    use anyhow::Context as _;
    text.parse::<Timestamp>()
        .with_context(|| format!("stored time {text:?} is not RFC 3339"))
}

/// A storage operation failed. [`StorageError::is_transient`] says whether trying again
/// later can succeed with the same input.
#[derive(Debug, thiserror::Error)]
#[error("storage operation {operation} failed")]
pub struct StorageError {
    pub operation: &'static str,
    transient: bool,
    #[source]
    pub source: anyhow::Error,
}

impl StorageError {
    /// A failure whose cause the caller cannot tell, taken as transient: retrying is the
    /// safe answer (the ingest committer gone, a failed group commit).
    pub fn new(operation: &'static str, source: impl Into<anyhow::Error>) -> StorageError {
        StorageError::transient(operation, source)
    }

    /// A failure that clears up by itself: the database busy or locked, no connection
    /// free in time, an I/O error, a full disk, a lost connection. The HTTP layer answers
    /// 503 and Alertmanager retries.
    pub fn transient(operation: &'static str, source: impl Into<anyhow::Error>) -> StorageError {
        StorageError {
            operation,
            transient: true,
            source: source.into(),
        }
    }

    /// A failure that the same input meets again: a constraint violated, a stored row
    /// that does not parse, an unknown state text.
    pub fn permanent(operation: &'static str, source: impl Into<anyhow::Error>) -> StorageError {
        StorageError {
            operation,
            transient: false,
            source: source.into(),
        }
    }

    /// Whether trying again later can succeed (503 and retry) or not.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}
