//! The follow-up the communication plan asks for after every outage ("uppföljning"): a log
//! of events, feedback from the working groups, an evaluation with the parties involved,
//! and lessons fed back to organisations and suppliers ("erfarenhetsåterföring").
//!
//! - **The report.** [`build_report`] reads one [`FollowupSnapshot`] and [`assemble_report`]
//!   turns it into an [`IncidentReport`]. Assembly is pure: the same stored incident gives
//!   the same report, except `generated_at`. The report's JSON is a stable format, described
//!   by `docs/report-schema.json` ([`REPORT_SCHEMA_VERSION`]); [`render_report`] writes it as
//!   Markdown, as HTML printable on A4, or as that JSON.
//! - **Deliveries are counted, not logged.** A publication to 1,000 recipients does not add
//!   1,000 log entries. The log has an entry for each delivery that failed for good and
//!   each operator retry; the report counts the outbox per (notice, channel) and adds one
//!   timeline line per (notice, channel) when its last delivery went out. Escalations are
//!   counted from the operator mail outbox the same way. Every timeline entry says where it
//!   came from (`origin`: `log`, `outbox` or `operator_mail`).
//! - **Scope over time** is replayed from the log's alert entries, which keep each alert's
//!   labels, against the current inventory. An alert counts from its `startsAt` until its
//!   resolution was received, as the incident itself does.
//! - **Feedback, notes and lessons** are stored as plain text and escaped by each output
//!   for its own format: HTML by MiniJinja's auto-escape, Markdown by [`escape_markdown`]
//!   (every value a Markdown template prints goes through it), JSON by serde. Nothing a
//!   person typed reaches an email header.
//! - **Across incidents** [`list_incidents`] filters by period, level and sub-region, and
//!   [`incidents_csv`] and [`summary_csv`] export the yearly follow-up.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, Output, State, UndefinedBehavior, context};
use serde::Serialize;

use crate::classify::{AlertScope, alert_scopes};
use crate::config::{Config, Operator};
use crate::links::{LinkPurpose, LinkSigner};
use crate::notice::NoticeKind;
use crate::operators::signed_link;
use crate::publishing::kind_label;
use crate::storage::{
    EventRecord, EventWrite, FeedbackWrite, FollowupSnapshot, LessonWrite, OperatorMailWrite,
    Storage, StorageError,
};
use crate::swedish::{
    SWEDISH_TIME_ZONE, clean_multiline, format_swedish_duration, format_swedish_time,
    join_swedish_list, single_line,
};

/// The version of the report's JSON form. It changes only when a field is removed, renamed
/// or changes meaning; a new optional field keeps the version (and is added to the schema).
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// Longest name on the feedback page, in characters.
pub const MAX_FEEDBACK_NAME_CHARS: usize = 200;
/// Longest organisation on the feedback page, in characters.
pub const MAX_FEEDBACK_ORGANISATION_CHARS: usize = 200;
/// Longest feedback message, in characters.
pub const MAX_FEEDBACK_MESSAGE_CHARS: usize = 5_000;
/// Longest entry an operator writes in the log, in characters.
pub const MAX_NOTE_CHARS: usize = 2_000;
/// Longest evaluation note or lesson, in characters.
pub const MAX_LESSON_CHARS: usize = 5_000;

/// The stylesheet of the HTML report, inlined in it (the report is one self-contained file).
/// The HTTP layer allows exactly this style by its hash.
pub const REPORT_STYLESHEET: &str = include_str!("followup_templates/report.css");

// ---------------------------------------------------------------------------------------
// The report: its JSON form. Every field is described in docs/report-schema.json.

