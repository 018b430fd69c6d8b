//! The follow-up for operators, under the dashboard (`/ops/d/{token}/followup…`, or
//! `/ops/sso/d/followup…` behind a single sign-on proxy), with the same CSRF rule as the
//! other operator pages:
//!
//! - `GET  …/followup`: the list with filters (period, level, sub-region, kind);
//!   `…/followup/incidents.csv` and `…/followup/summary.csv` export it.
//! - `GET  …/followup/{incident_id}`: the incident's log, feedback, evaluation and lessons,
//!   and the forms to add to them; `POST` the same path with `action=note` or
//!   `action=lesson`.
//! - `GET  …/followup/{incident_id}/report.md|report.html|report.json`: the report.
//!
//! Everything a person typed is escaped by MiniJinja's HTML auto-escape on these pages.

use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jiff::Timestamp;
use minijinja::context;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{OperatorForm, OperatorSession, csrf_refused, storage_unavailable};
use crate::followup::{
    Audience, FollowupError, IncidentFilter, IncidentReport, KindFilter, LessonKind,
    MAX_LESSON_CHARS, MAX_NOTE_CHARS, REPORT_STYLESHEET, ReportFormat,
};
use crate::http::AppState;
use crate::http::pages::{
    incident_number, message_page, page, parse_local_time, render, security_headers, stockholm,
};
use crate::notice::format_swedish_time;
use crate::swedish::format_swedish_duration;

/// The path of a page about one incident (besides the dashboard link's token).
#[derive(Debug, Deserialize)]
pub(super) struct IncidentPath {
    incident_id: String,
}

/// The list's filter form (`method="get"`), also the query of the exports.
#[derive(Debug, Default, Deserialize)]
pub(super) struct FilterFields {
    /// `ÅÅÅÅ-MM-DD`.
    from: Option<String>,
    to: Option<String>,
    /// 1, 2 or 3.
    level: Option<String>,
    /// A sub-region's id.
    subregion: Option<String>,
    /// A [`KindFilter`].
    kind: Option<String>,
}

/// The incident page's query after a saved entry (post, redirect, get).
#[derive(Debug, Deserialize)]
pub(super) struct SavedFields {
    /// `anteckning`, `utvardering` or `erfarenhet`.
    sparat: Option<String>,
}

/// The incident page's note and lesson forms.
#[derive(Debug, Deserialize)]
pub(super) struct IncidentFields {
    #[serde(default)]
    csrf: String,
    action: Option<IncidentAction>,
    /// The note.
    #[serde(default)]
    text: String,
    /// When what the note says happened, Swedish local time; empty is now.
    #[serde(default)]
    occurred_at: String,
    /// `lesson` or `evaluation`.
    #[serde(default)]
    kind: String,
    /// An [`Audience`], for a lesson.
    #[serde(default)]
    audience: String,
    #[serde(default)]
    lesson: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum IncidentAction {
    Note,
    Lesson,
    #[serde(other)]
    Unknown,
}

/// The Content-Security-Policy of the HTML report: nothing but its own inline stylesheet,
/// allowed by hash.
static REPORT_HTML_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD
        .encode(Sha256::digest(REPORT_STYLESHEET.as_bytes()));
    HeaderValue::from_str(&format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ))
    .expect("the policy is a valid header value")
});

/// The incident in the path; anything but an incident number is "not found".
#[allow(clippy::result_large_err)]
fn incident_in_path(session: &OperatorSession, text: &str) -> Result<i64, Response> {
    incident_number(text).ok_or_else(|| operator_not_found(session))
}

fn operator_not_found(session: &OperatorSession) -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "Incidenten finns inte",
        &[],
        Some((&session.dashboard_path(), "Till översikten")),
    )
}

// ---------------------------------------------------------------------------------------
// Operators: one incident's follow-up page and its actions.

/// What the note and lesson forms showed or posted, for re-rendering after an error.
#[derive(Default)]
struct IncidentForms {
    note: String,
    occurred_at: String,
    lesson_kind: String,
    audience: String,
    lesson: String,
}

pub(super) async fn incident_page(
    session: OperatorSession,
    State(state): State<AppState>,
    Path(path): Path<IncidentPath>,
    OperatorForm(query): OperatorForm<SavedFields>,
) -> Response {
    let (state, session) = (&state, &session);
    let incident_id = match incident_in_path(session, &path.incident_id) {
        Ok(incident_id) => incident_id,
        Err(response) => return response,
    };
    let saved = query.sparat;
    let flash = match saved.as_deref() {
        Some("anteckning") => Some("Anteckningen är sparad i loggen."),
        Some("utvardering") => Some("Utvärderingen är sparad och finns med i rapporten."),
        Some("erfarenhet") => Some("Erfarenheten är sparad och finns med i rapporten."),
        _ => None,
    };
    render_incident_page(
        state,
        session,
        incident_id,
        StatusCode::OK,
        flash,
        None,
        IncidentForms::default(),
    )
    .await
}

