//! Incidents and drafts in SQLite: `incidents` (one open per kind), `incident_alerts`,
//! `drafts` (one pending per incident) with `draft_versions`, and the log
//! `incident_events` (append-only).

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::{QueryBuilder, Row as _, Sqlite};

use super::maintenance::windows_in_effect;
use super::receipts::RECEIPT_ROWS_PER_STATEMENT;
use super::receipts::next_unprocessed_receipts;
use super::rows::{
    INCIDENT_COLUMNS, Statements, event_from_row, incident_by_id, incident_from_row, insert_events,
    load_incident_alerts, parse_draft_state, parse_kind, push_events_of,
};
use super::{
    Connection, ROWS_PER_STATEMENT, SqliteRead, SqliteStorage, SqliteTx, format_time, parse_time,
    storage_error,
};
use crate::alertmanager::LabelMap;
use crate::classify::{Classification, ScopeSummary};
use crate::incident::{
    AlertKey, FiringScopes, Incident, IncidentEngine, LogEvent, Phase, TrackedAlert,
};
use crate::maintenance::Window;
use crate::notice::{NoticeKind, RenderedNotice};
use crate::storage::stored_text::{parse_map, parse_status};
use crate::storage::{
    CorrelationReads, CorrelationState, CorrelationVersion, DraftFields, DraftRecord,
    DraftVersionRecord, DraftWrite, EventRecord, EventWrite, IncidentBatch, IncidentOverview,
    IncidentRecord, IncidentWrite, Incidents, IncidentsTx, PendingDraft, StorageError,
    UnprocessedReceipt,
};

