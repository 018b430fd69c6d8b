//! The operator pages under `/ops/`: server-rendered Swedish HTML that works without
//! JavaScript and on a phone. Reached through signed links (`/ops/r/TOKEN` reviews a
//! draft, `/ops/d/TOKEN` is the dashboard) or, when configured, through a single sign-on
//! proxy's user header (`/ops/sso/...`). GET never changes anything (mail scanners open
//! links); every POST needs the page's CSRF token and a valid link.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use minijinja::context;
use serde::Serialize;

use super::AppState;
use super::pages::{
    Links, MAX_FORM_BYTES, Session, csrf_refused, link_refused, message_page, page,
    parse_local_time, render, session_from_link, session_from_sso, stockholm, storage_unavailable,
};
use crate::classify::{AlertScope, Level};
use crate::config::ChannelContent;
use crate::links::{LinkError, LinkPurpose};
use crate::notice::kind_label;
use crate::notice::{NoticeInput, NoticeKind, RenderedNotice, format_swedish_time};
use crate::operators::login_mail;
use crate::publishing::{
    Decision, DecisionRole, DraftByHandError, PublishRequest, draft_by_hand, revise_draft,
    start_drill,
};
use crate::storage::{DraftFields, DraftRecord};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ops/static/style.css", get(stylesheet))
        .route("/ops/login", get(login_page).post(login_submit))
        .route(
            "/ops/d/{token}",
            get(dashboard_by_link).post(dashboard_action_by_link),
        )
        .route(
            "/ops/r/{token}",
            get(review_by_link).post(review_action_by_link),
        )
        .route(
            "/ops/sso/d",
            get(dashboard_by_sso).post(dashboard_action_by_sso),
        )
        .route(
            "/ops/sso/r/{draft_id}",
            get(review_by_sso).post(review_action_by_sso),
        )
}

const STYLESHEET: &str = include_str!("ops_templates/style.css");

/// The form fields, with repeated names (channels) kept.
struct FormFields(Vec<(String, String)>);

