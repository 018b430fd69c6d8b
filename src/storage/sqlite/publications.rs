//! Publications and the outbox in SQLite: `published_notices` (one per draft) and
//! `outbox` (one row per notice, channel and recipient, claimed with a lease).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::{QueryBuilder, Row as _, Sqlite};

use super::outbox::{OUTBOX, claim_due};
use super::rows::{
    NOTICE_COLUMNS, insert_events, notice_from_row, parse_delivery_state, parse_draft_state,
    parse_kind,
};
use super::{
    Connection, ROWS_PER_STATEMENT, SqliteStorage, SqliteTx, format_time, parse_time, storage_error,
};
use crate::incident::{DeliveryState, LogEvent};
use crate::storage::{
    AlreadyPublished, BannerRecord, ClaimedDelivery, DeliveryResult, DraftFields, DraftForPublish,
    DraftVersionRecord, EventWrite, NextUpdateDue, OutboxRecord, PublicationWrite, Publications,
    PublicationsTx, PublishedNoticeRecord, StorageError,
};

/// The operators' deliveries that failed for good, newest first (`?` the most): read
/// every second, so by the partial index `outbox_failed_operators`, never through the
/// whole outbox, which keeps every delivery ever made.
const FAILED_DELIVERIES: &str = "SELECT o.id, p.incident_id, o.channel, o.recipient, o.last_error \
     FROM outbox o JOIN published_notices p ON p.id = o.notice_id \
     WHERE o.state = 'failed' AND o.subscriber_id IS NULL ORDER BY o.id DESC LIMIT ?";

/// Per channel, the deliveries waiting and the oldest one's creation: read by the
/// gauges, by the partial index `outbox_pending`.
const OUTBOX_BACKLOG: &str = "SELECT channel, COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending' GROUP BY channel";

#[async_trait]
impl Publications for SqliteStorage {
    async fn claim_deliveries(
        &self,
        channel: &str,
        max: usize,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StorageError> {
        const OPERATION: &str = "claim_deliveries";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let mut transaction = self.begin_immediate().await?;
        let rows = claim_due(
            &mut transaction,
            &OUTBOX,
            Some(("channel", channel)),
            max,
            now,
            lease,
        )
        .await
        .map_err(error)?;
        let mut notices: HashMap<i64, PublishedNoticeRecord> = HashMap::new();
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let notice_id: i64 = row.try_get("notice_id").map_err(error)?;
            if let std::collections::hash_map::Entry::Vacant(entry) = notices.entry(notice_id) {
                let notice_row = sqlx::query(&format!(
                    "SELECT {NOTICE_COLUMNS} FROM published_notices p WHERE p.id = ?"
                ))
                .bind(notice_id)
                .fetch_one(&mut *transaction)
                .await
                .map_err(error)?;
                let notice = notice_from_row(&notice_row)
                    .map_err(|source| storage_error(OPERATION, source))?;
                entry.insert(notice);
            }
            let parse = || -> anyhow::Result<ClaimedDelivery> {
                Ok(ClaimedDelivery {
                    outbox_id: row.try_get("id")?,
                    channel: row.try_get("channel")?,
                    recipient: row.try_get("recipient")?,
                    delivery_id: row.try_get("delivery_id")?,
                    attempt: row.try_get("attempts")?,
                    created_at: parse_time(row.try_get("created_at")?)?,
                    reclaimed: row.try_get("reclaimed")?,
                    notice: notices[&notice_id].clone(),
                })
            };
            claimed.push(parse().map_err(|source| storage_error(OPERATION, source))?);
        }
        transaction.commit().await.map_err(error)?;
        claimed.sort_by_key(|delivery| delivery.outbox_id);
        Ok(claimed)
    }

    async fn record_deliveries(&self, results: &[DeliveryResult]) -> Result<(), StorageError> {
        self.record_sends(&OUTBOX, "record_deliveries", results)
            .await
    }

