//! The follow-up over HTTP: the public feedback page every notice links to, and the
//! operator pages for an incident's log, notes, evaluation and lessons learned, its report
//! and the list across incidents with its CSV export.
//!
//! Public (no login):
//!
//! - `GET /public/feedback/{incident_id}`: the form (name, organisation, message), in
//!   Swedish, accessible, without JavaScript.
//! - `POST /public/feedback/{incident_id}`: stores the feedback through
//!   [`crate::followup::submit_feedback`] (log entry and email to on-duty operators in the
//!   same transaction), then `303` to `/public/feedback/{incident_id}/tack`. Bodies over
//!   64 KiB get 413 before they are read; every POST takes a token from a per-client rate
//!   limit ([`FeedbackLimiter`]) and gets 429 with `Retry-After` when there is none, with
//!   the form shown again so nothing typed is lost.
//!
//! Operators, under the dashboard's signed link `/ops/d/{token}` (or `/ops/sso/d` behind a
//! single sign-on proxy), with the same CSRF rule as the other operator pages:
//!
//! - `GET  …/followup`: the list with filters (period, level, sub-region, kind);
//!   `…/followup/incidents.csv` and `…/followup/summary.csv` export it.
//! - `GET  …/followup/{incident_id}`: the incident's log, feedback, evaluation and lessons,
//!   and the forms to add to them; `POST` the same path with `action=note` or
//!   `action=lesson`.
//! - `GET  …/followup/{incident_id}/report.md|report.html|report.json`: the report.
//!
//! Everything a person typed is escaped by MiniJinja's HTML auto-escape on these pages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine as _;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jiff::Timestamp;
use minijinja::context;
use sha2::{Digest as _, Sha256};

use super::AppState;
use super::pages::{
    Links, MAX_FORM_BYTES, Session, csrf_refused, message_page, page, parse_local_time, render,
    security_headers, session_from_link, session_from_sso, stockholm, storage_unavailable,
};
use crate::followup::{
    Audience, Feedback, FeedbackProblem, FollowupError, IncidentFilter, IncidentReport, KindFilter,
    LessonKind, MAX_FEEDBACK_MESSAGE_CHARS, MAX_FEEDBACK_NAME_CHARS,
    MAX_FEEDBACK_ORGANISATION_CHARS, MAX_LESSON_CHARS, MAX_NOTE_CHARS, REPORT_STYLESHEET,
    ReportFormat,
};
use crate::notice::format_swedish_time;
use crate::storage::IncidentRecord;
use crate::swedish::format_swedish_duration;

pub fn routes() -> Router<AppState> {
    let limiter = Arc::new(FeedbackLimiter::new());
    Router::new()
        .route(
            "/public/feedback/{incident_id}",
            get(feedback_form).post(feedback_submit),
        )
        .route("/public/feedback/{incident_id}/tack", get(feedback_thanks))
        .route("/ops/d/{token}/followup", get(list_by_link))
        .route(
            "/ops/d/{token}/followup/incidents.csv",
            get(incidents_csv_by_link),
        )
        .route(
            "/ops/d/{token}/followup/summary.csv",
            get(summary_csv_by_link),
        )
        .route(
            "/ops/d/{token}/followup/{incident_id}",
            get(incident_page_by_link).post(incident_action_by_link),
        )
        .route(
            "/ops/d/{token}/followup/{incident_id}/report.md",
            get(report_md_by_link),
        )
        .route(
            "/ops/d/{token}/followup/{incident_id}/report.html",
            get(report_html_by_link),
        )
        .route(
            "/ops/d/{token}/followup/{incident_id}/report.json",
            get(report_json_by_link),
        )
        .route("/ops/sso/d/followup", get(list_by_sso))
        .route(
            "/ops/sso/d/followup/incidents.csv",
            get(incidents_csv_by_sso),
        )
        .route("/ops/sso/d/followup/summary.csv", get(summary_csv_by_sso))
        .route(
            "/ops/sso/d/followup/{incident_id}",
            get(incident_page_by_sso).post(incident_action_by_sso),
        )
        .route(
            "/ops/sso/d/followup/{incident_id}/report.md",
            get(report_md_by_sso),
        )
        .route(
            "/ops/sso/d/followup/{incident_id}/report.html",
            get(report_html_by_sso),
        )
        .route(
            "/ops/sso/d/followup/{incident_id}/report.json",
            get(report_json_by_sso),
        )
        // One limiter per router, so each app (and each test) has its own.
        .route_layer(Extension(limiter))
}

