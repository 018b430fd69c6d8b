//! Storage: the only module that knows SQL. Callers use [`Storage`] and its record types;
//! each backend (today SQLite, PostgreSQL later) lives in a submodule with its own
//! migrations, so a new backend is a new submodule and a new arm in each method.

mod sqlite;
mod sqlite_followup;
mod sqlite_operators;
mod sqlite_outbox;

use jiff::Timestamp;

use crate::alertmanager::{AlertStatus, Notification};
use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::incident::{AlertKey, IncidentEngine, TrackedAlert};
pub use crate::notice::DraftFields;
use crate::notice::{NoticeKind, RenderedNotice};

pub use sqlite::SqliteStorage;

/// The relay's durable state.
#[derive(Clone)]
pub enum Storage {
    Sqlite(SqliteStorage),
}

/// What storing a notification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredReceipt {
    pub receipt_id: i64,
    /// True when the same notification had been stored before; nothing was written.
    pub duplicate: bool,
}

/// A stored webhook receipt, read back for audit and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptRecord {
    pub receipt_id: i64,
    pub received_at: Timestamp,
    pub group_key: String,
    pub status: AlertStatus,
    pub receiver: String,
    pub n_alerts: i64,
    pub payload: String,
}

/// The current state of one alert, per (fingerprint, startsAt).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub fingerprint: String,
    pub starts_at: Timestamp,
    pub status: AlertStatus,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub ends_at: Option<Timestamp>,
    pub generator_url: String,
    pub first_receipt_id: i64,
    pub last_receipt_id: i64,
}

/// A receipt the incident worker has not taken into account yet.
#[derive(Debug, Clone)]
pub struct UnprocessedReceipt {
    pub receipt_id: i64,
    pub received_at: Timestamp,
    pub payload: String,
}

/// The draft waiting for an operator, with its latest version.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDraft {
    pub draft_id: i64,
    pub kind: NoticeKind,
    pub version: i64,
    pub fields: DraftFields,
}

/// A webhook to store: the parsed notification and its raw body.
#[derive(Debug, Clone, Copy)]
pub struct NewReceipt<'a> {
    pub notification: &'a Notification,
    pub dedupe_key: &'a str,
    pub raw_payload: &'a str,
    pub received_at: Timestamp,
}

/// What the incident worker needs to correlate one receipt.
#[derive(Debug, Clone)]
pub struct CorrelationState {
    pub engine: IncidentEngine,
    pub pending_draft: Option<PendingDraft>,
}

/// One entry of an incident's log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventWrite {
    pub at: Timestamp,
    pub source: String,
    pub event: String,
    pub detail: serde_json::Value,
}

/// A change to the notices of an incident.
#[derive(Debug, Clone, PartialEq)]
pub enum DraftWrite {
    Create {
        kind: NoticeKind,
        fields: DraftFields,
        input: serde_json::Value,
        rendered: RenderedNotice,
    },
    Revise {
        draft_id: i64,
        fields: DraftFields,
        input: serde_json::Value,
        rendered: RenderedNotice,
    },
    Withdraw {
        draft_id: i64,
        reason: String,
    },
}

/// Everything one correlation step writes, in one transaction.
#[derive(Debug, Clone)]
pub struct IncidentWrite {
    pub at: Timestamp,
    /// Alerts first seen resolved: final, recorded so that they never open an incident.
    pub retired_unseen: Vec<AlertKey>,
    pub change: Option<IncidentChange>,
}

/// What the steps of one batch write together at its end, in the order the steps left
/// it: a few statements for the whole batch instead of a few per receipt.
#[derive(Debug, Default)]
pub struct IncidentBatch {
    /// The receipts of the batch, to be marked processed.
    pub receipt_ids: Vec<i64>,
    pub retired_unseen: Vec<AlertKey>,
    /// Each incident changed, as the last step left it, and when.
    pub headers: std::collections::BTreeMap<i64, (crate::incident::Incident, Timestamp)>,
    pub alerts: Vec<(i64, AlertKey, TrackedAlert)>,
    pub events: Vec<(i64, EventWrite)>,
    /// The alerts each receipt carried, in receipt order, for the `alerts` table (the
    /// latest state of every alert received).
    pub received: Vec<ReceivedAlerts>,
}