impl FormFields {
    fn parse(body: &[u8]) -> FormFields {
        FormFields(url::form_urlencoded::parse(body).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    }
}

async fn stylesheet() -> Response {
    let mut response = STYLESHEET.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

// ---------------------------------------------------------------------------------------
// Login: "send me a link". Answers the same for any address.

const LOGIN_FORM_LABEL: &str = "login form";

async fn login_page(State(state): State<AppState>) -> Response {
    let csrf = state.signer.csrf_token(LOGIN_FORM_LABEL);
    page(
        StatusCode::OK,
        render("login.html", context! { csrf => csrf }),
    )
}

async fn login_submit(State(state): State<AppState>, body: Bytes) -> Response {
    if body.len() > MAX_FORM_BYTES {
        return message_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "För stort formulär",
            &[],
            None,
        );
    }
    let form = FormFields::parse(&body);
    if !state
        .signer
        .check_csrf(LOGIN_FORM_LABEL, form.get("csrf").unwrap_or(""))
    {
        return csrf_refused();
    }
    let email = form.get("email").unwrap_or("").trim().to_owned();
    if let Some(operator) = state.config.review.operator(&email) {
        let mail = login_mail(&state.config, &state.signer, operator, Timestamp::now());
        match state
            .storage
            .enqueue_operator_mail(&[mail], Timestamp::now())
            .await
        {
            Ok(_) => state.mail_wake.notify_one(),
            Err(error) => {
                tracing::error!(error = ?anyhow::Error::from(error), "cannot enqueue a login link");
                return storage_unavailable();
            }
        }
    }
    message_page(
        StatusCode::OK,
        "Kontrollera din e-post",
        &["Om adressen tillhör en operatör har en personlig länk till översikten skickats dit."],
        None,
    )
}

// ---------------------------------------------------------------------------------------
// Dashboard.

async fn dashboard_by_link(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match session_from_link(&state, &token, Links::Any) {
        Ok((session, LinkPurpose::Dashboard)) => dashboard(&state, &session, None, None).await,
        // A review link opens only its draft.
        Ok((_, LinkPurpose::Review { .. })) => link_refused(LinkError::BadSignature),
        Err(response) => response,
    }
}

async fn dashboard_by_sso(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session_from_sso(&state, &headers) {
        Ok(session) => dashboard(&state, &session, None, None).await,
        Err(response) => response,
    }
}

async fn dashboard_action_by_link(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    match session_from_link(&state, &token, Links::Any) {
        Ok((session, LinkPurpose::Dashboard)) => dashboard_action(&state, &session, &body).await,
        Ok((_, LinkPurpose::Review { .. })) => link_refused(LinkError::BadSignature),
        Err(response) => response,
    }
}

async fn dashboard_action_by_sso(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match session_from_sso(&state, &headers) {
        Ok(session) => dashboard_action(&state, &session, &body).await,
        Err(response) => response,
    }
}

#[derive(Serialize)]
struct IncidentRow {
    id: i64,
    kind: String,
    started: String,
    resolved: String,
    level: u8,
    crisis: bool,
    n_affected: usize,
    n_actors: usize,
    n_firing: i64,
    reasons: Vec<String>,
    published: Option<String>,
    pending: Option<String>,
    review_link: Option<String>,
}

#[derive(Serialize)]
struct NoticeRow {
    notice: String,
    published: String,
    channel: String,
    sent: i64,
    pending: i64,
    failed: i64,
}

async fn dashboard(
    state: &AppState,
    session: &Session,
    flash: Option<&str>,
    error: Option<&str>,
) -> Response {
    let overview = match state.storage.incident_overview(50).await {
        Ok(overview) => overview,
        Err(_) => return storage_unavailable(),
    };
    let pending = state
        .storage
        .pending_drafts_overview()
        .await
        .unwrap_or_default();
    let mut open_incidents = Vec::new();
    let mut recent_incidents = Vec::new();
    for item in overview {
        let record = item.record;
        let incident = &record.incident;
        let pending_draft = pending
            .iter()
            .find(|draft| draft.incident_id == record.incident_id);
        let row = IncidentRow {
            id: record.incident_id,
            kind: record.kind.to_string(),
            started: format_swedish_time(incident.started_at),
            resolved: record
                .resolved_at
                .map(format_swedish_time)
                .unwrap_or_default(),
            level: incident.classification.level.as_number(),
            crisis: incident.classification.crisis,
            n_affected: incident.summary.n_affected,
            n_actors: incident.summary.n_actors,
            n_firing: item.n_firing,
            reasons: incident.classification.reasons.clone(),
            published: incident.published.as_ref().map(|published| {
                format!(
                    "{}, nivå {}",
                    kind_label(published.kind),
                    published.classification.level.as_number()
                )
            }),
            pending: pending_draft.map(|draft| kind_label(draft.kind).to_owned()),
            review_link: pending_draft
                .map(|draft| session.review_url(state, draft.draft_id, draft.latest_version)),
        };
        if record.resolved_at.is_none() {
            open_incidents.push(row);
        } else {
            recent_incidents.push(row);
        }
    }
    let notices = state
        .storage
        .published_notices(None, 20)
        .await
        .unwrap_or_default();
    let summary = state.storage.delivery_summary(20).await.unwrap_or_default();
    let mut by_channel: BTreeMap<(i64, String), (i64, i64, i64)> = BTreeMap::new();
    for (notice_id, channel, delivery_state, count) in summary {
        let entry = by_channel.entry((notice_id, channel)).or_default();
        match delivery_state.as_str() {
            "sent" => entry.0 += count,
            "pending" => entry.1 += count,
            _ => entry.2 += count,
        }
    }
    let mut notice_rows = Vec::new();
    for notice in &notices {
        for ((notice_id, channel), (sent, waiting, failed)) in
            by_channel.range((notice.notice_id, String::new())..)
        {
            if *notice_id != notice.notice_id {
                break;
            }
            notice_rows.push(NoticeRow {
                notice: format!(
                    "Incident {}: {}, nivå {}",
                    notice.incident_id,
                    kind_label(notice.kind),
                    notice.level.as_number()
                ),
                published: format!(
                    "{} av {}",
                    format_swedish_time(notice.published_at),
                    notice.published_by
                ),
                channel: channel.clone(),
                sent: *sent,
                pending: *waiting,
                failed: *failed,
            });
        }
    }
    let failed: Vec<_> = state
        .storage
        .failed_deliveries(20)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(outbox_id, incident_id, channel, recipient, error)| {
            context! { outbox_id, incident_id, channel, recipient, error }
        })
        .collect();
    let action_url = session.dashboard_path();
    let subregions: Vec<_> = state
        .config
        .inventory
        .subregions()
        .iter()
        .map(|subregion| context! { id => subregion.id, name => subregion.name })
        .collect();
    let actors: Vec<_> = state
        .config
        .inventory
        .actors()
        .iter()
        .map(|actor| context! { id => actor.id, name => actor.name })
        .collect();
    page(
        StatusCode::OK,
        render(
            "dashboard.html",
            context! {
                operator_name => session.operator.name,
                flash => flash,
                error => error,
                open_incidents => open_incidents,
                recent_incidents => recent_incidents,
                notices => notice_rows,
                failed => failed,
                csrf => session.csrf(state),
                action_url => action_url,
                subregions => subregions,
                actors => actors,
            },
        ),
    )
}

