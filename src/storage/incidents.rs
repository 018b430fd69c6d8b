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

    /// As [`Incidents::incident_overview`] without counting the firing alerts, which reads
    /// every alert of an incident: for the loops that look every few seconds.
    async fn recent_incidents(&self, limit: i64) -> Result<Vec<IncidentRecord>, StorageError>;

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

/// What the incident worker reads to plan a batch. Implemented by a read snapshot
/// ([`super::Backend::begin_read`]), where the worker plans without holding the write
/// connection, and by every write transaction, where it checks that nothing it planned
/// from has changed ([`CorrelationReads::correlation_version`]) before it writes.
#[async_trait]
pub trait CorrelationReads: Send {
    /// The oldest receipts the incident worker has not processed, in order: at most
    /// `limit`, and no more than `alert_budget` alerts in all (the first receipt is
    /// returned whatever its size). A receipt counts as processed once
    /// [`IncidentsTx::finish_incident_batch`] named it in a committed transaction.
    async fn next_unprocessed_receipts(
        &mut self,
        limit: usize,
        alert_budget: usize,
    ) -> Result<Vec<super::UnprocessedReceipt>, StorageError>;

    /// The latest outage incident with those of its alerts that `keys` name (never all
    /// of them: an incident can have hundreds of thousands), its pending draft, and which
    /// of `keys` belong elsewhere. `previous` is the engine of the last committed batch,
    /// if the caller kept it: when its latest incident is still the latest, its firing
    /// scopes (which only the incident worker changes) are kept; otherwise
    /// [`CorrelationState::firing_labels`] holds what to count them from.
    async fn load_correlation(
        &mut self,
        keys: &[AlertKey],
        previous: Option<IncidentEngine>,
    ) -> Result<CorrelationState, StorageError>;

    /// What others (operators, the maintenance scheduler, a drill) may change that a
    /// plan depends on: compared before a planned batch is written.
    async fn correlation_version(&mut self) -> Result<CorrelationVersion, StorageError>;

    /// The windows in effect at some moment of `[from, to]`: announced or running, and
    /// their times overlapping it. (The incident worker asks once per batch, then checks
    /// each receipt with `Window::in_effect`.)
    async fn maintenance_windows_in_effect(
        &mut self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<crate::maintenance::Window>, StorageError>;
}

/// A read snapshot for planning; see [`CorrelationReads`]. Dropping it ends it.
pub type ReadTransaction = Box<dyn CorrelationReads>;

/// The state a plan of the incident worker was made from, apart from the alerts (which
/// only the worker changes, under the `correlation` lease): the next incident id, the
/// latest outage incident's header and its pending draft.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationVersion {
    pub next_incident_id: i64,
    pub latest: Option<crate::incident::Incident>,
    pub pending_draft: Option<PendingDraft>,
}

/// Incidents and drafts, inside a write transaction.
#[async_trait]
pub trait IncidentsTx: Send {
    /// Writes what one step of a batch must write at once (a new incident, its drafts,
    /// whose ids later steps need) and adds the rest to `batch`. Logs `draft_created`,
    /// `draft_revised` and `draft_withdrawn` for the step's drafts (with the ids only
    /// storage knows). Returns the id of the draft it created, if any. The step's alerts,
    /// log entries and retired keys are moved into `batch`, not copied.
    async fn stage_incident_step(
        &mut self,
        write: &mut IncidentWrite,
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
    /// What the state was read from; see [`CorrelationReads::correlation_version`].
    pub version: CorrelationVersion,
    /// When the engine's firing scopes could not be kept from `previous`: the label sets
    /// of the latest incident's firing alerts, each with how many alerts carry it, for
    /// the caller to count the scopes from (storage does not know the scope labels).
    pub firing_labels: Option<Vec<(crate::alertmanager::LabelMap, usize)>>,
}

impl CorrelationState {
    /// A state with no incident yet, read from nowhere (`samsa-relay simulate`).
    pub fn new(engine: IncidentEngine) -> CorrelationState {
        CorrelationState {
            version: CorrelationVersion {
                next_incident_id: engine.next_incident_id,
                latest: None,
                pending_draft: None,
            },
            engine,
            pending_draft: None,
            firing_labels: None,
        }
    }
}

/// One entry of an incident's log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventWrite {
    pub at: Timestamp,
    pub source: String,
    pub event: String,
    /// The entry's other fields: a JSON object, as the text stored.
    pub detail: String,
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
        let (event, detail) = event.to_stored_text();
        EventWrite {
            at,
            source: source.to_owned(),
            event,
            detail,
        }
    }
}

