//! Planned maintenance on the dashboard's pages (under the dashboard link and single
//! sign-on alike): the form that plans a window (`…/maintenance/new`), one window's page
//! with its actions (`…/maintenance/{window_id}`: move, call off, end now), and the
//! dashboard's list of windows. Each POST needs the page's CSRF token, calls one action
//! of `crate::maintenance_actions` and answers 303 to the review page of the draft it
//! made (or back to the window when it made none); a refusal shows the form again with
//! the errors at their fields (the review page's pattern, `review::FieldError`) and every
//! typed value kept. Times are typed and shown in Swedish time.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use minijinja::context;
use serde::Deserialize;

use super::review::{FieldError, LEVELS, channel_label, error_summary, field_errors_map};
use super::{OperatorForm, OperatorSession, csrf_refused, storage_unavailable};
use crate::classify::Level;
use crate::http::AppState;
use crate::http::pages::{
    incident_number, message_page, page, render, security_headers, stockholm,
};
use crate::maintenance::{
    DEFAULT_ADVICE, MAX_TEXT_CHARS, MAX_TITLE_CHARS, PlanProblem, Step, Window, WindowPlan,
    WindowScope, WindowState,
};
use crate::maintenance_actions::{
    MaintenanceError, cancel_window, end_window, move_window, plan_window,
};
use crate::notice::{format_swedish_time, kind_label};

/// How long a finished window stays on the dashboard.
const RECENT: SignedDuration = SignedDuration::from_hours(7 * 24);

/// The form's fields in the order the page shows them (and the error summary lists them).
const FIELD_ORDER: [&str; 10] = [
    "",
    "title",
    "scope",
    "starts_at",
    "ends_at",
    "impact",
    "advice",
    "level",
    "series",
    "reason",
];

// ---------------------------------------------------------------------------------------
// Reading the forms.

/// A posted form as its (name, value) pairs: the scope's checkboxes repeat their names,
/// which serde_urlencoded reads only this way.
type Pairs = Vec<(String, String)>;

fn value<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

fn values(pairs: &[(String, String)], name: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .collect()
}

/// A date and a time of day as typed (`date` and `time` inputs), kept to show again.
#[derive(Debug, Default, Clone)]
struct LocalTime {
    date: String,
    time: String,
}

impl LocalTime {
    fn from_pairs(pairs: &[(String, String)], field: &str) -> LocalTime {
        LocalTime {
            date: value(pairs, &format!("{field}_date")).trim().to_owned(),
            time: value(pairs, &format!("{field}_time")).trim().to_owned(),
        }
    }

    fn of(timestamp: Timestamp) -> LocalTime {
        let local = timestamp.to_zoned(stockholm());
        LocalTime {
            date: local.strftime("%Y-%m-%d").to_string(),
            time: local.strftime("%H:%M").to_string(),
        }
    }

    /// The moment in Swedish time (`2026-12-01` and `09:00`; `9.00` too), or the problem
    /// at the field, naming `what` ("starten", "slutet").
    fn parse(&self, field: &'static str, what: &str) -> Result<Timestamp, FieldError> {
        if self.date.is_empty() || self.time.is_empty() {
            return Err(FieldError::new(
                field,
                format!("Ange datum och klockslag för {what}"),
            ));
        }
        parse_local(&self.date, &self.time).ok_or_else(|| {
            FieldError::new(
                field,
                format!("Ange {what} som datum ÅÅÅÅ-MM-DD och klockslag TT:MM (svensk tid)"),
            )
        })
    }
}

/// A civil date and time of day in Europe/Stockholm as a moment. A time that does not
/// exist (the hour skipped in spring) is taken as the next one that does, one that
/// occurs twice as the first (jiff's compatible disambiguation).
fn parse_local(date: &str, time: &str) -> Option<Timestamp> {
    let date: jiff::civil::Date = date.trim().parse().ok()?;
    let time = time.trim().replace('.', ":");
    let time = if time.len() == 4 && time.as_bytes()[1] == b':' {
        format!("0{time}")
    } else {
        time
    };
    let time: jiff::civil::Time = time.parse().ok()?;
    date.to_datetime(time)
        .to_zoned(stockholm())
        .ok()
        .map(|zoned| zoned.timestamp())
}

