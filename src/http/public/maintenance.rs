//! Planned maintenance in public: what the login-page banner shows of a window
//! ([`maintenance_banner`], used by `banner.rs`), the windows in `status.json`
//! ([`status_windows`]), and the public pages `GET /public/maintenance` (upcoming, running
//! and the last 30 days' finished windows) and `GET /public/maintenance/{id}` (one window).
//!
//! Nothing is public before the operator publishes a window's announcement: a window in
//! state `planned` is left out everywhere and its page is the same 404 as an unknown id.
//! The rules (states, banner phase) are `crate::maintenance`; this only reads and shows.

use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use jiff::{SignedDuration, Timestamp};
use minijinja::{Environment, context};
use serde::Serialize;

use super::storage_unavailable;
use crate::config::Config;
use crate::http::pages::{incident_number, page};
use crate::http::{ApiError, AppState};
use crate::maintenance::{BannerPhase, Window, WindowScope, WindowState};
use crate::notice::NoticeKind;
use crate::storage::PublishedNoticeRecord;

/// How many of the newest banner notices are searched for a window's latest one. A window
/// is announced at most weeks ahead; far fewer notices are published in between.
const NOTICE_HISTORY: i64 = 200;

/// How long finished windows stay on the list page and in the calendar.
pub(super) const FINISHED_KEPT: SignedDuration = SignedDuration::from_hours(30 * 24);

/// How long finished windows stay in `status.json`.
const STATUS_FINISHED_KEPT: SignedDuration = SignedDuration::from_hours(24);

/// The public path of a window's page.
pub(super) fn window_path(id: i64) -> String {
    format!("/public/maintenance/{id}")
}

/// Whether the public may see the window: its announcement was published.
pub(super) fn is_public(window: &Window) -> bool {
    window.state != WindowState::Planned
}

/// Who the window concerns, in Swedish words: "hela SAMSA", or the sub-regions ("hela
/// Fyrbodal") and actors by their inventory names (an id the inventory no longer knows is
/// shown as it is).
pub(super) fn scope_words(scope: &WindowScope, config: &Config) -> String {
    if scope.whole_service {
        return format!("hela {}", config.notices.service_name);
    }
    let inventory = &config.inventory;
    let parts: Vec<String> = scope
        .subregions
        .iter()
        .map(|id| {
            let name = inventory
                .subregion(id)
                .map_or(id.as_str(), |subregion| subregion.name.as_str());
            format!("hela {name}")
        })
        .chain(scope.actors.iter().map(|id| {
            inventory
                .actor(id)
                .map_or_else(|| id.clone(), |actor| actor.name.clone())
        }))
        .collect();
    crate::swedish::join_swedish_list(&parts)
}

/// "28 november 2026 kl. 22:00 – 29 november 2026 kl. 02:00".
pub(super) fn when_words(window: &Window) -> String {
    format!(
        "{} – {}",
        crate::swedish::format_swedish_time(window.plan.starts_at),
        crate::swedish::format_swedish_time(window.plan.ends_at)
    )
}

/// The public windows not ended before `since`, by start time.
pub(super) async fn public_windows(
    state: &AppState,
    since: Timestamp,
) -> Result<Vec<Window>, ApiError> {
    let windows = state
        .storage
        .maintenance_windows(since)
        .await
        .map_err(|error| storage_unavailable(state, error))?;
    Ok(windows.into_iter().filter(is_public).collect())
}

// ---------------------------------------------------------------------------------------
// The banner.

/// What the banner shows of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shown {
    Upcoming,
    Running,
    /// Its "klart" notice, for `banner.all_clear_for` (like an outage's all-clear).
    Completed,
    /// Its cancellation, for `banner.all_clear_for`, when the window was on the banner
    /// as it was called off.
    Cancelled,
}

impl Shown {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Shown::Upcoming => "upcoming",
            Shown::Running => "running",
            Shown::Completed => "completed",
            Shown::Cancelled => "cancelled",
        }
    }
}

/// A window on the banner, with the notice whose banner text it shows.
#[derive(Debug, Clone)]
pub(super) struct MaintenanceBanner {
    pub window: Window,
    pub shown: Shown,
    pub notice: PublishedNoticeRecord,
}