/// A run of one webhook's alert entries is stored as one row: (stored kind, the kind of
/// each entry it holds). Its detail is `{"alerts":[…]}`, each element the detail its
/// entry would have had alone, in order. Readers never see these rows:
/// [`expand_alert_groups`] gives back one entry per alert, so the log reads exactly as if
/// each alert had a row of its own (and rows written before grouping read unchanged).
/// A 20-alert webhook writes one row instead of twenty.
pub const ALERT_GROUPS: [(&str, &str); 2] = [
    ("alerts_firing", "alert_firing"),
    ("alerts_resolved", "alert_resolved"),
];

/// The stored rows for a step's log `events`, all at `at`: each run of two or more
/// consecutive entries of one alert kind (see [`ALERT_GROUPS`]) as one row, every other
/// entry as a row of its own; each entry's source is [`LogEvent::worker_source`].
pub fn event_writes(events: &[LogEvent], at: Timestamp) -> Vec<EventWrite> {
    let mut writes: Vec<EventWrite> = Vec::with_capacity(events.len());
    let mut run: Vec<EventWrite> = Vec::new();
    let flush = |run: &mut Vec<EventWrite>, writes: &mut Vec<EventWrite>| {
        let grouped_as = run.first().and_then(|first| {
            ALERT_GROUPS
                .iter()
                .find(|(_, kind)| first.event == *kind)
                .map(|(grouped, _)| *grouped)
        });
        match grouped_as {
            Some(grouped_as) if run.len() >= 2 => {
                let mut detail = String::from("{\"alerts\":[");
                for (index, write) in run.iter().enumerate() {
                    if index > 0 {
                        detail.push(',');
                    }
                    detail.push_str(&write.detail);
                }
                detail.push_str("]}");
                let first = &run[0];
                writes.push(EventWrite {
                    at: first.at,
                    source: first.source.clone(),
                    event: grouped_as.to_owned(),
                    detail,
                });
                run.clear();
            }
            _ => writes.append(run),
        }
    };
    for event in events {
        let write = EventWrite::new(at, event.worker_source(), event);
        let continues = run
            .last()
            .is_some_and(|last| last.event == write.event && last.source == write.source);
        if !continues {
            flush(&mut run, &mut writes);
        }
        run.push(write);
    }
    flush(&mut run, &mut writes);
    writes
}