#[async_trait]
impl Incidents for SqliteStorage {
    async fn incidents(&self) -> Result<Vec<IncidentRecord>, StorageError> {
        const OPERATION: &str = "incidents";
        let mut connection = self
            .reader
            .acquire()
            .await
            .map_err(|source| storage_error(OPERATION, source))?;
        let rows = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents ORDER BY id"
        ))
        .fetch_all(&mut *connection)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let incident_id: i64 = row
                .try_get("id")
                .map_err(|source| storage_error(OPERATION, source))?;
            let alerts = load_incident_alerts(&mut connection, incident_id).await?;
            let mut record = incident_from_row(row, alerts)
                .map_err(|source| storage_error(OPERATION, source))?;
            let pending: Option<String> = sqlx::query_scalar(
                "SELECT kind FROM drafts WHERE incident_id = ? AND state = 'pending'",
            )
            .bind(incident_id)
            .fetch_optional(&mut *connection)
            .await
            .map_err(|source| storage_error(OPERATION, source))?;
            record.incident.pending_draft = pending
                .map(parse_kind)
                .transpose()
                .map_err(|source| storage_error(OPERATION, source))?;
            records.push(record);
        }
        Ok(records)
    }

    async fn drafts(&self, incident_id: i64) -> Result<Vec<DraftRecord>, StorageError> {
        const OPERATION: &str = "drafts";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let drafts = sqlx::query(
            "SELECT id, incident_id, kind, state, state_reason FROM drafts WHERE incident_id = ? ORDER BY id",
        )
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await
        .map_err(error)?;
        let versions = sqlx::query(
            "SELECT v.draft_id, v.version, v.created_at, v.created_by, v.fields, v.input, v.rendered \
             FROM draft_versions v JOIN drafts d ON d.id = v.draft_id \
             WHERE d.incident_id = ? ORDER BY v.draft_id, v.version",
        )
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await
        .map_err(error)?;
        let parse = || -> anyhow::Result<Vec<DraftRecord>> {
            let mut records = Vec::with_capacity(drafts.len());
            for row in &drafts {
                let draft_id: i64 = row.try_get("id")?;
                let mut record_versions = Vec::new();
                for version in versions
                    .iter()
                    .filter(|version| version.get::<i64, _>("draft_id") == draft_id)
                {
                    record_versions.push(DraftVersionRecord {
                        version: version.try_get("version")?,
                        created_at: parse_time(version.try_get("created_at")?)?,
                        created_by: version.try_get("created_by")?,
                        fields: serde_json::from_str(version.try_get("fields")?)?,
                        input: serde_json::from_str(version.try_get("input")?)?,
                        rendered: serde_json::from_str(version.try_get("rendered")?)?,
                    });
                }
                records.push(DraftRecord {
                    draft_id,
                    incident_id: row.try_get("incident_id")?,
                    kind: parse_kind(row.try_get("kind")?)?,
                    state: parse_draft_state(row.try_get("state")?)?,
                    state_reason: row.try_get("state_reason")?,
                    versions: record_versions,
                });
            }
            Ok(records)
        };
        parse().map_err(|source| storage_error(OPERATION, source))
    }

    async fn incident_events(&self, incident_id: i64) -> Result<Vec<EventRecord>, StorageError> {
        const OPERATION: &str = "incident_events";
        let rows = sqlx::query(
            "SELECT id, incident_id, at, source, event, detail FROM incident_events \
             WHERE incident_id = ? ORDER BY id",
        )
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
        rows.iter()
            .map(event_from_row)
            .collect::<anyhow::Result<Vec<_>>>()
            .map(crate::storage::expand_alert_groups)
            .map_err(|source| storage_error(OPERATION, source))
    }

    async fn open_monitoring_incident(
        &self,
        now: Timestamp,
        summary: &crate::classify::ScopeSummary,
        classification: &crate::classify::Classification,
        detail: serde_json::Value,
    ) -> Result<Option<i64>, StorageError> {
        const OPERATION: &str = "open_monitoring_incident";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let json_error = |source: serde_json::Error| storage_error(OPERATION, source);
        let mut transaction = self.begin_immediate().await?;
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM incidents WHERE kind = 'monitoring' AND phase = 'open'",
        )
        .fetch_optional(&mut *transaction)
        .await
        .map_err(error)?;
        if open.is_some() {
            return Ok(None);
        }
        let at = format_time(now);
        let incident_id: i64 = sqlx::query_scalar(
            "INSERT INTO incidents (kind, phase, started_at, n_reopened, summary, classification, created_at, updated_at) \
             VALUES ('monitoring', 'open', ?, 0, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&at)
        .bind(serde_json::to_string(summary).map_err(json_error)?)
        .bind(serde_json::to_string(classification).map_err(json_error)?)
        .bind(&at)
        .bind(&at)
        .fetch_one(&mut *transaction)
        .await
        .map_err(error)?;
        insert_events(
            &mut transaction,
            incident_id,
            &[EventWrite {
                at: now,
                source: "relay".to_owned(),
                event: "monitoring_chain_broken".to_owned(),
                detail: detail.to_string(),
            }],
        )
        .await?;
        transaction.commit().await.map_err(error)?;
        Ok(Some(incident_id))
    }

    async fn resolve_monitoring_incident(
        &self,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError> {
        const OPERATION: &str = "resolve_monitoring_incident";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        // Cheap check on the reader first: the common case is that nothing is open.
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM incidents WHERE kind = 'monitoring' AND phase = 'open'",
        )
        .fetch_optional(&self.reader)
        .await
        .map_err(error)?;
        if open.is_none() {
            return Ok(None);
        }
        let mut transaction = self.begin_immediate().await?;
        let at = format_time(now);
        let resolved: Option<i64> = sqlx::query_scalar(
            "UPDATE incidents SET phase = 'resolved', resolved_at = ?, updated_at = ? \
             WHERE kind = 'monitoring' AND phase = 'open' RETURNING id",
        )
        .bind(&at)
        .bind(&at)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(error)?;
        if let Some(incident_id) = resolved {
            insert_events(
                &mut transaction,
                incident_id,
                &[EventWrite::new(
                    now,
                    "relay",
                    &LogEvent::MonitoringChainRestored {},
                )],
            )
            .await?;
        }
        transaction.commit().await.map_err(error)?;
        Ok(resolved)
    }

    async fn incident_overview(&self, limit: i64) -> Result<Vec<IncidentOverview>, StorageError> {
        overview(&self.reader, limit, true).await
    }

    async fn recent_incidents(&self, limit: i64) -> Result<Vec<IncidentRecord>, StorageError> {
        Ok(overview(&self.reader, limit, false)
            .await?
            .into_iter()
            .map(|overview| overview.record)
            .collect())
    }

    /// Discards a pending draft with the operator's reason. Returns its incident and when
    /// it was created, or `None` when it was not pending.
    async fn discard_draft(
        &self,
        draft_id: i64,
        reason: &str,
        operator: &str,
        now: Timestamp,
    ) -> Result<Option<(i64, Timestamp)>, StorageError> {
        const OPERATION: &str = "discard_draft";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let mut transaction = self.begin_immediate().await?;
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
            &[EventWrite::new(
                now,
                operator,
                &LogEvent::DraftDiscarded {
                    draft_id,
                    reason: reason.to_owned(),
                },
            )],
        )
        .await?;
        transaction.commit().await.map_err(error)?;
        let created_at =
            parse_time(&created_at).map_err(|source| storage_error(OPERATION, source))?;
        Ok(Some((incident_id, created_at)))
    }

    /// A draft with all its versions, and its incident (without alerts).
    async fn draft_with_incident(
        &self,
        draft_id: i64,
    ) -> Result<Option<(DraftRecord, IncidentRecord)>, StorageError> {
        const OPERATION: &str = "draft_with_incident";
        let incident_id: Option<i64> =
            sqlx::query_scalar("SELECT incident_id FROM drafts WHERE id = ?")
                .bind(draft_id)
                .fetch_optional(&self.reader)
                .await
                .map_err(|source| storage_error(OPERATION, source))?;
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
            .map_err(|source| storage_error(OPERATION, source))?;
        let incident = incident_by_id(&mut connection, incident_id).await?;
        Ok(draft.zip(incident))
    }
}