/// The alerts of one processed receipt.
#[derive(Debug)]
pub struct ReceivedAlerts {
    pub receipt_id: i64,
    pub received_at: Timestamp,
    pub alerts: Vec<crate::alertmanager::Alert>,
}

/// The latest incident after a step, and what the step added to it.
#[derive(Debug, Clone)]
pub struct IncidentChange {
    /// The incident after the step, without its alerts (see `alerts`).
    pub incident: crate::incident::Incident,
    pub is_new: bool,
    /// Alerts of the incident that the step added or changed.
    pub alerts: Vec<(AlertKey, TrackedAlert)>,
    pub events: Vec<EventWrite>,
    pub drafts: Vec<DraftWrite>,
}

/// A stored incident, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    pub incident_id: i64,
    pub kind: String,
    pub incident: crate::incident::Incident,
    pub resolved_at: Option<Timestamp>,
}

/// A stored draft with its versions, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftRecord {
    pub draft_id: i64,
    pub incident_id: i64,
    pub kind: NoticeKind,
    pub state: String,
    pub state_reason: Option<String>,
    pub versions: Vec<DraftVersionRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DraftVersionRecord {
    pub version: i64,
    pub created_at: Timestamp,
    pub created_by: String,
    pub fields: DraftFields,
    pub input: serde_json::Value,
    pub rendered: RenderedNotice,
}

/// A stored log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub event_id: i64,
    pub incident_id: i64,
    pub at: Timestamp,
    pub source: String,
    pub event: String,
    pub detail: serde_json::Value,
}

/// A draft as publishing sees it, read inside the publishing transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftForPublish {
    pub draft_id: i64,
    pub incident_id: i64,
    pub kind: NoticeKind,
    pub state: String,
    pub latest_version: i64,
    /// The requested version, if it exists.
    pub version: Option<DraftVersionRecord>,
}

/// Everything a publication writes, in one transaction.
#[derive(Debug, Clone)]
pub struct PublicationWrite {
    pub incident_id: i64,
    pub draft_id: i64,
    pub draft_version: i64,
    pub kind: NoticeKind,
    pub level: u8,
    pub decided_by: Option<String>,
    pub decided_role: Option<String>,
    pub published_by: String,
    pub channels: Vec<String>,
    pub rendered: RenderedNotice,
    pub published_at: Timestamp,
    /// What the incident now says was published (drives update and resolution drafts).
    pub published: crate::incident::Published,
    /// One outbox row per (channel, recipient).
    pub deliveries: Vec<(String, String)>,
    pub events: Vec<EventWrite>,
}

/// The draft was published already (the unique constraint said so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyPublished;

/// A published notice, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedNoticeRecord {
    pub notice_id: i64,
    pub incident_id: i64,
    pub draft_id: i64,
    pub draft_version: i64,
    pub kind: NoticeKind,
    pub level: u8,
    pub decided_by: Option<String>,
    pub decided_role: Option<String>,
    pub published_by: String,
    pub channels: Vec<String>,
    pub rendered: RenderedNotice,
    pub published_at: Timestamp,
}

/// An outbox row a worker claimed, with what it must send.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub outbox_id: i64,
    pub channel: String,
    pub recipient: String,
    pub delivery_id: String,
    /// This attempt's number, from 1.
    pub attempt: i64,
    pub created_at: Timestamp,
    pub notice: PublishedNoticeRecord,
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryResult {
    Sent {
        outbox_id: i64,
        at: Timestamp,
    },
    Retry {
        outbox_id: i64,
        next_attempt_at: Timestamp,
        error: String,
    },
    Failed {
        outbox_id: i64,
        at: Timestamp,
        error: String,
    },
}