async fn render_incident_page(
    state: &AppState,
    session: &OperatorSession,
    incident_id: i64,
    status: StatusCode,
    flash: Option<&str>,
    error: Option<&str>,
    forms: IncidentForms,
) -> Response {
    let report = match crate::followup::build_report(
        &state.storage,
        &state.config,
        incident_id,
        Timestamp::now(),
    )
    .await
    {
        Ok(Some(report)) => report,
        Ok(None) => return operator_not_found(session),
        Err(error) => {
            tracing::error!(error = ?anyhow::Error::from(error), "cannot build the follow-up page");
            return storage_unavailable();
        }
    };
    let base = format!("{}/followup", session.dashboard_path());
    let incident = &report.incident;
    let timeline: Vec<_> = crate::followup::timeline_lines(&report)
        .into_iter()
        .map(|line| {
            context! { time => line.time, offset => line.offset, source => line.source, text => line.text }
        })
        .collect();
    let feedback: Vec<_> = report
        .feedback
        .iter()
        .map(|feedback| {
            context! {
                time => format_swedish_time(feedback.received_at),
                name => feedback.name,
                organisation => feedback.organisation,
                message => feedback.message,
            }
        })
        .collect();
    let lesson_view = |kind: &str, audience: Option<Audience>| -> Vec<minijinja::Value> {
        report
            .lessons
            .iter()
            .filter(|lesson| {
                lesson.kind == kind && lesson.audience.as_deref() == audience.map(Audience::as_str)
            })
            .map(|lesson| {
                context! {
                    time => format_swedish_time(lesson.created_at),
                    by => lesson.created_by,
                    text => lesson.text,
                }
            })
            .collect()
    };
    let evaluations = lesson_view("evaluation", None);
    let lesson_groups: Vec<_> = Audience::ALL
        .iter()
        .map(|audience| {
            context! {
                heading => audience.label(),
                items => lesson_view("lesson", Some(*audience)),
            }
        })
        .collect();
    let audiences: Vec<_> = Audience::ALL
        .iter()
        .map(|audience| {
            context! {
                value => audience.as_str(),
                label => audience.label(),
                selected => forms.audience == audience.as_str(),
            }
        })
        .collect();
    let service = &state.config.notices.service_name;
    let outage = format_swedish_duration(std::time::Duration::from_secs(
        report.durations.outage_seconds.max(0) as u64,
    ));
    page(
        status,
        render(
            "followup_incident.html",
            context! {
                operator_name => session.operator.name,
                drill => incident.kind == "drill",
                flash => flash,
                error => error,
                incident_id => incident.incident_id,
                reference => incident.reference,
                kind => crate::followup::kind_word(&incident.kind),
                started => format_swedish_time(incident.started_at),
                resolved => incident.resolved_at.map(format_swedish_time),
                outage => outage,
                highest_level => incident.highest_level,
                max_affected => incident.max_affected,
                n_actors => incident.n_actors,
                public_feedback => incident.kind != "monitoring",
                feedback_url => state.config.public_link(&format!("/public/feedback/{}", incident.incident_id)),
                base => base,
                dashboard => session.dashboard_path(),
                csrf => session.csrf(state),
                timeline => timeline,
                feedback => feedback,
                evaluations => evaluations,
                lesson_groups => lesson_groups,
                audiences => audiences,
                forms_note => forms.note,
                forms_occurred_at => forms.occurred_at,
                forms_lesson => forms.lesson,
                forms_kind => if forms.lesson_kind.is_empty() { "lesson".to_owned() } else { forms.lesson_kind },
                max_note => MAX_NOTE_CHARS,
                max_lesson => MAX_LESSON_CHARS,
                service => service,
            },
        ),
    )
}

