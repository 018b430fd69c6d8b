//! Incidents and drafts in PostgreSQL: `incidents` (one open per kind), `incident_alerts`,
//! `drafts` (one pending per incident) with `draft_versions`, and the log
//! `incident_events` (append-only).

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row as _;

use super::maintenance::windows_in_effect;
use super::receipts::next_unprocessed_receipts;
use super::rows::{
    INCIDENT_COLUMNS, event_from_row, incident_by_id, incident_from_row, insert_events,
    insert_events_of, load_incident_alerts, parse_draft_state, parse_kind,
};
use super::{Connection, PgRead, PgStorage, PgTx, format_time, parse_time, storage_error};
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
impl Incidents for PgStorage {
    async fn incidents(&self) -> Result<Vec<IncidentRecord>, StorageError> {
        const OPERATION: &str = "incidents";
        let mut connection = self
            .pool
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
                "SELECT kind FROM drafts WHERE incident_id = $1 AND state = 'pending'",
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
            "SELECT id, incident_id, kind, state, state_reason FROM drafts WHERE incident_id = $1 ORDER BY id",
        )
        .bind(incident_id)
        .fetch_all(&self.pool)
        .await
        .map_err(error)?;
        let versions = sqlx::query(
            "SELECT v.draft_id, v.version, v.created_at, v.created_by, v.fields, v.input, v.rendered \
             FROM draft_versions v JOIN drafts d ON d.id = v.draft_id \
             WHERE d.incident_id = $1 ORDER BY v.draft_id, v.version",
        )
        .bind(incident_id)
        .fetch_all(&self.pool)
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
             WHERE incident_id = $1 ORDER BY id",
        )
        .bind(incident_id)
        .fetch_all(&self.pool)
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
        let mut transaction = self.begin_serialised().await?;
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
            "INSERT INTO incidents (id, kind, phase, started_at, n_reopened, summary, classification, created_at, updated_at) \
             VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM incidents), 'monitoring', 'open', $1, 0, $2, $3, $4, $5) \
             RETURNING id",
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
        // Cheap check without the write lock first: the common case is that nothing is open.
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM incidents WHERE kind = 'monitoring' AND phase = 'open'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(error)?;
        if open.is_none() {
            return Ok(None);
        }
        let mut transaction = self.begin_serialised().await?;
        let at = format_time(now);
        let resolved: Option<i64> = sqlx::query_scalar(
            "UPDATE incidents SET phase = 'resolved', resolved_at = $1, updated_at = $2 \
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
        overview(&self.pool, limit, true).await
    }

    async fn recent_incidents(&self, limit: i64) -> Result<Vec<IncidentRecord>, StorageError> {
        Ok(overview(&self.pool, limit, false)
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
        let mut transaction = self.begin_serialised().await?;
        let row: Option<(i64, String)> = sqlx::query_as(
            "UPDATE drafts SET state = 'discarded', state_reason = $1, updated_at = $2 \
             WHERE id = $3 AND state = 'pending' RETURNING incident_id, created_at",
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
            sqlx::query_scalar("SELECT incident_id FROM drafts WHERE id = $1")
                .bind(draft_id)
                .fetch_optional(&self.pool)
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
            .pool
            .acquire()
            .await
            .map_err(|source| storage_error(OPERATION, source))?;
        let incident = incident_by_id(&mut connection, incident_id).await?;
        Ok(draft.zip(incident))
    }
}

#[async_trait]
impl IncidentsTx for PgTx {
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
            "UPDATE drafts SET state = 'withdrawn', state_reason = $1, updated_at = $2 \
             WHERE incident_id = $3 AND state = 'pending' RETURNING id",
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

correlation_reads!(PgTx);
correlation_reads!(PgRead);

/// Open incidents first, then the most recent, at most `limit`; with each one's firing
/// alerts counted when `count_firing` (0 otherwise): the count reads every alert of the
/// incident, a scan that grows with it.
async fn overview(
    pool: &sqlx::PgPool,
    limit: i64,
    count_firing: bool,
) -> Result<Vec<IncidentOverview>, StorageError> {
    const OPERATION: &str = "incident_overview";
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
    let n_firing = if count_firing {
        "(SELECT COUNT(*) FROM incident_alerts a WHERE a.incident_id = incidents.id AND a.status = 'firing')"
    } else {
        "0::bigint"
    };
    let rows = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS}, {n_firing} AS n_firing \
         FROM incidents ORDER BY (phase = 'open') DESC, id DESC LIMIT $1"
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
         WHERE d.incident_id = $1 AND d.state = 'pending' ORDER BY v.version DESC LIMIT 1",
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
                     WHERE incident_id = $1 AND status = 'firing' GROUP BY labels",
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
    // A batch whose receipts carry no alerts reads nothing.
    if !keys.is_empty() {
        let (fingerprints, starts_at) = key_arrays(keys.iter());
        let rows = sqlx::query(TRACKED_ALERTS)
            .bind(fingerprints)
            .bind(starts_at)
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

/// The stored alerts of a batch's keys, given as two arrays of one length (`$1` the
/// fingerprints, `$2` the start times): one primary-key lookup each. One text for any
/// number of keys, so one prepared statement; a row-value `IN` list of 240 keys was a
/// statement per key count and took 2.4 ms to plan and 4-5 ms to run among 280,000
/// alerts, against 0.3-0.5 and about 1 ms for this (docs/performance.md).
pub const TRACKED_ALERTS: &str = "SELECT a.fingerprint, a.starts_at, a.incident_id, a.status, a.labels \
     FROM unnest($1::text[], $2::text[]) AS w (fingerprint, starts_at) \
     JOIN incident_alerts a ON a.fingerprint = w.fingerprint AND a.starts_at = w.starts_at";

/// Alert keys as the two arrays that [`TRACKED_ALERTS`] and the alert writes bind.
fn key_arrays<'a>(keys: impl Iterator<Item = &'a AlertKey>) -> (Vec<&'a str>, Vec<String>) {
    keys.map(|key| (key.fingerprint.as_str(), format_time(key.starts_at)))
        .unzip()
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
             published, created_at, updated_at) VALUES ($1, 'outage', $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
                     VALUES ($1, $2, 'pending', $3, $4) RETURNING id",
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
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM draft_versions WHERE draft_id = $1",
                )
                .bind(draft_id)
                .fetch_one(&mut *connection)
                .await
                .map_err(error)?;
                insert_draft_version(
                    connection, *draft_id, version, &at, "relay", fields, input, rendered,
                )
                .await?;
                sqlx::query("UPDATE drafts SET updated_at = $1 WHERE id = $2")
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
                    "UPDATE drafts SET state = 'withdrawn', state_reason = $1, updated_at = $2 \
                     WHERE id = $3 AND state = 'pending'",
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
/// the receipts processed.
pub(super) async fn finish_incident_batch(
    connection: &mut Connection,
    batch: &IncidentBatch,
    processed_at: Timestamp,
) -> Result<(), StorageError> {
    const OPERATION: &str = "finish_incident_batch";
    let error = |source: sqlx::Error| storage_error(OPERATION, source);
    if !batch.retired_unseen.is_empty() {
        let (fingerprints, starts_at) = key_arrays(batch.retired_unseen.iter());
        sqlx::query(
            "INSERT INTO incident_alerts (fingerprint, starts_at, incident_id, status, labels) \
             SELECT fingerprint, starts_at, NULL, 'resolved', '{}' \
             FROM unnest($1::text[], $2::text[]) AS k (fingerprint, starts_at) \
             ON CONFLICT (fingerprint, starts_at) DO NOTHING",
        )
        .bind(fingerprints)
        .bind(starts_at)
        .execute(&mut *connection)
        .await
        .map_err(error)?;
    }
    update_headers(connection, &batch.headers).await?;
    // A later step's copy of an alert wins. PostgreSQL refuses to update one row twice in
    // a statement, so only the last copy of each alert is written.
    let mut last_copy: HashMap<&AlertKey, usize> = HashMap::with_capacity(batch.alerts.len());
    for (index, (_, key, _)) in batch.alerts.iter().enumerate() {
        last_copy.insert(key, index);
    }
    let alerts: Vec<_> = batch
        .alerts
        .iter()
        .enumerate()
        .filter(|(index, (_, key, _))| last_copy.get(key) == Some(index))
        .map(|(_, alert)| alert)
        .collect();
    if !alerts.is_empty() {
        let (fingerprints, starts_at) = key_arrays(alerts.iter().map(|(_, key, _)| key));
        let incident_ids: Vec<i64> = alerts.iter().map(|(id, _, _)| *id).collect();
        let statuses: Vec<&str> = alerts
            .iter()
            .map(|(_, _, alert)| alert.status.as_str())
            .collect();
        let labels: Vec<String> = alerts
            .iter()
            .map(|(_, _, alert)| serde_json::to_string(&alert.labels).expect("map of strings"))
            .collect();
        // One statement for the batch's alerts, whatever their number.
        sqlx::query(
            "INSERT INTO incident_alerts (fingerprint, starts_at, incident_id, status, labels) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[]) \
             ON CONFLICT (fingerprint, starts_at) DO UPDATE SET incident_id = excluded.incident_id, \
             status = excluded.status, labels = excluded.labels",
        )
        .bind(fingerprints)
        .bind(starts_at)
        .bind(incident_ids)
        .bind(statuses)
        .bind(labels)
        .execute(&mut *connection)
        .await
        .map_err(error)?;
    }
    let events: Vec<(i64, &EventWrite)> = batch
        .events
        .iter()
        .map(|(incident_id, event)| (*incident_id, event))
        .collect();
    insert_events_of(connection, &events).await?;
    if !batch.receipt_ids.is_empty() {
        sqlx::query(
            "WITH done AS (DELETE FROM receipts_backlog WHERE receipt_id = ANY($1::int8[]) \
             RETURNING receipt_id) \
             INSERT INTO receipts_processed (receipt_id, processed_at) SELECT receipt_id, $2 FROM done",
        )
        .bind(&batch.receipt_ids)
        .bind(format_time(processed_at))
        .execute(&mut *connection)
        .await
        .map_err(error)?;
    }
    Ok(())
}

/// Writes each incident's header as the last step left it.
async fn update_headers(
    connection: &mut Connection,
    headers: &BTreeMap<i64, (Incident, Timestamp)>,
) -> Result<(), StorageError> {
    const OPERATION: &str = "update_incident_headers";
    for (incident_id, (incident, at)) in headers {
        let header =
            IncidentHeader::of(incident).map_err(|source| storage_error(OPERATION, source))?;
        sqlx::query(
            "UPDATE incidents SET phase = $1, started_at = $2, resolved_at = $3, n_reopened = $4, summary = $5, \
             classification = $6, published = $7, updated_at = $8 WHERE id = $9",
        )
        .bind(header.phase)
        .bind(&header.started_at)
        .bind(&header.resolved_at)
        .bind(header.n_reopened)
        .bind(&header.summary)
        .bind(&header.classification)
        .bind(&header.published)
        .bind(format_time(*at))
        .bind(incident_id)
        .execute(&mut *connection)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
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
    sqlx::query("UPDATE drafts SET updated_at = $1 WHERE id = $2")
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
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        "INSERT INTO drafts (incident_id, kind, state, created_at, updated_at) VALUES ($1, $2, 'pending', $3, $4) \
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
        "INSERT INTO incidents (id, kind, phase, started_at, n_reopened, summary, classification, created_at, updated_at) \
         VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM incidents), 'drill', 'open', $1, 0, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING RETURNING id",
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
        "UPDATE incidents SET phase = 'resolved', resolved_at = $1, updated_at = $2 WHERE id = $3 AND kind IN ('drill', 'maintenance') \
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