// ---------------------------------------------------------------------------------------
// The per-client rate limit on feedback.

/// Feedback submissions a client may send at once.
const FEEDBACK_BURST: NonZeroU32 = NonZeroU32::new(5).expect("five is not zero");
/// One more submission is allowed every this long.
const FEEDBACK_REPLENISH: Duration = Duration::from_secs(30);
/// How often clients whose bucket is full again are forgotten.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

/// A keyed GCRA limiter (governor) over the client's address. IPv6 clients are keyed by
/// their /64 network, since one host usually has the whole network. The address comes from
/// the connection, never from a header: without a trusted proxy configuration
/// `X-Forwarded-For` is whatever the client wants it to be. When the server runs without
/// connection info, all clients share one bucket ([`FeedbackLimiter::SHARED_KEY`]).
pub struct FeedbackLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    last_forgotten: Mutex<Instant>,
}

impl FeedbackLimiter {
    /// The key used when the connection's address is not known.
    pub const SHARED_KEY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    pub fn new() -> FeedbackLimiter {
        FeedbackLimiter::with_quota(FEEDBACK_REPLENISH, FEEDBACK_BURST)
    }

    /// A limiter allowing `burst` at once and one more every `replenish`, per client.
    pub fn with_quota(replenish: Duration, burst: NonZeroU32) -> FeedbackLimiter {
        let quota = Quota::with_period(replenish)
            .expect("the period is not zero")
            .allow_burst(burst);
        FeedbackLimiter {
            limiter: RateLimiter::keyed(quota),
            last_forgotten: Mutex::new(Instant::now()),
        }
    }