pub(super) async fn incident_action(
    session: OperatorSession,
    State(state): State<AppState>,
    Path(path): Path<IncidentPath>,
    OperatorForm(form): OperatorForm<IncidentFields>,
) -> Response {
    let (state, session) = (&state, &session);
    let incident_id = match incident_in_path(session, &path.incident_id) {
        Ok(incident_id) => incident_id,
        Err(response) => return response,
    };
    if !session.check_csrf(state, &form.csrf) {
        return csrf_refused();
    }
    let operator = session.operator.name.as_str();
    let now = Timestamp::now();
    let forms = IncidentForms {
        note: form.text,
        occurred_at: form.occurred_at,
        lesson_kind: form.kind,
        audience: form.audience,
        lesson: form.lesson,
    };
    let (result, saved) = match form.action {
        Some(IncidentAction::Note) => {
            let occurred_at = match forms.occurred_at.trim() {
                "" => None,
                text => match parse_local_time(text) {
                    Some(at) => Some(at),
                    None => {
                        return render_incident_page(
                            state,
                            session,
                            incident_id,
                            StatusCode::UNPROCESSABLE_ENTITY,
                            None,
                            Some("Ange tiden som ÅÅÅÅ-MM-DD TT:MM (svensk tid), eller lämna fältet tomt."),
                            forms,
                        )
                        .await;
                    }
                },
            };
            (
                crate::followup::add_note(
                    &state.storage,
                    incident_id,
                    operator,
                    &forms.note,
                    occurred_at,
                    now,
                )
                .await,
                "anteckning",
            )
        }
        Some(IncidentAction::Lesson) => {
            let kind = match (forms.lesson_kind.as_str(), Audience::parse(&forms.audience)) {
                ("evaluation", _) => LessonKind::Evaluation,
                ("lesson", Some(audience)) => LessonKind::Lesson(audience),
                ("lesson", None) => {
                    return render_incident_page(
                        state,
                        session,
                        incident_id,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        None,
                        Some("Välj vem erfarenheten riktar sig till."),
                        forms,
                    )
                    .await;
                }
                _ => {
                    return render_incident_page(
                        state,
                        session,
                        incident_id,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        None,
                        Some("Välj utvärdering eller erfarenhet."),
                        forms,
                    )
                    .await;
                }
            };
            let saved = if kind == LessonKind::Evaluation {
                "utvardering"
            } else {
                "erfarenhet"
            };
            (
                crate::followup::add_lesson(
                    &state.storage,
                    incident_id,
                    operator,
                    kind,
                    &forms.lesson,
                    now,
                )
                .await
                .map(|_| ()),
                saved,
            )
        }
        _ => {
            return render_incident_page(
                state,
                session,
                incident_id,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some("Okänd åtgärd."),
                forms,
            )
            .await;
        }
    };
    match result {
        Ok(()) => {
            // Post, redirect, get: a reload does not post again.
            let location = format!(
                "{}/followup/{incident_id}?sparat={saved}",
                session.dashboard_path()
            );
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            security_headers(response.headers_mut());
            response
        }
        Err(FollowupError::IncidentNotFound) => operator_not_found(session),
        Err(FollowupError::Storage(error)) => {
            tracing::error!(error = ?anyhow::Error::from(error), "follow-up entry not stored");
            storage_unavailable()
        }
        Err(error @ FollowupError::NotResolved) => {
            render_incident_page(
                state,
                session,
                incident_id,
                StatusCode::CONFLICT,
                None,
                Some(&error.to_string()),
                forms,
            )
            .await
        }
        Err(error @ FollowupError::Invalid(_)) => {
            render_incident_page(
                state,
                session,
                incident_id,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some(&error.to_string()),
                forms,
            )
            .await
        }
    }
}

// ---------------------------------------------------------------------------------------
// Operators: the report in its three forms.

pub(super) async fn report_md(
    session: OperatorSession,
    State(state): State<AppState>,
    Path(path): Path<IncidentPath>,
) -> Response {
    report_download(&state, &session, &path, ReportFormat::Markdown).await
}

pub(super) async fn report_html(
    session: OperatorSession,
    State(state): State<AppState>,
    Path(path): Path<IncidentPath>,
) -> Response {
    report_download(&state, &session, &path, ReportFormat::Html).await
}

pub(super) async fn report_json(
    session: OperatorSession,
    State(state): State<AppState>,
    Path(path): Path<IncidentPath>,
) -> Response {
    report_download(&state, &session, &path, ReportFormat::Json).await
}

async fn report_download(
    state: &AppState,
    session: &OperatorSession,
    path: &IncidentPath,
    format: ReportFormat,
) -> Response {
    let incident_id = match incident_in_path(session, &path.incident_id) {
        Ok(incident_id) => incident_id,
        Err(response) => return response,
    };
    let report: IncidentReport = match crate::followup::build_report(
        &state.storage,
        &state.config,
        incident_id,
        Timestamp::now(),
    )
    .await
    {
        Ok(Some(report)) => report,
        Ok(None) => return operator_not_found(session),
        Err(error) => {
            tracing::error!(error = ?anyhow::Error::from(error), "cannot build the report");
            return storage_unavailable();
        }
    };
    let text = match crate::followup::render_report(&report, format) {
        Ok(text) => text,
        Err(error) => {
            tracing::error!(error = ?error, "cannot render the report");
            return message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Rapporten kunde inte skapas",
                &[],
                None,
            );
        }
    };
    // The HTML opens in the browser, ready to print; the others download.
    let disposition = if format == ReportFormat::Html {
        "inline"
    } else {
        "attachment"
    };
    let filename = format!("incident-{incident_id}-rapport.{}", format.extension());
    download(
        text,
        format.content_type(),
        disposition,
        &filename,
        format == ReportFormat::Html,
    )
}