/// One incident's follow-up report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentReport {
    pub schema_version: u32,
    pub generated_at: Timestamp,
    pub service_name: String,
    pub incident: ReportIncident,
    pub milestones: Milestones,
    pub durations: Durations,
    pub drafts: Vec<DraftWait>,
    pub levels: Vec<LevelEntry>,
    pub scope: ScopeReport,
    pub decisions: Vec<DecisionEntry>,
    pub publications: Vec<PublicationEntry>,
    pub deliveries: Deliveries,
    pub escalations: Vec<EscalationEntry>,
    pub feedback: Vec<FeedbackEntry>,
    pub lessons: Vec<LessonEntry>,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportIncident {
    pub incident_id: i64,
    /// What notices call it, e.g. `SAMSA-42`.
    pub reference: String,
    /// `outage`, `drill` or `monitoring`.
    pub kind: String,
    /// `open` or `resolved`.
    pub phase: String,
    pub started_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub n_reopened: u32,
    /// The level the relay suggests now (the last one while open).
    pub suggested_level: u8,
    /// The highest level suggested or published during the incident.
    pub highest_level: u8,
    /// The highest level published, if anything was.
    pub published_level: Option<u8>,
    /// Crisis communication was suggested or a level 3 notice published.
    pub crisis: bool,
    /// Why the relay suggests its level, in Swedish.
    pub reasons: Vec<String>,
    pub n_actors: usize,
    /// The most actors affected at one time.
    pub max_affected: usize,
    /// The whole service was down at some time.
    pub whole_service: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Milestones {
    /// The earliest `startsAt` of the incident's alerts (a drill's start).
    pub first_alert_at: Timestamp,
    pub first_draft_at: Option<Timestamp>,
    pub first_publication_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Durations {
    /// From the first alert to the resolution, or to `generated_at` while open.
    pub outage_seconds: i64,
    /// True while the incident is open: `outage_seconds` runs to `generated_at`.
    pub ongoing: bool,
    pub to_first_draft_seconds: Option<i64>,
    /// The time to the first notice: first alert to first publication.
    pub to_first_notice_seconds: Option<i64>,
    pub first_notice_to_resolution_seconds: Option<i64>,
    /// How long drafts waited for an operator, summed over every draft.
    pub drafts_waited_seconds: i64,
    pub longest_draft_wait_seconds: Option<i64>,
}

/// How long one draft waited for an operator, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DraftWait {
    pub draft_id: i64,
    pub kind: NoticeKind,
    pub created_at: Timestamp,
    /// `relay`, or the operator who wrote it by hand.
    pub created_by: String,
    pub n_versions: i64,
    /// `published`, `withdrawn`, `discarded` or `pending`.
    pub outcome: String,
    /// When it was published, withdrawn or discarded; `None` while pending.
    pub ended_at: Option<Timestamp>,
    /// Until `ended_at`, or until `generated_at` while pending.
    pub waited_seconds: i64,
    /// Why it was withdrawn or discarded.
    pub reason: Option<String>,
}

/// A level the relay suggested or an operator published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelEntry {
    pub at: Timestamp,
    pub level: u8,
    pub crisis: bool,
    /// `suggested` or `published`.
    pub basis: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScopeReport {
    pub n_actors: usize,
    /// Every change of scope, oldest first.
    pub series: Vec<ScopePoint>,
    /// Every sub-region of the inventory, in inventory order.
    pub subregions: Vec<SubregionReport>,
    /// Actor ids from alert labels that the inventory does not know.
    pub unknown_actor_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScopePoint {
    pub at: Timestamp,
    pub n_affected: usize,
    pub whole_service: bool,
    /// Affected actors per sub-region id.
    pub affected_by_subregion: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubregionReport {
    pub id: String,
    pub name: String,
    pub n_actors: usize,
    pub max_affected: usize,
    /// Every actor of the sub-region was affected at some time.
    pub whole: bool,
    /// How long at least one of its actors was affected.
    pub downtime_seconds: i64,
    pub first_affected_at: Option<Timestamp>,
    pub last_affected_until: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionEntry {
    pub at: Timestamp,
    pub level: u8,
    pub decided_by: String,
    /// `subregional`, `council_chair` or `council_vice_chair`.
    pub role: String,
    pub role_label: String,
    /// The operator who recorded it when publishing.
    pub recorded_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicationEntry {
    pub notice_id: i64,
    pub published_at: Timestamp,
    pub kind: NoticeKind,
    pub level: u8,
    pub published_by: String,
    pub decided_by: Option<String>,
    pub decided_role: Option<String>,
    pub channels: Vec<String>,
    pub draft_id: i64,
    pub draft_version: i64,
    pub email_subject: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deliveries {
    pub by_channel: Vec<ChannelDeliveries>,
    pub by_notice: Vec<NoticeDeliveries>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelDeliveries {
    pub channel: String,
    /// Outbox rows: one per (notice, recipient).
    pub n_deliveries: i64,
    pub n_sent: i64,
    pub n_failed: i64,
    pub n_pending: i64,
    /// Attempts after each delivery's first.
    pub n_retries: i64,
    /// Failed deliveries an operator sent again.
    pub n_operator_retries: i64,
    pub first_sent_at: Option<Timestamp>,
    pub last_sent_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoticeDeliveries {
    pub notice_id: i64,
    pub channel: String,
    pub n_deliveries: i64,
    pub n_sent: i64,
    pub n_failed: i64,
    pub n_pending: i64,
    pub n_retries: i64,
    pub first_sent_at: Option<Timestamp>,
    pub last_sent_at: Option<Timestamp>,
}

/// A draft nobody acted on in time, sent to on-duty and escalation operators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationEntry {
    pub draft_id: Option<i64>,
    pub at: Timestamp,
    pub n_mails: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackEntry {
    pub feedback_id: i64,
    pub received_at: Timestamp,
    pub name: String,
    pub organisation: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LessonEntry {
    pub lesson_id: i64,
    pub created_at: Timestamp,
    pub created_by: String,
    /// `evaluation` or `lesson`.
    pub kind: String,
    /// For a lesson: `organisations`, `suppliers` or `service_management`.
    pub audience: Option<String>,
    pub text: String,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// When it happened (for an operator's note: the time the operator gave, if any).
    pub at: Timestamp,
    /// When it was written in the log, when that differs from `at`.
    pub recorded_at: Option<Timestamp>,
    /// Who or what caused it: `alertmanager`, `relay`, `feedback`, or an operator's name.
    pub source: String,
    /// The log's event name (`alert_firing`, `note`, …) or, for counted entries,
    /// `deliveries_sent` or `escalation`.
    pub event: String,
    /// What happened, in Swedish.
    pub text: String,
    /// `log`, `outbox` or `operator_mail`.
    pub origin: String,
    /// Log entries this line stands for (alerts of one webhook are one line).
    pub n_entries: usize,
}

// ---------------------------------------------------------------------------------------
// Building the report.

/// The report of one incident, or `None` when it does not exist.
pub async fn build_report(
    storage: &Storage,
    config: &Config,
    incident_id: i64,
    generated_at: Timestamp,
) -> Result<Option<IncidentReport>, StorageError> {
    Ok(storage
        .followup_snapshot(incident_id)
        .await?
        .map(|snapshot| assemble_report(&snapshot, config, generated_at)))
}

/// Turns what storage holds about an incident into its report. Pure.
pub fn assemble_report(
    snapshot: &FollowupSnapshot,
    config: &Config,
    generated_at: Timestamp,
) -> IncidentReport {
    let record = &snapshot.incident;
    let incident = &record.incident;
    let resolved_at = record.resolved_at;
    let end = resolved_at.unwrap_or(generated_at);

    let scope = replay_scope(snapshot, config, end);
    let levels = level_entries(&snapshot.events);
    let published_level = snapshot.notices.iter().map(|notice| notice.level).max();
    let suggested_level = incident.classification.level.as_number();
    let highest_level = levels
        .iter()
        .map(|entry| entry.level)
        .chain([suggested_level])
        .max()
        .unwrap_or(suggested_level);
    let crisis = incident.classification.crisis || levels.iter().any(|entry| entry.crisis);
    let max_affected = scope
        .series
        .iter()
        .map(|point| point.n_affected)
        .max()
        .unwrap_or(incident.summary.n_affected)
        .max(incident.summary.n_affected);
    let whole_service =
        incident.summary.whole_service || scope.series.iter().any(|point| point.whole_service);

    let first_draft_at = snapshot.drafts.iter().map(|draft| draft.created_at).min();
    let first_publication_at = snapshot
        .notices
        .iter()
        .map(|notice| notice.published_at)
        .min();
    let started_at = incident.started_at;

    let drafts: Vec<DraftWait> = snapshot
        .drafts
        .iter()
        .map(|draft| {
            let ended_at = match draft.state.as_str() {
                "published" => Some(draft.published_at.unwrap_or(draft.updated_at)),
                "pending" => None,
                _ => Some(draft.updated_at),
            };
            DraftWait {
                draft_id: draft.draft_id,
                kind: draft.kind,
                created_at: draft.created_at,
                created_by: draft.created_by.clone(),
                n_versions: draft.n_versions,
                outcome: draft.state.clone(),
                ended_at,
                waited_seconds: seconds_between(draft.created_at, ended_at.unwrap_or(generated_at)),
                reason: draft.state_reason.clone(),
            }
        })
        .collect();

    let durations = Durations {
        outage_seconds: seconds_between(started_at, end),
        ongoing: resolved_at.is_none(),
        to_first_draft_seconds: first_draft_at.map(|at| seconds_between(started_at, at)),
        to_first_notice_seconds: first_publication_at.map(|at| seconds_between(started_at, at)),
        first_notice_to_resolution_seconds: first_publication_at
            .zip(resolved_at)
            .map(|(first, resolved)| seconds_between(first, resolved)),
        drafts_waited_seconds: drafts.iter().map(|draft| draft.waited_seconds).sum(),
        longest_draft_wait_seconds: drafts.iter().map(|draft| draft.waited_seconds).max(),
    };

    let decisions = snapshot
        .events
        .iter()
        .filter(|event| event.event == "decision_recorded")
        .map(|event| DecisionEntry {
            at: event.at,
            level: detail_u64(event, "level").unwrap_or(0) as u8,
            decided_by: detail_str(event, "decided_by").to_owned(),
            role: detail_str(event, "role").to_owned(),
            role_label: detail_str(event, "role_label").to_owned(),
            recorded_by: event.source.clone(),
        })
        .collect();

    let publications = snapshot
        .notices
        .iter()
        .map(|notice| PublicationEntry {
            notice_id: notice.notice_id,
            published_at: notice.published_at,
            kind: notice.kind,
            level: notice.level,
            published_by: notice.published_by.clone(),
            decided_by: notice.decided_by.clone(),
            decided_role: notice.decided_role.clone(),
            channels: notice.channels.clone(),
            draft_id: notice.draft_id,
            draft_version: notice.draft_version,
            email_subject: notice.rendered.email_subject.clone(),
        })
        .collect();

    let deliveries = deliveries(snapshot);
    let escalations: Vec<EscalationEntry> = snapshot
        .operator_mail
        .iter()
        .filter(|mail| mail.purpose == "escalation")
        .map(|mail| EscalationEntry {
            draft_id: mail.draft_id,
            at: mail.first_at,
            n_mails: mail.n_mails,
        })
        .collect();
    let feedback = snapshot
        .feedback
        .iter()
        .map(|feedback| FeedbackEntry {
            feedback_id: feedback.feedback_id,
            received_at: feedback.received_at,
            name: feedback.name.clone(),
            organisation: feedback.organisation.clone(),
            message: feedback.message.clone(),
        })
        .collect();
    let lessons = snapshot
        .lessons
        .iter()
        .map(|lesson| LessonEntry {
            lesson_id: lesson.lesson_id,
            created_at: lesson.created_at,
            created_by: lesson.created_by.clone(),
            kind: lesson.kind.clone(),
            audience: lesson.audience.clone(),
            text: lesson.text.clone(),
        })
        .collect();
    let timeline = timeline(snapshot, config, &escalations, &deliveries);

    IncidentReport {
        schema_version: REPORT_SCHEMA_VERSION,
        generated_at,
        service_name: config.notices.service_name.clone(),
        incident: ReportIncident {
            incident_id: record.incident_id,
            reference: format!("{}-{}", config.notices.service_name, record.incident_id),
            kind: record.kind.clone(),
            phase: if resolved_at.is_some() {
                "resolved"
            } else {
                "open"
            }
            .to_owned(),
            started_at,
            resolved_at,
            n_reopened: incident.n_reopened,
            suggested_level,
            highest_level,
            published_level,
            crisis,
            reasons: incident.classification.reasons.clone(),
            n_actors: scope.n_actors,
            max_affected,
            whole_service,
        },
        milestones: Milestones {
            first_alert_at: started_at,
            first_draft_at,
            first_publication_at,
            resolved_at,
        },
        durations,
        drafts,
        levels,
        scope,
        decisions,
        publications,
        deliveries,
        escalations,
        feedback,
        lessons,
        timeline,
    }
}

fn seconds_between(from: Timestamp, to: Timestamp) -> i64 {
    to.duration_since(from).as_secs().max(0)
}

fn detail_str<'event>(event: &'event EventRecord, key: &str) -> &'event str {
    event.detail[key].as_str().unwrap_or("")
}

fn detail_u64(event: &EventRecord, key: &str) -> Option<u64> {
    event.detail[key].as_u64()
}

fn detail_time(event: &EventRecord, key: &str) -> Option<Timestamp> {
    event.detail[key].as_str()?.parse().ok()
}

fn level_entries(events: &[EventRecord]) -> Vec<LevelEntry> {
    let mut levels: Vec<LevelEntry> = Vec::new();
    for event in events {
        let (level, crisis, basis) = match event.event.as_str() {
            "incident_opened" | "drill_started" => (
                detail_u64(event, "level"),
                event.detail["crisis"].as_bool().unwrap_or(false),
                "suggested",
            ),
            "level_changed" => (
                detail_u64(event, "after"),
                event.detail["crisis"].as_bool().unwrap_or(false),
                "suggested",
            ),
            "notice_published" => {
                let level = detail_u64(event, "level");
                (level, level == Some(3), "published")
            }
            _ => continue,
        };
        let Some(level) = level.and_then(|level| u8::try_from(level).ok()) else {
            continue;
        };
        levels.push(LevelEntry {
            at: event.at,
            level,
            crisis,
            basis: basis.to_owned(),
        });
    }
    levels
}

/// One alert's part in the scope: which actors it covers, from when to when.
struct AlertSpan {
    start: Timestamp,
    end: Timestamp,
    everything: bool,
    /// Indexes into the inventory's actors.
    actors: Vec<usize>,
}

/// Replays the scope from the log's alert entries (or, for a drill, from its fixed scope)
/// with incremental counts, so that 10,000 alerts replay in linear time.
fn replay_scope(snapshot: &FollowupSnapshot, config: &Config, end: Timestamp) -> ScopeReport {
    let inventory = &config.inventory;
    let actors = inventory.actors();
    let subregions = inventory.subregions();
    let actor_index: HashMap<&str, usize> = actors
        .iter()
        .enumerate()
        .map(|(index, actor)| (actor.id.as_str(), index))
        .collect();
    let subregion_of_actor: Vec<Option<usize>> = actors
        .iter()
        .map(|actor| {
            subregions
                .iter()
                .position(|subregion| subregion.id == actor.subregion_id)
        })
        .collect();
    let mut unknown_actor_ids: Vec<String> = Vec::new();
    let mut covered = |scopes: &[AlertScope]| -> (bool, Vec<usize>) {
        let mut everything = false;
        let mut indexes = Vec::new();
        for scope in scopes {
            match scope {
                AlertScope::Everything => everything = true,
                AlertScope::Subregion(id) => indexes.extend(
                    actors
                        .iter()
                        .enumerate()
                        .filter(|(_, actor)| &actor.subregion_id == id)
                        .map(|(index, _)| index),
                ),
                AlertScope::Actor(id) => match actor_index.get(id.as_str()) {
                    Some(index) => indexes.push(*index),
                    None => {
                        let id = single_line(id, 100);
                        if !unknown_actor_ids.contains(&id) {
                            unknown_actor_ids.push(id);
                        }
                    }
                },
            }
        }
        indexes.sort_unstable();
        indexes.dedup();
        (everything, indexes)
    };

    let record = &snapshot.incident;
    let mut spans: Vec<AlertSpan> = Vec::new();
    let mut open_spans: HashMap<(String, String), usize> = HashMap::new();
    for event in &snapshot.events {
        match event.event.as_str() {
            "alert_firing" => {
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(event.detail["labels"].clone()).unwrap_or_default();
                let starts_at = detail_time(event, "starts_at").unwrap_or(event.at);
                let (everything, indexes) = covered(&alert_scopes(&labels, &config.incidents));
                let key = (
                    detail_str(event, "fingerprint").to_owned(),
                    detail_str(event, "starts_at").to_owned(),
                );
                open_spans.insert(key, spans.len());
                spans.push(AlertSpan {
                    start: starts_at,
                    end,
                    everything,
                    actors: indexes,
                });
            }
            "alert_resolved" => {
                let key = (
                    detail_str(event, "fingerprint").to_owned(),
                    detail_str(event, "starts_at").to_owned(),
                );
                if let Some(index) = open_spans.remove(&key) {
                    spans[index].end = event.at.max(spans[index].start);
                }
            }
            _ => {}
        }
    }
    if spans.is_empty() && record.kind == "drill" {
        // A drill has no alerts: its scope is the one the operator chose, all along.
        let summary = &record.incident.summary;
        let mut scopes: Vec<AlertScope> = Vec::new();
        if summary.whole_service {
            scopes.push(AlertScope::Everything);
        }
        for subregion in &summary.subregions {
            scopes.extend(subregion.affected.iter().cloned().map(AlertScope::Actor));
        }
        let (everything, indexes) = covered(&scopes);
        spans.push(AlertSpan {
            start: record.incident.started_at,
            end,
            everything,
            actors: indexes,
        });
    }

    // Sweep the starts and ends in time order, one scope point per distinct time.
    let mut changes: Vec<(Timestamp, usize, bool)> = Vec::with_capacity(spans.len() * 2);
    for (index, span) in spans.iter().enumerate() {
        changes.push((span.start, index, true));
        if span.end < end || record.resolved_at.is_some() {
            changes.push((span.end, index, false));
        }
    }
    // At one time, starts before ends: a span that ends when it starts never goes below zero.
    changes.sort_by_key(|(at, index, starts)| (*at, !*starts, *index));
    let mut actor_refcount = vec![0_usize; actors.len()];
    let mut affected_in_subregion = vec![0_usize; subregions.len()];
    let mut n_everything = 0_usize;
    let mut n_affected = 0_usize;
    let mut series: Vec<ScopePoint> = Vec::new();
    let mut max_in_subregion = vec![0_usize; subregions.len()];
    let mut downtime = vec![0_i64; subregions.len()];
    let mut affected_since: Vec<Option<Timestamp>> = vec![None; subregions.len()];
    let mut first_affected: Vec<Option<Timestamp>> = vec![None; subregions.len()];
    let mut last_affected: Vec<Option<Timestamp>> = vec![None; subregions.len()];
    let mut position = 0;
    while position < changes.len() {
        let at = changes[position].0;
        while position < changes.len() && changes[position].0 == at {
            let (_, index, starts) = changes[position];
            let span = &spans[index];
            if span.everything {
                if starts {
                    n_everything += 1;
                } else {
                    n_everything -= 1;
                }
            }
            let span_actors: Box<dyn Iterator<Item = usize>> = if span.everything {
                Box::new(0..actors.len())
            } else {
                Box::new(span.actors.iter().copied())
            };
            for actor in span_actors {
                let count = &mut actor_refcount[actor];
                let was_affected = *count > 0;
                if starts {
                    *count += 1;
                } else {
                    *count -= 1;
                }
                let is_affected = *count > 0;
                if was_affected != is_affected {
                    let delta_up = is_affected;
                    if delta_up {
                        n_affected += 1;
                    } else {
                        n_affected -= 1;
                    }
                    if let Some(subregion) = subregion_of_actor[actor] {
                        if delta_up {
                            affected_in_subregion[subregion] += 1;
                        } else {
                            affected_in_subregion[subregion] -= 1;
                        }
                    }
                }
            }
            position += 1;
        }
        for (subregion, count) in affected_in_subregion.iter().enumerate() {
            max_in_subregion[subregion] = max_in_subregion[subregion].max(*count);
            match (affected_since[subregion], *count > 0) {
                (None, true) => {
                    affected_since[subregion] = Some(at);
                    first_affected[subregion].get_or_insert(at);
                }
                (Some(since), false) => {
                    downtime[subregion] += seconds_between(since, at);
                    affected_since[subregion] = None;
                    last_affected[subregion] = Some(at);
                }
                _ => {}
            }
        }
        let point = ScopePoint {
            at,
            n_affected,
            whole_service: n_everything > 0 || (!actors.is_empty() && n_affected == actors.len()),
            affected_by_subregion: subregions
                .iter()
                .zip(&affected_in_subregion)
                .map(|(subregion, count)| (subregion.id.clone(), *count))
                .collect(),
        };
        if series.last().is_none_or(|last| {
            last.n_affected != point.n_affected
                || last.whole_service != point.whole_service
                || last.affected_by_subregion != point.affected_by_subregion
        }) {
            series.push(point);
        }
    }
    for (subregion, since) in affected_since.iter().enumerate() {
        if let Some(since) = since {
            downtime[subregion] += seconds_between(*since, end);
            last_affected[subregion] = Some(end);
        }
    }
    let subregion_reports = subregions
        .iter()
        .enumerate()
        .map(|(index, subregion)| {
            let n_actors = inventory.actors_in(&subregion.id).count();
            SubregionReport {
                id: subregion.id.clone(),
                name: subregion.name.clone(),
                n_actors,
                max_affected: max_in_subregion[index],
                whole: n_actors > 0 && max_in_subregion[index] == n_actors,
                downtime_seconds: downtime[index],
                first_affected_at: first_affected[index],
                last_affected_until: last_affected[index],
            }
        })
        .collect();
    ScopeReport {
        n_actors: actors.len(),
        series,
        subregions: subregion_reports,
        unknown_actor_ids,
    }
}

fn deliveries(snapshot: &FollowupSnapshot) -> Deliveries {
    let mut operator_retries: BTreeMap<&str, i64> = BTreeMap::new();
    for event in &snapshot.events {
        if event.event == "delivery_retried"
            && let Some((channel, _)) = detail_u64(event, "outbox_id")
                .and_then(|id| snapshot.outbox_targets.get(&(id as i64)))
        {
            *operator_retries.entry(channel.as_str()).or_default() += 1;
        }
    }
    let mut by_channel: BTreeMap<&str, ChannelDeliveries> = BTreeMap::new();
    let mut by_notice = Vec::new();
    for tally in &snapshot.deliveries {
        let channel =
            by_channel
                .entry(tally.channel.as_str())
                .or_insert_with(|| ChannelDeliveries {
                    channel: tally.channel.clone(),
                    n_deliveries: 0,
                    n_sent: 0,
                    n_failed: 0,
                    n_pending: 0,
                    n_retries: 0,
                    n_operator_retries: operator_retries
                        .get(tally.channel.as_str())
                        .copied()
                        .unwrap_or(0),
                    first_sent_at: None,
                    last_sent_at: None,
                });
        channel.n_deliveries += tally.n_recipients;
        channel.n_sent += tally.n_sent;
        channel.n_failed += tally.n_failed;
        channel.n_pending += tally.n_pending;
        channel.n_retries += tally.n_retries;
        channel.first_sent_at = min_option(channel.first_sent_at, tally.first_sent_at);
        channel.last_sent_at = channel.last_sent_at.max(tally.last_sent_at);
        by_notice.push(NoticeDeliveries {
            notice_id: tally.notice_id,
            channel: tally.channel.clone(),
            n_deliveries: tally.n_recipients,
            n_sent: tally.n_sent,
            n_failed: tally.n_failed,
            n_pending: tally.n_pending,
            n_retries: tally.n_retries,
            first_sent_at: tally.first_sent_at,
            last_sent_at: tally.last_sent_at,
        });
    }
    Deliveries {
        by_channel: by_channel.into_values().collect(),
        by_notice,
    }
}

fn min_option(left: Option<Timestamp>, right: Option<Timestamp>) -> Option<Timestamp> {
    match (left, right) {
        (Some(left), Some(right)) => Some(left.min(right)),
        (left, right) => left.or(right),
    }
}

fn timeline(
    snapshot: &FollowupSnapshot,
    config: &Config,
    escalations: &[EscalationEntry],
    deliveries: &Deliveries,
) -> Vec<TimelineEntry> {
    let feedback_by_id: HashMap<i64, &crate::storage::FeedbackRecord> = snapshot
        .feedback
        .iter()
        .map(|feedback| (feedback.feedback_id, feedback))
        .collect();
    // (entry, origin rank, sequence): log entries keep their order; counted lines follow
    // the log entries of the same time.
    let mut entries: Vec<(TimelineEntry, u8, i64)> = Vec::new();
    let events = &snapshot.events;
    let mut index = 0;
    while index < events.len() {
        let event = &events[index];
        if matches!(event.event.as_str(), "alert_firing" | "alert_resolved") {
            let group_end = events[index..]
                .iter()
                .position(|other| other.event != event.event || other.at != event.at)
                .map_or(events.len(), |offset| index + offset);
            let group = &events[index..group_end];
            entries.push((
                TimelineEntry {
                    at: event.at,
                    recorded_at: None,
                    source: event.source.clone(),
                    event: event.event.clone(),
                    text: describe_alerts(group, config),
                    origin: "log".to_owned(),
                    n_entries: group.len(),
                },
                0,
                event.event_id,
            ));
            index = group_end;
            continue;
        }
        let occurred_at = (event.event == "note")
            .then(|| detail_time(event, "occurred_at"))
            .flatten();
        entries.push((
            TimelineEntry {
                at: occurred_at.unwrap_or(event.at),
                recorded_at: occurred_at.filter(|at| *at != event.at).map(|_| event.at),
                source: event.source.clone(),
                event: event.event.clone(),
                text: describe_event(event, snapshot, &feedback_by_id),
                origin: "log".to_owned(),
                n_entries: 1,
            },
            0,
            event.event_id,
        ));
        index += 1;
    }
    for (sequence, escalation) in escalations.iter().enumerate() {
        let draft = escalation
            .draft_id
            .map(|id| format!("Utkast {id}"))
            .unwrap_or_else(|| "Ett utkast".to_owned());
        entries.push((
            TimelineEntry {
                at: escalation.at,
                recorded_at: None,
                source: "relay".to_owned(),
                event: "escalation".to_owned(),
                text: format!(
                    "{draft} hade inte granskats i tid: eskalerat med e-post till {}",
                    count_operators(escalation.n_mails)
                ),
                origin: "operator_mail".to_owned(),
                n_entries: 1,
            },
            1,
            sequence as i64,
        ));
    }
    for (sequence, notice) in deliveries.by_notice.iter().enumerate() {
        let Some(last_sent_at) = notice.last_sent_at else {
            continue;
        };
        let mut text = format!(
            "Meddelande {} via {}: {} av {} leveranser skickade",
            notice.notice_id, notice.channel, notice.n_sent, notice.n_deliveries
        );
        if notice.n_failed > 0 {
            text.push_str(&format!(", {} misslyckades", notice.n_failed));
        }
        if notice.n_pending > 0 {
            text.push_str(&format!(", {} väntar", notice.n_pending));
        }
        if notice.n_retries > 0 {
            text.push_str(&format!(
                " ({} {})",
                notice.n_retries,
                if notice.n_retries == 1 {
                    "nytt försök"
                } else {
                    "nya försök"
                }
            ));
        }
        entries.push((
            TimelineEntry {
                at: last_sent_at,
                recorded_at: None,
                source: "relay".to_owned(),
                event: "deliveries_sent".to_owned(),
                text,
                origin: "outbox".to_owned(),
                n_entries: 1,
            },
            2,
            sequence as i64,
        ));
    }
    entries.sort_by_key(|(entry, rank, sequence)| (entry.at, *rank, *sequence));
    entries.into_iter().map(|(entry, _, _)| entry).collect()
}

fn count_operators(count: i64) -> String {
    if count == 1 {
        "1 operatör".to_owned()
    } else {
        format!("{count} operatörer")
    }
}

/// The alerts of one webhook in words: "2 larm började: SamsaLoginDown (Borås, Hela Fyrbodal)".
fn describe_alerts(group: &[EventRecord], config: &Config) -> String {
    const SHOWN: usize = 5;
    let firing = group
        .first()
        .is_some_and(|event| event.event == "alert_firing");
    let mut names: Vec<String> = Vec::new();
    for event in group.iter().take(SHOWN) {
        if firing {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(event.detail["labels"].clone()).unwrap_or_default();
            names.push(describe_alert(&labels, config));
        } else {
            names.push(single_line(detail_str(event, "fingerprint"), 40));
        }
    }
    if group.len() > SHOWN {
        names.push(format!("{} till", group.len() - SHOWN));
    }
    let verb = if firing { "började" } else { "upphörde" };
    let what = if group.len() == 1 {
        format!("Larm {verb}")
    } else {
        format!("{} larm {verb}", group.len())
    };
    format!("{what}: {}", join_swedish_list(&names))
}

fn describe_alert(labels: &BTreeMap<String, String>, config: &Config) -> String {
    let inventory = &config.inventory;
    let name = single_line(
        labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("larm"),
        100,
    );
    let targets: Vec<String> = alert_scopes(labels, &config.incidents)
        .iter()
        .map(|scope| match scope {
            AlertScope::Everything => "hela tjänsten".to_owned(),
            AlertScope::Subregion(id) => match inventory.subregion(id) {
                Some(subregion) => format!("hela {}", subregion.name),
                None => format!("okänd delregion {}", single_line(id, 100)),
            },
            AlertScope::Actor(id) => match inventory.actor(id) {
                Some(actor) => actor.name.clone(),
                None => format!("okänd aktör {}", single_line(id, 100)),
            },
        })
        .collect();
    format!("{name} ({})", targets.join(", "))
}

fn describe_event(
    event: &EventRecord,
    snapshot: &FollowupSnapshot,
    feedback_by_id: &HashMap<i64, &crate::storage::FeedbackRecord>,
) -> String {
    let number = |key: &str| detail_u64(event, key).unwrap_or(0);
    let text = |key: &str| single_line(detail_str(event, key), 300);
    let crisis = |key: &str| {
        if event.detail[key].as_bool().unwrap_or(false) {
            " (kriskommunikation)"
        } else {
            ""
        }
    };
    let kind = || {
        match event.detail["kind"].as_str() {
            Some("initial") => kind_label(NoticeKind::Initial),
            Some("update") => kind_label(NoticeKind::Update),
            Some("resolved") => kind_label(NoticeKind::Resolved),
            _ => "meddelande",
        }
        .to_owned()
    };
    let outbox_target = || {
        detail_u64(event, "outbox_id")
            .and_then(|id| snapshot.outbox_targets.get(&(id as i64)))
            .map(|(channel, recipient)| format!("{channel} till {}", single_line(recipient, 200)))
            .unwrap_or_else(|| format!("leverans {}", number("outbox_id")))
    };
    match event.event.as_str() {
        "incident_opened" => format!(
            "Incidenten öppnades: {} aktörer påverkas, föreslagen nivå {}{}",
            number("n_affected"),
            number("level"),
            crisis("crisis")
        ),
        "scope_changed" => format!(
            "Omfattningen ändrades: från {} till {} påverkade aktörer{}",
            number("n_affected_before"),
            number("n_affected"),
            if event.detail["whole_service"].as_bool().unwrap_or(false) {
                " (hela tjänsten)"
            } else {
                ""
            }
        ),
        "level_changed" => format!(
            "Föreslagen nivå ändrades från {} till {}{}",
            number("before"),
            number("after"),
            crisis("crisis")
        ),
        "incident_resolved" => "Incidenten är åtgärdad: inget larm pågår längre".to_owned(),
        "incident_reopened" => {
            "Incidenten öppnades igen: ett nytt larm kom strax efter åtgärden".to_owned()
        }
        "draft_created" => {
            let by_hand = if event.detail["by_hand"].as_bool().unwrap_or(false) {
                ", skrivet för hand"
            } else {
                ""
            };
            format!("Utkast {} skapat: {}{by_hand}", number("draft_id"), kind())
        }
        "draft_revised" => format!(
            "Utkast {} uppdaterat till version {}",
            number("draft_id"),
            number("version")
        ),
        "draft_edited" => format!(
            "Utkast {} ändrat, version {}",
            number("draft_id"),
            number("version")
        ),
        "draft_withdrawn" => format!(
            "Utkast {} återkallat: {}",
            number("draft_id"),
            text("reason")
        ),
        "draft_discarded" => format!("Utkast {} kasserat: {}", number("draft_id"), text("reason")),
        "decision_recorded" => format!(
            "Beslut om nivå {}: {} ({})",
            number("level"),
            text("decided_by"),
            text("role_label")
        ),
        "notice_published" => {
            let channels: Vec<String> = event.detail["channels"]
                .as_array()
                .map(|channels| {
                    channels
                        .iter()
                        .filter_map(|channel| channel.as_str().map(|name| single_line(name, 100)))
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "Publicerat: {}, nivå {}, i {} ({} leveranser)",
                kind(),
                number("level"),
                join_swedish_list(&channels),
                number("n_deliveries")
            )
        }
        "delivery_failed" => format!(
            "Leverans misslyckades ({}): {}",
            outbox_target(),
            text("error")
        ),
        "delivery_retried" => format!("Leveransen {} skickas igen", outbox_target()),
        "drill_started" => format!(
            "Övning startad: {} aktörer påverkas, nivå {}",
            number("n_affected"),
            number("level")
        ),
        "monitoring_chain_broken" => format!(
            "Övervakningskedjan är bruten: larmet {} har inte kommit",
            text("watchdog_alertname")
        ),
        "monitoring_chain_restored" => "Övervakningskedjan fungerar igen".to_owned(),
        "note" => format!("Anteckning: {}", text("text")),
        "feedback" => {
            match detail_u64(event, "feedback_id").and_then(|id| feedback_by_id.get(&(id as i64))) {
                Some(feedback) => format!(
                    "Återkoppling från {} ({})",
                    feedback.name, feedback.organisation
                ),
                None => "Återkoppling".to_owned(),
            }
        }
        "evaluation_noted" => "Utvärdering antecknad".to_owned(),
        "lesson_recorded" => format!(
            "Erfarenhet antecknad, {}",
            Audience::parse(detail_str(event, "audience"))
                .map(|audience| audience.label().to_lowercase())
                .unwrap_or_default()
        ),
        other => single_line(other, 100),
    }
}

// ---------------------------------------------------------------------------------------
// Rendering: Markdown, HTML (A4), JSON.

/// The three forms of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Markdown,
    Html,
    Json,
}

impl ReportFormat {
    /// `md`, `html` or `json`.
    pub fn parse(text: &str) -> Option<ReportFormat> {
        match text {
            "md" => Some(ReportFormat::Markdown),
            "html" => Some(ReportFormat::Html),
            "json" => Some(ReportFormat::Json),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Markdown => "md",
            ReportFormat::Html => "html",
            ReportFormat::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Markdown => "text/markdown; charset=utf-8",
            ReportFormat::Html => "text/html; charset=utf-8",
            ReportFormat::Json => "application/json",
        }
    }
}

static REPORT_TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut environment = Environment::new();
    environment.set_undefined_behavior(UndefinedBehavior::Strict);
    environment.set_trim_blocks(true);
    environment.set_lstrip_blocks(true);
    environment.set_auto_escape_callback(|name| {
        if name.ends_with(".md") {
            AutoEscape::Custom("markdown")
        } else if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    environment.set_formatter(report_formatter);
    environment.add_filter("quote", quote_markdown);
    for (name, source) in [
        ("report.md", include_str!("followup_templates/report.md")),
        (
            "report.html",
            include_str!("followup_templates/report.html"),
        ),
    ] {
        environment
            .add_template(name, source)
            .expect("the report templates compile");
    }
    environment
});

/// Markdown templates escape every printed value with [`escape_markdown`]; HTML templates
/// use MiniJinja's HTML escaping.
fn report_formatter(output: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    if state.auto_escape() == AutoEscape::Custom("markdown") {
        if value.is_none() {
            return Ok(());
        }
        let text = value.to_string();
        let written = if value.is_safe() {
            output.write_str(&text)
        } else {
            output.write_str(&escape_markdown(&text))
        };
        return written.map_err(Error::from);
    }
    minijinja::escape_formatter(output, state, value)
}

/// Untrusted text as one line of Markdown that renders as that text: characters that make
/// emphasis, links, code, tables or headings are backslash-escaped, HTML is written as
/// entities (so a Markdown viewer never renders a tag), and line breaks become spaces.
pub fn escape_markdown(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + text.len() / 8);
    for character in text.chars() {
        match character {
            '\r' | '\n' => escaped.push(' '),
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' => {
                escaped.push('\\');
                escaped.push(character);
            }
            _ => escaped.push(character),
        }
    }
    escaped
}

/// Multi-line untrusted text as a Markdown block quote, each line escaped.
fn quote_markdown(text: String) -> Value {
    let quoted: Vec<String> = text
        .lines()
        .map(|line| {
            if line.trim().is_empty() {
                ">".to_owned()
            } else {
                format!("> {}", escape_markdown(line))
            }
        })
        .collect();
    Value::from_safe_string(quoted.join("\n"))
}

/// The report in one of its forms.
pub fn render_report(report: &IncidentReport, format: ReportFormat) -> anyhow::Result<String> {
    use anyhow::Context as _;
    match format {
        ReportFormat::Json => {
            let mut json = serde_json::to_string_pretty(report).context("the report as JSON")?;
            json.push('\n');
            Ok(json)
        }
        ReportFormat::Markdown | ReportFormat::Html => {
            let name = if format == ReportFormat::Markdown {
                "report.md"
            } else {
                "report.html"
            };
            let view = report_view(report);
            REPORT_TEMPLATES
                .get_template(name)
                .and_then(|template| {
                    template.render(context! {
                        report => Value::from_serialize(&view),
                        stylesheet => Value::from_safe_string(REPORT_STYLESHEET.to_owned()),
                    })
                })
                .with_context(|| format!("cannot render {name}"))
        }
    }
}

/// The report with every time, duration and code in Swedish words, for the templates.
#[derive(Serialize)]
struct ReportView {
    title: String,
    reference: String,
    kind_label: String,
    drill: bool,
    status: String,
    facts: Vec<(String, String)>,
    reasons: Vec<String>,
    durations: Vec<(String, String)>,
    timeline: Vec<TimelineLine>,
    scope_columns: Vec<String>,
    scope_rows: Vec<ScopeRowView>,
    subregions: Vec<SubregionView>,
    unknown_actor_ids: Vec<String>,
    levels: Vec<BTreeMap<&'static str, String>>,
    drafts: Vec<BTreeMap<&'static str, String>>,
    decisions: Vec<BTreeMap<&'static str, String>>,
    publications: Vec<BTreeMap<&'static str, String>>,
    deliveries: Vec<BTreeMap<&'static str, String>>,
    escalations: Vec<BTreeMap<&'static str, String>>,
    feedback: Vec<BTreeMap<&'static str, String>>,
    evaluations: Vec<BTreeMap<&'static str, String>>,
    lesson_groups: Vec<LessonGroupView>,
    generated: String,
}

/// One timeline line in Swedish words, as the report and the follow-up page show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineLine {
    /// "28 november 2026 kl. 05:40".
    pub time: String,
    /// "+0:30" after the first alert.
    pub offset: String,
    /// "Alertmanager", "samsa-relay", "Återkopplingssidan" or an operator's name.
    pub source: String,
    pub text: String,
}

/// The report's timeline in Swedish words.
pub fn timeline_lines(report: &IncidentReport) -> Vec<TimelineLine> {
    let start = report.incident.started_at;
    report
        .timeline
        .iter()
        .map(|entry| {
            let mut text = entry.text.clone();
            if let Some(recorded_at) = entry.recorded_at {
                text.push_str(&format!(" (antecknat {})", clock_time(recorded_at)));
            }
            TimelineLine {
                time: format_swedish_time(entry.at),
                offset: relative_offset(start, entry.at),
                source: source_label(&entry.source),
                text,
            }
        })
        .collect()
}

#[derive(Serialize)]
struct ScopeRowView {
    time: String,
    offset: String,
    counts: Vec<usize>,
    total: String,
}

#[derive(Serialize)]
struct SubregionView {
    name: String,
    affected: String,
    downtime: String,
    period: String,
}

#[derive(Serialize)]
struct LessonGroupView {
    heading: String,
    items: Vec<BTreeMap<&'static str, String>>,
}

fn report_view(report: &IncidentReport) -> ReportView {
    let incident = &report.incident;
    let start = incident.started_at;
    let time = |at: Timestamp| format_swedish_time(at);
    let optional_time = |at: Option<Timestamp>| at.map(format_swedish_time).unwrap_or_default();
    let duration = |seconds: i64| {
        format_swedish_duration(std::time::Duration::from_secs(seconds.max(0) as u64))
    };
    let offset = |at: Timestamp| relative_offset(start, at);
    let incident_kind = match incident.kind.as_str() {
        "drill" => "Övning",
        "monitoring" => "Övervakningen av tjänsten var bruten",
        _ => "Driftstörning",
    };
    let status = match incident.resolved_at {
        Some(resolved_at) => format!("Åtgärdad {}", time(resolved_at)),
        None => format!("Pågår (läget {})", time(report.generated_at)),
    };
    let mut facts = vec![
        ("Referens".to_owned(), incident.reference.clone()),
        ("Typ".to_owned(), incident_kind.to_owned()),
        ("Status".to_owned(), status.clone()),
        ("Första larm".to_owned(), time(start)),
    ];
    if let Some(resolved_at) = incident.resolved_at {
        facts.push(("Åtgärdad".to_owned(), time(resolved_at)));
    }
    facts.push((
        "Högsta nivå".to_owned(),
        format!(
            "{} – {}",
            incident.highest_level,
            level_label(incident.highest_level)
        ),
    ));
    facts.push((
        "Publicerad nivå".to_owned(),
        incident
            .published_level
            .map(|level| level.to_string())
            .unwrap_or_else(|| "inget publicerat".to_owned()),
    ));
    facts.push((
        "Kriskommunikation".to_owned(),
        if incident.crisis { "ja" } else { "nej" }.to_owned(),
    ));
    facts.push((
        "Som mest påverkade".to_owned(),
        format!(
            "{} av {} aktörer{}",
            incident.max_affected,
            incident.n_actors,
            if incident.whole_service {
                " (hela tjänsten)"
            } else {
                ""
            }
        ),
    ));
    if incident.n_reopened > 0 {
        facts.push((
            "Öppnades igen".to_owned(),
            format!("{} gånger", incident.n_reopened),
        ));
    }

    let durations_in = &report.durations;
    let mut durations = vec![(
        if durations_in.ongoing {
            "Störningens längd hittills"
        } else {
            "Störningens längd"
        }
        .to_owned(),
        duration(durations_in.outage_seconds),
    )];
    let mut push_duration = |label: &str, seconds: Option<i64>| {
        durations.push((
            label.to_owned(),
            seconds.map(duration).unwrap_or_else(|| "–".to_owned()),
        ));
    };
    push_duration(
        "Från första larm till första utkast",
        durations_in.to_first_draft_seconds,
    );
    push_duration(
        "Tid till första meddelande",
        durations_in.to_first_notice_seconds,
    );
    push_duration(
        "Från första meddelande till åtgärd",
        durations_in.first_notice_to_resolution_seconds,
    );
    push_duration(
        "Utkast väntade sammanlagt",
        (!report.drafts.is_empty()).then_some(durations_in.drafts_waited_seconds),
    );
    push_duration(
        "Längsta väntan på ett utkast",
        durations_in.longest_draft_wait_seconds,
    );
    let milestones = &report.milestones;
    let mut milestone_facts = vec![
        ("Första utkast", milestones.first_draft_at),
        ("Första publicering", milestones.first_publication_at),
    ];
    milestone_facts.retain(|(_, at)| at.is_some());
    for (label, at) in milestone_facts {
        facts.push((label.to_owned(), optional_time(at)));
    }

    let timeline = timeline_lines(report);

    let scope_columns = report
        .scope
        .subregions
        .iter()
        .map(|subregion| subregion.name.clone())
        .collect();
    let scope_rows = report
        .scope
        .series
        .iter()
        .map(|point| ScopeRowView {
            time: time(point.at),
            offset: offset(point.at),
            counts: report
                .scope
                .subregions
                .iter()
                .map(|subregion| {
                    point
                        .affected_by_subregion
                        .get(&subregion.id)
                        .copied()
                        .unwrap_or(0)
                })
                .collect(),
            total: if point.whole_service {
                format!("{} (hela tjänsten)", point.n_affected)
            } else {
                point.n_affected.to_string()
            },
        })
        .collect();
    let subregions = report
        .scope
        .subregions
        .iter()
        .map(|subregion| SubregionView {
            name: subregion.name.clone(),
            affected: if subregion.whole {
                format!(
                    "{} av {} (hela delregionen)",
                    subregion.max_affected, subregion.n_actors
                )
            } else {
                format!("{} av {}", subregion.max_affected, subregion.n_actors)
            },
            downtime: if subregion.downtime_seconds > 0 || subregion.first_affected_at.is_some() {
                duration(subregion.downtime_seconds)
            } else {
                "–".to_owned()
            },
            period: match (subregion.first_affected_at, subregion.last_affected_until) {
                (Some(first), Some(last)) => {
                    format!("{} – {}", clock_time(first), clock_time(last))
                }
                (Some(first), None) => format!("från {}", clock_time(first)),
                _ => String::new(),
            },
        })
        .collect();

    let row = |pairs: Vec<(&'static str, String)>| pairs.into_iter().collect::<BTreeMap<_, _>>();
    let levels = report
        .levels
        .iter()
        .map(|entry| {
            row(vec![
                ("time", time(entry.at)),
                ("offset", offset(entry.at)),
                (
                    "level",
                    format!(
                        "{}{}",
                        entry.level,
                        if entry.crisis {
                            " (kriskommunikation)"
                        } else {
                            ""
                        }
                    ),
                ),
                (
                    "basis",
                    if entry.basis == "published" {
                        "publicerad"
                    } else {
                        "föreslagen"
                    }
                    .to_owned(),
                ),
            ])
        })
        .collect();
    let drafts = report
        .drafts
        .iter()
        .map(|draft| {
            row(vec![
                ("draft", draft.draft_id.to_string()),
                ("kind", kind_label(draft.kind).to_owned()),
                ("created", time(draft.created_at)),
                ("created_by", source_label(&draft.created_by)),
                ("versions", draft.n_versions.to_string()),
                ("outcome", outcome_label(&draft.outcome).to_owned()),
                ("ended", optional_time(draft.ended_at)),
                ("waited", duration(draft.waited_seconds)),
                ("reason", draft.reason.clone().unwrap_or_default()),
            ])
        })
        .collect();
    let decisions = report
        .decisions
        .iter()
        .map(|decision| {
            row(vec![
                ("time", time(decision.at)),
                ("level", decision.level.to_string()),
                ("decided_by", decision.decided_by.clone()),
                ("role", decision.role_label.clone()),
                ("recorded_by", decision.recorded_by.clone()),
            ])
        })
        .collect();
    let publications = report
        .publications
        .iter()
        .map(|publication| {
            row(vec![
                ("time", time(publication.published_at)),
                ("offset", offset(publication.published_at)),
                ("notice", publication.notice_id.to_string()),
                ("kind", kind_label(publication.kind).to_owned()),
                ("level", publication.level.to_string()),
                ("published_by", publication.published_by.clone()),
                ("channels", publication.channels.join(", ")),
                ("subject", publication.email_subject.clone()),
            ])
        })
        .collect();
    let deliveries = report
        .deliveries
        .by_channel
        .iter()
        .map(|channel| {
            row(vec![
                ("channel", channel.channel.clone()),
                ("deliveries", channel.n_deliveries.to_string()),
                ("sent", channel.n_sent.to_string()),
                ("failed", channel.n_failed.to_string()),
                ("pending", channel.n_pending.to_string()),
                ("retries", channel.n_retries.to_string()),
                ("operator_retries", channel.n_operator_retries.to_string()),
                ("last_sent", optional_time(channel.last_sent_at)),
            ])
        })
        .collect();
    let escalations = report
        .escalations
        .iter()
        .map(|escalation| {
            row(vec![
                ("time", time(escalation.at)),
                (
                    "draft",
                    escalation
                        .draft_id
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                ),
                ("mails", escalation.n_mails.to_string()),
            ])
        })
        .collect();
    let feedback = report
        .feedback
        .iter()
        .map(|feedback| {
            row(vec![
                ("time", time(feedback.received_at)),
                ("name", feedback.name.clone()),
                ("organisation", feedback.organisation.clone()),
                ("message", feedback.message.clone()),
            ])
        })
        .collect();
    let lesson_row = |lesson: &LessonEntry| {
        row(vec![
            ("time", time(lesson.created_at)),
            ("by", lesson.created_by.clone()),
            ("text", lesson.text.clone()),
        ])
    };
    let evaluations = report
        .lessons
        .iter()
        .filter(|lesson| lesson.kind == "evaluation")
        .map(lesson_row)
        .collect();
    let lesson_groups = Audience::ALL
        .iter()
        .filter_map(|audience| {
            let items: Vec<_> = report
                .lessons
                .iter()
                .filter(|lesson| {
                    lesson.kind == "lesson" && lesson.audience.as_deref() == Some(audience.as_str())
                })
                .map(lesson_row)
                .collect();
            (!items.is_empty()).then(|| LessonGroupView {
                heading: audience.label().to_owned(),
                items,
            })
        })
        .collect();

    ReportView {
        title: format!("Incidentrapport {}", incident.reference),
        reference: incident.reference.clone(),
        kind_label: incident_kind.to_owned(),
        drill: incident.kind == "drill",
        status,
        facts,
        reasons: incident.reasons.clone(),
        durations,
        timeline,
        scope_columns,
        scope_rows,
        subregions,
        unknown_actor_ids: report.scope.unknown_actor_ids.clone(),
        levels,
        drafts,
        decisions,
        publications,
        deliveries,
        escalations,
        feedback,
        evaluations,
        lesson_groups,
        generated: time(report.generated_at),
    }
}

/// "+1:05" after the incident's start (hours and minutes), "−0:02" before it.
fn relative_offset(start: Timestamp, at: Timestamp) -> String {
    let seconds = at.duration_since(start).as_secs();
    let sign = if seconds < 0 { "−" } else { "+" };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{}:{:02}", minutes / 60, minutes % 60)
}

/// "05:40" in Swedish time.
fn clock_time(at: Timestamp) -> String {
    at.to_zoned(stockholm()).strftime("%H:%M").to_string()
}

fn stockholm() -> TimeZone {
    TimeZone::get(SWEDISH_TIME_ZONE).unwrap_or(TimeZone::UTC)
}

/// The plan's name of a level.
pub fn level_label(level: u8) -> &'static str {
    match level {
        1 => "Avbrott i IT-tjänsten",
        2 => "Övergång till reservrutin i delar av verksamheterna",
        3 => "Övergång till reservrutin i alla verksamheter",
        _ => "okänd nivå",
    }
}

fn source_label(source: &str) -> String {
    match source {
        "alertmanager" => "Alertmanager".to_owned(),
        "relay" => "samsa-relay".to_owned(),
        "feedback" => "Återkopplingssidan".to_owned(),
        operator => operator.to_owned(),
    }
}

fn outcome_label(outcome: &str) -> &'static str {
    match outcome {
        "published" => "publicerat",
        "withdrawn" => "återkallat",
        "discarded" => "kasserat",
        "pending" => "väntar",
        _ => "okänt",
    }
}

// ---------------------------------------------------------------------------------------
// Feedback from the public page.

/// What the feedback form posted, cleaned: plain text, within the caps, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    name: String,
    organisation: String,
    message: String,
}

/// A field of the feedback form that cannot be taken as it is, with the reason in Swedish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackProblem {
    /// `name`, `organisation` or `message`: the form field's name.
    pub field: &'static str,
    pub message: String,
}

impl Feedback {
    /// Cleans and checks the three fields. Name and organisation become one line (no line
    /// breaks or control characters, so they are safe anywhere); the message keeps its
    /// paragraphs. Over-long text is refused, not cut: the sender keeps what they wrote.
    pub fn parse(
        name: &str,
        organisation: &str,
        message: &str,
    ) -> Result<Feedback, Vec<FeedbackProblem>> {
        let mut problems = Vec::new();
        let mut one_line = |field: &'static str, label: &str, text: &str, max: usize| {
            let cleaned = single_line(text, max + 1);
            if cleaned.is_empty() {
                problems.push(FeedbackProblem {
                    field,
                    message: format!("Skriv {label}."),
                });
            } else if cleaned.chars().count() > max {
                problems.push(FeedbackProblem {
                    field,
                    message: format!(
                        "{} får vara högst {} tecken.",
                        capitalised(label),
                        swedish_number(max)
                    ),
                });
            }
            cleaned
        };
        let name = one_line("name", "ditt namn", name, MAX_FEEDBACK_NAME_CHARS);
        let organisation = one_line(
            "organisation",
            "din organisation",
            organisation,
            MAX_FEEDBACK_ORGANISATION_CHARS,
        );
        let message_cleaned = clean_multiline(message, MAX_FEEDBACK_MESSAGE_CHARS + 1);
        if message_cleaned.is_empty() {
            problems.push(FeedbackProblem {
                field: "message",
                message: "Skriv ett meddelande.".to_owned(),
            });
        } else if message_cleaned.chars().count() > MAX_FEEDBACK_MESSAGE_CHARS {
            problems.push(FeedbackProblem {
                field: "message",
                message: format!(
                    "Meddelandet får vara högst {} tecken.",
                    swedish_number(MAX_FEEDBACK_MESSAGE_CHARS)
                ),
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Feedback {
            name,
            organisation,
            message: message_cleaned,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn organisation(&self) -> &str {
        &self.organisation
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// "ditt namn" -> "Ditt namn" (the labels are chosen to read well both ways).
fn capitalised(text: &str) -> String {
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

/// 5000 -> "5 000" (Swedish digit grouping with a no-break space).
fn swedish_number(number: usize) -> String {
    let digits = number.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push('\u{a0}');
        }
        grouped.push(digit);
    }
    grouped
}

/// Why feedback, a note or a lesson was not stored. Shown to people, so in Swedish.
#[derive(Debug, thiserror::Error)]
pub enum FollowupError {
    #[error("Incidenten finns inte")]
    IncidentNotFound,
    #[error("Utvärdering och erfarenheter kan läggas till när incidenten är åtgärdad")]
    NotResolved,
    #[error("{0}")]
    Invalid(String),
    #[error("Lagringen är inte tillgänglig just nu; försök igen")]
    Storage(#[from] StorageError),
}

/// What storing feedback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackReceipt {
    pub feedback_id: i64,
    /// On-duty operators told by email.
    pub n_operators_told: usize,
}

/// Stores feedback about an incident, adds a `feedback` entry to its log and enqueues an
/// email to each on-duty operator (dedupe key `feedback:ID:ADDRESS`), all in one
/// transaction. Monitoring incidents are internal and take no feedback.
pub async fn submit_feedback(
    storage: &Storage,
    config: &Config,
    signer: &LinkSigner,
    incident_id: i64,
    feedback: &Feedback,
    now: Timestamp,
) -> Result<FeedbackReceipt, FollowupError> {
    let mut transaction = storage.begin_write().await?;
    let incident = transaction
        .incident_by_id(incident_id)
        .await?
        .filter(|incident| incident.kind != "monitoring")
        .ok_or(FollowupError::IncidentNotFound)?;
    let feedback_id = transaction
        .insert_feedback(&FeedbackWrite {
            incident_id,
            received_at: now,
            name: feedback.name.clone(),
            organisation: feedback.organisation.clone(),
            message: feedback.message.clone(),
        })
        .await?;
    transaction
        .append_events(
            incident_id,
            &[EventWrite {
                at: now,
                source: "feedback".to_owned(),
                event: "feedback".to_owned(),
                // The text stays in the feedback table only: personal data in one place.
                detail: serde_json::json!({"feedback_id": feedback_id}),
            }],
        )
        .await?;
    let drill = incident.kind == "drill";
    let mails: Vec<OperatorMailWrite> = config
        .review
        .on_duty()
        .map(|operator| {
            feedback_mail(
                config,
                signer,
                operator,
                incident_id,
                feedback_id,
                feedback,
                drill,
                now,
            )
        })
        .collect();
    transaction.enqueue_operator_mail(&mails, now).await?;
    transaction.commit().await?;
    tracing::info!(
        incident_id,
        feedback_id,
        n_operators_told = mails.len(),
        "feedback stored"
    );
    Ok(FeedbackReceipt {
        feedback_id,
        n_operators_told: mails.len(),
    })
}

/// The follow-up page of an incident for `operator`, as a signed absolute link.
pub fn followup_link(
    config: &Config,
    signer: &LinkSigner,
    operator: &Operator,
    incident_id: i64,
    now: Timestamp,
) -> String {
    let (dashboard, _) = signed_link(config, signer, operator, LinkPurpose::Dashboard, now);
    format!("{dashboard}/followup/{incident_id}")
}

/// The email telling an operator about new feedback. The subject carries no text from the
/// form (a header must never see what a stranger typed); the body is plain text.
#[allow(clippy::too_many_arguments)]
fn feedback_mail(
    config: &Config,
    signer: &LinkSigner,
    operator: &Operator,
    incident_id: i64,
    feedback_id: i64,
    feedback: &Feedback,
    drill: bool,
    now: Timestamp,
) -> OperatorMailWrite {
    let reference = format!("{}-{incident_id}", config.notices.service_name);
    let drill_prefix = if drill { "ÖVNING: " } else { "" };
    let link = followup_link(config, signer, operator, incident_id, now);
    OperatorMailWrite {
        dedupe_key: format!("feedback:{feedback_id}:{}", operator.email),
        purpose: "feedback".to_owned(),
        incident_id: Some(incident_id),
        draft_id: None,
        draft_version: None,
        to_address: operator.email.clone(),
        subject: format!("{drill_prefix}Ny återkoppling om incident {incident_id} ({reference})"),
        body: format!(
            "Hej {operator_name},\n\n\
             Någon har skickat återkoppling om driftstörningen i {service} ({reference}) via \
             återkopplingssidan. Texten kommer från ett öppet formulär och är inte kontrollerad: \
             öppna inga länkar i den.\n\n\
             Mottagen: {received}\n\
             Namn: {name}\n\
             Organisation: {organisation}\n\n\
             Meddelande:\n{message}\n\n\
             Återkopplingen finns i incidentens logg och i uppföljningsrapporten:\n{link}\n\n\
             /samsa-relay\n",
            operator_name = operator.name,
            service = config.notices.service_name,
            received = format_swedish_time(now),
            name = feedback.name,
            organisation = feedback.organisation,
            message = feedback.message,
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Entries operators write: notes in the log, evaluation notes and lessons learned.

/// Adds an operator's entry to an incident's log (event `note`, the operator as source).
/// `occurred_at` is the time the operator says it happened, when it differs from now
/// (e.g. "Cerner kallade till telefonkonferens" at 05:40, written down at 06:10).
pub async fn add_note(
    storage: &Storage,
    incident_id: i64,
    operator: &str,
    text: &str,
    occurred_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), FollowupError> {
    let text = single_line(text, MAX_NOTE_CHARS + 1);
    if text.is_empty() {
        return Err(FollowupError::Invalid("Skriv vad som hände.".to_owned()));
    }
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(FollowupError::Invalid(format!(
            "Anteckningen får vara högst {} tecken.",
            swedish_number(MAX_NOTE_CHARS)
        )));
    }
    if occurred_at.is_some_and(|at| at > now + jiff::SignedDuration::from_mins(5)) {
        return Err(FollowupError::Invalid(
            "Tiden för händelsen ligger i framtiden.".to_owned(),
        ));
    }
    let mut transaction = storage.begin_write().await?;
    transaction
        .incident_by_id(incident_id)
        .await?
        .ok_or(FollowupError::IncidentNotFound)?;
    let mut detail = serde_json::json!({"text": text});
    if let Some(occurred_at) = occurred_at {
        detail["occurred_at"] = serde_json::json!(occurred_at);
    }
    transaction
        .append_events(
            incident_id,
            &[EventWrite {
                at: now,
                source: operator.to_owned(),
                event: "note".to_owned(),
                detail,
            }],
        )
        .await?;
    transaction.commit().await?;
    Ok(())
}

/// Whom a lesson learned is fed back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The organisations that use the service.
    Organisations,
    /// The suppliers (Cerner, the IT operations).
    Suppliers,
    /// The service management itself.
    ServiceManagement,
}

impl Audience {
    pub const ALL: [Audience; 3] = [
        Audience::Organisations,
        Audience::Suppliers,
        Audience::ServiceManagement,
    ];

    pub fn parse(text: &str) -> Option<Audience> {
        match text {
            "organisations" => Some(Audience::Organisations),
            "suppliers" => Some(Audience::Suppliers),
            "service_management" => Some(Audience::ServiceManagement),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Organisations => "organisations",
            Audience::Suppliers => "suppliers",
            Audience::ServiceManagement => "service_management",
        }
    }

    /// "Till organisationerna", as headings and forms show it.
    pub fn label(self) -> &'static str {
        match self {
            Audience::Organisations => "Till organisationerna",
            Audience::Suppliers => "Till leverantörerna",
            Audience::ServiceManagement => "Till förvaltningen",
        }
    }
}

/// An evaluation note (for the follow-up meeting) or a lesson addressed to someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LessonKind {
    Evaluation,
    Lesson(Audience),
}

/// Adds an evaluation note or a lesson learned to a resolved incident, with a log entry
/// (`evaluation_noted` or `lesson_recorded`). Returns its id.
pub async fn add_lesson(
    storage: &Storage,
    incident_id: i64,
    operator: &str,
    kind: LessonKind,
    text: &str,
    now: Timestamp,
) -> Result<i64, FollowupError> {
    let text = clean_multiline(text, MAX_LESSON_CHARS + 1);
    if text.is_empty() {
        return Err(FollowupError::Invalid("Skriv en text.".to_owned()));
    }
    if text.chars().count() > MAX_LESSON_CHARS {
        return Err(FollowupError::Invalid(format!(
            "Texten får vara högst {} tecken.",
            swedish_number(MAX_LESSON_CHARS)
        )));
    }
    let mut transaction = storage.begin_write().await?;
    let incident = transaction
        .incident_by_id(incident_id)
        .await?
        .ok_or(FollowupError::IncidentNotFound)?;
    if incident.resolved_at.is_none() {
        return Err(FollowupError::NotResolved);
    }
    let (kind_text, audience, event) = match kind {
        LessonKind::Evaluation => ("evaluation", None, "evaluation_noted"),
        LessonKind::Lesson(audience) => ("lesson", Some(audience.as_str()), "lesson_recorded"),
    };
    let lesson_id = transaction
        .insert_lesson(&LessonWrite {
            incident_id,
            created_at: now,
            created_by: operator.to_owned(),
            kind: kind_text.to_owned(),
            audience: audience.map(str::to_owned),
            text,
        })
        .await?;
    let mut detail = serde_json::json!({"lesson_id": lesson_id});
    if let Some(audience) = audience {
        detail["audience"] = serde_json::json!(audience);
    }
    transaction
        .append_events(
            incident_id,
            &[EventWrite {
                at: now,
                source: operator.to_owned(),
                event: event.to_owned(),
                detail,
            }],
        )
        .await?;
    transaction.commit().await?;
    Ok(lesson_id)
}

// ---------------------------------------------------------------------------------------
// Across incidents: the list, its filters, the yearly summary and the CSV exports.

/// Which incidents the list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    /// First day (Swedish time) an incident may start on.
    pub from: Option<Date>,
    /// Last day (Swedish time, inclusive) an incident may start on.
    pub to: Option<Date>,
    /// The highest level the incident reached.
    pub level: Option<u8>,
    /// A sub-region id the incident affected.
    pub subregion: Option<String>,
    pub kind: KindFilter,
}

/// Outages by default: drills and monitoring alarms are not disruptions of the service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KindFilter {
    #[default]
    Outage,
    Drill,
    Monitoring,
    All,
}

impl KindFilter {
    pub fn parse(text: &str) -> Option<KindFilter> {
        match text {
            "outage" => Some(KindFilter::Outage),
            "drill" => Some(KindFilter::Drill),
            "monitoring" => Some(KindFilter::Monitoring),
            "all" => Some(KindFilter::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KindFilter::Outage => "outage",
            KindFilter::Drill => "drill",
            KindFilter::Monitoring => "monitoring",
            KindFilter::All => "all",
        }
    }

    fn admits(self, kind: &str) -> bool {
        match self {
            KindFilter::All => true,
            other => other.as_str() == kind,
        }
    }
}

/// One incident in the list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentListRow {
    pub incident_id: i64,
    pub reference: String,
    pub kind: String,
    pub started_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub outage_seconds: i64,
    pub ongoing: bool,
    pub highest_level: u8,
    pub crisis: bool,
    pub max_affected: usize,
    pub n_actors: usize,
    /// Per sub-region of the inventory, in its order: (id, downtime in seconds).
    pub downtime_by_subregion: Vec<(String, i64)>,
    pub to_first_notice_seconds: Option<i64>,
    pub n_publications: usize,
    pub n_feedback: usize,
    pub n_lessons: usize,
}

/// The yearly follow-up's figures over a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FollowupSummary {
    pub n_incidents: usize,
    pub total_downtime_seconds: i64,
    pub subregions: Vec<SubregionTotal>,
    /// Over the incidents that published a notice.
    pub median_to_first_notice_seconds: Option<i64>,
    pub n_with_notice: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubregionTotal {
    pub id: String,
    pub name: String,
    pub n_incidents: usize,
    pub downtime_seconds: i64,
}

/// The incidents that pass `filter`, oldest first, each summarised from its report.
pub async fn list_incidents(
    storage: &Storage,
    config: &Config,
    filter: &IncidentFilter,
    now: Timestamp,
) -> Result<Vec<IncidentListRow>, StorageError> {
    let tz = stockholm();
    let start_of = |date: Date| {
        date.to_zoned(tz.clone())
            .ok()
            .map(|zoned| zoned.timestamp())
    };
    let from = filter.from.and_then(start_of);
    let before = filter
        .to
        .and_then(|date| date.tomorrow().ok())
        .and_then(start_of);
    let mut rows = Vec::new();
    for incident_id in storage.followup_incident_ids(from, before).await? {
        let Some(report) = build_report(storage, config, incident_id, now).await? else {
            continue;
        };
        let row = list_row(&report);
        let passes = filter.kind.admits(&row.kind)
            && filter.level.is_none_or(|level| row.highest_level == level)
            && filter.subregion.as_deref().is_none_or(|wanted| {
                report
                    .scope
                    .subregions
                    .iter()
                    .any(|subregion| subregion.id == wanted && subregion.max_affected > 0)
            });
        if passes {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// One list row from a report.
pub fn list_row(report: &IncidentReport) -> IncidentListRow {
    let incident = &report.incident;
    let lesson_count = report.lessons.len();
    IncidentListRow {
        incident_id: incident.incident_id,
        reference: incident.reference.clone(),
        kind: incident.kind.clone(),
        started_at: incident.started_at,
        resolved_at: incident.resolved_at,
        outage_seconds: report.durations.outage_seconds,
        ongoing: report.durations.ongoing,
        highest_level: incident.highest_level,
        crisis: incident.crisis,
        max_affected: incident.max_affected,
        n_actors: incident.n_actors,
        downtime_by_subregion: report
            .scope
            .subregions
            .iter()
            .map(|subregion| (subregion.id.clone(), subregion.downtime_seconds))
            .collect(),
        to_first_notice_seconds: report.durations.to_first_notice_seconds,
        n_publications: report.publications.len(),
        n_feedback: report.feedback.len(),
        n_lessons: lesson_count,
    }
}

/// Number of incidents, total and per sub-region downtime, median time to first notice.
pub fn summarize_incidents(rows: &[IncidentListRow], config: &Config) -> FollowupSummary {
    let subregions = config
        .inventory
        .subregions()
        .iter()
        .map(|subregion| {
            let downtimes: Vec<i64> = rows
                .iter()
                .filter_map(|row| {
                    row.downtime_by_subregion
                        .iter()
                        .find(|(id, _)| *id == subregion.id)
                        .map(|(_, seconds)| *seconds)
                })
                .filter(|seconds| *seconds > 0)
                .collect();
            SubregionTotal {
                id: subregion.id.clone(),
                name: subregion.name.clone(),
                n_incidents: downtimes.len(),
                downtime_seconds: downtimes.iter().sum(),
            }
        })
        .collect();
    let mut to_first_notice: Vec<i64> = rows
        .iter()
        .filter_map(|row| row.to_first_notice_seconds)
        .collect();
    to_first_notice.sort_unstable();
    FollowupSummary {
        n_incidents: rows.len(),
        total_downtime_seconds: rows.iter().map(|row| row.outage_seconds).sum(),
        subregions,
        median_to_first_notice_seconds: median(&to_first_notice),
        n_with_notice: to_first_notice.len(),
    }
}

/// The median of sorted values; between the two middle ones (rounded down) for an even
/// count.
fn median(sorted: &[i64]) -> Option<i64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// The list as CSV for a spreadsheet: `;` between fields (what Excel with Swedish settings
/// expects), CRLF line ends, UTF-8 with a byte-order mark, times in Swedish time as
/// `YYYY-MM-DD HH:MM`, durations in whole minutes.
pub fn incidents_csv(rows: &[IncidentListRow], config: &Config) -> String {
    let subregions = config.inventory.subregions();
    let mut header: Vec<String> = [
        "Incident",
        "Referens",
        "Typ",
        "Början",
        "Slut",
        "Pågår",
        "Varaktighet (min)",
        "Högsta nivå",
        "Kriskommunikation",
        "Som mest påverkade aktörer",
        "Aktörer totalt",
    ]
    .iter()
    .map(|text| (*text).to_owned())
    .collect();
    header.extend(
        subregions
            .iter()
            .map(|subregion| format!("Nedtid {} (min)", subregion.name)),
    );
    header.extend(
        [
            "Tid till första meddelande (min)",
            "Publiceringar",
            "Återkopplingar",
            "Utvärderingar och erfarenheter",
        ]
        .iter()
        .map(|text| (*text).to_owned()),
    );
    let mut csv = String::from("\u{feff}");
    push_csv_line(&mut csv, &header);
    for row in rows {
        let mut cells = vec![
            row.incident_id.to_string(),
            row.reference.clone(),
            kind_word(&row.kind).to_owned(),
            csv_time(row.started_at),
            row.resolved_at.map(csv_time).unwrap_or_default(),
            if row.ongoing { "ja" } else { "nej" }.to_owned(),
            minutes(row.outage_seconds).to_string(),
            row.highest_level.to_string(),
            if row.crisis { "ja" } else { "nej" }.to_owned(),
            row.max_affected.to_string(),
            row.n_actors.to_string(),
        ];
        for subregion in subregions {
            let seconds = row
                .downtime_by_subregion
                .iter()
                .find(|(id, _)| *id == subregion.id)
                .map_or(0, |(_, seconds)| *seconds);
            cells.push(minutes(seconds).to_string());
        }
        cells.push(
            row.to_first_notice_seconds
                .map(|seconds| minutes(seconds).to_string())
                .unwrap_or_default(),
        );
        cells.push(row.n_publications.to_string());
        cells.push(row.n_feedback.to_string());
        cells.push(row.n_lessons.to_string());
        push_csv_line(&mut csv, &cells);
    }
    csv
}

/// The yearly figures as CSV, one measure per line (same format as [`incidents_csv`]).
pub fn summary_csv(summary: &FollowupSummary, filter: &IncidentFilter) -> String {
    let mut csv = String::from("\u{feff}");
    push_csv_line(&mut csv, &["Mått".to_owned(), "Värde".to_owned()]);
    let mut line = |measure: String, value: String| push_csv_line(&mut csv, &[measure, value]);
    line("Period".to_owned(), period_text(filter));
    line(
        "Antal störningar".to_owned(),
        summary.n_incidents.to_string(),
    );
    line(
        "Total nedtid (min)".to_owned(),
        minutes(summary.total_downtime_seconds).to_string(),
    );
    for subregion in &summary.subregions {
        line(
            format!("Störningar som berörde {}", subregion.name),
            subregion.n_incidents.to_string(),
        );
        line(
            format!("Nedtid {} (min)", subregion.name),
            minutes(subregion.downtime_seconds).to_string(),
        );
    }
    line(
        "Störningar med publicerat meddelande".to_owned(),
        summary.n_with_notice.to_string(),
    );
    line(
        "Median tid till första meddelande (min)".to_owned(),
        summary
            .median_to_first_notice_seconds
            .map(|seconds| minutes(seconds).to_string())
            .unwrap_or_default(),
    );
    csv
}

/// "2026-01-01 – 2026-12-31", open ends written as "…".
pub fn period_text(filter: &IncidentFilter) -> String {
    match (filter.from, filter.to) {
        (None, None) => "hela tiden".to_owned(),
        (from, to) => format!(
            "{} – {}",
            from.map(|date| date.to_string())
                .unwrap_or_else(|| "…".to_owned()),
            to.map(|date| date.to_string())
                .unwrap_or_else(|| "…".to_owned())
        ),
    }
}

/// The kind in Swedish, as lists and exports show it.
pub fn kind_word(kind: &str) -> &'static str {
    match kind {
        "outage" => "driftstörning",
        "drill" => "övning",
        "monitoring" => "övervakning",
        _ => "okänd",
    }
}

fn minutes(seconds: i64) -> i64 {
    (seconds.max(0) + 30) / 60
}

fn csv_time(at: Timestamp) -> String {
    at.to_zoned(stockholm())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

fn push_csv_line(csv: &mut String, cells: &[String]) {
    let line: Vec<String> = cells.iter().map(|cell| csv_cell(cell)).collect();
    csv.push_str(&line.join(";"));
    csv.push_str("\r\n");
}

/// RFC 4180 quoting (with `;` as the separator), and a leading apostrophe for a cell that a
/// spreadsheet would take as a formula.
fn csv_cell(cell: &str) -> String {
    let is_number = !cell.is_empty() && cell.chars().all(|character| character.is_ascii_digit());
    let cell = if !is_number && cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    };
    if cell.contains([';', '"', '\n', '\r', ',']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

/// Reads "42" or "SAMSA-42" (any prefix ending in `-`) as an incident number.
pub fn parse_incident_reference(text: &str) -> Option<i64> {
    let number = text.trim().rsplit('-').next()?;
    number.parse::<i64>().ok().filter(|number| *number > 0)
}

/// `samsa-relay report`: the report of one incident from the configured database, or
/// `None` when the incident does not exist.
pub async fn report_from_config(
    config: &Config,
    incident_id: i64,
    format: ReportFormat,
    now: Timestamp,
) -> anyhow::Result<Option<String>> {
    use anyhow::Context as _;
    let storage = Storage::open_existing(&config.database)
        .await
        .context("cannot open storage")?;
    let report = build_report(&storage, config, incident_id, now).await;
    storage.close().await;
    match report.context("cannot read the incident")? {
        Some(report) => Ok(Some(render_report(&report, format)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests;
