//! `/api/maintenance`: planned maintenance windows for machines and scripts (a change
//! system, a deployment pipeline), with the bearer token `maintenance.api_token`. Off
//! (404) without one. A window planned here waits for review like one planned on the
//! dashboard: its announcement is a draft the on-duty operators are asked to publish.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::maintenance::{PlanProblem, PlanRequest, Window, WindowScope};
use crate::maintenance_actions::{self as actions, MaintenanceError};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/maintenance", get(list).post(plan))
        .route("/api/maintenance/{id}", get(show))
        .route("/api/maintenance/{id}/move", post(move_window))
        .route("/api/maintenance/{id}/cancel", post(cancel))
        .route("/api/maintenance/{id}/end", post(end))
}

/// A window as the API shows it.
#[derive(Debug, Serialize)]
struct WindowView {
    id: i64,
    title: String,
    state: &'static str,
    starts_at: Timestamp,
    ends_at: Timestamp,
    scope: WindowScope,
    level: u8,
    review_each: bool,
    sequence: i64,
    steps_done: Vec<String>,
    silence_ids: Vec<String>,
    created_by: String,
    created_at: Timestamp,
    announced_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
}

impl From<&Window> for WindowView {
    fn from(window: &Window) -> WindowView {
        WindowView {
            id: window.incident_id,
            title: window.plan.title.clone(),
            state: window.state.as_str(),
            starts_at: window.plan.starts_at,
            ends_at: window.plan.ends_at,
            scope: window.plan.scope.clone(),
            level: window.plan.level.as_number(),
            review_each: !window.plan.auto_series,
            sequence: window.sequence,
            steps_done: window.steps_done.iter().cloned().collect(),
            silence_ids: window.silence_ids.clone(),
            created_by: window.created_by.clone(),
            created_at: window.created_at,
            announced_at: window.announced_at,
            ended_at: window.ended_at,
        }
    }
}

#[derive(Debug, Serialize)]
struct Problem {
    field: &'static str,
    message: String,
}

/// The API's own answers: the JSON error shape of [`super::ApiError`] plus, for a plan
/// with problems, each at its field.
enum Failure {
    Off,
    Unauthorized,
    Invalid(String, Vec<Problem>),
    NotFound,
    Conflict(String),
    Unavailable,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, error, detail, problems) = match self {
            Failure::Off => return StatusCode::NOT_FOUND.into_response(),
            Failure::Unauthorized => return super::ApiError::Unauthorized.into_response(),
            Failure::Unavailable => return super::ApiError::Unavailable.into_response(),
            Failure::Invalid(detail, problems) => {
                (StatusCode::BAD_REQUEST, "invalid window", detail, problems)
            }
            Failure::NotFound => (
                StatusCode::NOT_FOUND,
                "not found",
                "no maintenance window has that id".to_owned(),
                Vec::new(),
            ),
            Failure::Conflict(detail) => (StatusCode::CONFLICT, "conflict", detail, Vec::new()),
        };
        (
            status,
            Json(serde_json::json!({"error": error, "detail": detail, "problems": problems})),
        )
            .into_response()
    }
}

impl From<MaintenanceError> for Failure {
    fn from(error: MaintenanceError) -> Failure {
        match error {
            MaintenanceError::Plan(problems) => Failure::Invalid(
                "the window has problems; see `problems`".to_owned(),
                problems.into_iter().map(problem).collect(),
            ),
            MaintenanceError::NotFound => Failure::NotFound,
            MaintenanceError::ReasonRequired => Failure::Invalid(
                error.to_string(),
                vec![Problem {
                    field: "reason",
                    message: error.to_string(),
                }],
            ),
            MaintenanceError::Final(_) | MaintenanceError::Overran => {
                Failure::Conflict(error.to_string())
            }
            MaintenanceError::Storage(error) => {
                tracing::error!(error = ?anyhow::Error::from(error), "maintenance API: storage");
                Failure::Unavailable
            }
            MaintenanceError::Render(detail) => {
                tracing::error!(%detail, "maintenance API: a notice could not be rendered");
                Failure::Unavailable
            }
        }
    }
}

fn problem(problem: PlanProblem) -> Problem {
    Problem {
        field: problem.field,
        message: problem.message,
    }
}

/// The API is on, and the request carries its token.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Failure> {
    let Some(token) = &state.config.maintenance.api_token else {
        return Err(Failure::Off);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credentials)| credentials.trim())
        .unwrap_or("");
    if super::webhook::equal_in_constant_time(given.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(Failure::Unauthorized)
    }
}