fn download(
    body: String,
    content_type: &'static str,
    disposition: &str,
    filename: &str,
    is_report_html: bool,
) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&format!("{disposition}; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        if is_report_html {
            REPORT_HTML_POLICY.clone()
        } else {
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; sandbox")
        },
    );
    security_headers(headers);
    response
}

// ---------------------------------------------------------------------------------------
// Operators: the list across incidents and its exports.

/// The filter from the query string; with no `from` key at all, this calendar year.
/// Values that do not parse are reported and left out.
fn parse_filter(state: &AppState, fields: &FilterFields) -> (IncidentFilter, Vec<String>) {
    let value = |field: &Option<String>| field.as_deref().map(|value| value.trim().to_owned());
    let mut problems = Vec::new();
    let mut filter = IncidentFilter::default();
    let mut date = |field: &Option<String>, label: &str| -> Option<jiff::civil::Date> {
        let text = value(field)?;
        if text.is_empty() {
            return None;
        }
        match text.parse::<jiff::civil::Date>() {
            Ok(date) => Some(date),
            Err(_) => {
                problems.push(format!("{label}: ange datum som ÅÅÅÅ-MM-DD."));
                None
            }
        }
    };
    if fields.from.is_none() && fields.to.is_none() {
        let year = Timestamp::now().to_zoned(stockholm()).year();
        filter.from = jiff::civil::Date::new(year, 1, 1).ok();
        filter.to = jiff::civil::Date::new(year, 12, 31).ok();
    } else {
        filter.from = date(&fields.from, "Från");
        filter.to = date(&fields.to, "Till");
    }
    match value(&fields.level).as_deref() {
        None | Some("") => {}
        Some(text) => match text
            .parse::<u8>()
            .ok()
            .filter(|level| (1..=3).contains(level))
        {
            Some(level) => filter.level = Some(level),
            None => problems.push("Nivå: välj 1, 2 eller 3.".to_owned()),
        },
    }
    match value(&fields.subregion).as_deref() {
        None | Some("") => {}
        Some(id) if state.config.inventory.subregion(id).is_some() => {
            filter.subregion = Some(id.to_owned());
        }
        Some(_) => problems.push("Delregion: välj en delregion i listan.".to_owned()),
    }
    match value(&fields.kind).as_deref() {
        None | Some("") => {}
        Some(text) => match KindFilter::parse(text) {
            Some(kind) => filter.kind = kind,
            None => problems.push("Typ: välj i listan.".to_owned()),
        },
    }
    (filter, problems)
}

/// The filter as a query string, for the export links.
fn filter_query(filter: &IncidentFilter) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    serializer.append_pair(
        "from",
        &filter.from.map(|date| date.to_string()).unwrap_or_default(),
    );
    serializer.append_pair(
        "to",
        &filter.to.map(|date| date.to_string()).unwrap_or_default(),
    );
    if let Some(level) = filter.level {
        serializer.append_pair("level", &level.to_string());
    }
    if let Some(subregion) = &filter.subregion {
        serializer.append_pair("subregion", subregion);
    }
    serializer.append_pair("kind", filter.kind.as_str());
    serializer.finish()
}