    async fn release_delivery_leases(&self) -> Result<u64, StorageError> {
        let mut transaction = self.begin_immediate().await?;
        let released = sqlx::query("UPDATE outbox SET lease_until = NULL WHERE state = 'pending' AND lease_until IS NOT NULL")
            .execute(&mut *transaction)
            .await
            .map_err(|source| storage_error("release_delivery_leases", source))?
            .rows_affected();
        transaction
            .commit()
            .await
            .map_err(|source| storage_error("release_delivery_leases", source))?;
        Ok(released)
    }

    async fn retry_failed_delivery(
        &self,
        outbox_id: i64,
        now: Timestamp,
        operator: &str,
    ) -> Result<bool, StorageError> {
        const OPERATION: &str = "retry_failed_delivery";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let mut transaction = self.begin_immediate().await?;
        let incident_id: Option<i64> = sqlx::query_scalar(
            "UPDATE outbox SET state = 'pending', next_attempt_at = ?, lease_until = NULL \
             WHERE id = ? AND state = 'failed' \
             RETURNING (SELECT incident_id FROM published_notices p WHERE p.id = outbox.notice_id)",
        )
        .bind(format_time(now))
        .bind(outbox_id)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(error)?;
        if let Some(incident_id) = incident_id {
            insert_events(
                &mut transaction,
                incident_id,
                &[EventWrite::new(
                    now,
                    operator,
                    &LogEvent::DeliveryRetried { outbox_id },
                )],
            )
            .await?;
        }
        transaction.commit().await.map_err(error)?;
        Ok(incident_id.is_some())
    }

    async fn outbox(&self, incident_id: Option<i64>) -> Result<Vec<OutboxRecord>, StorageError> {
        const OPERATION: &str = "outbox";
        let rows = sqlx::query(
            "SELECT o.id, o.notice_id, p.incident_id, o.channel, o.recipient, o.delivery_id, o.state, o.attempts, \
             o.next_attempt_at, o.last_error, o.created_at, o.sent_at \
             FROM outbox o JOIN published_notices p ON p.id = o.notice_id \
             WHERE (? IS NULL OR p.incident_id = ?) ORDER BY o.id",
        )
        .bind(incident_id)
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
        rows.iter()
            .map(|row| -> anyhow::Result<OutboxRecord> {
                let sent_at: Option<String> = row.try_get("sent_at")?;
                Ok(OutboxRecord {
                    outbox_id: row.try_get("id")?,
                    notice_id: row.try_get("notice_id")?,
                    incident_id: row.try_get("incident_id")?,
                    channel: row.try_get("channel")?,
                    recipient: row.try_get("recipient")?,
                    delivery_id: row.try_get("delivery_id")?,
                    state: parse_delivery_state(row.try_get("state")?)?,
                    attempts: row.try_get("attempts")?,
                    next_attempt_at: parse_time(row.try_get("next_attempt_at")?)?,
                    last_error: row.try_get("last_error")?,
                    created_at: parse_time(row.try_get("created_at")?)?,
                    sent_at: sent_at.as_deref().map(parse_time).transpose()?,
                })
            })
            .collect::<anyhow::Result<_>>()
            .map_err(|source| storage_error(OPERATION, source))
    }

