//! The operators' dashboard (`/ops/d/{token}`, `/ops/sso/d`): open and recent incidents,
//! published notices and their deliveries, and the actions on them: an update or a
//! resolution drafted by hand, a failed delivery retried, a drill started; and the planned
//! maintenance windows (`maintenance.rs`), which are kept out of the incident lists.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jiff::Timestamp;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{OperatorForm, OperatorSession, csrf_refused, optional_number, storage_unavailable};
use crate::classify::AlertScope;
use crate::http::AppState;
use crate::http::pages::{message_page, page, render};
use crate::incident::IncidentKind;
use crate::notice::{NoticeKind, format_swedish_time, kind_label};
use crate::publishing::{DraftByHandError, draft_by_hand, start_drill};

/// The dashboard's forms (one action each), posted to the dashboard's URL.
#[derive(Debug, Deserialize)]
pub(super) struct DashboardFields {
    #[serde(default)]
    csrf: String,
    action: Option<DashboardAction>,
    /// Of `update` and `resolve`.
    #[serde(default, deserialize_with = "optional_number")]
    incident_id: Option<i64>,
    /// Of `retry`.
    #[serde(default, deserialize_with = "optional_number")]
    outbox_id: Option<i64>,
    /// Of `drill`: `all`, `subregion:ID` or `actor:ID`.
    #[serde(default)]
    drill_scope: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DashboardAction {
    Update,
    Resolve,
    Retry,
    Drill,
    #[serde(other)]
    Unknown,
}

pub(super) async fn dashboard_page(
    session: OperatorSession,
    State(state): State<AppState>,
) -> Response {
    dashboard(&state, &session, None, None).await
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
    session: &OperatorSession,
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
        // A window's incident: listed with the planned maintenance, acted on on its page.
        if record.kind == IncidentKind::Maintenance {
            continue;
        }
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
            review_link: pending_draft.map(|draft| session.review_url(state, draft.draft_id)),
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
                channel: super::review::channel_label(state, channel),
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
            let channel = super::review::channel_label(state, &channel);
            context! { outbox_id, incident_id, channel, recipient, error }
        })
        .collect();
    // The subscribers, when a channel reaches them: counts, and the suspended addresses.
    let has_subscribers = state.config.channels.values().any(|channel| {
        matches!(
            channel.transport,
            crate::config::ChannelTransport::Subscribers
        )
    });
    let (subscriber_counts, suspended) = if has_subscribers {
        let counts: Vec<_> = state
            .storage
            .subscriber_counts()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(subscriber_state, n)| context! { label => subscriber_state.label(), n => n })
            .collect();
        let suspended: Vec<_> = state
            .storage
            .subscribers()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|subscriber| {
                subscriber.state == crate::subscription::SubscriberState::Suspended
            })
            .take(50)
            .map(|subscriber| {
                context! {
                    address => subscriber.address,
                    since => subscriber.ended_at.map(format_swedish_time),
                    error => subscriber.last_failure,
                }
            })
            .collect();
        (Some(counts), suspended)
    } else {
        (None, Vec::new())
    };
    let windows = super::maintenance::dashboard_windows(state, session).await;
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
                windows => windows,
                notices => notice_rows,
                failed => failed,
                subscriber_counts => subscriber_counts,
                suspended => suspended,
                csrf => session.csrf(state),
                action_url => action_url,
                subregions => subregions,
                actors => actors,
            },
        ),
    )
}

pub(super) async fn dashboard_action(
    session: OperatorSession,
    State(state): State<AppState>,
    OperatorForm(form): OperatorForm<DashboardFields>,
) -> Response {
    let (state, session) = (&state, &session);
    if !session.check_csrf(state, &form.csrf) {
        return csrf_refused();
    }
    let operator = session.operator.name.as_str();
    let result: Result<(String, Option<String>), DraftByHandError> =
        match (form.action, form.incident_id) {
            (Some(DashboardAction::Update), Some(incident_id)) => draft_by_hand(
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
            .map(|(text, draft_id)| (text, draft_id.map(|id| session.review_url(state, id)))),
            (Some(DashboardAction::Resolve), Some(incident_id)) => draft_by_hand(
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
                    Some(session.review_url(state, draft_id)),
                )
            }),
            (Some(DashboardAction::Retry), _) => {
                let Some(outbox_id) = form.outbox_id else {
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
            (Some(DashboardAction::Drill), _) => {
                let scope = match form.drill_scope.as_str() {
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
                        Some(session.review_url(state, draft_id)),
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