/// An outbox row, read back for operators and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub outbox_id: i64,
    pub notice_id: i64,
    pub incident_id: i64,
    pub channel: String,
    pub recipient: String,
    pub delivery_id: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// An email to an operator, to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorMailWrite {
    /// Makes the mail unique: enqueuing the same key twice sends once.
    pub dedupe_key: String,
    /// review, escalation, reminder, monitoring, delivery_failed, login.
    pub purpose: String,
    pub incident_id: Option<i64>,
    pub draft_id: Option<i64>,
    pub draft_version: Option<i64>,
    pub to_address: String,
    pub subject: String,
    pub body: String,
}

/// An operator email a worker claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedOperatorMail {
    pub mail_id: i64,
    pub dedupe_key: String,
    pub purpose: String,
    pub incident_id: Option<i64>,
    pub to_address: String,
    pub subject: String,
    pub body: String,
    pub attempt: i64,
}

/// A draft waiting for an operator, for the notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDraftOverview {
    pub draft_id: i64,
    pub incident_id: i64,
    pub incident_kind: String,
    pub kind: NoticeKind,
    pub created_at: Timestamp,
    pub latest_version: i64,
    pub last_mailed_version: Option<i64>,
    pub last_mailed_at: Option<Timestamp>,
}

/// An open incident whose promised next update is due.
#[derive(Debug, Clone, PartialEq)]
pub struct NextUpdateDue {
    pub incident_id: i64,
    pub notice_id: i64,
    pub next_update: Timestamp,
}

/// An incident for lists (its alerts are not loaded, only counted).
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentOverview {
    pub record: IncidentRecord,
    pub n_firing: i64,
}

/// A write transaction (`BEGIN IMMEDIATE`): the domain reads state through it, decides,
/// and writes the decision before committing, with no other writer in between. Never hold
/// one across a network call.
pub enum WriteTransaction {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl WriteTransaction {
    /// The oldest receipts the incident worker has not processed, at most `limit`.
    pub async fn next_unprocessed_receipts(
        &mut self,
        limit: usize,
    ) -> Result<Vec<UnprocessedReceipt>, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite::next_unprocessed_receipts(transaction, limit).await
            }
        }
    }

    /// The latest outage incident, its pending draft, and which of `keys` belong elsewhere.
    /// `previous` is the engine of the last committed step, if the caller kept it: when
    /// its latest incident is still the latest, its alerts (which only the incident
    /// worker changes) are taken from there instead of being read again; everything else
    /// is read from the database.
    pub async fn load_correlation(
        &mut self,
        keys: &[AlertKey],
        previous: Option<IncidentEngine>,
    ) -> Result<CorrelationState, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite::load_correlation(transaction, keys, previous).await
            }
        }
    }

    /// Writes what one step of a batch must write at once (a new incident, its drafts)
    /// and adds the rest to `batch`. Returns the id of the draft it created, if any.
    pub async fn stage_incident_step(
        &mut self,
        write: &IncidentWrite,
        batch: &mut IncidentBatch,
    ) -> Result<Option<i64>, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite::stage_incident_step(transaction, write, batch).await
            }
        }
    }

    /// Writes the rest of a batch's steps (incident headers, alerts, log entries) and
    /// marks its receipts processed.
    pub async fn finish_incident_batch(
        &mut self,
        batch: &IncidentBatch,
        processed_at: Timestamp,
    ) -> Result<(), StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite::finish_incident_batch(transaction, batch, processed_at).await
            }
        }
    }

    pub async fn draft_for_publish(
        &mut self,
        draft_id: i64,
        version: i64,
    ) -> Result<Option<DraftForPublish>, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite::draft_for_publish(transaction, draft_id, version).await
            }
        }
    }

    /// Writes the publication, marks the draft published, records what the incident
    /// published, and enqueues the outbox rows. Returns the notice id.
    pub async fn insert_publication(
        &mut self,
        write: &PublicationWrite,
    ) -> Result<Result<i64, AlreadyPublished>, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite::insert_publication(transaction, write).await
            }
        }
    }

    /// Adds an operator's version of a pending draft, with a log entry.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_draft_version(
        &mut self,
        incident_id: i64,
        draft_id: i64,
        version: i64,
        created_by: &str,
        fields: &DraftFields,
        input: &serde_json::Value,
        rendered: &RenderedNotice,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite::add_draft_version(
                    transaction,
                    incident_id,
                    draft_id,
                    version,
                    created_by,
                    fields,
                    input,
                    rendered,
                    at,
                )
                .await
            }
        }
    }

    /// An incident without its alerts.
    pub async fn incident_by_id(
        &mut self,
        incident_id: i64,
    ) -> Result<Option<IncidentRecord>, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite_operators::incident_by_id(transaction, incident_id).await
            }
        }
    }

    /// A pending draft made by an operator; `None` when one is pending already.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_operator_draft(
        &mut self,
        incident_id: i64,
        kind: NoticeKind,
        fields: &DraftFields,
        input: &serde_json::Value,
        rendered: &RenderedNotice,
        operator: &str,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite_operators::insert_operator_draft(
                    transaction,
                    incident_id,
                    kind,
                    fields,
                    input,
                    rendered,
                    operator,
                    now,
                )
                .await
            }
        }
    }

    /// Opens a drill incident; `None` when one is open.
    pub async fn insert_drill_incident(
        &mut self,
        summary: &crate::classify::ScopeSummary,
        classification: &crate::classify::Classification,
        operator: &str,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite_operators::insert_drill_incident(
                    transaction,
                    summary,
                    classification,
                    operator,
                    now,
                )
                .await
            }
        }
    }

    pub async fn close_drill(
        &mut self,
        incident_id: i64,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite_operators::close_drill(transaction, incident_id, now).await
            }
        }
    }

    pub async fn commit(self) -> Result<(), StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => transaction
                .commit()
                .await
                .map_err(|source| StorageError::new("commit", source)),
        }
    }
}

