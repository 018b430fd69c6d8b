//! Planned maintenance in PostgreSQL: `maintenance_windows` (one row beside each incident of
//! kind `maintenance`, see `stored_text.rs` for its text forms) and `maintenance_alerts`
//! (the latest state of each alert that arrived inside a window); the same statements as
//! `sqlite/`, in PostgreSQL's placeholders. Written inside the serialised write
//! transaction, so numbering a window as the highest id + 1 has no race.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Postgres;

use super::rows::{
    MAINTENANCE_ALERT_COLUMNS, StoredMaintenanceAlert, StoredWindow, WINDOW_COLUMNS, insert_events,
    plan_times,
};
use super::{Connection, PgStorage, PgTx, format_time, storage_error};
use crate::classify::{Classification, ScopeSummary};
use crate::incident::LogEvent;
use crate::maintenance::{Window, WindowPlan};
use crate::storage::{EventWrite, Maintenance, MaintenanceAlert, MaintenanceTx, StorageError};

/// Which windows to read.
enum Which {
    One(i64),
    NotEndedBefore(Timestamp),
    StartedIn(Timestamp, Timestamp),
    Active,
    InEffect(Timestamp, Timestamp),
}

/// The windows `which` selects, by start time then id.
async fn windows<'c, E>(
    executor: E,
    which: Which,
    operation: &'static str,
) -> Result<Vec<Window>, StorageError>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let condition = match which {
        Which::One(_) => "incident_id = $1",
        Which::NotEndedBefore(_) => "ended_at IS NULL OR ended_at >= $1",
        Which::StartedIn(..) => "starts_at >= $1 AND starts_at < $2",
        Which::Active => "state IN ('announced', 'running')",
        Which::InEffect(..) => {
            "state IN ('announced', 'running') AND starts_at <= $1 AND ends_at > $2"
        }
    };
    let sql = format!(
        "SELECT {WINDOW_COLUMNS} FROM maintenance_windows WHERE {condition} \
         ORDER BY starts_at, incident_id"
    );
    let query = sqlx::query_as::<_, StoredWindow>(&sql);
    let query = match which {
        Which::One(incident_id) => query.bind(incident_id),
        Which::NotEndedBefore(since) => query.bind(format_time(since)),
        Which::StartedIn(from, to) => query.bind(format_time(from)).bind(format_time(to)),
        Which::Active => query,
        Which::InEffect(from, to) => query.bind(format_time(to)).bind(format_time(from)),
    };
    let rows = query
        .fetch_all(executor)
        .await
        .map_err(|source| storage_error(operation, source))?;
    rows.into_iter()
        .map(StoredWindow::into_window)
        .collect::<anyhow::Result<_>>()
        .map_err(|source| storage_error(operation, source))
}

async fn window<'c, E>(executor: E, incident_id: i64) -> Result<Option<Window>, StorageError>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    Ok(
        windows(executor, Which::One(incident_id), "maintenance_window")
            .await?
            .pop(),
    )
}

async fn alerts<'c, E>(executor: E, incident_id: i64) -> Result<Vec<MaintenanceAlert>, StorageError>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    const OPERATION: &str = "maintenance_alerts";
    let rows: Vec<StoredMaintenanceAlert> = sqlx::query_as(&format!(
        "SELECT {MAINTENANCE_ALERT_COLUMNS} FROM maintenance_alerts WHERE incident_id = $1 \
         ORDER BY first_seen, fingerprint, starts_at"
    ))
    .bind(incident_id)
    .fetch_all(executor)
    .await
    .map_err(|source| storage_error(OPERATION, source))?;
    rows.into_iter()
        .map(StoredMaintenanceAlert::into_alert)
        .collect::<anyhow::Result<_>>()
        .map_err(|source| storage_error(OPERATION, source))
}

