//! A maintenance notice's own part: which step of a window's series it is and what the
//! window says. Its presence in [`super::NoticeInput::maintenance`] selects the
//! maintenance templates (`deploy/templates/maintenance_*.txt`). The windows themselves
//! are `crate::maintenance`.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::NoticeKind;

/// One notice of a window's series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// The first notice, when the operator publishes the window.
    Announcement,
    /// A reminder, this many minutes before the start.
    Reminder { before_minutes: i64 },
    /// "Underhållet har börjat."
    Started,
    /// "Underhållet är klart."
    Completed,
    /// The end came and alerts in scope still fire.
    Overran,
    /// The operator moved the window; the times it had.
    Moved {
        previous_starts_at: Timestamp,
        previous_ends_at: Timestamp,
    },
    /// The operator called it off.
    Cancelled,
}

impl Step {
    /// The key under which the scheduler records a step as done.
    pub fn key(&self) -> String {
        match self {
            Step::Announcement => "announcement".to_owned(),
            Step::Reminder { before_minutes } => format!("reminder:{before_minutes}"),
            Step::Started => "started".to_owned(),
            Step::Completed => "completed".to_owned(),
            Step::Overran => "overran".to_owned(),
            Step::Moved { .. } => "moved".to_owned(),
            Step::Cancelled => "cancelled".to_owned(),
        }
    }

    /// The step's name in the templates' context (`maintenance.step`).
    pub fn name(&self) -> &'static str {
        match self {
            Step::Announcement => "announcement",
            Step::Reminder { .. } => "reminder",
            Step::Started => "started",
            Step::Completed => "completed",
            Step::Overran => "overran",
            Step::Moved { .. } => "moved",
            Step::Cancelled => "cancelled",
        }
    }

    /// The draft kind the step's notice is: the first, an update, or the last.
    pub fn notice_kind(&self) -> NoticeKind {
        match self {
            Step::Announcement => NoticeKind::Initial,
            Step::Completed | Step::Cancelled => NoticeKind::Resolved,
            Step::Reminder { .. } | Step::Started | Step::Overran | Step::Moved { .. } => {
                NoticeKind::Update
            }
        }
    }

    /// Swedish, for operator pages and the log.
    pub fn label(&self) -> String {
        match self {
            Step::Announcement => "annons om planerat underhåll".to_owned(),
            Step::Reminder { before_minutes } => format!(
                "påminnelse {} före",
                crate::swedish::format_swedish_duration(Duration::from_secs(
                    (*before_minutes).max(0) as u64 * 60
                ))
            ),
            Step::Started => "underhållet har börjat".to_owned(),
            Step::Completed => "underhållet är klart".to_owned(),
            Step::Overran => "underhållet drar över tiden".to_owned(),
            Step::Moved { .. } => "underhållet är flyttat".to_owned(),
            Step::Cancelled => "underhållet är inställt".to_owned(),
        }
    }
}

/// What a maintenance notice says beyond an incident's fields; in
/// `NoticeInput::maintenance`, where it selects the maintenance templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceNotice {
    pub title: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub impact: String,
    pub advice: String,
    pub step: Step,
}

/// When the window starts, seen from the reminder's planned time (`before_minutes` ahead
/// of `starts_at`): "om 1 timme", "i morgon".
pub fn reminder_phrase(starts_at: Timestamp, before_minutes: i64) -> String {
    let reminded_at = starts_at
        .checked_sub(jiff::SignedDuration::from_mins(before_minutes.max(0)))
        .unwrap_or(starts_at);
    crate::swedish::format_swedish_time_until(reminded_at, starts_at)
}
