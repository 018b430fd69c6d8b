//! The report in its three forms: Markdown and HTML from MiniJinja templates in
//! `src/followup_templates/` (every value a Markdown template prints is escaped by
//! [`escape_markdown`], HTML by MiniJinja's auto-escape), and JSON by serde. Times are
//! Swedish local time, durations Swedish words.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use jiff::Timestamp;
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, Output, State, UndefinedBehavior, context};
use serde::Serialize;

use super::{Audience, IncidentReport, LessonEntry, REPORT_STYLESHEET, stockholm};
use crate::notice::kind_label;
use crate::swedish::{format_swedish_duration, format_swedish_time};

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
    environment.set_keep_trailing_newline(true);
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
        ("report.md", include_str!("../followup_templates/report.md")),
        (
            "report.html",
            include_str!("../followup_templates/report.html"),
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
pub(super) fn quote_markdown(text: String) -> Value {
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
    /// The incident's first day, "28 november 2026": clock times without a date are on it.
    day: String,
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
    /// "05:40" on the incident's first day, "29 november 2026 kl. 01:10" on another.
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
                text.push_str(&format!(
                    " (antecknat {})",
                    time_near(recorded_at, entry.at)
                ));
            }
            TimelineLine {
                time: time_near(entry.at, start),
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
    // Tables show the clock on the incident's first day; the summary names the day.
    let short = |at: Timestamp| time_near(at, start);
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
            time: short(point.at),
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
                    format!("{} – {}", time_near(first, start), time_near(last, start))
                }
                (Some(first), None) => format!("från {}", time_near(first, start)),
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
                ("time", short(entry.at)),
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
                ("created", short(draft.created_at)),
                ("created_by", source_label(&draft.created_by)),
                ("versions", draft.n_versions.to_string()),
                ("outcome", outcome_label(&draft.outcome).to_owned()),
                ("ended", draft.ended_at.map(short).unwrap_or_default()),
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
                ("time", short(decision.at)),
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
                ("time", short(publication.published_at)),
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
                (
                    "last_sent",
                    channel.last_sent_at.map(short).unwrap_or_default(),
                ),
            ])
        })
        .collect();
    let escalations = report
        .escalations
        .iter()
        .map(|escalation| {
            row(vec![
                ("time", short(escalation.at)),
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
        day: swedish_date(start),
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
pub(super) fn relative_offset(start: Timestamp, at: Timestamp) -> String {
    let seconds = at.duration_since(start).as_secs();
    let sign = if seconds < 0 { "−" } else { "+" };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{}:{:02}", minutes / 60, minutes % 60)
}

/// "05:40" on the incident's first day (Swedish time), the whole time on another day.
pub(super) fn time_near(at: Timestamp, start: Timestamp) -> String {
    let tz = stockholm();
    if at.to_zoned(tz.clone()).date() == start.to_zoned(tz).date() {
        clock_time(at)
    } else {
        format_swedish_time(at)
    }
}

/// "28 november 2026" in Swedish time.
fn swedish_date(at: Timestamp) -> String {
    let text = format_swedish_time(at);
    match text.split_once(" kl. ") {
        Some((date, _)) => date.to_owned(),
        None => text,
    }
}

/// "05:40" in Swedish time.
pub(super) fn clock_time(at: Timestamp) -> String {
    at.to_zoned(stockholm()).strftime("%H:%M").to_string()
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

pub(super) fn source_label(source: &str) -> String {
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