#[async_trait]
impl IncidentsTx for SqliteTx {
    async fn stage_incident_step(
        &mut self,
        write: &mut IncidentWrite,
        batch: &mut IncidentBatch,
    ) -> Result<Option<i64>, StorageError> {
        stage_incident_step(&mut self.0, write, batch).await
    }

    async fn finish_incident_batch(
        &mut self,
        batch: &IncidentBatch,
        processed_at: Timestamp,
    ) -> Result<(), StorageError> {
        finish_incident_batch(&mut self.0, batch, processed_at).await
    }

    async fn add_draft_version(
        &mut self,
        incident_id: i64,
        draft_id: i64,
        version: i64,
        created_by: &str,
        fields: &DraftFields,
        input: &serde_json::Value,
        rendered: &RenderedNotice,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        add_draft_version(
            &mut self.0,
            incident_id,
            draft_id,
            version,
            created_by,
            fields,
            input,
            rendered,
            at,
        )
        .await
    }

    async fn incident_by_id(
        &mut self,
        incident_id: i64,
    ) -> Result<Option<IncidentRecord>, StorageError> {
        incident_by_id(&mut self.0, incident_id).await
    }

    async fn insert_operator_draft(
        &mut self,
        incident_id: i64,
        kind: NoticeKind,
        fields: &DraftFields,
        input: &serde_json::Value,
        rendered: &RenderedNotice,
        operator: &str,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError> {
        insert_operator_draft(
            &mut self.0,
            incident_id,
            kind,
            fields,
            input,
            rendered,
            operator,
            now,
        )
        .await
    }

    async fn insert_drill_incident(
        &mut self,
        summary: &ScopeSummary,
        classification: &Classification,
        operator: &str,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError> {
        insert_drill_incident(&mut self.0, summary, classification, operator, now).await
    }

    async fn close_drill(&mut self, incident_id: i64, now: Timestamp) -> Result<(), StorageError> {
        close_drill(&mut self.0, incident_id, now).await
    }

    async fn append_events(
        &mut self,
        incident_id: i64,
        events: &[EventWrite],
    ) -> Result<(), StorageError> {
        insert_events(&mut self.0, incident_id, events).await
    }
    async fn withdraw_pending_draft(
        &mut self,
        incident_id: i64,
        reason: &str,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError> {
        let error = |source: sqlx::Error| storage_error("withdraw_pending_draft", source);
        let draft_id: Option<i64> = sqlx::query_scalar(
            "UPDATE drafts SET state = 'withdrawn', state_reason = ?, updated_at = ? \
             WHERE incident_id = ? AND state = 'pending' RETURNING id",
        )
        .bind(reason)
        .bind(format_time(now))
        .bind(incident_id)
        .fetch_optional(&mut *self.0)
        .await
        .map_err(error)?;
        if let Some(draft_id) = draft_id {
            let event = EventWrite::new(
                now,
                "relay",
                &LogEvent::DraftWithdrawn {
                    draft_id,
                    reason: reason.to_owned(),
                },
            );
            insert_events(&mut self.0, incident_id, &[event]).await?;
        }
        Ok(draft_id)
    }
}

/// The reads the incident worker plans from, on a write transaction and on a read
/// snapshot alike (both hold a `sqlx::Transaction` in `.0`).
macro_rules! correlation_reads {
    ($transaction:ty) => {
        #[async_trait]
        impl CorrelationReads for $transaction {
            async fn next_unprocessed_receipts(
                &mut self,
                limit: usize,
                alert_budget: usize,
            ) -> Result<Vec<UnprocessedReceipt>, StorageError> {
                next_unprocessed_receipts(&mut self.0, limit, alert_budget).await
            }

            async fn load_correlation(
                &mut self,
                keys: &[AlertKey],
                previous: Option<IncidentEngine>,
            ) -> Result<CorrelationState, StorageError> {
                load_correlation(&mut self.0, keys, previous).await
            }

            async fn correlation_version(&mut self) -> Result<CorrelationVersion, StorageError> {
                correlation_version(&mut self.0).await
            }

            async fn maintenance_windows_in_effect(
                &mut self,
                from: Timestamp,
                to: Timestamp,
            ) -> Result<Vec<Window>, StorageError> {
                windows_in_effect(&mut self.0, from, to).await
            }
        }
    };
}

correlation_reads!(SqliteTx);
correlation_reads!(SqliteRead);

/// Open incidents first, then the most recent, at most `limit`; with each one's firing
/// alerts counted when `count_firing` (0 otherwise): the count reads every alert of the
/// incident, a scan that grows with it.
async fn overview(
    pool: &sqlx::SqlitePool,
    limit: i64,
    count_firing: bool,
) -> Result<Vec<IncidentOverview>, StorageError> {
    const OPERATION: &str = "incident_overview";
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
    let n_firing = if count_firing {
        "(SELECT COUNT(*) FROM incident_alerts a WHERE a.incident_id = incidents.id AND a.status = 'firing')"
    } else {
        "0"
    };
    let rows = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS}, {n_firing} AS n_firing \
         FROM incidents ORDER BY (phase = 'open') DESC, id DESC LIMIT ?"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(error)?;
    let pending: Vec<(i64, String)> =
        sqlx::query_as("SELECT incident_id, kind FROM drafts WHERE state = 'pending'")
            .fetch_all(pool)
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
        .map_err(|source| storage_error(OPERATION, source))
}

/// The next incident id, the latest outage incident (without alerts) and its pending draft.
pub(super) async fn correlation_version(
    connection: &mut Connection,
) -> Result<CorrelationVersion, StorageError> {
    const OPERATION: &str = "correlation_version";
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
    let next_incident_id: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM incidents")
            .fetch_one(&mut *connection)
            .await
            .map_err(error)?;
    let latest_row = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE kind = 'outage' ORDER BY id DESC LIMIT 1"
    ))
    .fetch_optional(&mut *connection)
    .await
    .map_err(error)?;
    let Some(row) = latest_row else {
        return Ok(CorrelationVersion {
            next_incident_id,
            latest: None,
            pending_draft: None,
        });
    };
    let mut latest = incident_from_row(&row, BTreeMap::new())
        .map_err(|source| storage_error(OPERATION, source))?
        .incident;
    let pending = sqlx::query(
        "SELECT d.id, d.kind, v.version, v.fields FROM drafts d JOIN draft_versions v ON v.draft_id = d.id \
         WHERE d.incident_id = ? AND d.state = 'pending' ORDER BY v.version DESC LIMIT 1",
    )
    .bind(latest.incident_id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(error)?;
    let pending_draft = match pending {
        Some(pending) => {
            let parse = || -> anyhow::Result<PendingDraft> {
                Ok(PendingDraft {
                    draft_id: pending.try_get("id")?,
                    kind: parse_kind(pending.try_get("kind")?)?,
                    version: pending.try_get("version")?,
                    fields: serde_json::from_str(pending.try_get("fields")?)?,
                })
            };
            Some(parse().map_err(|source| storage_error(OPERATION, source))?)
        }
        None => None,
    };
    latest.pending_draft = pending_draft.as_ref().map(|pending| pending.kind);
    Ok(CorrelationVersion {
        next_incident_id,
        latest: Some(latest),
        pending_draft,
    })
}

pub(super) async fn load_correlation(
    connection: &mut Connection,
    keys: &[AlertKey],
    previous: Option<IncidentEngine>,
) -> Result<CorrelationState, StorageError> {
    const OPERATION: &str = "load_correlation";
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
    let version = correlation_version(connection).await?;
    let mut latest = version.latest.clone();
    let latest_id = latest.as_ref().map(|incident| incident.incident_id);
    let mut firing_scopes = FiringScopes::default();
    let mut firing_labels = None;
    if let Some(incident_id) = latest_id {
        // Only the incident worker changes an outage incident's alerts, so the scopes the
        // last committed batch counted are still what the database holds.
        match previous
            .map(|previous| previous.firing_scopes)
            .filter(|scopes| scopes.incident_id() == Some(incident_id))
        {
            Some(scopes) => firing_scopes = scopes,
            None => {
                let rows = sqlx::query(
                    "SELECT labels, COUNT(*) AS n FROM incident_alerts \
                     WHERE incident_id = ? AND status = 'firing' GROUP BY labels",
                )
                .bind(incident_id)
                .fetch_all(&mut *connection)
                .await
                .map_err(error)?;
                let mut counts = Vec::with_capacity(rows.len());
                for row in rows {
                    let parse = || -> anyhow::Result<(LabelMap, usize)> {
                        Ok((
                            parse_map(row.try_get("labels")?)?.into(),
                            usize::try_from(row.try_get::<i64, _>("n")?)?,
                        ))
                    };
                    counts.push(parse().map_err(|source| storage_error(OPERATION, source))?);
                }
                firing_labels = Some(counts);
            }
        }
    }

    // Of the keys, those already known: the latest incident's (with their state) and
    // those of older incidents or first seen resolved (retired).
    let mut retired_alerts = HashSet::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut builder = tracked_alerts_query(chunk);
        let rows = builder
            .build()
            .fetch_all(&mut *connection)
            .await
            .map_err(error)?;
        for row in rows {
            let parse = || -> anyhow::Result<(AlertKey, Option<i64>, TrackedAlert)> {
                Ok((
                    AlertKey {
                        fingerprint: row.try_get("fingerprint")?,
                        starts_at: parse_time(row.try_get("starts_at")?)?,
                    },
                    row.try_get("incident_id")?,
                    TrackedAlert {
                        status: parse_status(row.try_get("status")?)?,
                        labels: std::sync::Arc::new(parse_map(row.try_get("labels")?)?.into()),
                    },
                ))
            };
            let (key, incident_id, alert) =
                parse().map_err(|source| storage_error(OPERATION, source))?;
            match latest.as_mut() {
                Some(incident) if incident_id == Some(incident.incident_id) => {
                    incident.alerts.insert(key, alert);
                }
                _ => {
                    retired_alerts.insert(key);
                }
            }
        }
    }
    let pending_draft = version.pending_draft.clone();
    Ok(CorrelationState {
        engine: IncidentEngine {
            latest,
            retired_alerts,
            next_incident_id: version.next_incident_id,
            firing_scopes,
        },
        pending_draft,
        version,
        firing_labels,
    })
}

