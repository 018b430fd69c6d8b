//! Planned maintenance windows (transitional: being written).

use async_trait::async_trait;
use jiff::Timestamp;

use super::{SqliteStorage, SqliteTx};
use crate::classify::{Classification, ScopeSummary};
use crate::maintenance::{Window, WindowPlan};
use crate::storage::{Maintenance, MaintenanceAlert, MaintenanceTx, StorageError};

fn missing() -> StorageError {
    StorageError::permanent("maintenance", anyhow::anyhow!("not written yet"))
}

#[async_trait]
impl Maintenance for SqliteStorage {
    async fn maintenance_windows(&self, _since: Timestamp) -> Result<Vec<Window>, StorageError> {
        Err(missing())
    }
    async fn maintenance_windows_started(
        &self,
        _from: Timestamp,
        _to: Timestamp,
    ) -> Result<Vec<Window>, StorageError> {
        Err(missing())
    }
    async fn maintenance_window(&self, _incident_id: i64) -> Result<Option<Window>, StorageError> {
        Err(missing())
    }
    async fn maintenance_alerts(
        &self,
        _incident_id: i64,
    ) -> Result<Vec<MaintenanceAlert>, StorageError> {
        Err(missing())
    }
}

#[async_trait]
impl MaintenanceTx for SqliteTx {
    async fn insert_maintenance_window(
        &mut self,
        _plan: &WindowPlan,
        _summary: &ScopeSummary,
        _classification: &Classification,
        _operator: &str,
        _now: Timestamp,
    ) -> Result<i64, StorageError> {
        Err(missing())
    }
    async fn maintenance_window_tx(
        &mut self,
        _incident_id: i64,
    ) -> Result<Option<Window>, StorageError> {
        Err(missing())
    }
    async fn update_maintenance_window(
        &mut self,
        _window: &Window,
        _summary: &ScopeSummary,
        _classification: &Classification,
    ) -> Result<(), StorageError> {
        Err(missing())
    }
    async fn active_maintenance_windows(&mut self) -> Result<Vec<Window>, StorageError> {
        Err(missing())
    }
    async fn maintenance_windows_in_effect(
        &mut self,
        _from: Timestamp,
        _to: Timestamp,
    ) -> Result<Vec<Window>, StorageError> {
        Err(missing())
    }
    async fn record_maintenance_alerts(
        &mut self,
        _incident_id: i64,
        _alerts: &[MaintenanceAlert],
    ) -> Result<(), StorageError> {
        Err(missing())
    }
    async fn maintenance_alerts_tx(
        &mut self,
        _incident_id: i64,
    ) -> Result<Vec<MaintenanceAlert>, StorageError> {
        Err(missing())
    }
}