/// A storage operation failed. Every such failure is treated as transient by the HTTP
/// layer (503, so that Alertmanager retries): a busy lock, a full disk or a read-only
/// file clear up without the payload changing.
#[derive(Debug, thiserror::Error)]
#[error("storage operation {operation} failed")]
pub struct StorageError {
    pub operation: &'static str,
    #[source]
    pub source: anyhow::Error,
}

impl StorageError {
    pub(crate) fn new(operation: &'static str, source: impl Into<anyhow::Error>) -> StorageError {
        StorageError {
            operation,
            source: source.into(),
        }
    }
}

/// How often the write-ahead log is checkpointed off the commit path.
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

impl Storage {
    /// Opens (creating if missing) and migrates the configured database.
    pub async fn open(config: &DatabaseConfig) -> anyhow::Result<Storage> {
        match &config.url {
            DatabaseUrl::Sqlite { path } => Ok(Storage::Sqlite(
                SqliteStorage::open(path, config.busy_timeout, config.min_free_bytes).await?,
            )),
        }
    }

    /// Stores a notification's receipt in one transaction, unless the same notification
    /// was stored before. Returns only after the commit is durable. Its alerts reach
    /// [`Storage::alerts`] when the incident worker processes the receipt.
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

    /// Stores notifications in one transaction (group commit), answering each in order;
    /// see [`Storage::store_notification`]. Returns only after the commit is durable.
    pub async fn store_notifications(
        &self,
        batch: &[NewReceipt<'_>],
    ) -> Result<Vec<StoredReceipt>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.store_notifications(batch).await,
        }
    }

    /// Checkpoints the write-ahead log off the commit path; see [`SqliteStorage::checkpoint`].
    pub async fn checkpoint(&self) -> Result<(i64, i64), StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.checkpoint().await,
        }
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

    /// Starts a write transaction (the write lock taken up front).
    pub async fn begin_write(&self) -> Result<WriteTransaction, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => Ok(WriteTransaction::Sqlite(sqlite.begin_write().await?)),
        }
    }

    /// Every incident, oldest first.
    pub async fn incidents(&self) -> Result<Vec<IncidentRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.incidents().await,
        }
    }

    /// An incident's drafts with all their versions, oldest first.
    pub async fn drafts(&self, incident_id: i64) -> Result<Vec<DraftRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.drafts(incident_id).await,
        }
    }

    /// An incident's log, in order.
    pub async fn incident_events(
        &self,
        incident_id: i64,
    ) -> Result<Vec<EventRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.incident_events(incident_id).await,
        }
    }

    /// Opens the internal "monitoring chain broken" incident unless one is open.
    pub async fn open_monitoring_incident(
        &self,
        now: Timestamp,
        summary: &crate::classify::ScopeSummary,
        classification: &crate::classify::Classification,
        detail: serde_json::Value,
    ) -> Result<Option<i64>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => {
                sqlite
                    .open_monitoring_incident(now, summary, classification, detail)
                    .await
            }
        }
    }

    /// Resolves the open monitoring incident, if any.
    pub async fn resolve_monitoring_incident(
        &self,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.resolve_monitoring_incident(now).await,
        }
    }

    /// Claims up to `max` due deliveries of `channel` for `lease`, counting the attempt.
    pub async fn claim_deliveries(
        &self,
        channel: &str,
        max: usize,
        now: Timestamp,
        lease: std::time::Duration,
    ) -> Result<Vec<ClaimedDelivery>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.claim_deliveries(channel, max, now, lease).await,
        }
    }

    /// Records how attempts ended, releasing their leases.
    pub async fn record_deliveries(&self, results: &[DeliveryResult]) -> Result<(), StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.record_deliveries(results).await,
        }
    }

    /// Releases every lease: at start-up, since this process is the only writer and any
    /// lease is left by one that died.
    pub async fn release_delivery_leases(&self) -> Result<u64, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.release_delivery_leases().await,
        }
    }

    /// Makes a failed delivery pending again (an operator's retry). False when it was not
    /// failed.
    pub async fn retry_failed_delivery(
        &self,
        outbox_id: i64,
        now: Timestamp,
        operator: &str,
    ) -> Result<bool, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.retry_failed_delivery(outbox_id, now, operator).await,
        }
    }

    /// The outbox of an incident (or all, with `None`), oldest first.
    pub async fn outbox(
        &self,
        incident_id: Option<i64>,
    ) -> Result<Vec<OutboxRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.outbox(incident_id).await,
        }
    }

    /// Published notices, newest first; only those delivered on one of `channels` when
    /// given.
    pub async fn published_notices(
        &self,
        channels: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<PublishedNoticeRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.published_notices(channels, limit).await,
        }
    }

    /// The notice the login-page banner shows: the newest publication on one of
    /// `banner_channels` of an incident whose resolution has not been published since.
    pub async fn current_banner(
        &self,
        banner_channels: &[String],
    ) -> Result<Option<PublishedNoticeRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.current_banner(banner_channels).await,
        }
    }

    /// Which of `keys` no operator mail has yet.
    pub async fn missing_operator_mail_keys(
        &self,
        keys: &[String],
    ) -> Result<Vec<String>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.missing_operator_mail_keys(keys).await,
        }
    }

    /// Enqueues operator mail; a key already present is skipped. Returns how many were new.
    pub async fn enqueue_operator_mail(
        &self,
        mails: &[OperatorMailWrite],
        now: Timestamp,
    ) -> Result<u64, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.enqueue_operator_mail(mails, now).await,
        }
    }

    pub async fn claim_operator_mail(
        &self,
        max: usize,
        now: Timestamp,
        lease: std::time::Duration,
    ) -> Result<Vec<ClaimedOperatorMail>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.claim_operator_mail(max, now, lease).await,
        }
    }

    /// Records how operator mail attempts ended (`outbox_id` is the mail's id).
    pub async fn record_operator_mail(
        &self,
        results: &[DeliveryResult],
    ) -> Result<(), StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.record_operator_mail(results).await,
        }
    }

    /// Every operator mail as (dedupe key, to, subject, state), oldest first.
    pub async fn operator_mail(
        &self,
    ) -> Result<Vec<(String, String, String, String)>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.operator_mail().await,
        }
    }

    pub async fn pending_drafts_overview(&self) -> Result<Vec<PendingDraftOverview>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.pending_drafts_overview().await,
        }
    }

    pub async fn next_updates_due(
        &self,
        now: Timestamp,
    ) -> Result<Vec<NextUpdateDue>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.next_updates_due(now).await,
        }
    }

    /// Open incidents first, then the most recent, at most `limit`.
    pub async fn incident_overview(
        &self,
        limit: i64,
    ) -> Result<Vec<IncidentOverview>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.incident_overview(limit).await,
        }
    }

    /// Discards a pending draft; its incident and creation time, or `None` if not pending.
    pub async fn discard_draft(
        &self,
        draft_id: i64,
        reason: &str,
        operator: &str,
        now: Timestamp,
    ) -> Result<Option<(i64, Timestamp)>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.discard_draft(draft_id, reason, operator, now).await,
        }
    }

    /// Deliveries that failed for good, newest first: (outbox id, incident id, channel,
    /// recipient, error).
    pub async fn failed_deliveries(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, i64, String, String, String)>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.failed_deliveries(limit).await,
        }
    }

    /// (notice id, channel, state, count) for the newest `limit` notices.
    pub async fn delivery_summary(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, String, String, i64)>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.delivery_summary(limit).await,
        }
    }

    /// A draft with its versions, and its incident (without alerts).
    pub async fn draft_with_incident(
        &self,
        draft_id: i64,
    ) -> Result<Option<(DraftRecord, IncidentRecord)>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.draft_with_incident(draft_id).await,
        }
    }

    /// Per channel: (channel, deliveries waiting, when the oldest waiting was enqueued).
    pub async fn outbox_backlog(
        &self,
    ) -> Result<Vec<(String, i64, Option<Timestamp>)>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.outbox_backlog().await,
        }
    }

    /// How many receipts wait for the incident worker.
    pub async fn n_unprocessed_receipts(&self) -> Result<i64, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.n_unprocessed_receipts().await,
        }
    }

    /// Proves that the database takes a durable write.
    pub async fn check_writable(&self) -> Result<(), StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.check_writable().await,
        }
    }

    /// The receipts in the order they were stored.
    pub async fn receipts(&self) -> Result<Vec<ReceiptRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.receipts().await,
        }
    }

    /// Every alert's current state, ordered by fingerprint then start.
    pub async fn alerts(&self) -> Result<Vec<AlertRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.alerts().await,
        }
    }

    /// Closes the connections, flushing the write-ahead log.
    pub async fn close(&self) {
        match self {
            Storage::Sqlite(sqlite) => sqlite.close().await,
        }
    }
}