    async fn published_notices(
        &self,
        channels: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<PublishedNoticeRecord>, StorageError> {
        const OPERATION: &str = "published_notices";
        let mut builder: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {NOTICE_COLUMNS} FROM published_notices p"));
        if let Some(channels) = channels {
            if channels.is_empty() {
                return Ok(Vec::new());
            }
            builder.push(
                " WHERE EXISTS (SELECT 1 FROM outbox o WHERE o.notice_id = p.id AND o.channel IN (",
            );
            let mut separated = builder.separated(", ");
            for channel in channels {
                separated.push_bind(channel.as_str());
            }
            builder.push("))");
        }
        builder.push(" ORDER BY p.id DESC LIMIT ");
        builder.push_bind(limit);
        let rows = builder
            .build()
            .fetch_all(&self.reader)
            .await
            .map_err(|source| storage_error(OPERATION, source))?;
        rows.iter()
            .map(notice_from_row)
            .collect::<anyhow::Result<_>>()
            .map_err(|source| storage_error(OPERATION, source))
    }

    async fn current_banner(
        &self,
        banner_channels: &[String],
        include_drills: bool,
        resolved_since: Timestamp,
    ) -> Result<Option<BannerRecord>, StorageError> {
        const OPERATION: &str = "current_banner";
        if banner_channels.is_empty() {
            return Ok(None);
        }
        // An ongoing incident's notice before any all-clear; the newest first.
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {NOTICE_COLUMNS}, i.kind AS incident_kind, v.fields AS version_fields \
             FROM published_notices p JOIN incidents i ON i.id = p.incident_id \
             JOIN draft_versions v ON v.draft_id = p.draft_id AND v.version = p.draft_version \
             WHERE NOT EXISTS (SELECT 1 FROM published_notices r WHERE r.incident_id = p.incident_id \
                               AND r.kind = 'resolved' AND r.id > p.id) \
             AND (p.kind <> 'resolved' OR p.published_at >= "
        ));
        builder.push_bind(format_time(resolved_since));
        // A maintenance window's notices reach the banner only through its times
        // (`http::public::maintenance`): an announcement published weeks ahead is no
        // disruption now.
        builder.push(") AND i.kind <> 'maintenance'");
        if !include_drills {
            builder.push(" AND i.kind <> 'drill'");
        }
        builder.push(
            " AND EXISTS (SELECT 1 FROM outbox o WHERE o.notice_id = p.id AND o.channel IN (",
        );
        let mut separated = builder.separated(", ");
        for channel in banner_channels {
            separated.push_bind(channel.as_str());
        }
        builder.push(")) ORDER BY p.kind = 'resolved', p.id DESC LIMIT 1");
        let row = builder
            .build()
            .fetch_optional(&self.reader)
            .await
            .map_err(|source| storage_error(OPERATION, source))?;
        row.as_ref()
            .map(|row| -> anyhow::Result<BannerRecord> {
                let kind: String = row.try_get("incident_kind")?;
                Ok(BannerRecord {
                    notice: notice_from_row(row)?,
                    drill: kind == "drill",
                    fields: serde_json::from_str(row.try_get("version_fields")?)?,
                })
            })
            .transpose()
            .map_err(|source| storage_error(OPERATION, source))
    }

    /// Open incidents whose last publication promised the next update by a time now past.
    async fn next_updates_due(&self, now: Timestamp) -> Result<Vec<NextUpdateDue>, StorageError> {
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
        .map_err(|source| storage_error(OPERATION, source))?;
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
            if let Some(item) = parse().map_err(|source| storage_error(OPERATION, source))? {
                due.push(item);
            }
        }
        Ok(due)
    }

    /// Deliveries that failed for good, newest first.
    async fn failed_deliveries(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, i64, String, String, String)>, StorageError> {
        let rows: Vec<(i64, i64, String, String, Option<String>)> =
            sqlx::query_as(FAILED_DELIVERIES)
                .bind(limit)
                .fetch_all(&self.reader)
                .await
                .map_err(|source| storage_error("failed_deliveries", source))?;
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

    /// Per notice and channel: (notice id, channel, state, count), for the newest `limit`
    /// notices.
    async fn delivery_summary(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, String, DeliveryState, i64)>, StorageError> {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT o.notice_id, o.channel, o.state, COUNT(*) FROM outbox o \
             WHERE o.notice_id IN (SELECT id FROM published_notices ORDER BY id DESC LIMIT ?) \
             GROUP BY o.notice_id, o.channel, o.state ORDER BY o.notice_id DESC, o.channel, o.state",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(|source| storage_error("delivery_summary", source))?;
        rows.into_iter()
            .map(|(notice_id, channel, state, count)| {
                Ok((notice_id, channel, parse_delivery_state(state)?, count))
            })
            .collect::<anyhow::Result<_>>()
            .map_err(|source| storage_error("delivery_summary", source))
    }

    /// Per channel: deliveries waiting and when the oldest of them was published.
    async fn outbox_backlog(&self) -> Result<Vec<(String, i64, Option<Timestamp>)>, StorageError> {
        const OPERATION: &str = "outbox_backlog";
        let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(OUTBOX_BACKLOG)
            .fetch_all(&self.reader)
            .await
            .map_err(|source| storage_error(OPERATION, source))?;
        rows.into_iter()
            .map(|(channel, count, oldest)| {
                Ok((
                    channel,
                    count,
                    oldest.as_deref().map(parse_time).transpose()?,
                ))
            })
            .collect::<anyhow::Result<_>>()
            .map_err(|source| storage_error(OPERATION, source))
    }
}