pub(super) async fn incident_list(
    session: OperatorSession,
    State(state): State<AppState>,
    OperatorForm(fields): OperatorForm<FilterFields>,
) -> Response {
    let (state, session) = (&state, &session);
    let (filter, problems) = parse_filter(state, &fields);
    let rows = match crate::followup::list_incidents(
        &state.storage,
        &state.config,
        &filter,
        Timestamp::now(),
    )
    .await
    {
        Ok(rows) => rows,
        Err(error) => {
            tracing::error!(error = ?anyhow::Error::from(error), "cannot list incidents");
            return storage_unavailable();
        }
    };
    let summary = crate::followup::summarize_incidents(&rows, &state.config);
    let duration =
        |seconds: i64| format_swedish_duration(Duration::from_secs(seconds.max(0) as u64));
    let base = format!("{}/followup", session.dashboard_path());
    let incidents: Vec<_> = rows
        .iter()
        .map(|row| {
            let affected: Vec<String> = row
                .downtime_by_subregion
                .iter()
                .filter(|(_, seconds)| *seconds > 0)
                .filter_map(|(id, _)| state.config.inventory.subregion(id))
                .map(|subregion| subregion.name.clone())
                .collect();
            context! {
                id => row.incident_id,
                reference => row.reference,
                kind => crate::followup::kind_word(&row.kind),
                started => format_swedish_time(row.started_at),
                duration => if row.ongoing { format!("pågår ({})", duration(row.outage_seconds)) } else { duration(row.outage_seconds) },
                level => row.highest_level,
                affected => format!("{} av {}", row.max_affected, row.n_actors),
                subregions => affected.join(", "),
                to_first_notice => row.to_first_notice_seconds.map(duration).unwrap_or_else(|| "–".to_owned()),
            }
        })
        .collect();
    let subregion_totals: Vec<_> = summary
        .subregions
        .iter()
        .map(|subregion| {
            context! {
                name => subregion.name,
                n_incidents => subregion.n_incidents,
                downtime => duration(subregion.downtime_seconds),
            }
        })
        .collect();
    let subregions: Vec<_> = state
        .config
        .inventory
        .subregions()
        .iter()
        .map(|subregion| {
            context! {
                id => subregion.id,
                name => subregion.name,
                selected => filter.subregion.as_deref() == Some(subregion.id.as_str()),
            }
        })
        .collect();
    let query = filter_query(&filter);
    let error = (!problems.is_empty()).then(|| problems.join(" "));
    page(
        if problems.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        },
        render(
            "followup_list.html",
            context! {
                operator_name => session.operator.name,
                error => error,
                base => base,
                dashboard => session.dashboard_path(),
                from => filter.from.map(|date| date.to_string()).unwrap_or_default(),
                to => filter.to.map(|date| date.to_string()).unwrap_or_default(),
                level => filter.level,
                kind => filter.kind.as_str(),
                subregions => subregions,
                period => crate::followup::period_text(&filter),
                incidents => incidents,
                n_incidents => summary.n_incidents,
                total_downtime => duration(summary.total_downtime_seconds),
                subregion_totals => subregion_totals,
                median_to_first_notice => summary.median_to_first_notice_seconds.map(duration),
                n_with_notice => summary.n_with_notice,
                incidents_csv => format!("{base}/incidents.csv?{query}"),
                summary_csv => format!("{base}/summary.csv?{query}"),
            },
        ),
    )
}

pub(super) async fn incidents_csv(
    _session: OperatorSession,
    State(state): State<AppState>,
    OperatorForm(fields): OperatorForm<FilterFields>,
) -> Response {
    let state = &state;
    let (filter, _) = parse_filter(state, &fields);
    match crate::followup::list_incidents(&state.storage, &state.config, &filter, Timestamp::now())
        .await
    {
        Ok(rows) => download(
            crate::followup::incidents_csv(&rows, &state.config),
            "text/csv; charset=utf-8",
            "attachment",
            "incidenter.csv",
            false,
        ),
        Err(error) => {
            tracing::error!(error = ?anyhow::Error::from(error), "cannot export incidents");
            storage_unavailable()
        }
    }
}

pub(super) async fn summary_csv(
    _session: OperatorSession,
    State(state): State<AppState>,
    OperatorForm(fields): OperatorForm<FilterFields>,
) -> Response {
    let state = &state;
    let (filter, _) = parse_filter(state, &fields);
    match crate::followup::list_incidents(&state.storage, &state.config, &filter, Timestamp::now())
        .await
    {
        Ok(rows) => {
            let summary = crate::followup::summarize_incidents(&rows, &state.config);
            let planned = match crate::followup::planned_maintenance(
                &state.storage,
                &state.config,
                &filter,
                Timestamp::now(),
            )
            .await
            {
                Ok(planned) => planned,
                Err(error) => {
                    tracing::error!(error = ?anyhow::Error::from(error), "cannot export the summary");
                    return storage_unavailable();
                }
            };
            download(
                crate::followup::summary_csv(&summary, &planned, &filter),
                "text/csv; charset=utf-8",
                "attachment",
                "uppfoljning.csv",
                false,
            )
        }
        Err(error) => {
            tracing::error!(error = ?anyhow::Error::from(error), "cannot export the summary");
            storage_unavailable()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_html_report_policy_allows_exactly_its_stylesheet() {
        let policy = REPORT_HTML_POLICY.to_str().unwrap();
        assert!(policy.starts_with("default-src 'none'; style-src 'sha256-"));
        assert!(!policy.contains("unsafe"));
    }
}