/// The one text form of a time in the database: UTC, fixed width with nanoseconds (as
/// Alertmanager's own times have), so text order is time order and nothing is rounded.
pub(crate) fn format_time(timestamp: Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        timestamp.strftime("%Y-%m-%dT%H:%M:%S"),
        timestamp.subsec_nanosecond()
    )
}

pub(crate) fn parse_time(text: &str) -> anyhow::Result<Timestamp> {
    use anyhow::Context as _;
    text.parse::<Timestamp>()
        .with_context(|| format!("stored time {text:?} is not RFC 3339"))
}

// ---------------------------------------------------------------------------------------
// Follow-up (src/storage/sqlite_followup.rs): feedback, lessons learned, entries operators
// write in the log, and the snapshot the incident report is built from.

/// Feedback to store: plain text, already cleaned and capped by the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackWrite {
    pub incident_id: i64,
    pub received_at: Timestamp,
    pub name: String,
    pub organisation: String,
    pub message: String,
}

/// Stored feedback, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackRecord {
    pub feedback_id: i64,
    pub incident_id: i64,
    pub received_at: Timestamp,
    pub name: String,
    pub organisation: String,
    pub message: String,
}

/// An evaluation note or a lesson learned, to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LessonWrite {
    pub incident_id: i64,
    pub created_at: Timestamp,
    /// The operator's name.
    pub created_by: String,
    /// `evaluation` or `lesson`.
    pub kind: String,
    /// For a lesson: `organisations`, `suppliers` or `service_management`.
    pub audience: Option<String>,
    pub text: String,
}