/// What the planning form showed or posted.
#[derive(Debug, Clone)]
struct PlanForm {
    title: String,
    whole_service: bool,
    subregions: Vec<String>,
    actors: Vec<String>,
    starts_at: LocalTime,
    ends_at: LocalTime,
    impact: String,
    advice: String,
    level: String,
    /// `auto` or `review`.
    series: String,
}

impl Default for PlanForm {
    fn default() -> PlanForm {
        PlanForm {
            title: String::new(),
            whole_service: false,
            subregions: Vec::new(),
            actors: Vec::new(),
            starts_at: LocalTime::default(),
            ends_at: LocalTime::default(),
            impact: String::new(),
            advice: DEFAULT_ADVICE.to_owned(),
            level: "1".to_owned(),
            series: "review".to_owned(),
        }
    }
}

impl PlanForm {
    fn from_pairs(pairs: &[(String, String)]) -> PlanForm {
        PlanForm {
            title: value(pairs, "title").to_owned(),
            whole_service: !value(pairs, "whole_service").is_empty(),
            subregions: values(pairs, "subregions"),
            actors: values(pairs, "actors"),
            starts_at: LocalTime::from_pairs(pairs, "starts_at"),
            ends_at: LocalTime::from_pairs(pairs, "ends_at"),
            impact: value(pairs, "impact").to_owned(),
            advice: value(pairs, "advice").to_owned(),
            level: value(pairs, "level").to_owned(),
            series: value(pairs, "series").to_owned(),
        }
    }

    /// The plan the form gives, or every problem of its own fields; the plan's rules
    /// (`WindowPlan::checked`) come after.
    fn plan(&self) -> Result<WindowPlan, Vec<FieldError>> {
        let mut errors = Vec::new();
        let starts_at = self.starts_at.parse("starts_at", "starten");
        let ends_at = self.ends_at.parse("ends_at", "slutet");
        let level = self
            .level
            .parse::<u8>()
            .ok()
            .and_then(Level::from_number)
            .ok_or_else(|| FieldError::new("level", "Välj nivå enligt aktivitetsplanen"));
        let auto_series = match self.series.as_str() {
            "auto" => Ok(true),
            "review" => Ok(false),
            _ => Err(FieldError::new(
                "series",
                "Välj om påminnelser, start och slut ska skickas automatiskt eller granskas",
            )),
        };
        let plan = WindowPlan {
            title: self.title.clone(),
            scope: WindowScope {
                whole_service: self.whole_service,
                actors: self.actors.clone(),
                subregions: self.subregions.clone(),
            },
            starts_at: *starts_at.as_ref().unwrap_or(&Timestamp::UNIX_EPOCH),
            ends_at: *ends_at.as_ref().unwrap_or(&Timestamp::UNIX_EPOCH),
            impact: self.impact.clone(),
            advice: self.advice.clone(),
            level: *level.as_ref().unwrap_or(&Level::One),
            auto_series: *auto_series.as_ref().unwrap_or(&false),
        };
        for result in [
            starts_at.map(|_| ()),
            ends_at.map(|_| ()),
            level.map(|_| ()),
            auto_series.map(|_| ()),
        ] {
            if let Err(error) = result {
                errors.push(error);
            }
        }
        if errors.is_empty() {
            Ok(plan)
        } else {
            Err(errors)
        }
    }
}

/// The plan's problems as the form's, in the form's order; times the form could not
/// read (`unread`) are not judged again.
fn with_plan_problems(
    mut errors: Vec<FieldError>,
    problems: Vec<PlanProblem>,
    unread: bool,
) -> Vec<FieldError> {
    errors.extend(
        problems
            .into_iter()
            .filter(|problem| !(unread && matches!(problem.field, "starts_at" | "ends_at")))
            .map(|problem| FieldError::new(problem.field, problem.message)),
    );
    errors.sort_by_key(|error| {
        FIELD_ORDER
            .iter()
            .position(|field| *field == error.field)
            .unwrap_or(FIELD_ORDER.len())
    });
    errors
}

