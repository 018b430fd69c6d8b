//! SQLite queries for the operator side: operator mail (its own outbox), overviews for the
//! dashboard and the notifier, discarding drafts, manual drafts and drills.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use sqlx::{QueryBuilder, Row as _, Sqlite};

use super::sqlite::{
    Connection, INCIDENT_COLUMNS, SqliteStorage, incident_from_row, insert_draft_version,
    insert_events, parse_kind,
};
use super::sqlite_outbox::{OPERATOR_MAIL, claim_due};
use super::{
    ClaimedOperatorMail, DeliveryResult, DraftFields, EventWrite, IncidentOverview, NextUpdateDue,
    OperatorMailWrite, PendingDraftOverview, StorageError, format_time, parse_time,
};
use crate::notice::{NoticeKind, RenderedNotice};

impl SqliteStorage {
    pub async fn missing_operator_mail_keys(
        &self,
        keys: &[String],
    ) -> Result<Vec<String>, StorageError> {
        const OPERATION: &str = "missing_operator_mail_keys";
        let mut missing = Vec::new();
        for chunk in keys.chunks(500) {
            let mut builder: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT dedupe_key FROM operator_mail WHERE dedupe_key IN (");
            let mut separated = builder.separated(", ");
            for key in chunk {
                separated.push_bind(key.as_str());
            }
            builder.push(")");
            let found: Vec<String> = builder
                .build_query_scalar()
                .fetch_all(&self.reader)
                .await
                .map_err(|source| StorageError::new(OPERATION, source))?;
            missing.extend(chunk.iter().filter(|key| !found.contains(key)).cloned());
        }
        Ok(missing)
    }

    pub async fn enqueue_operator_mail(
        &self,
        mails: &[OperatorMailWrite],
        now: Timestamp,
    ) -> Result<u64, StorageError> {
        if mails.is_empty() {
            return Ok(0);
        }
        let mut transaction = self.begin_write().await?;
        let inserted =
            super::sqlite_followup::enqueue_operator_mail(&mut transaction, mails, now).await?;
        transaction
            .commit()
            .await
            .map_err(|source| StorageError::new("enqueue_operator_mail", source))?;
        Ok(inserted)
    }

    pub async fn claim_operator_mail(
        &self,
        max: usize,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Vec<ClaimedOperatorMail>, StorageError> {
        const OPERATION: &str = "claim_operator_mail";
        let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
        let mut transaction = self.begin_write().await?;
        let rows = claim_due(&mut transaction, &OPERATOR_MAIL, None, max, now, lease)
            .await
            .map_err(error)?;
        transaction.commit().await.map_err(error)?;
        let mut claimed = rows
            .iter()
            .map(|row| -> Result<ClaimedOperatorMail, sqlx::Error> {
                Ok(ClaimedOperatorMail {
                    mail_id: row.try_get("id")?,
                    dedupe_key: row.try_get("dedupe_key")?,
                    purpose: row.try_get("purpose")?,
                    incident_id: row.try_get("incident_id")?,
                    to_address: row.try_get("to_address")?,
                    subject: row.try_get("subject")?,
                    body: row.try_get("body")?,
                    attempt: row.try_get("attempts")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(error)?;
        claimed.sort_by_key(|mail| mail.mail_id);
        Ok(claimed)
    }

    pub async fn record_operator_mail(
        &self,
        results: &[DeliveryResult],
    ) -> Result<(), StorageError> {
        self.record_sends(&OPERATOR_MAIL, "record_operator_mail", results)
            .await
    }

    pub async fn operator_mail(
        &self,
    ) -> Result<Vec<(String, String, String, String)>, StorageError> {
        let rows = sqlx::query(
            "SELECT dedupe_key, to_address, subject, state FROM operator_mail ORDER BY id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(|source| StorageError::new("operator_mail", source))?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|source| StorageError::new("operator_mail", source))
    }

    pub async fn pending_drafts_overview(&self) -> Result<Vec<PendingDraftOverview>, StorageError> {
        const OPERATION: &str = "pending_drafts_overview";
        let rows = sqlx::query(
            "SELECT d.id, d.incident_id, i.kind AS incident_kind, d.kind, d.created_at, \
             (SELECT MAX(version) FROM draft_versions v WHERE v.draft_id = d.id) AS latest_version, \
             (SELECT MAX(m.draft_version) FROM operator_mail m WHERE m.draft_id = d.id AND m.purpose = 'review') \
                AS last_mailed_version, \
             (SELECT MAX(m.created_at) FROM operator_mail m WHERE m.draft_id = d.id AND m.purpose = 'review') \
                AS last_mailed_at \
             FROM drafts d JOIN incidents i ON i.id = d.incident_id WHERE d.state = 'pending' ORDER BY d.id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(|source| StorageError::new(OPERATION, source))?;
        rows.iter()
            .map(|row| -> anyhow::Result<PendingDraftOverview> {
                let last_mailed_at: Option<String> = row.try_get("last_mailed_at")?;
                Ok(PendingDraftOverview {
                    draft_id: row.try_get("id")?,
                    incident_id: row.try_get("incident_id")?,
                    incident_kind: row.try_get("incident_kind")?,
                    kind: parse_kind(row.try_get("kind")?)?,
                    created_at: parse_time(row.try_get("created_at")?)?,
                    latest_version: row
                        .try_get::<Option<i64>, _>("latest_version")?
                        .unwrap_or(0),
                    last_mailed_version: row.try_get("last_mailed_version")?,
                    last_mailed_at: last_mailed_at.as_deref().map(parse_time).transpose()?,
                })
            })
            .collect::<anyhow::Result<_>>()
            .map_err(|source| StorageError::new(OPERATION, source))
    }

    /// Open incidents whose last publication promised the next update by a time now past.
    pub async fn next_updates_due(
        &self,
        now: Timestamp,
    ) -> Result<Vec<NextUpdateDue>, StorageError> {
        const OPERATION: &str = "next_updates_due";
        let rows = sqlx::query(
            "SELECT p.id, p.incident_id, v.fields FROM published_notices p \
             JOIN incidents i ON i.id = p.incident_id \
             JOIN draft_versions v ON v.draft_id = p.draft_id AND v.version = p.draft_version \
             WHERE i.phase = 'open' AND p.kind <> 'resolved' \
             AND p.id = (SELECT MAX(id) FROM published_notices q WHERE q.incident_id = p.incident_id)",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(|source| StorageError::new(OPERATION, source))?;
        let mut due = Vec::new();
        for row in &rows {
            let parse = || -> anyhow::Result<Option<NextUpdateDue>> {
                let fields: DraftFields = serde_json::from_str(row.try_get("fields")?)?;
                Ok(fields
                    .next_update
                    .filter(|next| *next <= now)
                    .map(|next_update| NextUpdateDue {
                        notice_id: row.get("id"),
                        incident_id: row.get("incident_id"),
                        next_update,
                    }))
            };
            if let Some(item) = parse().map_err(|source| StorageError::new(OPERATION, source))? {
                due.push(item);
            }
        }
        Ok(due)
    }

    pub async fn incident_overview(
        &self,
        limit: i64,
    ) -> Result<Vec<IncidentOverview>, StorageError> {
        const OPERATION: &str = "incident_overview";
        let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
        let rows = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS}, \
             (SELECT COUNT(*) FROM incident_alerts a WHERE a.incident_id = incidents.id AND a.status = 'firing') \
                AS n_firing \
             FROM incidents ORDER BY (phase = 'open') DESC, id DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(error)?;
        let pending: Vec<(i64, String)> =
            sqlx::query_as("SELECT incident_id, kind FROM drafts WHERE state = 'pending'")
                .fetch_all(&self.reader)
                .await
                .map_err(error)?;
        let pending: HashMap<i64, String> = pending.into_iter().collect();
        rows.iter()
            .map(|row| -> anyhow::Result<IncidentOverview> {
                let mut record = incident_from_row(row, Default::default())?;
                record.incident.pending_draft = pending
                    .get(&record.incident_id)
                    .cloned()
                    .map(parse_kind)
                    .transpose()?;
                Ok(IncidentOverview {
                    n_firing: row.try_get("n_firing")?,
                    record,
                })
            })
            .collect::<anyhow::Result<_>>()
            .map_err(|source| StorageError::new(OPERATION, source))
    }

    /// Discards a pending draft with the operator's reason. Returns its incident and when
    /// it was created, or `None` when it was not pending.
    pub async fn discard_draft(
        &self,
        draft_id: i64,
        reason: &str,
        operator: &str,
        now: Timestamp,
    ) -> Result<Option<(i64, Timestamp)>, StorageError> {
        const OPERATION: &str = "discard_draft";
        let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
        let mut transaction = self.begin_write().await?;
        let row: Option<(i64, String)> = sqlx::query_as(
            "UPDATE drafts SET state = 'discarded', state_reason = ?, updated_at = ? \
             WHERE id = ? AND state = 'pending' RETURNING incident_id, created_at",
        )
        .bind(reason)
        .bind(format_time(now))
        .bind(draft_id)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(error)?;
        let Some((incident_id, created_at)) = row else {
            return Ok(None);
        };
        insert_events(
            &mut transaction,
            incident_id,
            &[EventWrite {
                at: now,
                source: operator.to_owned(),
                event: "draft_discarded".to_owned(),
                detail: serde_json::json!({"draft_id": draft_id, "reason": reason}),
            }],
        )
        .await?;
        transaction.commit().await.map_err(error)?;
        let created_at =
            parse_time(&created_at).map_err(|source| StorageError::new(OPERATION, source))?;
        Ok(Some((incident_id, created_at)))
    }
}

/// Inserts a pending draft (the operator's own: an update or a resolution by hand, or a
/// drill's first notice). Returns `None` when the incident already has a pending draft.
#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_operator_draft(
    connection: &mut Connection,
    incident_id: i64,
    kind: NoticeKind,
    fields: &DraftFields,
    input: &serde_json::Value,
    rendered: &RenderedNotice,
    operator: &str,
    now: Timestamp,
) -> Result<Option<i64>, StorageError> {
    const OPERATION: &str = "insert_operator_draft";
    let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
    let at = format_time(now);
    let draft_id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO drafts (incident_id, kind, state, created_at, updated_at) VALUES (?, ?, 'pending', ?, ?) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(incident_id)
    .bind(kind.as_str())
    .bind(&at)
    .bind(&at)
    .fetch_optional(&mut *connection)
    .await
    .map_err(error)?;
    let Some(draft_id) = draft_id else {
        return Ok(None);
    };
    insert_draft_version(
        connection, draft_id, 1, &at, operator, fields, input, rendered,
    )
    .await?;
    insert_events(
        connection,
        incident_id,
        &[EventWrite {
            at: now,
            source: operator.to_owned(),
            event: "draft_created".to_owned(),
            detail: serde_json::json!({"draft_id": draft_id, "kind": kind, "version": 1, "by_hand": true}),
        }],
    )
    .await?;
    Ok(Some(draft_id))
}

/// Opens a drill incident with the scope the operator chose. `None` when a drill is open.
pub(super) async fn insert_drill_incident(
    connection: &mut Connection,
    summary: &crate::classify::ScopeSummary,
    classification: &crate::classify::Classification,
    operator: &str,
    now: Timestamp,
) -> Result<Option<i64>, StorageError> {
    const OPERATION: &str = "insert_drill_incident";
    let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
    let json_error = |source: serde_json::Error| StorageError::new(OPERATION, source);
    let at = format_time(now);
    let incident_id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO incidents (kind, phase, started_at, n_reopened, summary, classification, created_at, updated_at) \
         VALUES ('drill', 'open', ?, 0, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(&at)
    .bind(serde_json::to_string(summary).map_err(json_error)?)
    .bind(serde_json::to_string(classification).map_err(json_error)?)
    .bind(&at)
    .bind(&at)
    .fetch_optional(&mut *connection)
    .await
    .map_err(error)?;
    if let Some(incident_id) = incident_id {
        insert_events(
            connection,
            incident_id,
            &[EventWrite {
                at: now,
                source: operator.to_owned(),
                event: "drill_started".to_owned(),
                detail: serde_json::json!({"n_affected": summary.n_affected, "level": classification.level.as_number()}),
            }],
        )
        .await?;
    }
    Ok(incident_id)
}

/// Closes a drill when its resolution is published.
pub(super) async fn close_drill(
    connection: &mut Connection,
    incident_id: i64,
    now: Timestamp,
) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE incidents SET phase = 'resolved', resolved_at = ?, updated_at = ? WHERE id = ? AND kind = 'drill' \
         AND phase = 'open'",
    )
    .bind(format_time(now))
    .bind(format_time(now))
    .bind(incident_id)
    .execute(&mut *connection)
    .await
    .map_err(|source| StorageError::new("close_drill", source))?;
    Ok(())
}

/// An incident without its alerts (for drafting by hand).
pub(super) async fn incident_by_id(
    connection: &mut Connection,
    incident_id: i64,
) -> Result<Option<super::IncidentRecord>, StorageError> {
    const OPERATION: &str = "incident_by_id";
    let row = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?"
    ))
    .bind(incident_id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(|source| StorageError::new(OPERATION, source))?;
    row.map(|row| incident_from_row(&row, Default::default()))
        .transpose()
        .map_err(|source| StorageError::new(OPERATION, source))
}

impl SqliteStorage {
    /// Deliveries that failed for good, newest first.
    pub async fn failed_deliveries(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, i64, String, String, String)>, StorageError> {
        let rows: Vec<(i64, i64, String, String, Option<String>)> = sqlx::query_as(
            "SELECT o.id, p.incident_id, o.channel, o.recipient, o.last_error FROM outbox o \
             JOIN published_notices p ON p.id = o.notice_id WHERE o.state = 'failed' ORDER BY o.id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(|source| StorageError::new("failed_deliveries", source))?;
        Ok(rows
            .into_iter()
            .map(|(id, incident_id, channel, recipient, error)| {
                (
                    id,
                    incident_id,
                    channel,
                    recipient,
                    error.unwrap_or_default(),
                )
            })
            .collect())
    }
}

impl SqliteStorage {
    /// Per notice and channel: (notice id, channel, state, count), for the newest `limit`
    /// notices.
    pub async fn delivery_summary(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, String, String, i64)>, StorageError> {
        sqlx::query_as(
            "SELECT o.notice_id, o.channel, o.state, COUNT(*) FROM outbox o \
             WHERE o.notice_id IN (SELECT id FROM published_notices ORDER BY id DESC LIMIT ?) \
             GROUP BY o.notice_id, o.channel, o.state ORDER BY o.notice_id DESC, o.channel, o.state",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(|source| StorageError::new("delivery_summary", source))
    }
}

impl SqliteStorage {
    /// A draft with all its versions, and its incident (without alerts).
    pub async fn draft_with_incident(
        &self,
        draft_id: i64,
    ) -> Result<Option<(super::DraftRecord, super::IncidentRecord)>, StorageError> {
        const OPERATION: &str = "draft_with_incident";
        let incident_id: Option<i64> =
            sqlx::query_scalar("SELECT incident_id FROM drafts WHERE id = ?")
                .bind(draft_id)
                .fetch_optional(&self.reader)
                .await
                .map_err(|source| StorageError::new(OPERATION, source))?;
        let Some(incident_id) = incident_id else {
            return Ok(None);
        };
        let draft = self
            .drafts(incident_id)
            .await?
            .into_iter()
            .find(|draft| draft.draft_id == draft_id);
        let mut connection = self
            .reader
            .acquire()
            .await
            .map_err(|source| StorageError::new(OPERATION, source))?;
        let incident = incident_by_id(&mut connection, incident_id).await?;
        Ok(draft.zip(incident))
    }
}

impl SqliteStorage {
    /// Per channel: deliveries waiting and when the oldest of them was published.
    pub async fn outbox_backlog(
        &self,
    ) -> Result<Vec<(String, i64, Option<Timestamp>)>, StorageError> {
        const OPERATION: &str = "outbox_backlog";
        let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
            "SELECT channel, COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending' GROUP BY channel",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(|source| StorageError::new(OPERATION, source))?;
        rows.into_iter()
            .map(|(channel, count, oldest)| {
                Ok((
                    channel,
                    count,
                    oldest.as_deref().map(parse_time).transpose()?,
                ))
            })
            .collect::<anyhow::Result<_>>()
            .map_err(|source| StorageError::new(OPERATION, source))
    }
}