async fn dashboard_action(state: &AppState, session: &Session, body: &[u8]) -> Response {
    if body.len() > MAX_FORM_BYTES {
        return message_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "För stort formulär",
            &[],
            None,
        );
    }
    let form = FormFields::parse(body);
    if !session.check_csrf(state, form.get("csrf").unwrap_or("")) {
        return csrf_refused();
    }
    let operator = session.operator.name.as_str();
    let incident_id = form
        .get("incident_id")
        .and_then(|value| value.parse::<i64>().ok());
    let result: Result<(String, Option<String>), DraftByHandError> =
        match (form.get("action"), incident_id) {
            (Some("update"), Some(incident_id)) => draft_by_hand(
                &state.storage,
                &state.config,
                &state.renderer,
                incident_id,
                NoticeKind::Update,
                operator,
            )
            .await
            .map(|draft_id| {
                (
                    "Ett utkast till uppdatering är skapat.".to_owned(),
                    Some(draft_id),
                )
            })
            .map(|(text, draft_id)| (text, draft_id.map(|id| session.review_url(state, id, 1)))),
            (Some("resolve"), Some(incident_id)) => draft_by_hand(
                &state.storage,
                &state.config,
                &state.renderer,
                incident_id,
                NoticeKind::Resolved,
                operator,
            )
            .await
            .map(|draft_id| {
                (
                    "Ett utkast till åtgärdat-meddelande är skapat.".to_owned(),
                    Some(session.review_url(state, draft_id, 1)),
                )
            }),
            (Some("retry"), _) => {
                let Some(outbox_id) = form
                    .get("outbox_id")
                    .and_then(|value| value.parse::<i64>().ok())
                else {
                    return dashboard(state, session, None, Some("Ingen leverans angavs.")).await;
                };
                match state
                    .storage
                    .retry_failed_delivery(outbox_id, Timestamp::now(), operator)
                    .await
                {
                    Ok(true) => {
                        state.delivery_wake.notify_waiters();
                        Ok(("Leveransen försöks igen.".to_owned(), None))
                    }
                    Ok(false) => Ok(("Leveransen var inte misslyckad.".to_owned(), None)),
                    Err(error) => Err(DraftByHandError::Storage(error)),
                }
            }
            (Some("drill"), _) => {
                let scope = match form.get("drill_scope").unwrap_or("") {
                    "all" => Some(AlertScope::Everything),
                    other => match other.split_once(':') {
                        Some(("subregion", id))
                            if state.config.inventory.subregion(id).is_some() =>
                        {
                            Some(AlertScope::Subregion(id.to_owned()))
                        }
                        Some(("actor", id)) if state.config.inventory.actor(id).is_some() => {
                            Some(AlertScope::Actor(id.to_owned()))
                        }
                        _ => None,
                    },
                };
                let scopes: Vec<AlertScope> = scope.into_iter().collect();
                start_drill(
                    &state.storage,
                    &state.config,
                    &state.renderer,
                    &scopes,
                    operator,
                )
                .await
                .map(|(_, draft_id)| {
                    (
                        "Övningen är startad. Granska dess första meddelande.".to_owned(),
                        Some(session.review_url(state, draft_id, 1)),
                    )
                })
            }
            _ => return dashboard(state, session, None, Some("Okänd åtgärd.")).await,
        };
    match result {
        Ok((text, Some(link))) => message_page(
            StatusCode::OK,
            "Klart",
            &[&text],
            Some((&link, "Granska utkastet")),
        ),
        Ok((text, None)) => dashboard(state, session, Some(&text), None).await,
        Err(DraftByHandError::Storage(_)) => storage_unavailable(),
        Err(error) => dashboard(state, session, None, Some(&error.to_string())).await,
    }
}