// ---------------------------------------------------------------------------------------
// Planning a window.

pub(super) async fn new_page(session: OperatorSession, State(state): State<AppState>) -> Response {
    show_form(&state, &session, PlanForm::default(), Vec::new())
}

pub(super) async fn new_submit(
    session: OperatorSession,
    State(state): State<AppState>,
    OperatorForm(pairs): OperatorForm<Pairs>,
) -> Response {
    let (state, session) = (&state, &session);
    if !session.check_csrf(state, value(&pairs, "csrf")) {
        return csrf_refused();
    }
    let form = PlanForm::from_pairs(&pairs);
    let now = Timestamp::now();
    let plan = match form.plan() {
        Ok(plan) => plan,
        Err(errors) => {
            // Also the other fields' problems, so that one round shows them all.
            let unread = errors
                .iter()
                .any(|error| matches!(error.field, "starts_at" | "ends_at"));
            let problems = form
                .plan_with_placeholder_times(now)
                .checked(now, &state.config.inventory)
                .err()
                .unwrap_or_default();
            let errors = with_plan_problems(errors, problems, unread);
            return show_form(state, session, form, errors);
        }
    };
    match plan_window(
        &state.storage,
        &state.config,
        &state.renderer,
        plan,
        &session.operator.name,
        now,
    )
    .await
    {
        Ok((window_id, draft_id)) => {
            tracing::info!(window_id, draft_id, operator = %session.operator.name, "maintenance window planned on the dashboard");
            see_other(&session.review_path(draft_id))
        }
        Err(MaintenanceError::Plan(problems)) => {
            let errors = with_plan_problems(Vec::new(), problems, false);
            show_form(state, session, form, errors)
        }
        Err(MaintenanceError::Storage(error)) => {
            tracing::error!(error = ?anyhow::Error::from(error), "maintenance window not planned");
            storage_unavailable()
        }
        Err(error) => show_form(
            state,
            session,
            form,
            vec![FieldError::new("", error.to_string())],
        ),
    }
}

impl PlanForm {
    /// The plan with times that judge nothing (an hour from now, for an hour) where the
    /// form's could not be read, to find the other fields' problems.
    fn plan_with_placeholder_times(&self, now: Timestamp) -> WindowPlan {
        let starts_at = self
            .starts_at
            .parse("starts_at", "")
            .unwrap_or_else(|_| now + SignedDuration::from_hours(1));
        let ends_at = self
            .ends_at
            .parse("ends_at", "")
            .unwrap_or_else(|_| starts_at + SignedDuration::from_hours(1));
        WindowPlan {
            title: self.title.clone(),
            scope: WindowScope {
                whole_service: self.whole_service,
                actors: self.actors.clone(),
                subregions: self.subregions.clone(),
            },
            starts_at,
            ends_at,
            impact: self.impact.clone(),
            advice: self.advice.clone(),
            level: Level::One,
            auto_series: false,
        }
    }
}