/// A stored evaluation note or lesson, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LessonRecord {
    pub lesson_id: i64,
    pub incident_id: i64,
    pub created_at: Timestamp,
    pub created_by: String,
    pub kind: String,
    pub audience: Option<String>,
    pub text: String,
}

/// One draft of an incident: when it was made, how many versions it had and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftHistoryRecord {
    pub draft_id: i64,
    pub kind: NoticeKind,
    /// pending, published, withdrawn or discarded.
    pub state: String,
    pub state_reason: Option<String>,
    pub created_at: Timestamp,
    /// Who made version 1: `relay` or an operator's name.
    pub created_by: String,
    /// The draft's last change (its publication, withdrawal or discard once it ended).
    pub updated_at: Timestamp,
    pub n_versions: i64,
    pub published_at: Option<Timestamp>,
}

/// The outbox rows of one (notice, channel), counted: the report's deliveries come from
/// here rather than from one log entry per recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTallyRecord {
    pub notice_id: i64,
    pub channel: String,
    pub n_recipients: i64,
    pub n_sent: i64,
    pub n_failed: i64,
    pub n_pending: i64,
    /// Every attempt, the first ones included.
    pub n_attempts: i64,
    /// Attempts after the first, per row, summed.
    pub n_retries: i64,
    pub first_sent_at: Option<Timestamp>,
    pub last_sent_at: Option<Timestamp>,
}