async fn insert_window(
    connection: &mut Connection,
    plan: &WindowPlan,
    summary: &ScopeSummary,
    classification: &Classification,
    operator: &str,
    now: Timestamp,
) -> Result<i64, StorageError> {
    const OPERATION: &str = "insert_maintenance_window";
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
    let json_error = |source: serde_json::Error| storage_error(OPERATION, source);
    let at = format_time(now);
    let (starts_at, ends_at) = plan_times(plan);
    let incident_id: i64 = sqlx::query_scalar(
        "INSERT INTO incidents (id, kind, phase, started_at, n_reopened, summary, classification, created_at, updated_at) \
         VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM incidents), 'maintenance', 'open', $1, 0, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&starts_at)
    .bind(serde_json::to_string(summary).map_err(json_error)?)
    .bind(serde_json::to_string(classification).map_err(json_error)?)
    .bind(&at)
    .bind(&at)
    .fetch_one(&mut *connection)
    .await
    .map_err(error)?;
    sqlx::query(
        "INSERT INTO maintenance_windows (incident_id, plan, starts_at, ends_at, state, sequence, \
         steps_done, silence_ids, approval, created_by, created_at, announced_at, ended_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'planned', 0, '[]', '[]', NULL, $5, $6, NULL, NULL, $7)",
    )
    .bind(incident_id)
    .bind(serde_json::to_string(plan).map_err(json_error)?)
    .bind(&starts_at)
    .bind(&ends_at)
    .bind(operator)
    .bind(&at)
    .bind(&at)
    .execute(&mut *connection)
    .await
    .map_err(error)?;
    insert_events(
        connection,
        incident_id,
        &[EventWrite::new(
            now,
            operator,
            &LogEvent::MaintenancePlanned {
                title: plan.title.clone(),
                starts_at: plan.starts_at,
                ends_at: plan.ends_at,
            },
        )],
    )
    .await?;
    Ok(incident_id)
}

async fn update_window(
    connection: &mut Connection,
    window: &Window,
    summary: &ScopeSummary,
    classification: &Classification,
) -> Result<(), StorageError> {
    const OPERATION: &str = "update_maintenance_window";
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
    let json_error = |source: serde_json::Error| storage_error(OPERATION, source);
    let stored = StoredWindow::of(window).map_err(json_error)?;
    let (starts_at, ends_at) = plan_times(&window.plan);
    let updated = sqlx::query(
        "UPDATE maintenance_windows SET plan = $1, starts_at = $2, ends_at = $3, state = $4, sequence = $5, \
         steps_done = $6, silence_ids = $7, approval = $8, announced_at = $9, ended_at = $10, updated_at = $11 \
         WHERE incident_id = $12",
    )
    .bind(&stored.plan)
    .bind(&starts_at)
    .bind(&ends_at)
    .bind(&stored.state)
    .bind(stored.sequence)
    .bind(&stored.steps_done)
    .bind(&stored.silence_ids)
    .bind(&stored.approval)
    .bind(&stored.announced_at)
    .bind(&stored.ended_at)
    .bind(&stored.updated_at)
    .bind(window.incident_id)
    .execute(&mut *connection)
    .await
    .map_err(error)?;
    if updated.rows_affected() == 0 {
        return Err(storage_error(
            OPERATION,
            anyhow::anyhow!("no maintenance window {}", window.incident_id),
        ));
    }
    sqlx::query(
        "UPDATE incidents SET summary = $1, classification = $2, started_at = $3, updated_at = $4 \
         WHERE id = $5 AND kind = 'maintenance'",
    )
    .bind(serde_json::to_string(summary).map_err(json_error)?)
    .bind(serde_json::to_string(classification).map_err(json_error)?)
    .bind(&starts_at)
    .bind(&stored.updated_at)
    .bind(window.incident_id)
    .execute(&mut *connection)
    .await
    .map_err(error)?;
    Ok(())
}

/// Adds each alert, or updates the one with its fingerprint and start (its first arrival
/// stays).
async fn record_alerts(
    connection: &mut Connection,
    incident_id: i64,
    alerts: &[MaintenanceAlert],
) -> Result<(), StorageError> {
    const OPERATION: &str = "record_maintenance_alerts";
    for alert in alerts {
        let stored =
            StoredMaintenanceAlert::of(alert).map_err(|source| storage_error(OPERATION, source))?;
        sqlx::query(
            "INSERT INTO maintenance_alerts (incident_id, fingerprint, starts_at, status, labels, \
             first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (incident_id, fingerprint, starts_at) DO UPDATE SET \
             status = excluded.status, labels = excluded.labels, last_seen = excluded.last_seen",
        )
        .bind(incident_id)
        .bind(&stored.fingerprint)
        .bind(&stored.starts_at)
        .bind(&stored.status)
        .bind(&stored.labels)
        .bind(&stored.first_seen)
        .bind(&stored.last_seen)
        .execute(&mut *connection)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
    }
    Ok(())
}

#[async_trait]
impl Maintenance for PgStorage {
    async fn maintenance_windows(&self, since: Timestamp) -> Result<Vec<Window>, StorageError> {
        windows(
            &self.pool,
            Which::NotEndedBefore(since),
            "maintenance_windows",
        )
        .await
    }

    async fn maintenance_windows_started(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Window>, StorageError> {
        windows(
            &self.pool,
            Which::StartedIn(from, to),
            "maintenance_windows_started",
        )
        .await
    }

    async fn maintenance_window(&self, incident_id: i64) -> Result<Option<Window>, StorageError> {
        window(&self.pool, incident_id).await
    }

    async fn maintenance_alerts(
        &self,
        incident_id: i64,
    ) -> Result<Vec<MaintenanceAlert>, StorageError> {
        alerts(&self.pool, incident_id).await
    }
}

#[async_trait]
impl MaintenanceTx for PgTx {
    async fn insert_maintenance_window(
        &mut self,
        plan: &WindowPlan,
        summary: &ScopeSummary,
        classification: &Classification,
        operator: &str,
        now: Timestamp,
    ) -> Result<i64, StorageError> {
        insert_window(&mut self.0, plan, summary, classification, operator, now).await
    }

    async fn maintenance_window_tx(
        &mut self,
        incident_id: i64,
    ) -> Result<Option<Window>, StorageError> {
        window(&mut *self.0, incident_id).await
    }

    async fn update_maintenance_window(
        &mut self,
        window: &Window,
        summary: &ScopeSummary,
        classification: &Classification,
    ) -> Result<(), StorageError> {
        update_window(&mut self.0, window, summary, classification).await
    }

    async fn active_maintenance_windows(&mut self) -> Result<Vec<Window>, StorageError> {
        windows(&mut *self.0, Which::Active, "active_maintenance_windows").await
    }

    async fn record_maintenance_alerts(
        &mut self,
        incident_id: i64,
        alerts: &[MaintenanceAlert],
    ) -> Result<(), StorageError> {
        record_alerts(&mut self.0, incident_id, alerts).await
    }

    async fn maintenance_alerts_tx(
        &mut self,
        incident_id: i64,
    ) -> Result<Vec<MaintenanceAlert>, StorageError> {
        alerts(&mut *self.0, incident_id).await
    }
}

/// The windows in effect at some moment of `[from, to]`; see
/// [`crate::storage::CorrelationReads::maintenance_windows_in_effect`].
pub(super) async fn windows_in_effect(
    connection: &mut Connection,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Window>, StorageError> {
    windows(
        &mut *connection,
        Which::InEffect(from, to),
        "maintenance_windows_in_effect",
    )
    .await
}
