//! Planned maintenance: the windows beside their incidents (kind `maintenance`), and the
//! alerts that arrived inside a window's scope and times instead of opening an incident.
//! The rules are `crate::maintenance`; this is only what is stored.

use async_trait::async_trait;
use jiff::Timestamp;

use super::StorageError;
use crate::alertmanager::AlertStatus;
use crate::classify::{Classification, ScopeSummary};
use crate::maintenance::{Window, WindowPlan};

/// Maintenance windows, outside a transaction.
#[async_trait]
pub trait Maintenance: Send + Sync {
    /// Every window not ended before `since` (still open, or ended at `since` or later),
    /// by start time.
    async fn maintenance_windows(&self, since: Timestamp) -> Result<Vec<Window>, StorageError>;

    /// Every window that started in `[from, to)`, by start time (the follow-up's lists).
    async fn maintenance_windows_started(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Window>, StorageError>;

    /// One window.
    async fn maintenance_window(&self, incident_id: i64) -> Result<Option<Window>, StorageError>;

    /// The alerts recorded on a window, by first arrival.
    async fn maintenance_alerts(
        &self,
        incident_id: i64,
    ) -> Result<Vec<MaintenanceAlert>, StorageError>;
}

/// Maintenance windows, inside a write transaction.
#[async_trait]
pub trait MaintenanceTx: Send {
    /// Opens an incident of kind maintenance (numbered like every incident: the highest
    /// id + 1) with its window in state `planned`, and logs `maintenance_planned`.
    /// Returns the incident's id, which is also the window's.
    async fn insert_maintenance_window(
        &mut self,
        plan: &WindowPlan,
        summary: &ScopeSummary,
        classification: &Classification,
        operator: &str,
        now: Timestamp,
    ) -> Result<i64, StorageError>;

    /// One window, read inside the transaction.
    async fn maintenance_window_tx(
        &mut self,
        incident_id: i64,
    ) -> Result<Option<Window>, StorageError>;

    /// Writes what can change of a window: its plan (and times), state, sequence, steps
    /// done, silences, approval, announcement and end times, `updated_at`. Also moves
    /// the incident's scope when the plan's changed (`summary`, `classification`).
    async fn update_maintenance_window(
        &mut self,
        window: &Window,
        summary: &ScopeSummary,
        classification: &Classification,
    ) -> Result<(), StorageError>;

    /// The windows whose series may have a step due: announced or running.
    async fn active_maintenance_windows(&mut self) -> Result<Vec<Window>, StorageError>;

    /// Records alerts seen inside a window: a new alert is added, a known one (same
    /// fingerprint and start) gets its status, labels and `last_seen` updated.
    async fn record_maintenance_alerts(
        &mut self,
        incident_id: i64,
        alerts: &[MaintenanceAlert],
    ) -> Result<(), StorageError>;

    /// The alerts recorded on a window, by first arrival.
    async fn maintenance_alerts_tx(
        &mut self,
        incident_id: i64,
    ) -> Result<Vec<MaintenanceAlert>, StorageError>;
}

/// An alert that arrived inside a window.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceAlert {
    pub fingerprint: String,
    pub starts_at: Timestamp,
    pub status: AlertStatus,
    pub labels: crate::alertmanager::Labels,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}