/// The stored alerts of `keys`, as a join with the keys as a table of values: one
/// primary-key lookup each, whatever SQLite's version. The row-value `IN` list this
/// replaced was planned as lookups by the bundled 3.46, but as a scan of the whole table
/// by 3.40 (Debian's, which an unbundled build would link: 113 ms against 1.7 ms for 240
/// keys in 280,000 alerts) and with a Bloom filter per key by 3.51 (2.1 against 1.2 ms).
fn tracked_alerts_query(keys: &[AlertKey]) -> QueryBuilder<'_, Sqlite> {
    let mut builder: QueryBuilder<Sqlite> =
        QueryBuilder::new("WITH wanted (fingerprint, starts_at) AS (VALUES ");
    let mut separated = builder.separated(", ");
    for key in keys {
        separated.push("(");
        separated.push_bind_unseparated(key.fingerprint.as_str());
        separated.push_unseparated(", ");
        separated.push_bind_unseparated(format_time(key.starts_at));
        separated.push_unseparated(")");
    }
    builder.push(
        ") SELECT a.fingerprint, a.starts_at, a.incident_id, a.status, a.labels \
         FROM wanted w JOIN incident_alerts a \
         ON a.fingerprint = w.fingerprint AND a.starts_at = w.starts_at",
    );
    builder
}

