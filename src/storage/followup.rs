//! Follow-up: feedback, evaluation notes and lessons learned, and the one consistent read
//! the incident report is built from.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;

use super::{EventRecord, IncidentRecord, PublishedNoticeRecord, StorageError};
use crate::incident::DraftState;
use crate::notice::NoticeKind;

/// Follow-up, outside a transaction. Reads only: none of these takes the write lock.
#[async_trait]
pub trait Followup: Send + Sync {
    /// One incident without its alerts.
    async fn followup_incident(
        &self,
        incident_id: i64,
    ) -> Result<Option<IncidentRecord>, StorageError>;

    /// Whether at least one notice of the incident was published (the public feedback
    /// page exists only then).
    async fn has_publication(&self, incident_id: i64) -> Result<bool, StorageError>;

    /// Everything the incident report needs, read in one transaction; `None` when the
    /// incident does not exist.
    async fn followup_snapshot(
        &self,
        incident_id: i64,
    ) -> Result<Option<FollowupSnapshot>, StorageError>;

    /// The incidents that started in `[from, before)` (either end open), oldest first.
    async fn followup_incident_ids(
        &self,
        from: Option<Timestamp>,
        before: Option<Timestamp>,
    ) -> Result<Vec<i64>, StorageError>;
}

/// Follow-up, inside a write transaction.
#[async_trait]
pub trait FollowupTx: Send {
    /// Stores feedback; returns its id.
    async fn insert_feedback(&mut self, write: &FeedbackWrite) -> Result<i64, StorageError>;

    /// Stores an evaluation note or lesson; returns its id.
    async fn insert_lesson(&mut self, write: &LessonWrite) -> Result<i64, StorageError>;
}

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
    pub state: DraftState,
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
    pub outbox_targets: BTreeMap<i64, (String, String)>,
    pub operator_mail: Vec<OperatorMailTallyRecord>,
    pub feedback: Vec<FeedbackRecord>,
    pub lessons: Vec<LessonRecord>,
}
