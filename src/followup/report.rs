//! The report's JSON form ([`IncidentReport`], described field by field in
//! `docs/report-schema.json`) and how it is assembled from what storage holds: milestones
//! and durations, the scope replayed per sub-region, decisions, publications, deliveries
//! counted from the outbox, escalations, feedback, lessons, and the timeline in Swedish.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use serde::Serialize;

use super::{Audience, REPORT_SCHEMA_VERSION};
use crate::classify::{AlertScope, alert_scopes};
use crate::config::Config;
use crate::incident::IncidentKind;
use crate::incident::LogEvent;
use crate::notice::NoticeKind;
use crate::notice::kind_label;
use crate::storage::{EventRecord, FeedbackRecord, FollowupSnapshot, Storage, StorageError};
use crate::swedish::{count_phrase, format_swedish_time, join_swedish_list, single_line};

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
    let published_level = snapshot
        .notices
        .iter()
        .map(|notice| notice.level.as_number())
        .max();
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
                outcome: draft.state.to_string(),
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
        .filter_map(|event| match event.log_event() {
            Ok(LogEvent::DecisionRecorded {
                level,
                decided_by,
                role,
                role_label,
            }) => Some(DecisionEntry {
                at: event.at,
                level,
                decided_by,
                role,
                role_label,
                recorded_by: event.source.clone(),
            }),
            _ => None,
        })
        .collect();

    let publications = snapshot
        .notices
        .iter()
        .map(|notice| PublicationEntry {
            notice_id: notice.notice_id,
            published_at: notice.published_at,
            kind: notice.kind,
            level: notice.level.as_number(),
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
            kind: record.kind.to_string(),
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

fn detail_time(event: &EventRecord, key: &str) -> Option<Timestamp> {
    event.detail[key].as_str()?.parse().ok()
}

fn level_entries(events: &[EventRecord]) -> Vec<LevelEntry> {
    let mut levels: Vec<LevelEntry> = Vec::new();
    for event in events {
        let (level, crisis, basis) = match event.log_event() {
            Ok(LogEvent::IncidentOpened { level, crisis, .. }) => (level, crisis, "suggested"),
            Ok(LogEvent::DrillStarted { level, .. }) => (level, false, "suggested"),
            Ok(LogEvent::LevelChanged { after, crisis, .. }) => (after, crisis, "suggested"),
            Ok(LogEvent::NoticePublished { level, .. }) => (level, level == 3, "published"),
            _ => continue,
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
                let labels: crate::alertmanager::LabelMap =
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
    if spans.is_empty() && record.kind == IncidentKind::Drill {
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
        if let Ok(LogEvent::DeliveryRetried { outbox_id }) = event.log_event()
            && let Some((channel, _)) = snapshot.outbox_targets.get(&outbox_id)
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
    let feedback_by_id: HashMap<i64, &FeedbackRecord> = snapshot
        .feedback
        .iter()
        .map(|feedback| (feedback.feedback_id, feedback))
        .collect();
    // (entry, origin rank, sequence): log entries keep their order; counted lines follow
    // the log entries of the same time.
    let mut entries: Vec<(TimelineEntry, u8, i64)> = Vec::new();
    let events = &snapshot.events;
    let firing_labels: HashMap<(&str, &str), &serde_json::Value> = events
        .iter()
        .filter(|event| event.event == "alert_firing")
        .map(|event| {
            (
                (
                    detail_str(event, "fingerprint"),
                    detail_str(event, "starts_at"),
                ),
                &event.detail["labels"],
            )
        })
        .collect();
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
                    text: describe_alerts(group, &firing_labels, config),
                    origin: "log".to_owned(),
                    n_entries: group.len(),
                },
                0,
                event.event_id,
            ));
            index = group_end;
            continue;
        }
        let occurred_at = match event.log_event() {
            Ok(LogEvent::Note { occurred_at, .. }) => occurred_at,
            _ => None,
        };
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
        // The channel as people read it; one delivery reads "skickat", not "1 av 1".
        let channel = config
            .channels
            .get(&notice.channel)
            .map_or(notice.channel.as_str(), |channel| channel.label.as_str());
        let sent = if notice.n_deliveries == 1 && notice.n_sent == 1 {
            "skickat".to_owned()
        } else {
            format!("{} av {} skickade", notice.n_sent, notice.n_deliveries)
        };
        let mut text = format!("Meddelande {}, {channel}: {sent}", notice.notice_id);
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
/// A resolved alert is named by the labels its firing entry logged.
fn describe_alerts(
    group: &[EventRecord],
    firing_labels: &HashMap<(&str, &str), &serde_json::Value>,
    config: &Config,
) -> String {
    const SHOWN: usize = 5;
    let firing = group
        .first()
        .is_some_and(|event| event.event == "alert_firing");
    let mut names: Vec<String> = Vec::new();
    for event in group.iter().take(SHOWN) {
        let labels = if firing {
            Some(&event.detail["labels"])
        } else {
            firing_labels
                .get(&(
                    detail_str(event, "fingerprint"),
                    detail_str(event, "starts_at"),
                ))
                .copied()
        };
        match labels {
            Some(labels) => {
                let labels: crate::alertmanager::LabelMap =
                    serde_json::from_value(labels.clone()).unwrap_or_default();
                names.push(describe_alert(&labels, config));
            }
            None => names.push(single_line(detail_str(event, "fingerprint"), 40)),
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

fn describe_alert(labels: &crate::alertmanager::LabelMap, config: &Config) -> String {
    let inventory = &config.inventory;
    let name = single_line(labels.get("alertname").unwrap_or("larm"), 100);
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
    feedback_by_id: &HashMap<i64, &FeedbackRecord>,
) -> String {
    let Ok(entry) = event.log_event() else {
        // A shape the relay never wrote: the fixed words of its kind, or the kind itself.
        return fixed_description(&event.event)
            .map(str::to_owned)
            .unwrap_or_else(|| single_line(&event.event, 100));
    };
    let text = |value: &str| single_line(value, 300);
    let crisis = |crisis: bool| if crisis { " (kriskommunikation)" } else { "" };
    let actors = |count: usize| count_phrase(count, "aktör", "aktörer");
    let outbox_target = |outbox_id: i64| {
        snapshot
            .outbox_targets
            .get(&outbox_id)
            .map(|(channel, recipient)| format!("{channel} till {}", single_line(recipient, 200)))
            .unwrap_or_else(|| format!("leverans {outbox_id}"))
    };
    match entry {
        LogEvent::IncidentOpened {
            n_affected,
            level,
            crisis: is_crisis,
            ..
        } => format!(
            "Incidenten öppnades: {} påverkas, föreslagen nivå {level}{}",
            actors(n_affected),
            crisis(is_crisis)
        ),
        LogEvent::ScopeChanged {
            n_affected_before,
            n_affected,
            whole_service,
        } => format!(
            "Omfattningen ändrades: från {n_affected_before} till {n_affected} påverkade aktörer{}",
            if whole_service {
                " (hela tjänsten)"
            } else {
                ""
            }
        ),
        LogEvent::LevelChanged {
            before,
            after,
            crisis: is_crisis,
            ..
        } => format!(
            "Föreslagen nivå ändrades från {before} till {after}{}",
            crisis(is_crisis)
        ),
        LogEvent::DraftCreated {
            draft_id,
            kind,
            by_hand,
            ..
        } => {
            let by_hand = if by_hand { ", skrivet för hand" } else { "" };
            format!("Utkast {draft_id} skapat: {}{by_hand}", kind_label(kind))
        }
        LogEvent::DraftRevised { draft_id, version } => {
            format!("Utkast {draft_id} uppdaterat till version {version}")
        }
        LogEvent::DraftEdited {
            draft_id, version, ..
        } => format!("Utkast {draft_id} ändrat, version {version}"),
        LogEvent::DraftWithdrawn { draft_id, reason } => {
            format!("Utkast {draft_id} återkallat: {}", text(&reason))
        }
        LogEvent::DraftDiscarded { draft_id, reason } => {
            format!("Utkast {draft_id} kasserat: {}", text(&reason))
        }
        LogEvent::DecisionRecorded {
            level,
            decided_by,
            role_label,
            ..
        } => format!(
            "Beslut om nivå {level}: {} ({})",
            text(&decided_by),
            text(&role_label)
        ),
        LogEvent::NoticePublished {
            kind,
            level,
            channels,
            n_deliveries,
            ..
        } => {
            let channels: Vec<String> =
                channels.iter().map(|name| single_line(name, 100)).collect();
            format!(
                "Publicerat: {}, nivå {level}, i {} ({n_deliveries} leveranser)",
                kind_label(kind),
                join_swedish_list(&channels),
            )
        }
        LogEvent::DeliveryFailed { outbox_id, error } => format!(
            "Leverans misslyckades ({}): {}",
            outbox_target(outbox_id),
            text(&error)
        ),
        LogEvent::DeliveryRetried { outbox_id } => {
            format!("Leveransen {} skickas igen", outbox_target(outbox_id))
        }
        LogEvent::DrillStarted { n_affected, level } => format!(
            "Övning startad: {} påverkas, nivå {level}",
            actors(n_affected)
        ),
        LogEvent::MonitoringChainBroken {
            watchdog_alertname, ..
        } => format!(
            "Övervakningskedjan är bruten: larmet {} har inte kommit",
            text(&watchdog_alertname)
        ),
        LogEvent::MaintenancePlanned {
            title,
            starts_at,
            ends_at,
        } => format!(
            "Underhåll planerat: {}, {} till {}",
            text(&title),
            crate::swedish::format_swedish_time(starts_at),
            crate::swedish::format_swedish_time(ends_at)
        ),
        LogEvent::Note { text: note, .. } => format!("Anteckning: {}", text(&note)),
        LogEvent::Feedback { feedback_id } => match feedback_by_id.get(&feedback_id) {
            Some(feedback) => format!(
                "Återkoppling från {} ({})",
                feedback.name, feedback.organisation
            ),
            None => "Återkoppling".to_owned(),
        },
        LogEvent::LessonRecorded { audience, .. } => format!(
            "Erfarenhet antecknad, {}",
            Audience::parse(audience.as_deref().unwrap_or(""))
                .map(|audience| audience.label().to_lowercase())
                .unwrap_or_default()
        ),
        LogEvent::MaintenanceAnnounced {
            starts_at,
            ends_at,
            auto_series,
        } => format!(
            "Planerat underhåll annonserat: {} till {}{}",
            format_swedish_time(starts_at),
            format_swedish_time(ends_at),
            if auto_series {
                "; påminnelser, start och slut skickas automatiskt"
            } else {
                "; varje steg granskas"
            }
        ),
        LogEvent::MaintenanceStep {
            label,
            draft_id,
            automatic,
            ..
        } => format!(
            "Underhåll: {} (utkast {draft_id}{})",
            text(&label),
            if automatic {
                ", publiceras automatiskt"
            } else {
                ", väntar på granskning"
            }
        ),
        LogEvent::MaintenanceSilenced { silence_ids } => format!(
            "Larmen tystade i Alertmanager för underhållet ({})",
            count_phrase(silence_ids.len(), "tystnad", "tystnader")
        ),
        LogEvent::MaintenanceSilenceFailed { error } => {
            format!("Larmen kunde inte tystas i Alertmanager: {}", text(&error))
        }
        LogEvent::MaintenanceSilenceExpired { .. } => {
            "Tystnaden i Alertmanager avslutad".to_owned()
        }
        LogEvent::MaintenanceEnded {
            state,
            n_alerts_firing,
        } => match crate::maintenance::WindowState::parse(&state) {
            Some(crate::maintenance::WindowState::Overran) => format!(
                "Underhållets sluttid passerade med {} som fortfarande larmar",
                count_phrase(n_alerts_firing, "larm", "larm")
            ),
            _ => "Underhållets sluttid nådd".to_owned(),
        },
        LogEvent::MaintenanceMoved {
            starts_at, ends_at, ..
        } => format!(
            "Underhållet flyttat till {} – {}",
            format_swedish_time(starts_at),
            format_swedish_time(ends_at)
        ),
        LogEvent::MaintenanceCancelled { reason } => {
            format!("Underhållet inställt: {}", text(&reason))
        }
        LogEvent::AlertDuringMaintenance { status, labels, .. } => format!(
            "Larm under underhållet ({}): {}",
            if status == "resolved" {
                "upphört"
            } else {
                "pågår"
            },
            text(labels.get("alertname").unwrap_or_default())
        ),
        LogEvent::MaintenanceAlertsHandedOver { n_alerts, .. } => format!(
            "{} larmade fortfarande efter underhållet och lämnades till incidenthanteringen",
            count_phrase(n_alerts, "larm", "larm")
        ),
        LogEvent::IncidentResolved { .. }
        | LogEvent::IncidentReopened { .. }
        | LogEvent::MonitoringChainRestored {}
        | LogEvent::EvaluationNoted { .. }
        | LogEvent::AlertFiring { .. }
        | LogEvent::AlertResolved { .. } => fixed_description(&event.event)
            .map(str::to_owned)
            .unwrap_or_else(|| single_line(&event.event, 100)),
    }
}

/// The words of the log entries that carry nothing else worth saying.
fn fixed_description(kind: &str) -> Option<&'static str> {
    match kind {
        "incident_resolved" => Some("Incidenten är åtgärdad: inget larm pågår längre"),
        "incident_reopened" => {
            Some("Incidenten öppnades igen: ett nytt larm kom strax efter åtgärden")
        }
        "monitoring_chain_restored" => Some("Övervakningskedjan fungerar igen"),
        "evaluation_noted" => Some("Utvärdering antecknad"),
        _ => None,
    }
}