#[async_trait]
impl PublicationsTx for SqliteTx {
    async fn draft_for_publish(
        &mut self,
        draft_id: i64,
        version: i64,
    ) -> Result<Option<DraftForPublish>, StorageError> {
        draft_for_publish(&mut self.0, draft_id, version).await
    }

    async fn insert_publication(
        &mut self,
        write: &PublicationWrite,
    ) -> Result<Result<i64, AlreadyPublished>, StorageError> {
        insert_publication(&mut self.0, write).await
    }
}

pub(super) async fn draft_for_publish(
    connection: &mut Connection,
    draft_id: i64,
    version: i64,
) -> Result<Option<DraftForPublish>, StorageError> {
    const OPERATION: &str = "draft_for_publish";
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
    let Some(row) = sqlx::query(
        "SELECT d.id, d.incident_id, d.kind, d.state, \
         (SELECT MAX(version) FROM draft_versions v WHERE v.draft_id = d.id) AS latest_version \
         FROM drafts d WHERE d.id = ?",
    )
    .bind(draft_id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(error)?
    else {
        return Ok(None);
    };
    let version_row = sqlx::query(
        "SELECT version, created_at, created_by, fields, input, rendered FROM draft_versions \
         WHERE draft_id = ? AND version = ?",
    )
    .bind(draft_id)
    .bind(version)
    .fetch_optional(&mut *connection)
    .await
    .map_err(error)?;
    let parse = || -> anyhow::Result<DraftForPublish> {
        let version = match &version_row {
            Some(version) => Some(DraftVersionRecord {
                version: version.try_get("version")?,
                created_at: parse_time(version.try_get("created_at")?)?,
                created_by: version.try_get("created_by")?,
                fields: serde_json::from_str(version.try_get("fields")?)?,
                input: serde_json::from_str(version.try_get("input")?)?,
                rendered: serde_json::from_str(version.try_get("rendered")?)?,
            }),
            None => None,
        };
        Ok(DraftForPublish {
            draft_id: row.try_get("id")?,
            incident_id: row.try_get("incident_id")?,
            kind: parse_kind(row.try_get("kind")?)?,
            state: parse_draft_state(row.try_get("state")?)?,
            latest_version: row
                .try_get::<Option<i64>, _>("latest_version")?
                .unwrap_or(0),
            version,
        })
    };
    parse()
        .map(Some)
        .map_err(|source| storage_error(OPERATION, source))
}

pub(super) async fn insert_publication(
    connection: &mut Connection,
    write: &PublicationWrite,
) -> Result<Result<i64, AlreadyPublished>, StorageError> {
    const OPERATION: &str = "insert_publication";
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
    let json_error = |source: serde_json::Error| storage_error(OPERATION, source);
    let at = format_time(write.published_at);
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO published_notices (incident_id, draft_id, draft_version, kind, level, decided_by, decided_role, \
         published_by, channels, rendered, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (draft_id) DO NOTHING RETURNING id",
    )
    .bind(write.incident_id)
    .bind(write.draft_id)
    .bind(write.draft_version)
    .bind(write.kind.as_str())
    .bind(i64::from(write.level.as_number()))
    .bind(&write.decided_by)
    .bind(&write.decided_role)
    .bind(&write.published_by)
    .bind(serde_json::to_string(&write.channels).map_err(json_error)?)
    .bind(serde_json::to_string(&write.rendered).map_err(json_error)?)
    .bind(&at)
    .fetch_optional(&mut *connection)
    .await
    .map_err(error)?;
    let Some(notice_id) = inserted else {
        return Ok(Err(AlreadyPublished));
    };
    let updated = sqlx::query(
        "UPDATE drafts SET state = 'published', updated_at = ? WHERE id = ? AND state = 'pending'",
    )
    .bind(&at)
    .bind(write.draft_id)
    .execute(&mut *connection)
    .await
    .map_err(error)?;
    if updated.rows_affected() != 1 {
        return Ok(Err(AlreadyPublished));
    }
    let installation: String =
        sqlx::query_scalar("SELECT installation_id FROM installation WHERE id = 1")
            .fetch_one(&mut *connection)
            .await
            .map_err(error)?;
    sqlx::query("UPDATE incidents SET published = ?, updated_at = ? WHERE id = ?")
        .bind(serde_json::to_string(&write.published).map_err(json_error)?)
        .bind(&at)
        .bind(write.incident_id)
        .execute(&mut *connection)
        .await
        .map_err(error)?;
    for chunk in write.deliveries.chunks(ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO outbox (notice_id, channel, recipient, delivery_id, state, attempts, next_attempt_at, created_at, subscriber_id) ",
        );
        builder.push_values(chunk, |mut row, (channel, recipient)| {
            row.push_bind(notice_id)
                .push_bind(channel.as_str())
                .push_bind(recipient.as_str())
                .push_bind(delivery_id(&installation, notice_id, channel, recipient))
                .push_bind("pending")
                .push_bind(0_i64)
                .push_bind(at.as_str())
                .push_bind(at.as_str())
                .push_bind(crate::subscription::subscriber_of_recipient(recipient));
        });
        builder
            .build()
            .execute(&mut *connection)
            .await
            .map_err(error)?;
    }
    let mut events = write.events.clone();
    for event in &mut events {
        let mut detail: serde_json::Value =
            serde_json::from_str(&event.detail).map_err(json_error)?;
        if let Some(fields) = detail.as_object_mut() {
            fields.insert("notice_id".to_owned(), serde_json::json!(notice_id));
        }
        event.detail = detail.to_string();
    }
    insert_events(connection, write.incident_id, &events).await?;
    Ok(Ok(notice_id))
}