/// Writes what one step must write at once (a new incident's row, its drafts, whose ids
/// later steps of the batch need) and adds the rest to `batch`, which
/// [`finish_incident_batch`] writes in a few statements. Returns the id of the draft
/// created, if any.
pub(super) async fn stage_incident_step(
    connection: &mut Connection,
    write: &mut IncidentWrite,
    batch: &mut IncidentBatch,
) -> Result<Option<i64>, StorageError> {
    batch.retired_unseen.append(&mut write.retired_unseen);
    let Some(change) = &mut write.change else {
        return Ok(None);
    };
    const OPERATION: &str = "stage_incident_step";
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
    let incident = &change.incident;
    let incident_id = incident.incident_id;
    let at = format_time(write.at);
    if change.is_new {
        // The previous incident's last state first: at most one outage is open.
        update_headers(connection, &batch.headers).await?;
        batch.headers.clear();
        let header =
            IncidentHeader::of(incident).map_err(|source| storage_error(OPERATION, source))?;
        sqlx::query(
            "INSERT INTO incidents (id, kind, phase, started_at, resolved_at, n_reopened, summary, classification, \
             published, created_at, updated_at) VALUES (?, 'outage', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(incident_id)
        .bind(header.phase)
        .bind(&header.started_at)
        .bind(&header.resolved_at)
        .bind(header.n_reopened)
        .bind(&header.summary)
        .bind(&header.classification)
        .bind(&header.published)
        .bind(&at)
        .bind(&at)
        .execute(&mut *connection)
        .await
        .map_err(error)?;
    }
    // The header as the last step of the batch leaves it is written once, at the end.
    batch
        .headers
        .insert(incident_id, (incident.clone(), write.at));
    // Moved, not copied: a large webhook's alerts and log entries exist once.
    batch.alerts.extend(
        std::mem::take(&mut change.alerts)
            .into_iter()
            .map(|(key, alert)| (incident_id, key, alert)),
    );
    batch.events.extend(
        std::mem::take(&mut change.events)
            .into_iter()
            .map(|event| (incident_id, event)),
    );

    let now = write.at;
    let mut created = None;
    for draft in &change.drafts {
        match draft {
            DraftWrite::Create {
                kind,
                fields,
                input,
                rendered,
            } => {
                let draft_id: i64 = sqlx::query_scalar(
                    "INSERT INTO drafts (incident_id, kind, state, created_at, updated_at) \
                     VALUES (?, ?, 'pending', ?, ?) RETURNING id",
                )
                .bind(incident_id)
                .bind(kind.as_str())
                .bind(&at)
                .bind(&at)
                .fetch_one(&mut *connection)
                .await
                .map_err(error)?;
                insert_draft_version(
                    connection, draft_id, 1, &at, "relay", fields, input, rendered,
                )
                .await?;
                created = Some(draft_id);
                batch.events.push((
                    incident_id,
                    EventWrite::new(
                        now,
                        "relay",
                        &LogEvent::DraftCreated {
                            draft_id,
                            kind: *kind,
                            version: 1,
                            by_hand: false,
                        },
                    ),
                ));
            }
            DraftWrite::Revise {
                draft_id,
                fields,
                input,
                rendered,
            } => {
                let version: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM draft_versions WHERE draft_id = ?",
                )
                .bind(draft_id)
                .fetch_one(&mut *connection)
                .await
                .map_err(error)?;
                insert_draft_version(
                    connection, *draft_id, version, &at, "relay", fields, input, rendered,
                )
                .await?;
                sqlx::query("UPDATE drafts SET updated_at = ? WHERE id = ?")
                    .bind(&at)
                    .bind(draft_id)
                    .execute(&mut *connection)
                    .await
                    .map_err(error)?;
                batch.events.push((
                    incident_id,
                    EventWrite::new(
                        now,
                        "relay",
                        &LogEvent::DraftRevised {
                            draft_id: *draft_id,
                            version,
                        },
                    ),
                ));
            }
            DraftWrite::Withdraw { draft_id, reason } => {
                sqlx::query(
                    "UPDATE drafts SET state = 'withdrawn', state_reason = ?, updated_at = ? \
                     WHERE id = ? AND state = 'pending'",
                )
                .bind(reason)
                .bind(&at)
                .bind(draft_id)
                .execute(&mut *connection)
                .await
                .map_err(error)?;
                batch.events.push((
                    incident_id,
                    EventWrite::new(
                        now,
                        "relay",
                        &LogEvent::DraftWithdrawn {
                            draft_id: *draft_id,
                            reason: reason.clone(),
                        },
                    ),
                ));
            }
        }
    }
    Ok(created)
}

