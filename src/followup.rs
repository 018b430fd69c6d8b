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
//!
//! This file holds what people write (feedback, notes, evaluation notes and lessons);
//! `followup/report.rs` the report and its assembly, `followup/render.rs` its three forms,
//! `followup/export.rs` the list and the CSV exports. Storage is reached through
//! `Storage::followup_snapshot` and `WriteTransaction` (`src/storage/sqlite_followup.rs`).

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::config::{Config, Operator};
use crate::incident::IncidentKind;
use crate::incident::LogEvent;
use crate::links::{LinkPurpose, LinkSigner};
use crate::operators::signed_link;
use crate::storage::{
    EventWrite, FeedbackWrite, LessonWrite, OperatorMailWrite, Storage, StorageError,
};
use crate::swedish::{SWEDISH_TIME_ZONE, clean_multiline, format_swedish_time, single_line};

mod export;
mod render;
mod report;

pub use export::*;
pub use render::*;
pub use report::*;

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
pub fn swedish_number(number: usize) -> String {
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
        .filter(|incident| incident.kind != IncidentKind::Monitoring)
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
            // The text stays in the feedback table only: personal data in one place.
            &[EventWrite::new(
                now,
                "feedback",
                &LogEvent::Feedback { feedback_id },
            )],
        )
        .await?;
    let drill = incident.kind == IncidentKind::Drill;
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

/// The line above the sender's message in an operator mail; the message follows with
/// every line quoted ([`quoted`]).
pub const FEEDBACK_QUOTE_HEADING: &str = "Meddelande från formuläret (avsändarens egna ord):";

/// Quotes a stranger's text for a plain-text mail: every line starts with `> ` (an empty
/// line with `>`), so nothing in it can pass for the mail around it, such as a fake
/// "open this link" block above the real one.
pub fn quoted(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.is_empty() {
                ">".to_owned()
            } else {
                format!("> {line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The email telling an operator about new feedback. The subject carries no text from the
/// form (a header must never see what a stranger typed); the body is plain text, with the
/// message quoted line by line under [`FEEDBACK_QUOTE_HEADING`].
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
             {FEEDBACK_QUOTE_HEADING}\n{message}\n\n\
             Återkopplingen finns i incidentens logg och i uppföljningsrapporten:\n{link}\n\n\
             /samsa-relay\n",
            operator_name = operator.name,
            service = config.notices.service_name,
            received = format_swedish_time(now),
            name = feedback.name,
            organisation = feedback.organisation,
            message = quoted(&feedback.message),
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
    transaction
        .append_events(
            incident_id,
            &[EventWrite::new(
                now,
                operator,
                &LogEvent::Note { text, occurred_at },
            )],
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
    let (kind_text, audience) = match kind {
        LessonKind::Evaluation => ("evaluation", None),
        LessonKind::Lesson(audience) => ("lesson", Some(audience.as_str())),
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
    let event = match audience {
        None => LogEvent::EvaluationNoted { lesson_id },
        Some(audience) => LogEvent::LessonRecorded {
            lesson_id,
            audience: Some(audience.to_owned()),
        },
    };
    transaction
        .append_events(incident_id, &[EventWrite::new(now, operator, &event)])
        .await?;
    transaction.commit().await?;
    Ok(lesson_id)
}

/// Swedish local time, where every time people read is shown.
fn stockholm() -> TimeZone {
    TimeZone::get(SWEDISH_TIME_ZONE).unwrap_or(TimeZone::UTC)
}

#[cfg(test)]
mod tests;