/// A stable id for one (notice, channel, recipient) of this installation: stored with the
/// outbox row, so the same on every retry, and never the same on another installation.
fn delivery_id(installation: &str, notice_id: i64, channel: &str, recipient: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let digest =
        Sha256::digest(format!("{installation}\0{notice_id}\0{channel}\0{recipient}").as_bytes());
    format!("{notice_id}-{}", &crate::alertmanager::hex(&digest)[..24])
}

#[cfg(test)]
mod tests {
    use super::super::{query_plan, test_storage};
    use super::{FAILED_DELIVERIES, OUTBOX_BACKLOG};
    use crate::storage::Backend as _;

    /// The reads of the outbox that run every few seconds go through their partial
    /// indexes, never through every delivery ever made.
    #[tokio::test]
    async fn the_periodic_reads_of_the_outbox_use_their_partial_indexes() {
        let (_folder, storage) = test_storage().await;
        for (sql, index) in [
            (FAILED_DELIVERIES, "outbox_failed_operators"),
            (OUTBOX_BACKLOG, "outbox_pending"),
        ] {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let plan = query_plan(&storage.reader, sqlx::query(&explain).bind(50_i64)).await;
            let on_outbox: Vec<&String> = plan
                .iter()
                .filter(|step| step.starts_with("SCAN o") || step.starts_with("SCAN outbox"))
                .collect();
            assert!(
                !on_outbox.is_empty()
                    && on_outbox
                        .iter()
                        .all(|step| step.contains(&format!("INDEX {index}"))),
                "{sql}: {plan:?}"
            );
        }
        storage.close().await;
    }
}