/// Writes what the steps of a batch left in `batch`, in the order they left it, and marks
/// the receipts processed: every statement in one command to the connection's thread.
/// As separate commands, each was a round trip between the worker's thread and the
/// connection's while the write connection was held, and under load each could wait for
/// a core (docs/performance.md).
pub(super) async fn finish_incident_batch(
    connection: &mut Connection,
    batch: &IncidentBatch,
    processed_at: Timestamp,
) -> Result<(), StorageError> {
    const OPERATION: &str = "finish_incident_batch";
    let mut statements = Statements::default();
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
    for chunk in batch.retired_unseen.chunks(ROWS_PER_STATEMENT) {
        statements.flush_if_full(connection).await.map_err(error)?;
        let builder = statements.next(
            "INSERT INTO incident_alerts (fingerprint, starts_at, incident_id, status, labels) ",
            chunk.len(),
        );
        builder.push_values(chunk, |mut row, key| {
            row.push_bind(key.fingerprint.as_str())
                .push_bind(format_time(key.starts_at))
                .push_bind(None::<i64>)
                .push_bind("resolved")
                .push_bind("{}");
        });
        builder.push(" ON CONFLICT (fingerprint, starts_at) DO NOTHING");
    }
    push_update_headers(&mut statements, &batch.headers)?;
    // SQLite applies the rows in order: a later step's copy of an alert wins.
    for chunk in batch.alerts.chunks(ROWS_PER_STATEMENT) {
        statements.flush_if_full(connection).await.map_err(error)?;
        let builder = statements.next(
            "INSERT INTO incident_alerts (fingerprint, starts_at, incident_id, status, labels) ",
            chunk.len(),
        );
        builder.push_values(chunk, |mut row, (incident_id, key, alert)| {
            row.push_bind(key.fingerprint.as_str())
                .push_bind(format_time(key.starts_at))
                .push_bind(*incident_id)
                .push_bind(alert.status.as_str())
                .push_bind(serde_json::to_string(&alert.labels).expect("map of strings"));
        });
        builder.push(
            " ON CONFLICT (fingerprint, starts_at) DO UPDATE SET incident_id = excluded.incident_id, \
             status = excluded.status, labels = excluded.labels",
        );
    }
    let events: Vec<(i64, &EventWrite)> = batch
        .events
        .iter()
        .map(|(incident_id, event)| (*incident_id, event))
        .collect();
    statements.flush_if_full(connection).await.map_err(error)?;
    push_events_of(&mut statements, &events);
    let processed_at = format_time(processed_at);
    for chunk in batch.receipt_ids.chunks(RECEIPT_ROWS_PER_STATEMENT) {
        statements.flush_if_full(connection).await.map_err(error)?;
        let builder = statements.next(
            "INSERT INTO receipts_processed (receipt_id, processed_at) ",
            chunk.len(),
        );
        builder.push_values(chunk, |mut row, receipt_id| {
            row.push_bind(*receipt_id).push_bind(processed_at.as_str());
        });
    }
    statements.execute(connection).await.map_err(error)
}