// ---------------------------------------------------------------------------------------
// Review.

async fn review_by_link(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match session_from_link(&state, &token, Links::Any) {
        Ok((session, LinkPurpose::Review { draft_id, version })) => {
            review(&state, &session, draft_id, Some(version), None, None, None).await
        }
        Ok((_, LinkPurpose::Dashboard)) => link_refused(LinkError::BadSignature),
        Err(response) => response,
    }
}

async fn review_by_sso(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(draft_id): Path<i64>,
) -> Response {
    match session_from_sso(&state, &headers) {
        Ok(session) => review(&state, &session, draft_id, None, None, None, None).await,
        Err(response) => response,
    }
}

async fn review_action_by_link(
    State(state): State<AppState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    match session_from_link(&state, &token, Links::Any) {
        Ok((session, LinkPurpose::Review { draft_id, .. })) => {
            review_action(&state, &session, draft_id, &body).await
        }
        Ok((_, LinkPurpose::Dashboard)) => link_refused(LinkError::BadSignature),
        Err(response) => response,
    }
}

async fn review_action_by_sso(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(draft_id): Path<i64>,
    body: Bytes,
) -> Response {
    match session_from_sso(&state, &headers) {
        Ok(session) => review_action(&state, &session, draft_id, &body).await,
        Err(response) => response,
    }
}

async fn find_draft(
    state: &AppState,
    draft_id: i64,
) -> Result<Option<(DraftRecord, crate::storage::IncidentRecord)>, ()> {
    state
        .storage
        .draft_with_incident(draft_id)
        .await
        .map_err(|_| ())
}

/// What the form showed or posted, for re-rendering after an error.
#[derive(Default, Clone)]
struct ReviewForm {
    level: Option<u8>,
    decided_by: String,
    role: String,
    channels: Option<Vec<String>>,
}