/// The window the banner shows at `now`, when no outage is shown: the soonest announced
/// or running window within its banner phase whose latest notice on a banner channel is
/// published; else a window's final notice ("klart", or the cancellation of a window that
/// was on the banner) published at or after `resolved_since`. A window with no notice on
/// a banner channel is never on the banner.
pub(super) async fn maintenance_banner(
    state: &AppState,
    banner_channels: &[String],
    now: Timestamp,
    resolved_since: Timestamp,
) -> Result<Option<MaintenanceBanner>, ApiError> {
    if banner_channels.is_empty() {
        return Ok(None);
    }
    let windows = public_windows(state, resolved_since.min(now)).await?;
    if windows.is_empty() {
        return Ok(None);
    }
    let notices = state
        .storage
        .published_notices(Some(banner_channels), NOTICE_HISTORY)
        .await
        .map_err(|error| storage_unavailable(state, error))?;
    let banner_before = state.config.maintenance.banner_before;
    // Soonest first (the storage gives them by start time).
    let mut in_phase: Vec<(&Window, Shown)> = windows
        .iter()
        .filter_map(|window| {
            let shown = match window.banner_phase(now, banner_before)? {
                BannerPhase::Upcoming => Shown::Upcoming,
                BannerPhase::Running => Shown::Running,
            };
            Some((window, shown))
        })
        .collect();
    in_phase.sort_by_key(|(window, _)| window.plan.starts_at);
    for (window, shown) in in_phase {
        if let Some(notice) = latest_notice(&notices, window.incident_id)
            && notice.kind != NoticeKind::Resolved
        {
            return Ok(Some(MaintenanceBanner {
                window: window.clone(),
                shown,
                notice: notice.clone(),
            }));
        }
    }
    // The newest final notice within the all-clear time.
    let finished = windows
        .iter()
        .filter_map(|window| {
            let shown = final_shown(window, banner_before)?;
            let notice = latest_notice(&notices, window.incident_id)?;
            (notice.kind == NoticeKind::Resolved && notice.published_at >= resolved_since)
                .then_some((window, shown, notice))
        })
        .max_by_key(|(_, _, notice)| notice.notice_id);
    Ok(finished.map(|(window, shown, notice)| MaintenanceBanner {
        window: window.clone(),
        shown,
        notice: notice.clone(),
    }))
}

/// How a finished window's final notice shows: a completed window's always, a cancelled
/// one's only when the window was on the banner as it was called off.
fn final_shown(window: &Window, banner_before: std::time::Duration) -> Option<Shown> {
    match window.state {
        WindowState::Completed => Some(Shown::Completed),
        WindowState::Cancelled => {
            let called_off = window.ended_at.unwrap_or(window.updated_at);
            let shown_from = window
                .plan
                .starts_at
                .checked_sub(SignedDuration::from_secs(banner_before.as_secs() as i64))
                .unwrap_or(window.plan.starts_at);
            (called_off >= shown_from).then_some(Shown::Cancelled)
        }
        _ => None,
    }
}

/// The newest of `notices` (newest first) of the window.
fn latest_notice(notices: &[PublishedNoticeRecord], id: i64) -> Option<&PublishedNoticeRecord> {
    notices.iter().find(|notice| notice.incident_id == id)
}

// ---------------------------------------------------------------------------------------
// status.json.

/// One window in `status.json`'s `maintenance` array.
#[derive(Debug, Serialize)]
pub(super) struct StatusWindow {
    pub id: i64,
    pub title: String,
    /// `announced`, `running`, `overran`, `completed` or `cancelled`.
    pub state: &'static str,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    /// Who the window concerns, in Swedish.
    pub scope: String,
    /// The window's public page.
    pub url: String,
}

/// Every announced, running or overrun window, and those completed or cancelled in the
/// last 24 hours, by start time.
pub(super) async fn status_windows(
    state: &AppState,
    now: Timestamp,
) -> Result<Vec<StatusWindow>, ApiError> {
    let since = now - STATUS_FINISHED_KEPT;
    let windows = public_windows(state, since).await?;
    Ok(windows
        .into_iter()
        .filter(|window| !window.state.is_final() || window.ended_at.is_none_or(|at| at >= since))
        .map(|window| StatusWindow {
            id: window.incident_id,
            state: window.state.as_str(),
            starts_at: window.plan.starts_at,
            ends_at: window.plan.ends_at,
            scope: scope_words(&window.plan.scope, &state.config),
            url: state.config.public_link(&window_path(window.incident_id)),
            title: window.plan.title,
        })
        .collect())
}

// ---------------------------------------------------------------------------------------
// The pages.

/// The public layout and the maintenance pages: an environment of this module's own, so
/// that the pages' templates stay beside their handlers. HTML auto-escape (by the
/// `.html` names) escapes every value.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut environment = Environment::new();
    for (name, source) in [
        (
            "public_layout.html",
            include_str!("templates/public_layout.html"),
        ),
        (
            "feedback_message.html",
            include_str!("templates/feedback_message.html"),
        ),
        (
            "maintenance_list.html",
            include_str!("templates/maintenance_list.html"),
        ),
        (
            "maintenance_window.html",
            include_str!("templates/maintenance_window.html"),
        ),
    ] {
        environment
            .add_template(name, source)
            .expect("the maintenance page templates compile");
    }
    environment
});

