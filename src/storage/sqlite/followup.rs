//! Follow-up in SQLite: `feedback` and `lessons`, and the one read transaction the
//! incident report is built from. Deliveries are read as counts per (notice, channel)
//! from the outbox: the log never gets one entry per recipient.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row as _;

use super::rows::{
    NOTICE_COLUMNS, event_from_row, incident_by_id, notice_from_row, parse_draft_state, parse_kind,
};
use super::{Connection, SqliteStorage, SqliteTx, format_time, parse_time, storage_error};
use crate::storage::{
    DeliveryTallyRecord, DraftHistoryRecord, EventRecord, FeedbackRecord, FeedbackWrite, Followup,
    FollowupSnapshot, FollowupTx, IncidentRecord, LessonRecord, LessonWrite,
    OperatorMailTallyRecord, StorageError,
};

#[async_trait]
impl Followup for SqliteStorage {
    async fn followup_incident(
        &self,
        incident_id: i64,
    ) -> Result<Option<IncidentRecord>, StorageError> {
        let mut connection = self
            .reader
            .acquire()
            .await
            .map_err(|source| storage_error("followup_incident", source))?;
        incident_by_id(&mut connection, incident_id).await
    }

    async fn has_publication(&self, incident_id: i64) -> Result<bool, StorageError> {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM published_notices WHERE incident_id = ?)",
        )
        .bind(incident_id)
        .fetch_one(&self.reader)
        .await
        .map_err(|source| storage_error("has_publication", source))
    }

    async fn followup_snapshot(
        &self,
        incident_id: i64,
    ) -> Result<Option<FollowupSnapshot>, StorageError> {
        const OPERATION: &str = "followup_snapshot";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        // One read transaction: in WAL mode it sees one snapshot, so the counts, the log
        // and the drafts agree with each other.
        let mut transaction = self.reader.begin().await.map_err(error)?;
        let Some(incident) = incident_by_id(&mut transaction, incident_id).await? else {
            return Ok(None);
        };
        let events = read_events(&mut transaction, incident_id).await?;
        let drafts = read_draft_history(&mut transaction, incident_id).await?;
        let notice_rows = sqlx::query(&format!(
            "SELECT {NOTICE_COLUMNS} FROM published_notices p WHERE p.incident_id = ? ORDER BY p.id"
        ))
        .bind(incident_id)
        .fetch_all(&mut *transaction)
        .await
        .map_err(error)?;
        let notices = notice_rows
            .iter()
            .map(notice_from_row)
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|source| storage_error(OPERATION, source))?;
        let deliveries = read_delivery_tallies(&mut transaction, incident_id).await?;
        let outbox_targets = read_outbox_targets(&mut transaction, incident_id).await?;
        let operator_mail = read_operator_mail_tallies(&mut transaction, incident_id).await?;
        let feedback = read_feedback(&mut transaction, incident_id).await?;
        let lessons = read_lessons(&mut transaction, incident_id).await?;
        transaction.commit().await.map_err(error)?;
        Ok(Some(FollowupSnapshot {
            incident,
            events,
            drafts,
            notices,
            deliveries,
            outbox_targets,
            operator_mail,
            feedback,
            lessons,
        }))
    }

    async fn followup_incident_ids(
        &self,
        from: Option<Timestamp>,
        before: Option<Timestamp>,
    ) -> Result<Vec<i64>, StorageError> {
        sqlx::query_scalar(
            "SELECT id FROM incidents WHERE (? IS NULL OR started_at >= ?) AND (? IS NULL OR started_at < ?) \
             ORDER BY started_at, id",
        )
        .bind(from.map(format_time))
        .bind(from.map(format_time))
        .bind(before.map(format_time))
        .bind(before.map(format_time))
        .fetch_all(&self.reader)
        .await
        .map_err(|source| storage_error("followup_incident_ids", source))
    }
}

#[async_trait]
impl FollowupTx for SqliteTx {
    async fn insert_feedback(&mut self, write: &FeedbackWrite) -> Result<i64, StorageError> {
        insert_feedback(&mut self.0, write).await
    }

    async fn insert_lesson(&mut self, write: &LessonWrite) -> Result<i64, StorageError> {
        insert_lesson(&mut self.0, write).await
    }
}

