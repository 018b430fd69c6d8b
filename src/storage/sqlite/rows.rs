//! What the aggregate files share: the text forms of stored values, reading the rows
//! several aggregates return (incidents, log entries, notices), and appending to the log.
//! Uses only the parent module and the text forms both backends share
//! (`storage/stored_text.rs`), so the sibling files form no circle.

use std::collections::BTreeMap;

use sqlx::{QueryBuilder, Row as _, Sqlite};

use super::{Connection, ROWS_PER_STATEMENT, format_time, parse_time, storage_error};
use crate::incident::{AlertKey, Incident, Phase, TrackedAlert};
use crate::storage::{
    EventRecord, EventWrite, IncidentRecord, PublishedNoticeRecord, StorageError,
};

pub(super) use crate::storage::stored_text::*;

pub(super) async fn insert_events(
    connection: &mut Connection,
    incident_id: i64,
    events: &[EventWrite],
) -> Result<(), StorageError> {
    let events: Vec<(i64, &EventWrite)> = events.iter().map(|event| (incident_id, event)).collect();
    insert_events_of(connection, &events).await
}

/// Appends log entries of one or more incidents, in order.
pub(super) async fn insert_events_of(
    connection: &mut Connection,
    events: &[(i64, &EventWrite)],
) -> Result<(), StorageError> {
    let mut statements = Statements::default();
    push_events_of(&mut statements, events);
    statements
        .execute(connection)
        .await
        .map_err(|source| storage_error("insert_events", source))
}

/// Adds to `statements` the inserts of log entries of one or more incidents, in order.
pub(super) fn push_events_of<'a>(
    statements: &mut Statements<'a>,
    events: &[(i64, &'a EventWrite)],
) {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let builder = statements.next(
            "INSERT INTO incident_events (incident_id, at, source, event, detail) ",
            chunk.len(),
        );
        builder.push_values(chunk, |mut row, (incident_id, event)| {
            row.push_bind(*incident_id)
                .push_bind(format_time(event.at))
                .push_bind(event.source.as_str())
                .push_bind(event.event.as_str())
                .push_bind(event.detail.as_str());
        });
    }
}

/// Statements with their bound values, sent to the connection's thread as one command
/// (sqlx runs a multi-statement query's statements in order, binding `?` parameters
/// across them): one round trip between threads for all of them. A command holds at
/// most about [`ROWS_PER_COMMAND`] rows' values: [`Statements::flush_if_full`] sends what
/// has gathered once past it, so that a large batch does not hold every value at once
/// (a 10,000-alert webhook's peak RSS rose 4-11 MB when it did).
#[derive(Default)]
pub(super) struct Statements<'a> {
    builder: Option<QueryBuilder<'a, Sqlite>>,
    rows: usize,
}

/// Rows whose values one command of [`Statements`] gathers before it is sent: a batch of
/// the incident worker's usual size (256-512 alerts) is two or three commands. With
/// 1,000, the peak RSS of a 20-alert storm was 2-8 MB higher than with a command per
/// statement; with 250, 1-2 MB (docs/performance.md).
const ROWS_PER_COMMAND: usize = 250;

impl<'a> Statements<'a> {
    /// Begins the next statement, of `rows` rows, with `sql`; push the rest of it to what
    /// is returned.
    pub(super) fn next(&mut self, sql: &str, rows: usize) -> &mut QueryBuilder<'a, Sqlite> {
        self.rows += rows;
        match &mut self.builder {
            Some(builder) => {
                builder.push("; ").push(sql);
            }
            None => self.builder = Some(QueryBuilder::new(sql)),
        }
        self.builder.as_mut().expect("set above")
    }

    /// Sends the statements gathered so far if they hold [`ROWS_PER_COMMAND`] rows or more.
    pub(super) async fn flush_if_full(
        &mut self,
        connection: &mut Connection,
    ) -> Result<(), sqlx::Error> {
        if self.rows >= ROWS_PER_COMMAND {
            std::mem::take(self).execute(connection).await?;
        }
        Ok(())
    }

    /// Runs the statements (nothing when there are none).
    pub(super) async fn execute(self, connection: &mut Connection) -> Result<(), sqlx::Error> {
        if let Some(mut builder) = self.builder {
            builder.build().execute(&mut *connection).await?;
        }
        Ok(())
    }
}