/// Writes each incident's header as the last step left it.
async fn update_headers(
    connection: &mut Connection,
    headers: &BTreeMap<i64, (Incident, Timestamp)>,
) -> Result<(), StorageError> {
    let mut statements = Statements::default();
    push_update_headers(&mut statements, headers)?;
    statements
        .execute(connection)
        .await
        .map_err(|source| storage_error(UPDATE_HEADERS, source))
}

const UPDATE_HEADERS: &str = "update_incident_headers";

/// Adds to `statements` the update of each incident's header as the last step left it.
fn push_update_headers<'a>(
    statements: &mut Statements<'a>,
    headers: &'a BTreeMap<i64, (Incident, Timestamp)>,
) -> Result<(), StorageError> {
    for (incident_id, (incident, at)) in headers {
        let header =
            IncidentHeader::of(incident).map_err(|source| storage_error(UPDATE_HEADERS, source))?;
        let builder = statements.next("UPDATE incidents SET phase = ", 1);
        builder
            .push_bind(header.phase)
            .push(", started_at = ")
            .push_bind(header.started_at)
            .push(", resolved_at = ")
            .push_bind(header.resolved_at)
            .push(", n_reopened = ")
            .push_bind(header.n_reopened)
            .push(", summary = ")
            .push_bind(header.summary)
            .push(", classification = ")
            .push_bind(header.classification)
            .push(", published = ")
            .push_bind(header.published)
            .push(", updated_at = ")
            .push_bind(format_time(*at))
            .push(" WHERE id = ")
            .push_bind(*incident_id);
    }
    Ok(())
}

/// An incident's columns as stored.
struct IncidentHeader {
    phase: &'static str,
    started_at: String,
    resolved_at: Option<String>,
    n_reopened: i64,
    summary: String,
    classification: String,
    published: Option<String>,
}