/// The body as JSON of `T`, or a 400 naming what is wrong.
fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|error| {
        Failure::Invalid(
            format!("the body is not the expected JSON: {error}"),
            Vec::new(),
        )
    })
}

/// Who asks: `requested_by`, required.
fn requester(requested_by: Option<String>) -> Result<String, Failure> {
    let name = crate::swedish::single_line(requested_by.as_deref().unwrap_or(""), 200);
    if name.is_empty() {
        let message = "Ange vem som begär ändringen (requested_by)".to_owned();
        return Err(Failure::Invalid(
            message.clone(),
            vec![Problem {
                field: "requested_by",
                message,
            }],
        ));
    }
    Ok(name)
}

async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Failure> {
    authorize(&state, &headers)?;
    let since = Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24 * 30))
        .unwrap_or(Timestamp::MIN);
    let windows = state
        .storage
        .maintenance_windows(since)
        .await
        .map_err(MaintenanceError::Storage)?;
    let views: Vec<WindowView> = windows.iter().map(WindowView::from).collect();
    Ok(Json(serde_json::json!({ "windows": views })).into_response())
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    authorize(&state, &headers)?;
    let window = state
        .storage
        .maintenance_window(id)
        .await
        .map_err(MaintenanceError::Storage)?
        .ok_or(Failure::NotFound)?;
    Ok(Json(WindowView::from(&window)).into_response())
}

async fn plan(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, Failure> {
    authorize(&state, &headers)?;
    let request: PlanRequest = body(&bytes)?;
    let by = requester(request.requested_by.clone())?;
    let plan = request.into_plan().map_err(MaintenanceError::Plan)?;
    let (id, draft_id) = actions::plan_window(
        &state.storage,
        &state.config,
        &state.renderer,
        plan,
        &by,
        Timestamp::now(),
    )
    .await?;
    let window = state
        .storage
        .maintenance_window(id)
        .await
        .map_err(MaintenanceError::Storage)?
        .ok_or(Failure::NotFound)?;
    state.mail_wake.notify_one();
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/maintenance/{id}"))],
        Json(serde_json::json!({
            "window": WindowView::from(&window),
            "announcement_draft_id": draft_id,
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveRequest {
    starts_at: String,
    ends_at: String,
    requested_by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    reason: String,
    requested_by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndRequest {
    requested_by: Option<String>,
}

fn drafted(draft_id: Option<i64>) -> Response {
    Json(serde_json::json!({ "draft_id": draft_id })).into_response()
}

async fn move_window(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: axum::body::Bytes,
) -> Result<Response, Failure> {
    authorize(&state, &headers)?;
    let request: MoveRequest = body(&bytes)?;
    let by = requester(request.requested_by)?;
    let mut problems = Vec::new();
    let starts_at = crate::maintenance::parse_time(&request.starts_at).map_err(|message| {
        problems.push(Problem {
            field: "starts_at",
            message,
        })
    });
    let ends_at = crate::maintenance::parse_time(&request.ends_at).map_err(|message| {
        problems.push(Problem {
            field: "ends_at",
            message,
        })
    });
    let (Ok(starts_at), Ok(ends_at)) = (starts_at, ends_at) else {
        return Err(Failure::Invalid(
            "the times have problems; see `problems`".to_owned(),
            problems,
        ));
    };
    let draft_id = actions::move_window(
        &state.storage,
        &state.config,
        &state.renderer,
        id,
        starts_at,
        ends_at,
        &by,
        Timestamp::now(),
    )
    .await?;
    state.mail_wake.notify_one();
    Ok(drafted(Some(draft_id)))
}

async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: axum::body::Bytes,
) -> Result<Response, Failure> {
    authorize(&state, &headers)?;
    let request: CancelRequest = body(&bytes)?;
    let by = requester(request.requested_by)?;
    let draft_id = actions::cancel_window(
        &state.storage,
        &state.config,
        &state.renderer,
        id,
        &request.reason,
        &by,
        Timestamp::now(),
    )
    .await?;
    state.mail_wake.notify_one();
    Ok(drafted(draft_id))
}

async fn end(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    bytes: axum::body::Bytes,
) -> Result<Response, Failure> {
    authorize(&state, &headers)?;
    let request: EndRequest = body(&bytes)?;
    let by = requester(request.requested_by)?;
    let draft_id = actions::end_window(
        &state.storage,
        &state.config,
        &state.renderer,
        id,
        &by,
        Timestamp::now(),
    )
    .await?;
    state.mail_wake.notify_one();
    Ok(drafted(Some(draft_id)))
}
