//! The text forms of stored values and the column lists that both backends read the same
//! way: one place that knows how a stored state, level or label map parses, and how a
//! maintenance window and its alerts are stored.

use std::collections::BTreeMap;

use anyhow::Context as _;

use crate::alertmanager::AlertStatus;
use crate::classify::Level;
use crate::incident::{DeliveryState, DraftState, IncidentKind};
use crate::maintenance::{Window, WindowPlan, WindowState};
use crate::notice::NoticeKind;
use crate::storage::{MaintenanceAlert, format_time, parse_time};

pub(in crate::storage) const INCIDENT_COLUMNS: &str =
    "id, kind, phase, started_at, resolved_at, n_reopened, summary, classification, published";

pub(in crate::storage) const NOTICE_COLUMNS: &str = "p.id, p.incident_id, p.draft_id, p.draft_version, p.kind, p.level, p.decided_by, \
     p.decided_role, p.published_by, p.channels, p.rendered, p.published_at";

pub(in crate::storage) fn parse_status(text: String) -> anyhow::Result<AlertStatus> {
    AlertStatus::parse(&text).with_context(|| format!("unknown stored status {text:?}"))
}

pub(in crate::storage) fn parse_map(text: String) -> anyhow::Result<BTreeMap<String, String>> {
    serde_json::from_str(&text).context("stored labels are not a JSON object of strings")
}

pub(in crate::storage) fn parse_kind(text: String) -> anyhow::Result<NoticeKind> {
    match text.as_str() {
        "initial" => Ok(NoticeKind::Initial),
        "update" => Ok(NoticeKind::Update),
        "resolved" => Ok(NoticeKind::Resolved),
        other => anyhow::bail!("unknown stored notice kind {other:?}"),
    }
}

pub(in crate::storage) fn parse_incident_kind(text: String) -> anyhow::Result<IncidentKind> {
    IncidentKind::parse(&text).with_context(|| format!("unknown stored incident kind {text:?}"))
}

pub(in crate::storage) fn parse_draft_state(text: String) -> anyhow::Result<DraftState> {
    DraftState::parse(&text).with_context(|| format!("unknown stored draft state {text:?}"))
}

pub(in crate::storage) fn parse_delivery_state(text: String) -> anyhow::Result<DeliveryState> {
    DeliveryState::parse(&text).with_context(|| format!("unknown stored delivery state {text:?}"))
}

pub(in crate::storage) fn parse_level(number: i64) -> anyhow::Result<Level> {
    u8::try_from(number)
        .ok()
        .and_then(Level::from_number)
        .with_context(|| format!("unknown stored level {number}"))
}

/// The columns of `maintenance_windows` a [`StoredWindow`] reads.
pub(in crate::storage) const WINDOW_COLUMNS: &str = "incident_id, plan, state, sequence, steps_done, silence_ids, approval, created_by, \
     created_at, announced_at, ended_at, updated_at";

/// The columns of `maintenance_alerts` a [`StoredMaintenanceAlert`] reads.
pub(in crate::storage) const MAINTENANCE_ALERT_COLUMNS: &str =
    "fingerprint, starts_at, status, labels, first_seen, last_seen";

/// A row of `maintenance_windows` as both backends store it: JSON for the plan, the steps
/// done, the silences and the approval, fixed-width text for the times.
#[derive(Debug, sqlx::FromRow)]
pub(in crate::storage) struct StoredWindow {
    pub incident_id: i64,
    pub plan: String,
    pub state: String,
    pub sequence: i64,
    pub steps_done: String,
    pub silence_ids: String,
    pub approval: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub announced_at: Option<String>,
    pub ended_at: Option<String>,
    pub updated_at: String,
}

impl StoredWindow {
    /// The stored form of a window (its plan's times go beside it, see [`plan_times`]).
    pub fn of(window: &Window) -> Result<StoredWindow, serde_json::Error> {
        Ok(StoredWindow {
            incident_id: window.incident_id,
            plan: serde_json::to_string(&window.plan)?,
            state: window.state.as_str().to_owned(),
            sequence: window.sequence,
            steps_done: serde_json::to_string(&window.steps_done)?,
            silence_ids: serde_json::to_string(&window.silence_ids)?,
            approval: window
                .approval
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
            created_by: window.created_by.clone(),
            created_at: format_time(window.created_at),
            announced_at: window.announced_at.map(format_time),
            ended_at: window.ended_at.map(format_time),
            updated_at: format_time(window.updated_at),
        })
    }

    /// Reads the window back; an unknown state or a field that does not parse is an error.
    pub fn into_window(self) -> anyhow::Result<Window> {
        let optional_time = |text: Option<String>| text.as_deref().map(parse_time).transpose();
        Ok(Window {
            incident_id: self.incident_id,
            plan: serde_json::from_str(&self.plan).context("stored plan does not parse")?,
            state: WindowState::parse(&self.state)
                .with_context(|| format!("unknown stored window state {:?}", self.state))?,
            sequence: self.sequence,
            steps_done: serde_json::from_str(&self.steps_done)
                .context("stored steps done are not a JSON array of strings")?,
            silence_ids: serde_json::from_str(&self.silence_ids)
                .context("stored silence ids are not a JSON array of strings")?,
            approval: self
                .approval
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .context("stored approval does not parse")?,
            created_by: self.created_by,
            created_at: parse_time(&self.created_at)?,
            announced_at: optional_time(self.announced_at)?,
            ended_at: optional_time(self.ended_at)?,
            updated_at: parse_time(&self.updated_at)?,
        })
    }
}

/// The plan's start and end as stored beside it, for the queries.
pub(in crate::storage) fn plan_times(plan: &WindowPlan) -> (String, String) {
    (format_time(plan.starts_at), format_time(plan.ends_at))
}

/// A row of `maintenance_alerts`.
#[derive(Debug, sqlx::FromRow)]
pub(in crate::storage) struct StoredMaintenanceAlert {
    pub fingerprint: String,
    pub starts_at: String,
    pub status: String,
    pub labels: String,
    pub first_seen: String,
    pub last_seen: String,
}

impl StoredMaintenanceAlert {
    pub fn of(alert: &MaintenanceAlert) -> Result<StoredMaintenanceAlert, serde_json::Error> {
        Ok(StoredMaintenanceAlert {
            fingerprint: alert.fingerprint.clone(),
            starts_at: format_time(alert.starts_at),
            status: alert.status.as_str().to_owned(),
            labels: serde_json::to_string(&alert.labels)?,
            first_seen: format_time(alert.first_seen),
            last_seen: format_time(alert.last_seen),
        })
    }

    pub fn into_alert(self) -> anyhow::Result<MaintenanceAlert> {
        Ok(MaintenanceAlert {
            fingerprint: self.fingerprint,
            starts_at: parse_time(&self.starts_at)?,
            status: parse_status(self.status)?,
            labels: std::sync::Arc::new(parse_map(self.labels)?.into()),
            first_seen: parse_time(&self.first_seen)?,
            last_seen: parse_time(&self.last_seen)?,
        })
    }
}
