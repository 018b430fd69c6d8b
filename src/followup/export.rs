//! Across incidents: the list with its filters (period, level, sub-region, kind), the
//! yearly follow-up's figures, and their CSV exports; and the report for the command line.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::Serialize;

use super::{IncidentReport, ReportFormat, build_report, render_report, stockholm};
use crate::config::Config;
use crate::storage::{Storage, StorageError};

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
    Maintenance,
    All,
}

impl KindFilter {
    pub fn parse(text: &str) -> Option<KindFilter> {
        match text {
            "outage" => Some(KindFilter::Outage),
            "drill" => Some(KindFilter::Drill),
            "monitoring" => Some(KindFilter::Monitoring),
            "maintenance" => Some(KindFilter::Maintenance),
            "all" => Some(KindFilter::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KindFilter::Outage => "outage",
            KindFilter::Drill => "drill",
            KindFilter::Monitoring => "monitoring",
            KindFilter::Maintenance => "maintenance",
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

/// Planned maintenance over a period: the downtime that was announced ahead, beside the
/// disruptions' (which the default list counts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedSummary {
    /// Windows that began in the period (not called off before their start).
    pub n_windows: usize,
    /// From each window's start to its end (or when it ended early, or now): what ran
    /// past the planned end is an outage, counted with the disruptions.
    pub downtime_seconds: i64,
    pub subregions: Vec<SubregionTotal>,
}

/// The planned maintenance of the windows that began in `filter`'s period (and, with a
/// sub-region or level in it, that touched the sub-region or used the level).
pub async fn planned_maintenance(
    storage: &Storage,
    config: &Config,
    filter: &IncidentFilter,
    now: Timestamp,
) -> Result<PlannedSummary, StorageError> {
    let (from, before) = period_bounds(filter);
    let windows = storage
        .maintenance_windows_started(
            from.unwrap_or(Timestamp::MIN),
            before.unwrap_or(Timestamp::MAX),
        )
        .await?;
    let inventory = &config.inventory;
    let touches = |window: &crate::maintenance::Window, subregion: &str| {
        let scope = &window.plan.scope;
        scope.whole_service
            || scope.subregions.iter().any(|id| id == subregion)
            || scope.actors.iter().any(|id| {
                inventory
                    .actor(id)
                    .is_some_and(|actor| actor.subregion_id == subregion)
            })
    };
    let mut counted: Vec<(&crate::maintenance::Window, i64)> = Vec::new();
    for window in &windows {
        if window.state == crate::maintenance::WindowState::Planned {
            continue;
        }
        let end = window
            .plan
            .ends_at
            .min(window.ended_at.unwrap_or(now))
            .min(now);
        let seconds = end.duration_since(window.plan.starts_at).as_secs();
        let passes = seconds > 0
            && filter
                .level
                .is_none_or(|level| window.plan.level.as_number() == level)
            && filter
                .subregion
                .as_deref()
                .is_none_or(|wanted| touches(window, wanted));
        if passes {
            counted.push((window, seconds));
        }
    }
    let subregions = inventory
        .subregions()
        .iter()
        .map(|subregion| {
            let touching: Vec<i64> = counted
                .iter()
                .filter(|(window, _)| touches(window, &subregion.id))
                .map(|(_, seconds)| *seconds)
                .collect();
            SubregionTotal {
                id: subregion.id.clone(),
                name: subregion.name.clone(),
                n_incidents: touching.len(),
                downtime_seconds: touching.iter().sum(),
            }
        })
        .collect();
    Ok(PlannedSummary {
        n_windows: counted.len(),
        downtime_seconds: counted.iter().map(|(_, seconds)| seconds).sum(),
        subregions,
    })
}

/// The filter's days as instants: from the start of its first day, before the start of
/// the day after its last (Swedish time).
fn period_bounds(filter: &IncidentFilter) -> (Option<Timestamp>, Option<Timestamp>) {
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
    (from, before)
}

/// The incidents that pass `filter`, oldest first, each summarised from its report.
pub async fn list_incidents(
    storage: &Storage,
    config: &Config,
    filter: &IncidentFilter,
    now: Timestamp,
) -> Result<Vec<IncidentListRow>, StorageError> {
    let (from, before) = period_bounds(filter);
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
pub(super) fn median(sorted: &[i64]) -> Option<i64> {
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
pub fn summary_csv(
    summary: &FollowupSummary,
    planned: &PlannedSummary,
    filter: &IncidentFilter,
) -> String {
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
        "Planerade underhåll".to_owned(),
        planned.n_windows.to_string(),
    );
    line(
        "Planerad nedtid (min)".to_owned(),
        minutes(planned.downtime_seconds).to_string(),
    );
    for subregion in &planned.subregions {
        line(
            format!("Planerade underhåll som berörde {}", subregion.name),
            subregion.n_incidents.to_string(),
        );
        line(
            format!("Planerad nedtid {} (min)", subregion.name),
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
        "maintenance" => "planerat underhåll",
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
pub(super) fn csv_cell(cell: &str) -> String {
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