/// The planning form, empty or with the errors of a posted one (422).
fn show_form(
    state: &AppState,
    session: &OperatorSession,
    form: PlanForm,
    errors: Vec<FieldError>,
) -> Response {
    let code = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let inventory = &state.config.inventory;
    let subregions: Vec<_> = inventory
        .subregions()
        .iter()
        .map(|subregion| {
            let mut n_chosen = 0;
            let actors: Vec<_> = inventory
                .actors_in(&subregion.id)
                .map(|actor| {
                    let checked = form.actors.contains(&actor.id);
                    n_chosen += usize::from(checked);
                    context! { id => actor.id, name => actor.name, checked => checked }
                })
                .collect();
            let whole = form.subregions.contains(&subregion.id);
            context! {
                id => subregion.id,
                name => subregion.name,
                checked => whole,
                n_chosen => n_chosen,
                open => whole || n_chosen > 0,
                actors => actors,
            }
        })
        .collect();
    let plan = &state.config.plan;
    let levels: Vec<_> = LEVELS
        .iter()
        .map(|(number, label)| {
            let channels: Vec<String> = plan
                .channels_for(*number)
                .iter()
                .map(|name| channel_label(state, name))
                .collect();
            context! {
                number => number,
                label => label,
                channels => channels.join(", "),
                checked => form.level == number.to_string(),
            }
        })
        .collect();
    let dashboard = session.dashboard_path();
    page(
        code,
        render(
            "maintenance_new.html",
            context! {
                operator_name => session.operator.name,
                errors => error_summary(&errors, &[]),
                field_errors => field_errors_map(&errors),
                csrf => session.csrf(state),
                action_url => format!("{dashboard}/maintenance/new"),
                dashboard_url => dashboard,
                title => form.title,
                max_title => MAX_TITLE_CHARS,
                max_text => MAX_TEXT_CHARS,
                whole_service => form.whole_service,
                subregions => subregions,
                starts_at => context! { date => form.starts_at.date, time => form.starts_at.time },
                ends_at => context! { date => form.ends_at.date, time => form.ends_at.time },
                impact => form.impact,
                advice => form.advice,
                levels => levels,
                series => form.series,
            },
        ),
    )
}

// ---------------------------------------------------------------------------------------
// One window.

/// The path of a window's page (besides the dashboard link's token).
#[derive(Debug, Deserialize)]
pub(super) struct WindowPath {
    window_id: String,
}

/// The window page's query: what was just done (after a redirect).
#[derive(Debug, Default, Deserialize)]
pub(super) struct WindowQuery {
    andrat: Option<String>,
}

/// What the window page's forms showed or posted.
#[derive(Debug, Default, Clone)]
struct WindowForms {
    starts_at: Option<LocalTime>,
    ends_at: Option<LocalTime>,
    reason: String,
}