    /// The key for a client address.
    pub fn key(address: Option<IpAddr>) -> IpAddr {
        match address.map(|address| address.to_canonical()) {
            None => FeedbackLimiter::SHARED_KEY,
            Some(IpAddr::V6(v6)) => {
                let network = u128::from(v6) & !((1_u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(network))
            }
            Some(v4) => v4,
        }
    }

    /// Takes a token for `key`, or says how long until the next one.
    pub fn check(&self, key: IpAddr) -> Result<(), Duration> {
        self.forget_idle_clients();
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// How many clients are remembered.
    #[cfg(test)]
    fn n_clients(&self) -> usize {
        self.limiter.len()
    }

    fn forget_idle_clients(&self) {
        let Ok(mut last_forgotten) = self.last_forgotten.try_lock() else {
            return;
        };
        if last_forgotten.elapsed() >= FORGET_IDLE_EVERY {
            *last_forgotten = Instant::now();
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

impl Default for FeedbackLimiter {
    fn default() -> FeedbackLimiter {
        FeedbackLimiter::new()
    }
}

// ---------------------------------------------------------------------------------------
// Pages.

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

fn public_message(status: StatusCode, heading: &str, paragraphs: &[&str]) -> Response {
    page(
        status,
        render(
            "feedback_message.html",
            context! { heading => heading, paragraphs => paragraphs },
        ),
    )
}

/// A path segment that must be an incident number; anything else is "not found".
fn incident_number(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().filter(|number| *number > 0)
}

/// Reads a form body within [`MAX_FORM_BYTES`]: 413 on a declared or actual overflow.
#[allow(clippy::result_large_err)]
async fn read_form(headers: &HeaderMap, body: Body) -> Result<Vec<(String, String)>, Response> {
    let too_large = || {
        page(
            StatusCode::PAYLOAD_TOO_LARGE,
            render(
                "feedback_message.html",
                context! {
                    heading => "För stort formulär",
                    paragraphs => ["Formuläret är större än 64 kB och togs inte emot. Korta texten och försök igen."],
                },
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_FORM_BYTES as u64) {
        return Err(too_large());
    }
    match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(bytes) => Ok(url::form_urlencoded::parse(&bytes).into_owned().collect()),
        Err(error) => {
            let is_limit = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            Err(if is_limit {
                too_large()
            } else {
                public_message(
                    StatusCode::BAD_REQUEST,
                    "Formuläret kom inte fram",
                    &["Anslutningen bröts innan formuläret var mottaget. Försök igen."],
                )
            })
        }
    }
}

fn field<'form>(form: &'form [(String, String)], name: &str) -> &'form str {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or("")
}

// ---------------------------------------------------------------------------------------
// The public feedback page.

/// What the form shows: the incident and what was typed, with any problems.
struct FeedbackFormView<'view> {
    name: &'view str,
    organisation: &'view str,
    message: &'view str,
    problems: &'view [FeedbackProblem],
    error: Option<&'view str>,
}

/// The form for `incident_id`; `incident` describes it when it was read (a refused
/// request is answered without reading it).
fn feedback_page(
    state: &AppState,
    status: StatusCode,
    incident_id: i64,
    incident: Option<&IncidentRecord>,
    view: FeedbackFormView<'_>,
) -> Response {
    let problem = |field: &str| {
        view.problems
            .iter()
            .find(|problem| problem.field == field)
            .map(|problem| problem.message.clone())
    };
    let problems: Vec<_> = view
        .problems
        .iter()
        .map(|problem| context! { field => problem.field, message => problem.message })
        .collect();
    let service = &state.config.notices.service_name;
    page(
        status,
        render(
            "feedback_form.html",
            context! {
                service => service,
                reference => format!("{service}-{incident_id}"),
                incident_id => incident_id,
                drill => incident.is_some_and(|incident| incident.kind == "drill"),
                started => incident.map(|incident| format_swedish_time(incident.incident.started_at)),
                resolved => incident.and_then(|incident| incident.resolved_at).map(format_swedish_time),
                info_address => state.config.notices.info_address,
                name => view.name,
                organisation => view.organisation,
                message => view.message,
                name_problem => problem("name"),
                organisation_problem => problem("organisation"),
                message_problem => problem("message"),
                problems => problems,
                error => view.error,
                max_name => MAX_FEEDBACK_NAME_CHARS,
                max_organisation => MAX_FEEDBACK_ORGANISATION_CHARS,
                max_message => MAX_FEEDBACK_MESSAGE_CHARS,
                max_message_text => crate::followup::swedish_number(MAX_FEEDBACK_MESSAGE_CHARS),
            },
        ),
    )
}

fn incident_not_found() -> Response {
    public_message(
        StatusCode::NOT_FOUND,
        "Incidenten finns inte",
        &["Kontrollera länken i meddelandet om driftstörningen."],
    )
}

fn public_storage_unavailable() -> Response {
    let mut response = public_message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Försök igen om en stund",
        &["Tjänsten kan inte ta emot återkoppling just nu."],
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    response
}

/// The incident feedback may be given about: outages and drills, never the internal
/// monitoring incidents.
async fn public_incident(state: &AppState, incident_id: &str) -> Result<IncidentRecord, Response> {
    let Some(incident_id) = incident_number(incident_id) else {
        return Err(incident_not_found());
    };
    match state.storage.followup_incident(incident_id).await {
        Ok(Some(incident)) if incident.kind != "monitoring" => Ok(incident),
        Ok(_) => Err(incident_not_found()),
        Err(error) => {
            tracing::error!(error = ?anyhow::Error::from(error), "cannot read the incident for the feedback page");
            Err(public_storage_unavailable())
        }
    }
}

async fn feedback_form(State(state): State<AppState>, Path(incident_id): Path<String>) -> Response {
    match public_incident(&state, &incident_id).await {
        Ok(incident) => feedback_page(
            &state,
            StatusCode::OK,
            incident.incident_id,
            Some(&incident),
            FeedbackFormView {
                name: "",
                organisation: "",
                message: "",
                problems: &[],
                error: None,
            },
        ),
        Err(response) => response,
    }
}

async fn feedback_submit(
    State(state): State<AppState>,
    Extension(limiter): Extension<Arc<FeedbackLimiter>>,
    // Present when the server runs with connection info (`App::run` does).
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(incident_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match read_form(&headers, body).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let Some(number) = incident_number(&incident_id) else {
        return incident_not_found();
    };
    let (name, organisation, message) = (
        field(&form, "name"),
        field(&form, "organisation"),
        field(&form, "message"),
    );
    // Every POST takes a token before any database work: a refused flood costs a parse.
    let client = FeedbackLimiter::key(super::client_address(
        &state.config.server.trusted_proxies,
        connection.map(|Extension(ConnectInfo(address))| address.ip()),
        &headers,
    ));
    if let Err(wait) = limiter.check(client) {
        let mut response = feedback_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            number,
            None,
            FeedbackFormView {
                name,
                organisation,
                message,
                problems: &[],
                error: Some(
                    "Många meddelanden har skickats på kort tid. Vänta en stund och skicka igen; det du skrev finns kvar.",
                ),
            },
        );
        let seconds = wait.as_secs().max(1).to_string();
        if let Ok(value) = HeaderValue::from_str(&seconds) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let incident = match public_incident(&state, &incident_id).await {
        Ok(incident) => incident,
        Err(response) => return response,
    };
    let feedback = match Feedback::parse(name, organisation, message) {
        Ok(feedback) => feedback,
        Err(problems) => {
            return feedback_page(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                incident.incident_id,
                Some(&incident),
                FeedbackFormView {
                    name,
                    organisation,
                    message,
                    problems: &problems,
                    error: None,
                },
            );
        }
    };
    match crate::followup::submit_feedback(
        &state.storage,
        &state.config,
        &state.signer,
        incident.incident_id,
        &feedback,
        Timestamp::now(),
    )
    .await
    {
        Ok(_) => {
            state.mail_wake.notify_one();
            let mut response = StatusCode::SEE_OTHER.into_response();
            let location = format!("/public/feedback/{}/tack", incident.incident_id);
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            security_headers(response.headers_mut());
            response
        }
        Err(FollowupError::IncidentNotFound) => incident_not_found(),
        Err(error) => {
            if let FollowupError::Storage(error) = error {
                tracing::error!(error = ?anyhow::Error::from(error), "feedback not stored");
            }
            let mut response = feedback_page(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                incident.incident_id,
                Some(&incident),
                FeedbackFormView {
                    name,
                    organisation,
                    message,
                    problems: &[],
                    error: Some(
                        "Återkopplingen kunde inte sparas just nu. Försök igen om en stund; det du skrev finns kvar.",
                    ),
                },
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            response
        }
    }
}

async fn feedback_thanks(
    State(state): State<AppState>,
    Path(incident_id): Path<String>,
) -> Response {
    match public_incident(&state, &incident_id).await {
        Ok(incident) => {
            let service = &state.config.notices.service_name;
            let thanks = format!(
                "Ditt meddelande om {service}-{} har kommit fram till {service} förvaltning och finns med i uppföljningen av störningen.",
                incident.incident_id
            );
            let address = format!(
                "Under en pågående störning når du också förvaltningen på {}.",
                state.config.notices.info_address
            );
            public_message(
                StatusCode::OK,
                "Tack för din återkoppling",
                &[&thanks, &address],
            )
        }
        Err(response) => response,
    }
}

// ---------------------------------------------------------------------------------------
// Operators: who is asking, through what.

/// The follow-up opens under the dashboard's link only; a review link opens its draft only.
#[allow(clippy::result_large_err)]
fn dashboard_session(state: &AppState, token: &str) -> Result<Session, Response> {
    session_from_link(state, token, Links::DashboardOnly).map(|(session, _)| session)
}

fn operator_not_found(session: &Session) -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "Incidenten finns inte",
        &[],
        Some((&session.dashboard_path(), "Till översikten")),
    )
}

// Each route exists for the link and for single sign-on; these take the session and hand
// over to one function.

macro_rules! by_link_and_sso {
    ($by_link:ident, $by_sso:ident, $inner:ident) => {
        async fn $by_link(
            State(state): State<AppState>,
            Path(token): Path<String>,
            RawQuery(query): RawQuery,
        ) -> Response {
            match dashboard_session(&state, &token) {
                Ok(session) => $inner(&state, &session, query.as_deref().unwrap_or("")).await,
                Err(response) => response,
            }
        }

        async fn $by_sso(
            State(state): State<AppState>,
            headers: HeaderMap,
            RawQuery(query): RawQuery,
        ) -> Response {
            match session_from_sso(&state, &headers) {
                Ok(session) => $inner(&state, &session, query.as_deref().unwrap_or("")).await,
                Err(response) => response,
            }
        }
    };
}

macro_rules! incident_by_link_and_sso {
    ($by_link:ident, $by_sso:ident, $inner:ident) => {
        async fn $by_link(
            State(state): State<AppState>,
            Path((token, incident_id)): Path<(String, String)>,
            RawQuery(query): RawQuery,
        ) -> Response {
            match dashboard_session(&state, &token) {
                Ok(session) => match incident_number(&incident_id) {
                    Some(incident_id) => {
                        $inner(
                            &state,
                            &session,
                            incident_id,
                            query.as_deref().unwrap_or(""),
                        )
                        .await
                    }
                    None => operator_not_found(&session),
                },
                Err(response) => response,
            }
        }

        async fn $by_sso(
            State(state): State<AppState>,
            headers: HeaderMap,
            Path(incident_id): Path<String>,
            RawQuery(query): RawQuery,
        ) -> Response {
            match session_from_sso(&state, &headers) {
                Ok(session) => match incident_number(&incident_id) {
                    Some(incident_id) => {
                        $inner(
                            &state,
                            &session,
                            incident_id,
                            query.as_deref().unwrap_or(""),
                        )
                        .await
                    }
                    None => operator_not_found(&session),
                },
                Err(response) => response,
            }
        }
    };
}

by_link_and_sso!(list_by_link, list_by_sso, incident_list);
by_link_and_sso!(incidents_csv_by_link, incidents_csv_by_sso, incidents_csv);
by_link_and_sso!(summary_csv_by_link, summary_csv_by_sso, summary_csv);
incident_by_link_and_sso!(incident_page_by_link, incident_page_by_sso, incident_page);
incident_by_link_and_sso!(report_md_by_link, report_md_by_sso, report_md);
incident_by_link_and_sso!(report_html_by_link, report_html_by_sso, report_html);
incident_by_link_and_sso!(report_json_by_link, report_json_by_sso, report_json);

async fn incident_action_by_link(
    State(state): State<AppState>,
    Path((token, incident_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match dashboard_session(&state, &token) {
        Ok(session) => match incident_number(&incident_id) {
            Some(incident_id) => {
                incident_action(&state, &session, incident_id, &headers, body).await
            }
            None => operator_not_found(&session),
        },
        Err(response) => response,
    }
}

async fn incident_action_by_sso(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(incident_id): Path<String>,
    body: Body,
) -> Response {
    match session_from_sso(&state, &headers) {
        Ok(session) => match incident_number(&incident_id) {
            Some(incident_id) => {
                incident_action(&state, &session, incident_id, &headers, body).await
            }
            None => operator_not_found(&session),
        },
        Err(response) => response,
    }
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

async fn incident_page(
    state: &AppState,
    session: &Session,
    incident_id: i64,
    query: &str,
) -> Response {
    let saved = url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "sparat")
        .map(|(_, value)| value.into_owned());
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
    session: &Session,
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

async fn incident_action(
    state: &AppState,
    session: &Session,
    incident_id: i64,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let form = match read_form(headers, body).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    if !session.check_csrf(state, field(&form, "csrf")) {
        return csrf_refused();
    }
    let operator = session.operator.name.as_str();
    let now = Timestamp::now();
    let forms = IncidentForms {
        note: field(&form, "text").to_owned(),
        occurred_at: field(&form, "occurred_at").to_owned(),
        lesson_kind: field(&form, "kind").to_owned(),
        audience: field(&form, "audience").to_owned(),
        lesson: field(&form, "lesson").to_owned(),
    };
    let (result, saved) = match field(&form, "action") {
        "note" => {
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
        "lesson" => {
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

async fn report_md(
    state: &AppState,
    session: &Session,
    incident_id: i64,
    _query: &str,
) -> Response {
    report_download(state, session, incident_id, ReportFormat::Markdown).await
}

async fn report_html(
    state: &AppState,
    session: &Session,
    incident_id: i64,
    _query: &str,
) -> Response {
    report_download(state, session, incident_id, ReportFormat::Html).await
}

async fn report_json(
    state: &AppState,
    session: &Session,
    incident_id: i64,
    _query: &str,
) -> Response {
    report_download(state, session, incident_id, ReportFormat::Json).await
}

async fn report_download(
    state: &AppState,
    session: &Session,
    incident_id: i64,
    format: ReportFormat,
) -> Response {
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
fn parse_filter(state: &AppState, query: &str) -> (IncidentFilter, Vec<String>) {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim().to_owned())
    };
    let mut problems = Vec::new();
    let mut filter = IncidentFilter::default();
    let mut date = |name: &str, label: &str| -> Option<jiff::civil::Date> {
        let text = value(name)?;
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
    if value("from").is_none() && value("to").is_none() {
        let year = Timestamp::now().to_zoned(stockholm()).year();
        filter.from = jiff::civil::Date::new(year, 1, 1).ok();
        filter.to = jiff::civil::Date::new(year, 12, 31).ok();
    } else {
        filter.from = date("from", "Från");
        filter.to = date("to", "Till");
    }
    match value("level").as_deref() {
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
    match value("subregion").as_deref() {
        None | Some("") => {}
        Some(id) if state.config.inventory.subregion(id).is_some() => {
            filter.subregion = Some(id.to_owned());
        }
        Some(_) => problems.push("Delregion: välj en delregion i listan.".to_owned()),
    }
    match value("kind").as_deref() {
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

async fn incident_list(state: &AppState, session: &Session, query: &str) -> Response {
    let (filter, problems) = parse_filter(state, query);
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

async fn incidents_csv(state: &AppState, _session: &Session, query: &str) -> Response {
    let (filter, _) = parse_filter(state, query);
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

async fn summary_csv(state: &AppState, _session: &Session, query: &str) -> Response {
    let (filter, _) = parse_filter(state, query);
    match crate::followup::list_incidents(&state.storage, &state.config, &filter, Timestamp::now())
        .await
    {
        Ok(rows) => {
            let summary = crate::followup::summarize_incidents(&rows, &state.config);
            download(
                crate::followup::summary_csv(&summary, &filter),
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
    fn each_client_has_its_own_bucket() {
        let limiter = FeedbackLimiter::new();
        let first = FeedbackLimiter::key(Some("192.0.2.1".parse().unwrap()));
        let second = FeedbackLimiter::key(Some("192.0.2.2".parse().unwrap()));
        for _ in 0..FEEDBACK_BURST.get() {
            assert!(limiter.check(first).is_ok());
        }
        let wait = limiter.check(first).expect_err("the burst is used up");
        assert!(wait > Duration::ZERO && wait <= FEEDBACK_REPLENISH);
        assert!(
            limiter.check(second).is_ok(),
            "another client is not affected"
        );
        assert_eq!(limiter.n_clients(), 2);
    }

    #[test]
    fn ipv6_clients_share_their_network_and_unknown_clients_share_one_key() {
        let one = FeedbackLimiter::key(Some("2001:db8:1:2::1".parse().unwrap()));
        let other_host = FeedbackLimiter::key(Some("2001:db8:1:2:ffff::9".parse().unwrap()));
        let other_network = FeedbackLimiter::key(Some("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(one, other_host);
        assert_ne!(one, other_network);
        let mapped = FeedbackLimiter::key(Some("::ffff:192.0.2.7".parse().unwrap()));
        assert_eq!(mapped, "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(FeedbackLimiter::key(None), FeedbackLimiter::SHARED_KEY);
    }

    #[test]
    fn the_clean_up_runs_once_a_minute_and_keeps_clients_that_used_their_tokens() {
        let limiter = FeedbackLimiter::new();
        let first = FeedbackLimiter::key(Some("192.0.2.1".parse().unwrap()));
        limiter.check(first).unwrap();
        assert_eq!(limiter.n_clients(), 1);
        // The last clean-up was a minute ago: the next check runs one. The first client
        // used a token 0 s ago, so its bucket is not full again and it must stay
        // remembered (forgetting it would give it a fresh burst).
        let long_ago = Instant::now() - FORGET_IDLE_EVERY;
        *limiter.last_forgotten.lock().unwrap() = long_ago;
        limiter
            .check(FeedbackLimiter::key(Some("192.0.2.2".parse().unwrap())))
            .unwrap();
        assert!(
            *limiter.last_forgotten.lock().unwrap() > long_ago,
            "a clean-up ran"
        );
        assert_eq!(limiter.n_clients(), 2);
        for _ in 1..FEEDBACK_BURST.get() {
            limiter.check(first).unwrap();
        }
        assert!(
            limiter.check(first).is_err(),
            "the clean-up gave no fresh burst"
        );
    }

    #[test]
    fn the_html_report_policy_allows_exactly_its_stylesheet() {
        let policy = REPORT_HTML_POLICY.to_str().unwrap();
        assert!(policy.starts_with("default-src 'none'; style-src 'sha256-"));
        assert!(!policy.contains("unsafe"));
    }
}