fn render(name: &str, context: minijinja::Value) -> String {
    match TEMPLATES
        .get_template(name)
        .and_then(|template| template.render(context))
    {
        Ok(html) => html,
        Err(error) => {
            tracing::error!(error = %error, template = name, "page failed to render");
            "<!DOCTYPE html><html lang=\"sv\"><title>Fel</title><p>Sidan kunde inte visas.</p></html>".to_owned()
        }
    }
}

/// A window as the pages show it.
#[derive(Debug, Serialize)]
struct WindowView {
    id: i64,
    title: String,
    when: String,
    starts_at: String,
    ends_at: String,
    scope: String,
    state: &'static str,
    state_label: &'static str,
    cancelled: bool,
    /// The texts by line, one paragraph each.
    impact: Vec<String>,
    advice: Vec<String>,
}

impl WindowView {
    fn new(window: &Window, config: &Config) -> WindowView {
        let lines = |text: &str| -> Vec<String> {
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect()
        };
        WindowView {
            id: window.incident_id,
            title: window.plan.title.clone(),
            when: when_words(window),
            starts_at: window.plan.starts_at.to_string(),
            ends_at: window.plan.ends_at.to_string(),
            scope: scope_words(&window.plan.scope, config),
            state: window.state.as_str(),
            state_label: window.state.label(),
            cancelled: window.state == WindowState::Cancelled,
            impact: lines(&window.plan.impact),
            advice: lines(&window.plan.advice),
        }
    }
}

/// A public page of this module, with `X-Robots-Tag` like the layout's `noindex`.
fn maintenance_page(status: StatusCode, html: String) -> Response {
    let mut response = page(status, html);
    response
        .headers_mut()
        .insert("x-robots-tag", HeaderValue::from_static("noindex"));
    response
}

fn message(status: StatusCode, heading: &str, paragraphs: &[&str]) -> Response {
    maintenance_page(
        status,
        render(
            "feedback_message.html",
            context! { heading => heading, paragraphs => paragraphs },
        ),
    )
}

fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Underhållet finns inte",
        &["Kontrollera länken, eller se listan över planerat underhåll på /public/maintenance."],
    )
}

fn unavailable() -> Response {
    let mut response = message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Försök igen om en stund",
        &["Uppgifterna om planerat underhåll kan inte visas just nu."],
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    response
}

/// `GET /public/maintenance`: upcoming and running windows, and those finished in the
/// last 30 days, with the calendar feed.
pub(super) async fn list_page(State(state): State<AppState>) -> Response {
    let now = Timestamp::now();
    let since = now - FINISHED_KEPT;
    let Ok(windows) = public_windows(&state, since).await else {
        return unavailable();
    };
    let (finished, current): (Vec<&Window>, Vec<&Window>) =
        windows.iter().partition(|window| window.state.is_final());
    let view = |windows: Vec<&Window>| -> Vec<WindowView> {
        windows
            .into_iter()
            .map(|window| WindowView::new(window, &state.config))
            .collect()
    };
    let mut finished = view(finished);
    // Newest first.
    finished.reverse();
    maintenance_page(
        StatusCode::OK,
        render(
            "maintenance_list.html",
            context! {
                service => state.config.notices.service_name,
                current => view(current),
                finished => finished,
                calendar_url => state.config.public_link("/public/maintenance.ics"),
            },
        ),
    )
}

/// `GET /public/maintenance/{id}`: one announced window; an unknown or unannounced one is
/// the same 404.
pub(super) async fn window_page(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(id) = incident_number(&id) else {
        return not_found();
    };
    let window = match state.storage.maintenance_window(id).await {
        Ok(Some(window)) if is_public(&window) => window,
        Ok(_) => return not_found(),
        Err(error) => {
            let _ = storage_unavailable(&state, error);
            return unavailable();
        }
    };
    maintenance_page(
        StatusCode::OK,
        render(
            "maintenance_window.html",
            context! {
                service => state.config.notices.service_name,
                window => WindowView::new(&window, &state.config),
                calendar_url => state.config.public_link("/public/maintenance.ics"),
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_templates_compile() {
        for name in ["maintenance_list.html", "maintenance_window.html"] {
            assert!(TEMPLATES.get_template(name).is_ok(), "{name}");
        }
    }
}