impl IncidentHeader {
    fn of(incident: &Incident) -> Result<IncidentHeader, serde_json::Error> {
        let (phase, resolved_at) = match incident.phase {
            Phase::Open => ("open", None),
            Phase::Resolved { at } => ("resolved", Some(format_time(at))),
        };
        Ok(IncidentHeader {
            phase,
            started_at: format_time(incident.started_at),
            resolved_at,
            n_reopened: i64::from(incident.n_reopened),
            summary: serde_json::to_string(&incident.summary)?,
            classification: serde_json::to_string(&incident.classification)?,
            published: incident
                .published
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn add_draft_version(
    connection: &mut Connection,
    incident_id: i64,
    draft_id: i64,
    version: i64,
    created_by: &str,
    fields: &DraftFields,
    input: &serde_json::Value,
    rendered: &RenderedNotice,
    at: Timestamp,
) -> Result<(), StorageError> {
    let at_text = format_time(at);
    insert_draft_version(
        connection, draft_id, version, &at_text, created_by, fields, input, rendered,
    )
    .await?;
    sqlx::query("UPDATE drafts SET updated_at = ? WHERE id = ?")
        .bind(&at_text)
        .bind(draft_id)
        .execute(&mut *connection)
        .await
        .map_err(|source| storage_error("add_draft_version", source))?;
    insert_events(
        connection,
        incident_id,
        &[EventWrite::new(
            at,
            created_by,
            &LogEvent::DraftEdited {
                draft_id,
                version,
                fields: fields.clone(),
            },
        )],
    )
    .await
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_draft_version(
    connection: &mut Connection,
    draft_id: i64,
    version: i64,
    at: &str,
    created_by: &str,
    fields: &DraftFields,
    input: &serde_json::Value,
    rendered: &RenderedNotice,
) -> Result<(), StorageError> {
    const OPERATION: &str = "insert_draft_version";
    let json_error = |source: serde_json::Error| storage_error(OPERATION, source);
    sqlx::query(
        "INSERT INTO draft_versions (draft_id, version, created_at, created_by, fields, input, rendered) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(draft_id)
    .bind(version)
    .bind(at)
    .bind(created_by)
    .bind(serde_json::to_string(fields).map_err(json_error)?)
    .bind(serde_json::to_string(input).map_err(json_error)?)
    .bind(serde_json::to_string(rendered).map_err(json_error)?)
    .execute(&mut *connection)
    .await
    .map_err(|source| storage_error(OPERATION, source))?;
    Ok(())
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
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
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
        &[EventWrite::new(
            now,
            operator,
            &LogEvent::DraftCreated {
                draft_id,
                kind,
                version: 1,
                by_hand: true,
            },
        )],
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
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
    let json_error = |source: serde_json::Error| storage_error(OPERATION, source);
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
            &[EventWrite::new(
                now,
                operator,
                &LogEvent::DrillStarted {
                    n_affected: summary.n_affected,
                    level: classification.level.as_number(),
                },
            )],
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
        "UPDATE incidents SET phase = 'resolved', resolved_at = ?, updated_at = ? WHERE id = ? AND kind IN ('drill', 'maintenance') \
         AND phase = 'open'",
    )
    .bind(format_time(now))
    .bind(format_time(now))
    .bind(incident_id)
    .execute(&mut *connection)
    .await
    .map_err(|source| storage_error("close_drill", source))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::super::{query_plan, test_storage};
    use super::*;
    use crate::storage::Backend as _;

    #[tokio::test]
    async fn the_alerts_of_a_batch_are_read_by_primary_key_never_by_a_scan() {
        let (_folder, storage) = test_storage().await;
        let keys: Vec<AlertKey> = (0..3)
            .map(|index| AlertKey {
                fingerprint: format!("f{index}"),
                starts_at: Timestamp::UNIX_EPOCH,
            })
            .collect();
        let builder = tracked_alerts_query(&keys);
        let sql = format!("EXPLAIN QUERY PLAN {}", builder.sql());
        let mut explain = sqlx::query(&sql);
        for key in &keys {
            explain = explain
                .bind(key.fingerprint.as_str())
                .bind(format_time(key.starts_at));
        }
        let plan = query_plan(&storage.reader, explain).await;
        assert!(
            plan.iter()
                .any(|step| step.starts_with("SEARCH a USING INDEX")
                    && step.contains("(fingerprint=? AND starts_at=?)")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN a")),
            "{plan:?}"
        );
        storage.close().await;
    }
}