async fn review(
    state: &AppState,
    session: &Session,
    draft_id: i64,
    link_version: Option<i64>,
    flash: Option<&str>,
    error: Option<&str>,
    form: Option<ReviewForm>,
) -> Response {
    let (draft, incident) = match find_draft(state, draft_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return message_page(StatusCode::NOT_FOUND, "Utkastet finns inte", &[], None),
        Err(()) => return storage_unavailable(),
    };
    let Some(latest) = draft.versions.last() else {
        return message_page(StatusCode::NOT_FOUND, "Utkastet finns inte", &[], None);
    };
    let input: Option<NoticeInput> = serde_json::from_value(latest.input.clone()).ok();
    let Some(input) = input else {
        return storage_unavailable();
    };
    let form = form.unwrap_or_default();
    let level = form.level.unwrap_or(input.classification.level.as_number());
    let suggested = &incident.incident.classification;
    let tz = stockholm();
    let local = |timestamp: Option<Timestamp>| {
        timestamp
            .map(|timestamp| {
                timestamp
                    .to_zoned(tz.clone())
                    .strftime("%Y-%m-%dT%H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let plan = &state.config.plan;
    let mut channel_names: Vec<String> = Vec::new();
    for number in 1..=3 {
        for name in plan.channels_for(number) {
            if !channel_names.contains(name) {
                channel_names.push(name.clone());
            }
        }
    }
    let is_drill = incident.kind == "drill";
    let channels: Vec<_> = channel_names
        .iter()
        .filter(|name| !is_drill || state.config.channels[name.as_str()].drill)
        .map(|name| {
            let levels: Vec<String> = (1..=3u8)
                .filter(|number| plan.channels_for(*number).contains(name))
                .map(|number| number.to_string())
                .collect();
            let checked = match &form.channels {
                Some(chosen) => chosen.contains(name),
                None => plan.channels_for(level).contains(name),
            };
            context! {
                name => name,
                label => channel_label(state, name),
                levels => levels.join(", "),
                checked => checked,
            }
        })
        .collect();
    let action_url = session.review_path(draft_id);
    let subregions: Vec<_> = input
        .summary
        .subregions
        .iter()
        .map(|subregion| {
            context! {
                name => subregion.name,
                n_affected => subregion.n_affected,
                n_actors => subregion.n_actors,
                whole => subregion.n_affected == subregion.n_actors && subregion.n_actors > 0,
                affected_names => subregion.affected_names.iter().take(15).cloned().collect::<Vec<_>>(),
            }
        })
        .collect();
    let roles = [
        DecisionRole::Subregional,
        DecisionRole::CouncilChair,
        DecisionRole::CouncilViceChair,
    ]
    .map(|role| context! { value => role.as_str(), label => role.label() });
    let levels = [
        (1, "Avbrott i IT-tjänsten"),
        (2, "Övergång till reservrutin i delar av verksamheterna"),
        (
            3,
            "Övergång till reservrutin i alla verksamheter (kriskommunikation)",
        ),
    ]
    .map(|(number, label)| context! { number => number, label => label });
    page(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        render(
            "review.html",
            context! {
                operator_name => session.operator.name,
                drill => input.drill,
                flash => flash,
                error => error,
                incident_id => draft.incident_id,
                kind_label => kind_label(draft.kind),
                newer_than_link => link_version.is_some_and(|version| version < latest.version),
                version => latest.version,
                started => format_swedish_time(input.started_at),
                resolved => input.resolved_at.map(format_swedish_time),
                suggested_level => suggested.level.as_number(),
                suggested_crisis => suggested.crisis,
                reasons => suggested.reasons,
                subregions => subregions,
                unknown => input.summary.unknown_actor_ids,
                editable => draft.state == "pending",
                state_label => state_label(draft.state.as_str()),
                csrf => session.csrf(state),
                action_url => action_url,
                levels => levels,
                level => level,
                decided_by => form.decided_by,
                selected_role => form.role,
                roles => roles,
                channels => channels,
                additional_information => latest.fields.additional_information.clone().unwrap_or_default(),
                expected_resolution => local(latest.fields.expected_resolution),
                next_update => local(latest.fields.next_update),
                preview => preview_sections(&latest.rendered),
            },
        ),
    )
}

async fn review_action(
    state: &AppState,
    session: &Session,
    draft_id: i64,
    body: &[u8],
) -> Response {
    if body.len() > MAX_FORM_BYTES {
        return message_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "För stort formulär",
            &[],
            None,
        );
    }
    let form = FormFields::parse(body);
    if !session.check_csrf(state, form.get("csrf").unwrap_or("")) {
        return csrf_refused();
    }
    let operator = session.operator.name.clone();
    let posted_version = form
        .get("version")
        .and_then(|value| value.parse::<i64>().ok())
        .unwrap_or(0);
    let review_form = ReviewForm {
        level: form.get("level").and_then(|value| value.parse().ok()),
        decided_by: form
            .get("decided_by")
            .unwrap_or("")
            .trim()
            .chars()
            .take(200)
            .collect(),
        role: form.get("role").unwrap_or("").to_owned(),
        channels: Some(form.all("channels")),
    };
    match form.get("action") {
        Some("discard") => {
            let reason: String = form
                .get("discard_reason")
                .unwrap_or("")
                .trim()
                .chars()
                .take(1000)
                .collect();
            if reason.is_empty() {
                return review(
                    state,
                    session,
                    draft_id,
                    None,
                    None,
                    Some("Ange varför utkastet kasseras."),
                    Some(review_form),
                )
                .await;
            }
            match state
                .storage
                .discard_draft(draft_id, &reason, &operator, Timestamp::now())
                .await
            {
                Ok(Some((_, created_at))) => {
                    observe_decision(state, created_at);
                    message_page(
                        StatusCode::OK,
                        "Utkastet är kasserat",
                        &["Inget publicerades. Orsaken finns i incidentens logg."],
                        Some((&session.dashboard_url(state), "Till översikten")),
                    )
                }
                Ok(None) => {
                    review(
                        state,
                        session,
                        draft_id,
                        None,
                        None,
                        Some("Utkastet väntar inte längre."),
                        None,
                    )
                    .await
                }
                Err(_) => storage_unavailable(),
            }
        }
        Some(action @ ("preview" | "publish")) => {
            let (draft, _) = match find_draft(state, draft_id).await {
                Ok(Some(found)) => found,
                Ok(None) => {
                    return message_page(StatusCode::NOT_FOUND, "Utkastet finns inte", &[], None);
                }
                Err(()) => return storage_unavailable(),
            };
            let Some(latest) = draft.versions.last() else {
                return message_page(StatusCode::NOT_FOUND, "Utkastet finns inte", &[], None);
            };
            let fields = match fields_from_form(&form) {
                Ok(fields) => fields,
                Err(message) => {
                    return review(
                        state,
                        session,
                        draft_id,
                        None,
                        None,
                        Some(&message),
                        Some(review_form),
                    )
                    .await;
                }
            };
            let rendered_level = latest.input["classification"]["level"]
                .as_u64()
                .unwrap_or(1) as u8;
            let unchanged = fields
                .level
                .map_or(rendered_level, |level| level.as_number())
                == rendered_level
                && fields.expected_resolution == latest.fields.expected_resolution
                && fields.next_update == latest.fields.next_update
                && fields.additional_information == latest.fields.additional_information;
            if action == "preview" || !unchanged || posted_version != latest.version {
                if unchanged && posted_version == latest.version {
                    return review(
                        state,
                        session,
                        draft_id,
                        None,
                        Some("Förhandsvisningen är aktuell."),
                        None,
                        Some(review_form),
                    )
                    .await;
                }
                let message = if posted_version != latest.version {
                    "Utkastet ändrades medan du granskade. Kontrollera förhandsvisningen och publicera igen."
                } else if action == "publish" {
                    "Du ändrade något: förhandsvisningen är uppdaterad. Kontrollera den och tryck Publicera igen."
                } else {
                    "Förhandsvisningen är uppdaterad."
                };
                if !unchanged {
                    match revise_draft(
                        &state.storage,
                        &state.renderer,
                        draft_id,
                        &fields,
                        &operator,
                    )
                    .await
                    {
                        Ok(_) => {}
                        Err(crate::publishing::ReviseError::Storage(_)) => {
                            return storage_unavailable();
                        }
                        Err(error) => {
                            return review(
                                state,
                                session,
                                draft_id,
                                None,
                                None,
                                Some(&error.to_string()),
                                Some(review_form),
                            )
                            .await;
                        }
                    }
                }
                return review(
                    state,
                    session,
                    draft_id,
                    None,
                    Some(message),
                    None,
                    Some(review_form),
                )
                .await;
            }
            let Some(level) = Level::from_number(rendered_level) else {
                return storage_unavailable();
            };
            let decision = match (
                review_form.decided_by.is_empty(),
                DecisionRole::parse(&review_form.role),
            ) {
                (false, Some(role)) => Some(Decision {
                    decided_by: review_form.decided_by.clone(),
                    role,
                }),
                _ => None,
            };
            let request = PublishRequest {
                draft_id,
                draft_version: latest.version,
                level,
                channels: review_form.channels.clone().unwrap_or_default(),
                decision,
                operator: operator.clone(),
            };
            match state.publish(&request).await {
                Ok(publication) => {
                    observe_decision(state, draft_created_at(&draft));
                    let channels: Vec<String> = request
                        .channels
                        .iter()
                        .map(|name| channel_label(state, name))
                        .collect();
                    let what = format!(
                        "Meddelandet om incident {} är publicerat på nivå {} i: {}.",
                        publication.incident_id,
                        publication.level,
                        channels.join(", ")
                    );
                    let decided = match &request.decision {
                        Some(decision) => format!(
                            "Beslut: {} ({}).",
                            decision.decided_by,
                            decision.role.label()
                        ),
                        None => "Nivå 1 kräver inget beslut.".to_owned(),
                    };
                    let deliveries = match publication.n_deliveries {
                        1 => "1 mottagare får det nu. Följ leveransen på översikten.".to_owned(),
                        n => format!("{n} mottagare får det nu. Följ leveranserna på översikten."),
                    };
                    message_page(
                        StatusCode::OK,
                        "Publicerat",
                        &[&what, &decided, &deliveries],
                        Some((&session.dashboard_url(state), "Till översikten")),
                    )
                }
                Err(crate::publishing::PublishError::Storage(_)) => storage_unavailable(),
                Err(error) => {
                    review(
                        state,
                        session,
                        draft_id,
                        None,
                        None,
                        Some(&error.to_string()),
                        Some(review_form),
                    )
                    .await
                }
            }
        }
        _ => {
            review(
                state,
                session,
                draft_id,
                None,
                None,
                Some("Okänd åtgärd."),
                Some(review_form),
            )
            .await
        }
    }
}

fn draft_created_at(draft: &DraftRecord) -> Timestamp {
    draft
        .versions
        .first()
        .map(|version| version.created_at)
        .unwrap_or_else(Timestamp::now)
}

fn observe_decision(state: &AppState, created_at: Timestamp) {
    let waited = Timestamp::now()
        .duration_since(created_at)
        .as_secs_f64()
        .max(0.0);
    state.metrics.draft_decision.observe(waited);
}

fn fields_from_form(form: &FormFields) -> Result<DraftFields, String> {
    let level = match form.get("level") {
        Some(text) => Some(
            text.parse::<u8>()
                .ok()
                .and_then(crate::classify::Level::from_number)
                .ok_or("Välj nivå 1, 2 eller 3.")?,
        ),
        None => None,
    };
    let time = |name: &str, label: &str| -> Result<Option<Timestamp>, String> {
        match form
            .get(name)
            .map(str::trim)
            .filter(|text| !text.is_empty())
        {
            None => Ok(None),
            Some(text) => parse_local_time(text)
                .map(Some)
                .ok_or_else(|| format!("{label}: ange datum och tid som ÅÅÅÅ-MM-DD TT:MM.")),
        }
    };
    let additional_information = form
        .get("additional_information")
        .map(|text| {
            text.replace("\r\n", "\n")
                .trim()
                .chars()
                .take(4000)
                .collect::<String>()
        })
        .filter(|text| !text.is_empty());
    Ok(DraftFields {
        level,
        expected_resolution: time("expected_resolution", "Beräknas vara löst")?,
        next_update: time("next_update", "Nästa uppdatering")?,
        additional_information,
    })
}

fn channel_label(state: &AppState, name: &str) -> String {
    let content = state
        .config
        .channels
        .get(name)
        .map(|channel| channel.content);
    let what = match content {
        Some(ChannelContent::Banner) => "Inloggningssidan",
        Some(ChannelContent::Email) => "E-post till support- och IT-organisationer",
        Some(ChannelContent::Website) => "Nyhet på webbplatsen",
        Some(ChannelContent::Newsletter) => "Nyhetsbrev till prenumeranter",
        Some(ChannelContent::Itnytt) => "IT-Nytt",
        Some(ChannelContent::Crisis) => "Ordförande och vice ordförande i Ledningsrådet",
        None => "",
    };
    format!("{what} ({name})")
}

fn state_label(state: &str) -> &'static str {
    match state {
        "published" => "publicerat",
        "withdrawn" => "återkallat",
        "discarded" => "kasserat",
        _ => "inte längre väntande",
    }
}

fn preview_sections(rendered: &RenderedNotice) -> Vec<minijinja::Value> {
    let mut sections = vec![
        ("E-post: ämne", rendered.email_subject.as_str()),
        ("E-post: text", rendered.email_text.as_str()),
        ("Inloggningssidan", rendered.banner_text.as_str()),
        ("Webbplatsen: rubrik", rendered.website_title.as_str()),
        ("Webbplatsen: text", rendered.website_body.as_str()),
        ("Nyhetsbrevet: rubrik", rendered.newsletter_title.as_str()),
        ("Nyhetsbrevet: text", rendered.newsletter_body.as_str()),
        ("IT-Nytt: rubrik", rendered.itnytt_title.as_str()),
        ("IT-Nytt: text", rendered.itnytt_body.as_str()),
    ];
    if !rendered.crisis_text.is_empty() {
        sections.push(("Kris-e-post: ämne", rendered.crisis_subject.as_str()));
        sections.push(("Kris-e-post: text", rendered.crisis_text.as_str()));
    }
    sections
        .into_iter()
        .map(|(heading, text)| context! { heading => heading, text => text })
        .collect()
}