async fn read_events(
    connection: &mut Connection,
    incident_id: i64,
) -> Result<Vec<EventRecord>, StorageError> {
    const OPERATION: &str = "followup_events";
    let rows = sqlx::query(
        "SELECT id, incident_id, at, source, event, detail FROM incident_events \
         WHERE incident_id = ? ORDER BY id",
    )
    .bind(incident_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|source| storage_error(OPERATION, source))?;
    rows.iter()
        .map(event_from_row)
        .collect::<anyhow::Result<Vec<_>>>()
        .map(crate::storage::expand_alert_groups)
        .map_err(|source| storage_error(OPERATION, source))
}

async fn read_draft_history(
    connection: &mut Connection,
    incident_id: i64,
) -> Result<Vec<DraftHistoryRecord>, StorageError> {
    const OPERATION: &str = "followup_drafts";
    let rows = sqlx::query(
        "SELECT d.id, d.kind, d.state, d.state_reason, d.created_at, d.updated_at, \
         (SELECT COUNT(*) FROM draft_versions v WHERE v.draft_id = d.id) AS n_versions, \
         (SELECT v.created_by FROM draft_versions v WHERE v.draft_id = d.id ORDER BY v.version LIMIT 1) \
            AS created_by, \
         (SELECT p.published_at FROM published_notices p WHERE p.draft_id = d.id) AS published_at \
         FROM drafts d WHERE d.incident_id = ? ORDER BY d.id",
    )
    .bind(incident_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|source| storage_error(OPERATION, source))?;
    rows.iter()
        .map(|row| -> anyhow::Result<DraftHistoryRecord> {
            let published_at: Option<String> = row.try_get("published_at")?;
            let created_by: Option<String> = row.try_get("created_by")?;
            Ok(DraftHistoryRecord {
                draft_id: row.try_get("id")?,
                kind: parse_kind(row.try_get("kind")?)?,
                state: parse_draft_state(row.try_get("state")?)?,
                state_reason: row.try_get("state_reason")?,
                created_at: parse_time(row.try_get("created_at")?)?,
                created_by: created_by.unwrap_or_else(|| "relay".to_owned()),
                updated_at: parse_time(row.try_get("updated_at")?)?,
                n_versions: row.try_get("n_versions")?,
                published_at: published_at.as_deref().map(parse_time).transpose()?,
            })
        })
        .collect::<anyhow::Result<_>>()
        .map_err(|source| storage_error(OPERATION, source))
}

async fn read_delivery_tallies(
    connection: &mut Connection,
    incident_id: i64,
) -> Result<Vec<DeliveryTallyRecord>, StorageError> {
    const OPERATION: &str = "followup_deliveries";
    let rows = sqlx::query(
        "SELECT o.notice_id, o.channel, COUNT(*) AS n_recipients, \
         SUM(o.state = 'sent') AS n_sent, SUM(o.state = 'failed') AS n_failed, \
         SUM(o.state = 'pending') AS n_pending, SUM(o.attempts) AS n_attempts, \
         SUM(MAX(o.attempts - 1, 0)) AS n_retries, \
         MIN(o.sent_at) AS first_sent_at, MAX(o.sent_at) AS last_sent_at \
         FROM outbox o JOIN published_notices p ON p.id = o.notice_id \
         WHERE p.incident_id = ? GROUP BY o.notice_id, o.channel ORDER BY o.notice_id, o.channel",
    )
    .bind(incident_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|source| storage_error(OPERATION, source))?;
    rows.iter()
        .map(|row| -> anyhow::Result<DeliveryTallyRecord> {
            let first_sent_at: Option<String> = row.try_get("first_sent_at")?;
            let last_sent_at: Option<String> = row.try_get("last_sent_at")?;
            Ok(DeliveryTallyRecord {
                notice_id: row.try_get("notice_id")?,
                channel: row.try_get("channel")?,
                n_recipients: row.try_get("n_recipients")?,
                n_sent: row.try_get("n_sent")?,
                n_failed: row.try_get("n_failed")?,
                n_pending: row.try_get("n_pending")?,
                n_attempts: row.try_get("n_attempts")?,
                n_retries: row.try_get("n_retries")?,
                first_sent_at: first_sent_at.as_deref().map(parse_time).transpose()?,
                last_sent_at: last_sent_at.as_deref().map(parse_time).transpose()?,
            })
        })
        .collect::<anyhow::Result<_>>()
        .map_err(|source| storage_error(OPERATION, source))
}