/// Operator mail about an incident, counted per purpose and draft (escalations, feedback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorMailTallyRecord {
    pub purpose: String,
    pub draft_id: Option<i64>,
    pub first_at: Timestamp,
    pub n_mails: i64,
}

/// Everything the incident report reads, from one consistent read.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowupSnapshot {
    /// The incident without its alerts (the log carries them).
    pub incident: IncidentRecord,
    /// The whole log, in order.
    pub events: Vec<EventRecord>,
    pub drafts: Vec<DraftHistoryRecord>,
    /// Oldest first.
    pub notices: Vec<PublishedNoticeRecord>,
    pub deliveries: Vec<DeliveryTallyRecord>,
    /// Channel and recipient of each outbox row the log names (failed and retried
    /// deliveries), by outbox id.
    pub outbox_targets: std::collections::BTreeMap<i64, (String, String)>,
    pub operator_mail: Vec<OperatorMailTallyRecord>,
    pub feedback: Vec<FeedbackRecord>,
    pub lessons: Vec<LessonRecord>,
}

impl Storage {
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
        }
    }

    /// One incident without its alerts, read without taking the write lock.
    pub async fn followup_incident(
        &self,
        incident_id: i64,
    ) -> Result<Option<IncidentRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.followup_incident(incident_id).await,
        }
    }

    /// Everything the incident report needs, read in one transaction; `None` when the
    /// incident does not exist.
    pub async fn followup_snapshot(
        &self,
        incident_id: i64,
    ) -> Result<Option<FollowupSnapshot>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.followup_snapshot(incident_id).await,
        }
    }

    /// The incidents that started in `[from, before)` (either end open), oldest first.
    pub async fn followup_incident_ids(
        &self,
        from: Option<Timestamp>,
        before: Option<Timestamp>,
    ) -> Result<Vec<i64>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.followup_incident_ids(from, before).await,
        }
    }
}

impl WriteTransaction {
    /// Appends entries to an incident's log.
    pub async fn append_events(
        &mut self,
        incident_id: i64,
        events: &[EventWrite],
    ) -> Result<(), StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite_followup::append_events(transaction, incident_id, events).await
            }
        }
    }

    /// Stores feedback; returns its id.
    pub async fn insert_feedback(&mut self, write: &FeedbackWrite) -> Result<i64, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite_followup::insert_feedback(transaction, write).await
            }
        }
    }

    /// Stores an evaluation note or lesson; returns its id.
    pub async fn insert_lesson(&mut self, write: &LessonWrite) -> Result<i64, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite_followup::insert_lesson(transaction, write).await
            }
        }
    }

    /// Enqueues operator mail in this transaction, so that it commits together with what
    /// it tells about; a key already present is skipped. Returns how many were new.
    pub async fn enqueue_operator_mail(
        &mut self,
        mails: &[OperatorMailWrite],
        now: Timestamp,
    ) -> Result<u64, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite_followup::enqueue_operator_mail(transaction, mails, now).await
            }
        }
    }
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
}
