//! Incidents and drafts: the incidents with their alerts and log, the drafts with their
//! versions, and what the incident worker reads and writes per batch of receipts.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;

use super::StorageError;
use crate::classify::{Classification, ScopeSummary};
use crate::incident::{AlertKey, DraftState, IncidentEngine, IncidentKind, LogEvent, TrackedAlert};
pub use crate::notice::DraftFields;
use crate::notice::{NoticeKind, RenderedNotice};

/// Incidents and drafts, outside a transaction.
#[async_trait]
pub trait Incidents: Send + Sync {
    /// Every incident with its alerts, oldest first.
    async fn incidents(&self) -> Result<Vec<IncidentRecord>, StorageError>;

    /// An incident's drafts with all their versions, oldest first.
    async fn drafts(&self, incident_id: i64) -> Result<Vec<DraftRecord>, StorageError>;

    /// An incident's log, in order.
    async fn incident_events(&self, incident_id: i64) -> Result<Vec<EventRecord>, StorageError>;

    /// Opens the internal "monitoring chain broken" incident unless one is open, and logs
    /// `monitoring_chain_broken` with `detail`. Returns the new incident's id.
    async fn open_monitoring_incident(
        &self,
        now: Timestamp,
        summary: &ScopeSummary,
        classification: &Classification,
        detail: serde_json::Value,
    ) -> Result<Option<i64>, StorageError>;

    /// Resolves the open monitoring incident, if any, and logs
    /// `monitoring_chain_restored`. Returns its id.
    async fn resolve_monitoring_incident(
        &self,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError>;

    /// Open incidents first, then the most recent, at most `limit` (alerts only counted).
    async fn incident_overview(&self, limit: i64) -> Result<Vec<IncidentOverview>, StorageError>;

    /// Discards a pending draft with the operator's reason and logs `draft_discarded`.
    /// Returns its incident and creation time, or `None` if it was not pending.
    async fn discard_draft(
        &self,
        draft_id: i64,
        reason: &str,
        operator: &str,
        now: Timestamp,
    ) -> Result<Option<(i64, Timestamp)>, StorageError>;

    /// A draft with its versions, and its incident (without alerts).
    async fn draft_with_incident(
        &self,
        draft_id: i64,
    ) -> Result<Option<(DraftRecord, IncidentRecord)>, StorageError>;
}

/// Incidents and drafts, inside a write transaction.
#[async_trait]
pub trait IncidentsTx: Send {
    /// The latest outage incident, its pending draft, and which of `keys` belong
    /// elsewhere. `previous` is the engine of the last committed step, if the caller kept
    /// it: when its latest incident is still the latest, its alerts (which only the
    /// incident worker changes) are taken from there instead of being read again;
    /// everything else is read from the database.
    async fn load_correlation(
        &mut self,
        keys: &[AlertKey],
        previous: Option<IncidentEngine>,
    ) -> Result<CorrelationState, StorageError>;

    /// Writes what one step of a batch must write at once (a new incident, its drafts,
    /// whose ids later steps need) and adds the rest to `batch`. Logs `draft_created`,
    /// `draft_revised` and `draft_withdrawn` for the step's drafts (with the ids only
    /// storage knows). Returns the id of the draft it created, if any.
    async fn stage_incident_step(
        &mut self,
        write: &IncidentWrite,
        batch: &mut IncidentBatch,
    ) -> Result<Option<i64>, StorageError>;

    /// Writes the rest of a batch's steps (the alerts received, incident headers and
    /// alerts, log entries) in a few statements, and marks its receipts processed.
    async fn finish_incident_batch(
        &mut self,
        batch: &IncidentBatch,
        processed_at: Timestamp,
    ) -> Result<(), StorageError>;

    /// Adds an operator's version of a pending draft and logs `draft_edited`.
    #[allow(clippy::too_many_arguments)]
    async fn add_draft_version(
        &mut self,
        incident_id: i64,
        draft_id: i64,
        version: i64,
        created_by: &str,
        fields: &DraftFields,
        input: &serde_json::Value,
        rendered: &RenderedNotice,
        at: Timestamp,
    ) -> Result<(), StorageError>;

    /// An incident without its alerts.
    async fn incident_by_id(
        &mut self,
        incident_id: i64,
    ) -> Result<Option<IncidentRecord>, StorageError>;

    /// A pending draft made by an operator, logged as `draft_created` by hand; `None`
    /// when one is pending already (one pending draft per incident).
    #[allow(clippy::too_many_arguments)]
    async fn insert_operator_draft(
        &mut self,
        incident_id: i64,
        kind: NoticeKind,
        fields: &DraftFields,
        input: &serde_json::Value,
        rendered: &RenderedNotice,
        operator: &str,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError>;

    /// Opens a drill incident and logs `drill_started`; `None` when one is open.
    async fn insert_drill_incident(
        &mut self,
        summary: &ScopeSummary,
        classification: &Classification,
        operator: &str,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError>;

    /// Resolves an open drill or maintenance window (when its last notice is published).
    async fn close_drill(&mut self, incident_id: i64, now: Timestamp) -> Result<(), StorageError>;

    /// Withdraws the incident's pending draft, if any, with `reason` (logged as
    /// `draft_withdrawn` by the relay). Returns its id.
    async fn withdraw_pending_draft(
        &mut self,
        incident_id: i64,
        reason: &str,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError>;

    /// Appends entries to an incident's log.
    async fn append_events(
        &mut self,
        incident_id: i64,
        events: &[EventWrite],
    ) -> Result<(), StorageError>;
}

/// The draft waiting for an operator, with its latest version.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDraft {
    pub draft_id: i64,
    pub kind: NoticeKind,
    pub version: i64,
    pub fields: DraftFields,
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
    pub headers: BTreeMap<i64, (crate::incident::Incident, Timestamp)>,
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
    pub kind: IncidentKind,
    pub incident: crate::incident::Incident,
    pub resolved_at: Option<Timestamp>,
}

/// A stored draft with its versions, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftRecord {
    pub draft_id: i64,
    pub incident_id: i64,
    pub kind: NoticeKind,
    pub state: DraftState,
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

impl EventWrite {
    /// An entry of the typed log, in its stored form.
    pub fn new(at: Timestamp, source: &str, event: &LogEvent) -> EventWrite {
        let (event, detail) = event.to_stored();
        EventWrite {
            at,
            source: source.to_owned(),
            event,
            detail,
        }
    }
}

impl EventRecord {
    /// The entry as the typed log; an error for a kind or fields the relay never wrote.
    pub fn log_event(&self) -> Result<LogEvent, serde_json::Error> {
        LogEvent::from_stored(&self.event, &self.detail)
    }
}

/// An incident for lists (its alerts are not loaded, only counted).
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentOverview {
    pub record: IncidentRecord,
    pub n_firing: i64,
}