async fn read_outbox_targets(
    connection: &mut Connection,
    incident_id: i64,
) -> Result<BTreeMap<i64, (String, String)>, StorageError> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT o.id, o.channel, o.recipient FROM outbox o JOIN published_notices p ON p.id = o.notice_id \
         WHERE p.incident_id = ? AND o.id IN ( \
           SELECT json_extract(e.detail, '$.outbox_id') FROM incident_events e \
           WHERE e.incident_id = ? AND e.event IN ('delivery_failed', 'delivery_retried'))",
    )
    .bind(incident_id)
    .bind(incident_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|source| storage_error("followup_outbox_targets", source))?;
    Ok(rows
        .into_iter()
        .map(|(outbox_id, channel, recipient)| (outbox_id, (channel, recipient)))
        .collect())
}

async fn read_operator_mail_tallies(
    connection: &mut Connection,
    incident_id: i64,
) -> Result<Vec<OperatorMailTallyRecord>, StorageError> {
    const OPERATION: &str = "followup_operator_mail";
    let rows: Vec<(String, Option<i64>, String, i64)> = sqlx::query_as(
        "SELECT purpose, draft_id, MIN(created_at) AS first_at, COUNT(*) AS n_mails FROM operator_mail \
         WHERE incident_id = ? GROUP BY purpose, draft_id ORDER BY first_at, purpose, draft_id",
    )
    .bind(incident_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|source| storage_error(OPERATION, source))?;
    rows.into_iter()
        .map(|(purpose, draft_id, first_at, n_mails)| {
            Ok(OperatorMailTallyRecord {
                purpose,
                draft_id,
                first_at: parse_time(&first_at)?,
                n_mails,
            })
        })
        .collect::<anyhow::Result<_>>()
        .map_err(|source| storage_error(OPERATION, source))
}

async fn read_feedback(
    connection: &mut Connection,
    incident_id: i64,
) -> Result<Vec<FeedbackRecord>, StorageError> {
    const OPERATION: &str = "followup_feedback";
    let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
        "SELECT id, received_at, name, organisation, message FROM feedback WHERE incident_id = ? ORDER BY id",
    )
    .bind(incident_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|source| storage_error(OPERATION, source))?;
    rows.into_iter()
        .map(|(feedback_id, received_at, name, organisation, message)| {
            Ok(FeedbackRecord {
                feedback_id,
                incident_id,
                received_at: parse_time(&received_at)?,
                name,
                organisation,
                message,
            })
        })
        .collect::<anyhow::Result<_>>()
        .map_err(|source| storage_error(OPERATION, source))
}

async fn read_lessons(
    connection: &mut Connection,
    incident_id: i64,
) -> Result<Vec<LessonRecord>, StorageError> {
    const OPERATION: &str = "followup_lessons";
    let rows: Vec<(i64, String, String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT id, created_at, created_by, kind, audience, text FROM lessons WHERE incident_id = ? ORDER BY id",
    )
    .bind(incident_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|source| storage_error(OPERATION, source))?;
    rows.into_iter()
        .map(
            |(lesson_id, created_at, created_by, kind, audience, text)| {
                Ok(LessonRecord {
                    lesson_id,
                    incident_id,
                    created_at: parse_time(&created_at)?,
                    created_by,
                    kind,
                    audience,
                    text,
                })
            },
        )
        .collect::<anyhow::Result<_>>()
        .map_err(|source| storage_error(OPERATION, source))
}

pub(super) async fn insert_feedback(
    connection: &mut Connection,
    write: &FeedbackWrite,
) -> Result<i64, StorageError> {
    sqlx::query_scalar(
        "INSERT INTO feedback (incident_id, received_at, name, organisation, message) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(write.incident_id)
    .bind(format_time(write.received_at))
    .bind(&write.name)
    .bind(&write.organisation)
    .bind(&write.message)
    .fetch_one(&mut *connection)
    .await
    .map_err(|source| storage_error("insert_feedback", source))
}

pub(super) async fn insert_lesson(
    connection: &mut Connection,
    write: &LessonWrite,
) -> Result<i64, StorageError> {
    sqlx::query_scalar(
        "INSERT INTO lessons (incident_id, created_at, created_by, kind, audience, text) \
         VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(write.incident_id)
    .bind(format_time(write.created_at))
    .bind(&write.created_by)
    .bind(&write.kind)
    .bind(&write.audience)
    .bind(&write.text)
    .fetch_one(&mut *connection)
    .await
    .map_err(|source| storage_error("insert_lesson", source))
}