pub(super) async fn window_page(
    session: OperatorSession,
    State(state): State<AppState>,
    Path(path): Path<WindowPath>,
    OperatorForm(query): OperatorForm<WindowQuery>,
) -> Response {
    let Some(window_id) = incident_number(&path.window_id) else {
        return window_not_found(&session);
    };
    let flash = match query.andrat.as_deref() {
        Some("installt") => {
            Some("Underhållet är inställt. Det var inte annonserat, så inget meddelande skickas.")
        }
        _ => None,
    };
    show_window(
        &state,
        &session,
        window_id,
        WindowForms::default(),
        Vec::new(),
        flash,
        StatusCode::OK,
    )
    .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowAction {
    Move,
    Cancel,
    End,
}

pub(super) async fn window_action(
    session: OperatorSession,
    State(state): State<AppState>,
    Path(path): Path<WindowPath>,
    OperatorForm(pairs): OperatorForm<Pairs>,
) -> Response {
    let (state, session) = (&state, &session);
    let Some(window_id) = incident_number(&path.window_id) else {
        return window_not_found(session);
    };
    if !session.check_csrf(state, value(&pairs, "csrf")) {
        return csrf_refused();
    }
    let action = match value(&pairs, "action") {
        "move" => WindowAction::Move,
        "cancel" => WindowAction::Cancel,
        "end" => WindowAction::End,
        _ => {
            return show_window(
                state,
                session,
                window_id,
                WindowForms::default(),
                vec![FieldError::new("", "Okänd åtgärd.")],
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let forms = WindowForms {
        starts_at: Some(LocalTime::from_pairs(&pairs, "starts_at")),
        ends_at: Some(LocalTime::from_pairs(&pairs, "ends_at")),
        reason: value(&pairs, "reason").to_owned(),
    }
    .only_for(action);
    let (operator, now) = (session.operator.name.as_str(), Timestamp::now());
    let (storage, config, renderer) = (&state.storage, &state.config, &state.renderer);
    let result = match action {
        WindowAction::Move => {
            let starts_at = forms
                .starts_at
                .clone()
                .unwrap_or_default()
                .parse("starts_at", "starten");
            let ends_at = forms
                .ends_at
                .clone()
                .unwrap_or_default()
                .parse("ends_at", "slutet");
            match (starts_at, ends_at) {
                (Ok(starts_at), Ok(ends_at)) => move_window(
                    storage, config, renderer, window_id, starts_at, ends_at, operator, now,
                )
                .await
                .map(Some),
                (starts_at, ends_at) => {
                    let errors = [starts_at.err(), ends_at.err()].into_iter().flatten();
                    return show_window(
                        state,
                        session,
                        window_id,
                        forms,
                        errors.collect(),
                        None,
                        StatusCode::UNPROCESSABLE_ENTITY,
                    )
                    .await;
                }
            }
        }
        WindowAction::Cancel => {
            cancel_window(
                storage,
                config,
                renderer,
                window_id,
                &forms.reason,
                operator,
                now,
            )
            .await
        }
        WindowAction::End => end_window(storage, config, renderer, window_id, operator, now)
            .await
            .map(Some),
    };
    match result {
        Ok(Some(draft_id)) => see_other(&session.review_path(draft_id)),
        Ok(None) => see_other(&format!(
            "{}/maintenance/{window_id}?andrat=installt",
            session.dashboard_path()
        )),
        Err(MaintenanceError::Storage(error)) => {
            tracing::error!(error = ?anyhow::Error::from(error), "maintenance window not changed");
            storage_unavailable()
        }
        Err(MaintenanceError::NotFound) => window_not_found(session),
        Err(error) => {
            let (code, errors) = match error {
                MaintenanceError::Plan(problems) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    with_plan_problems(Vec::new(), problems, false),
                ),
                MaintenanceError::ReasonRequired => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    vec![FieldError::new("reason", error.to_string())],
                ),
                MaintenanceError::Final(_) | MaintenanceError::Overran => (
                    StatusCode::CONFLICT,
                    vec![FieldError::new("", error.to_string())],
                ),
                error => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    vec![FieldError::new("", error.to_string())],
                ),
            };
            show_window(state, session, window_id, forms, errors, None, code).await
        }
    }
}

impl WindowForms {
    /// Only the posted form's values are kept; the others show the window as it is.
    fn only_for(self, action: WindowAction) -> WindowForms {
        match action {
            WindowAction::Move => WindowForms {
                reason: String::new(),
                ..self
            },
            WindowAction::Cancel => WindowForms {
                reason: self.reason,
                ..WindowForms::default()
            },
            WindowAction::End => WindowForms::default(),
        }
    }
}

async fn show_window(
    state: &AppState,
    session: &OperatorSession,
    window_id: i64,
    forms: WindowForms,
    errors: Vec<FieldError>,
    flash: Option<&str>,
    code: StatusCode,
) -> Response {
    let window = match state.storage.maintenance_window(window_id).await {
        Ok(Some(window)) => window,
        Ok(None) => return window_not_found(session),
        Err(error) => {
            tracing::error!(error = ?anyhow::Error::from(error), "cannot read a maintenance window");
            return storage_unavailable();
        }
    };
    let alerts = match state.storage.maintenance_alerts(window_id).await {
        Ok(alerts) => alerts,
        Err(error) => {
            tracing::error!(error = ?anyhow::Error::from(error), "cannot read a maintenance window's alerts");
            return storage_unavailable();
        }
    };
    let pending = match state.storage.pending_drafts_overview().await {
        Ok(pending) => pending
            .into_iter()
            .find(|draft| draft.incident_id == window_id),
        Err(_) => return storage_unavailable(),
    };
    let incidents = &state.config.incidents;
    let alerts: Vec<_> = alerts
        .iter()
        .map(|alert| {
            let label = |name: &str| alert.labels.get(name).unwrap_or_default().to_owned();
            context! {
                name => label("alertname"),
                actor => label(&incidents.actor_label),
                subregion => label(&incidents.subregion_label),
                status => match alert.status.as_str() {
                    "firing" => "pågår",
                    _ => "åtgärdat",
                },
                first_seen => format_swedish_time(alert.first_seen),
                last_seen => format_swedish_time(alert.last_seen),
            }
        })
        .collect();
    let state_now = window.state;
    let plan = &window.plan;
    let dashboard = session.dashboard_path();
    let starts_at = forms
        .starts_at
        .unwrap_or_else(|| LocalTime::of(plan.starts_at));
    let ends_at = forms.ends_at.unwrap_or_else(|| LocalTime::of(plan.ends_at));
    page(
        code,
        render(
            "maintenance_window.html",
            context! {
                operator_name => session.operator.name,
                flash => flash,
                errors => error_summary(&errors, &[]),
                field_errors => field_errors_map(&errors),
                id => window.incident_id,
                title => plan.title,
                state_label => state_now.label(),
                final => state_now.is_final(),
                starts => format_swedish_time(plan.starts_at),
                ends => format_swedish_time(plan.ends_at),
                scope => scope_lines(state, &plan.scope),
                impact => plan.impact,
                advice => plan.advice,
                level => plan.level.as_number(),
                series => series_text(&window),
                created => format!("{} av {}", format_swedish_time(window.created_at), window.created_by),
                announced => window.announced_at.map(format_swedish_time),
                ended => window.ended_at.map(format_swedish_time),
                steps => steps_done(&window.steps_done),
                silences => window.silence_ids,
                alerts => alerts,
                followup_url => format!("{dashboard}/followup/{window_id}"),
                pending => pending.map(|draft| context! {
                    kind => kind_label(draft.kind),
                    url => session.review_url(state, draft.draft_id),
                }),
                can_move => !state_now.is_final() && state_now != WindowState::Overran,
                can_cancel => !state_now.is_final(),
                can_end => !state_now.is_final() && state_now != WindowState::Planned,
                starts_at => context! { date => starts_at.date, time => starts_at.time },
                ends_at => context! { date => ends_at.date, time => ends_at.time },
                reason => forms.reason,
                csrf => session.csrf(state),
                action_url => format!("{dashboard}/maintenance/{window_id}"),
                dashboard_url => dashboard,
            },
        ),
    )
}

/// Who the window concerns, one line per part, in Swedish.
fn scope_lines(state: &AppState, scope: &WindowScope) -> Vec<String> {
    if scope.whole_service {
        return vec!["Hela tjänsten".to_owned()];
    }
    let inventory = &state.config.inventory;
    let subregions = scope.subregions.iter().map(|id| {
        inventory.subregion(id).map_or_else(
            || id.clone(),
            |subregion| format!("Hela {}", subregion.name),
        )
    });
    let actors = scope.actors.iter().map(|id| match inventory.actor(id) {
        Some(actor) => match inventory.subregion(&actor.subregion_id) {
            Some(subregion) => format!("{} ({})", actor.name, subregion.name),
            None => actor.name.clone(),
        },
        None => id.clone(),
    });
    subregions.chain(actors).collect()
}

/// The scope in one short phrase, for the dashboard's list.
fn scope_phrase(state: &AppState, scope: &WindowScope) -> String {
    let lines = scope_lines(state, scope);
    match lines.len() {
        0..=3 => lines.join(", "),
        n => format!("{} och {} till", lines[..2].join(", "), n - 2),
    }
}

fn series_text(window: &Window) -> String {
    let mut text = if window.plan.auto_series {
        "Påminnelser, start och slut skickas automatiskt med samma val som annonsen.".to_owned()
    } else {
        "Varje meddelande (påminnelser, start och slut) granskas innan det skickas.".to_owned()
    };
    if let Some(approval) = &window.approval {
        text.push_str(&format!(
            " Godkänt av {} med annonsen (nivå {}).",
            approval.approved_by,
            approval.level.as_number()
        ));
    }
    text
}

/// The steps of the series made so far, as the log names them.
fn steps_done(keys: &BTreeSet<String>) -> Vec<String> {
    keys.iter()
        .map(|key| {
            let step = match key.as_str() {
                "announcement" => Some(Step::Announcement),
                "started" => Some(Step::Started),
                "completed" => Some(Step::Completed),
                "overran" => Some(Step::Overran),
                "cancelled" => Some(Step::Cancelled),
                "moved" => Some(Step::Moved {
                    previous_starts_at: Timestamp::UNIX_EPOCH,
                    previous_ends_at: Timestamp::UNIX_EPOCH,
                }),
                other => other
                    .strip_prefix("reminder:")
                    .and_then(|minutes| minutes.parse().ok())
                    .map(|before_minutes| Step::Reminder { before_minutes }),
            };
            step.map_or_else(|| key.clone(), |step| step.label())
        })
        .collect()
}

fn window_not_found(session: &OperatorSession) -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "Underhållet finns inte",
        &[],
        Some((&session.dashboard_path(), "Till översikten")),
    )
}