/// The log's entries as readers expect them: each stored group of [`ALERT_GROUPS`]
/// expanded into its entries, which share the group's id, time and source.
pub fn expand_alert_groups(records: Vec<EventRecord>) -> Vec<EventRecord> {
    if !records.iter().any(|record| {
        ALERT_GROUPS
            .iter()
            .any(|(grouped, _)| record.event == *grouped)
    }) {
        return records;
    }
    let mut expanded = Vec::with_capacity(records.len());
    for mut record in records {
        let Some((_, kind)) = ALERT_GROUPS
            .iter()
            .find(|(grouped, _)| record.event == *grouped)
        else {
            expanded.push(record);
            continue;
        };
        let alerts = match record.detail.get_mut("alerts").map(serde_json::Value::take) {
            Some(serde_json::Value::Array(alerts)) => alerts,
            // Not a group the relay wrote: left as it is, for the reader to reject.
            _ => {
                expanded.push(record);
                continue;
            }
        };
        for detail in alerts {
            expanded.push(EventRecord {
                event_id: record.event_id,
                incident_id: record.incident_id,
                at: record.at,
                source: record.source.clone(),
                event: (*kind).to_owned(),
                detail,
            });
        }
    }
    expanded
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alertmanager::LabelMap;

    fn firing(fingerprint: &str, actor: &str) -> LogEvent {
        LogEvent::AlertFiring {
            fingerprint: fingerprint.to_owned(),
            starts_at: "2026-11-28T04:10:00Z".parse().unwrap(),
            labels: std::sync::Arc::new(LabelMap::from_iter([(
                "actor".to_owned(),
                actor.to_owned(),
            )])),
        }
    }

    fn resolved(fingerprint: &str) -> LogEvent {
        LogEvent::AlertResolved {
            fingerprint: fingerprint.to_owned(),
            starts_at: "2026-11-28T04:10:00Z".parse().unwrap(),
        }
    }

    /// The rows as a reader gets them back, with ids in write order.
    fn read_back(writes: &[EventWrite]) -> Vec<EventRecord> {
        writes
            .iter()
            .enumerate()
            .map(|(index, write)| EventRecord {
                event_id: index as i64 + 1,
                incident_id: 7,
                at: write.at,
                source: write.source.clone(),
                event: write.event.clone(),
                detail: serde_json::from_str(&write.detail).unwrap(),
            })
            .collect()
    }

    #[test]
    fn a_run_of_alert_entries_is_one_row_and_reads_back_as_one_entry_each() {
        let at: Timestamp = "2026-11-28T04:12:00Z".parse().unwrap();
        let events = vec![
            LogEvent::IncidentOpened {
                started_at: at,
                n_affected: 3,
                level: 1,
                crisis: false,
                reasons: vec![],
            },
            firing("a", "kommun-boras"),
            firing("b", "kommun-\"quoted\""),
            firing("c", "kommun-ale"),
            LogEvent::IncidentResolved { at },
            resolved("a"),
            LogEvent::IncidentResolved { at },
            resolved("b"),
            resolved("c"),
        ];
        let writes = event_writes(&events, at);
        let kinds: Vec<&str> = writes.iter().map(|write| write.event.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "incident_opened",
                "alerts_firing",
                "incident_resolved",
                "alert_resolved",
                "incident_resolved",
                "alerts_resolved",
            ],
            "runs of two or more are grouped; a single entry keeps its own row"
        );

        let expanded = expand_alert_groups(read_back(&writes));
        let one_row_each: Vec<EventWrite> = events
            .iter()
            .map(|event| EventWrite::new(at, event.worker_source(), event))
            .collect();
        assert_eq!(expanded.len(), events.len());
        for ((record, alone), event) in expanded.iter().zip(&one_row_each).zip(&events) {
            assert_eq!(record.event, alone.event);
            assert_eq!(record.source, alone.source);
            assert_eq!(
                record.detail,
                serde_json::from_str::<serde_json::Value>(&alone.detail).unwrap()
            );
            assert_eq!(&record.log_event().unwrap(), event);
        }
        // A group's entries share its row's id; the log's order is kept.
        let ids: Vec<i64> = expanded.iter().map(|record| record.event_id).collect();
        assert_eq!(ids, [1, 2, 2, 2, 3, 4, 5, 6, 6]);
    }

    #[test]
    fn rows_written_one_per_alert_read_unchanged() {
        let at: Timestamp = "2026-11-28T04:12:00Z".parse().unwrap();
        let events = [firing("a", "kommun-boras"), firing("b", "kommun-ale")];
        let one_row_each: Vec<EventWrite> = events
            .iter()
            .map(|event| EventWrite::new(at, event.worker_source(), event))
            .collect();
        let records = read_back(&one_row_each);
        assert_eq!(expand_alert_groups(records.clone()), records);
    }
}