/// One row of `incident_events` (id, incident_id, at, source, event, detail), read back.
pub(super) fn event_from_row(row: &sqlx::sqlite::SqliteRow) -> anyhow::Result<EventRecord> {
    Ok(EventRecord {
        event_id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        at: parse_time(row.try_get("at")?)?,
        source: row.try_get("source")?,
        event: row.try_get("event")?,
        detail: serde_json::from_str(row.try_get("detail")?)?,
    })
}

pub(super) async fn load_incident_alerts(
    connection: &mut Connection,
    incident_id: i64,
) -> Result<BTreeMap<AlertKey, TrackedAlert>, StorageError> {
    const OPERATION: &str = "load_incident_alerts";
    let rows = sqlx::query(
        "SELECT fingerprint, starts_at, status, labels FROM incident_alerts WHERE incident_id = ?",
    )
    .bind(incident_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|source| storage_error(OPERATION, source))?;
    let mut alerts = BTreeMap::new();
    for row in rows {
        let parse = || -> anyhow::Result<(AlertKey, TrackedAlert)> {
            Ok((
                AlertKey {
                    fingerprint: row.try_get("fingerprint")?,
                    starts_at: parse_time(row.try_get("starts_at")?)?,
                },
                TrackedAlert {
                    status: parse_status(row.try_get("status")?)?,
                    labels: std::sync::Arc::new(parse_map(row.try_get("labels")?)?.into()),
                },
            ))
        };
        let (key, alert) = parse().map_err(|source| storage_error(OPERATION, source))?;
        alerts.insert(key, alert);
    }
    Ok(alerts)
}

pub(super) fn incident_from_row(
    row: &sqlx::sqlite::SqliteRow,
    alerts: BTreeMap<AlertKey, TrackedAlert>,
) -> anyhow::Result<IncidentRecord> {
    let resolved_at: Option<String> = row.try_get("resolved_at")?;
    let resolved_at = resolved_at.as_deref().map(parse_time).transpose()?;
    let phase: String = row.try_get("phase")?;
    let phase = match (phase.as_str(), resolved_at) {
        ("open", _) => Phase::Open,
        ("resolved", Some(at)) => Phase::Resolved { at },
        (other, _) => anyhow::bail!("incident phase {other:?} without its time"),
    };
    let published: Option<String> = row.try_get("published")?;
    let n_reopened: i64 = row.try_get("n_reopened")?;
    Ok(IncidentRecord {
        incident_id: row.try_get("id")?,
        kind: parse_incident_kind(row.try_get("kind")?)?,
        resolved_at,
        incident: Incident {
            incident_id: row.try_get("id")?,
            phase,
            started_at: parse_time(row.try_get("started_at")?)?,
            alerts,
            summary: serde_json::from_str(row.try_get("summary")?)?,
            classification: serde_json::from_str(row.try_get("classification")?)?,
            published: published.as_deref().map(serde_json::from_str).transpose()?,
            // Derived from the drafts table by the caller: one source of truth.
            pending_draft: None,
            n_reopened: u32::try_from(n_reopened)?,
        },
    })
}

pub(super) fn notice_from_row(
    row: &sqlx::sqlite::SqliteRow,
) -> anyhow::Result<PublishedNoticeRecord> {
    let level: i64 = row.try_get("level")?;
    Ok(PublishedNoticeRecord {
        notice_id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        draft_id: row.try_get("draft_id")?,
        draft_version: row.try_get("draft_version")?,
        kind: parse_kind(row.try_get("kind")?)?,
        level: parse_level(level)?,
        decided_by: row.try_get("decided_by")?,
        decided_role: row.try_get("decided_role")?,
        published_by: row.try_get("published_by")?,
        channels: serde_json::from_str(row.try_get("channels")?)?,
        rendered: serde_json::from_str(row.try_get("rendered")?)?,
        published_at: parse_time(row.try_get("published_at")?)?,
    })
}

/// An incident without its alerts (for drafting by hand).
pub(super) async fn incident_by_id(
    connection: &mut Connection,
    incident_id: i64,
) -> Result<Option<IncidentRecord>, StorageError> {
    const OPERATION: &str = "incident_by_id";
    let row = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?"
    ))
    .bind(incident_id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(|source| storage_error(OPERATION, source))?;
    row.map(|row| incident_from_row(&row, Default::default()))
        .transpose()
        .map_err(|source| storage_error(OPERATION, source))
}