/// Post, redirect, get: a reload does not post again.
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    security_headers(response.headers_mut());
    response
}

// ---------------------------------------------------------------------------------------
// The dashboard's list.

/// The dashboard's windows: those not over, and those over in the last 7 days, by start;
/// `None` when they cannot be read (the dashboard still shows the rest).
pub(super) async fn dashboard_windows(
    state: &AppState,
    session: &OperatorSession,
) -> Option<Vec<minijinja::Value>> {
    let since = Timestamp::now() - RECENT;
    let windows = match state.storage.maintenance_windows(since).await {
        Ok(windows) => windows,
        Err(error) => {
            tracing::warn!(error = ?anyhow::Error::from(error), "cannot read the maintenance windows for the dashboard");
            return None;
        }
    };
    let pending = state
        .storage
        .pending_drafts_overview()
        .await
        .unwrap_or_default();
    Some(
        windows
            .iter()
            .map(|window| {
                let draft = pending
                    .iter()
                    .find(|draft| draft.incident_id == window.incident_id);
                context! {
                    id => window.incident_id,
                    title => window.plan.title,
                    when => format!(
                        "{} – {}",
                        format_swedish_time(window.plan.starts_at),
                        format_swedish_time(window.plan.ends_at)
                    ),
                    who => scope_phrase(state, &window.plan.scope),
                    state_label => window.state.label(),
                    review_link => draft.map(|draft| session.review_url(state, draft.draft_id)),
                    pending => draft.map(|draft| kind_label(draft.kind)),
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swedish_dates_and_times_read_in_stockholm_time() {
        let winter = parse_local("2026-12-01", "09:00").unwrap();
        assert_eq!(winter.to_string(), "2026-12-01T08:00:00Z");
        let summer = parse_local("2026-06-01", "9.30").unwrap();
        assert_eq!(summer.to_string(), "2026-06-01T07:30:00Z");
        assert_eq!(parse_local("2026-13-01", "09:00"), None);
        assert_eq!(parse_local("2026-12-01", "nio"), None);
    }

    #[test]
    fn the_form_names_each_unreadable_field_and_keeps_the_rest() {
        let pairs: Vec<(String, String)> = [
            ("title", "Uppgradering"),
            ("subregions", "fyrbodal"),
            ("subregions", " "),
            ("actors", "kommun-boras"),
            ("starts_at_date", "2026-12-01"),
            ("starts_at_time", ""),
            ("ends_at_date", "1 december"),
            ("ends_at_time", "10:00"),
            ("level", "4"),
            ("series", "auto"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
        let form = PlanForm::from_pairs(&pairs);
        assert_eq!(form.subregions, ["fyrbodal"]);
        assert_eq!(form.actors, ["kommun-boras"]);
        let errors = form.plan().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|error| error.field).collect();
        assert_eq!(fields, ["starts_at", "ends_at", "level"]);
    }

    #[test]
    fn plan_problems_follow_the_form_order() {
        let errors = with_plan_problems(
            vec![FieldError::new("starts_at", "x")],
            vec![
                PlanProblem {
                    field: "ends_at",
                    message: "Slutet måste vara efter starten".to_owned(),
                },
                PlanProblem {
                    field: "title",
                    message: "Skriv en rubrik för underhållet".to_owned(),
                },
            ],
            true,
        );
        let fields: Vec<_> = errors.iter().map(|error| error.field).collect();
        assert_eq!(fields, ["title", "starts_at"]);
    }
}
