//! What the two outboxes share: `outbox` (notices to channels) and `operator_mail` (emails
//! to operators) are both claimed with a lease that counts the attempt, and both record a
//! send's result the same way. Table and column names come from the constants below,
//! never from input.

use std::time::Duration;

use jiff::Timestamp;
use sqlx::postgres::PgRow;

use super::rows::insert_events;
use super::{Connection, PgStorage, format_time, storage_error};
use crate::incident::LogEvent;
use crate::storage::{DeliveryResult, EventWrite, StorageError};

/// An outbox table: `id`, `state` ('pending', 'sent', 'failed'), `attempts`,
/// `next_attempt_at`, `lease_until`, `reclaimed`, `sent_at`, `last_error`.
pub(super) struct OutboxTable {
    pub name: &'static str,
    /// The columns a claim returns.
    pub claimed_columns: &'static str,
    /// An expression over a row for its incident: a row that fails for good is logged as
    /// `delivery_failed` in that incident's events. `None`: not logged.
    pub failed_incident: Option<&'static str>,
}

pub(super) const OUTBOX: OutboxTable = OutboxTable {
    name: "outbox",
    claimed_columns: "id, notice_id, channel, recipient, delivery_id, attempts, created_at, reclaimed",
    // Not for subscribers: their failures go to their subscription (suspension), and an
    // SMTP answer may quote their address, which the append-only log would keep.
    failed_incident: Some(
        "CASE WHEN outbox.subscriber_id IS NULL THEN \
         (SELECT incident_id FROM published_notices p WHERE p.id = outbox.notice_id) END",
    ),
};

pub(super) const OPERATOR_MAIL: OutboxTable = OutboxTable {
    name: "operator_mail",
    claimed_columns: "id, dedupe_key, purpose, incident_id, to_address, subject, body, attempts",
    failed_incident: None,
};

/// Leases up to `max` pending rows that are due and not leased (only those whose column
/// `only.0` equals `only.1`, if given) until `now + lease`, oldest due first, and counts
/// the attempt. A row still leased (its lease ran out with no result recorded: the
/// replica sending it died or stalled) is marked `reclaimed`, since its recipient may have
/// had it already. Rows another replica is claiming at this moment are skipped
/// (`FOR UPDATE SKIP LOCKED`), so no row goes to two claimers and no claimer waits.
/// Returns their claimed columns; the caller commits.
pub(super) async fn claim_due(
    connection: &mut Connection,
    table: &OutboxTable,
    only: Option<(&'static str, &str)>,
    max: usize,
    now: Timestamp,
    lease: Duration,
) -> Result<Vec<PgRow>, sqlx::Error> {
    let OutboxTable {
        name,
        claimed_columns,
        ..
    } = table;
    let lease_until = format_time(
        now + jiff::SignedDuration::try_from(lease).unwrap_or(jiff::SignedDuration::MAX),
    );
    let only_column = only.map_or(String::new(), |(column, _)| format!("{column} = $4 AND "));
    let sql = format!(
        "UPDATE {name} SET reclaimed = (lease_until IS NOT NULL), lease_until = $1, \
           attempts = attempts + 1 WHERE id IN ( \
           SELECT id FROM {name} WHERE {only_column}state = 'pending' AND next_attempt_at <= $2 \
           AND (lease_until IS NULL OR lease_until <= $2) ORDER BY next_attempt_at, id LIMIT $3 \
           FOR UPDATE SKIP LOCKED) \
         RETURNING {claimed_columns}"
    );
    let mut query = sqlx::query(&sql)
        .bind(lease_until)
        .bind(format_time(now))
        .bind(i64::try_from(max).unwrap_or(i64::MAX));
    if let Some((_, value)) = only {
        query = query.bind(value);
    }
    query.fetch_all(&mut *connection).await
}

impl PgStorage {
    /// Records the results of sends in one transaction. Only a pending row changes (one
    /// that an operator changed meanwhile keeps its state); each result clears the lease.
    pub(super) async fn record_sends(
        &self,
        table: &OutboxTable,
        operation: &'static str,
        results: &[DeliveryResult],
    ) -> Result<(), StorageError> {
        let error = |source: sqlx::Error| storage_error(operation, source);
        if results.is_empty() {
            return Ok(());
        }
        let name = table.name;
        let mut transaction = self.begin().await?;
        for result in results {
            // What to set, bound in this order: the row's id, a time, then the error.
            let (outbox_id, set, time, message) = match result {
                DeliveryResult::Sent { outbox_id, at } => (
                    outbox_id,
                    "state = 'sent', sent_at = $2, lease_until = NULL, last_error = NULL",
                    Some(*at),
                    None,
                ),
                DeliveryResult::Retry {
                    outbox_id,
                    next_attempt_at,
                    error,
                } => (
                    outbox_id,
                    "next_attempt_at = $2, lease_until = NULL, last_error = $3",
                    Some(*next_attempt_at),
                    Some(error),
                ),
                DeliveryResult::Failed {
                    outbox_id, error, ..
                } => (
                    outbox_id,
                    "state = 'failed', lease_until = NULL, last_error = $2",
                    None,
                    Some(error),
                ),
            };
            let returning = match (result, table.failed_incident) {
                (DeliveryResult::Failed { .. }, Some(incident)) => format!(" RETURNING {incident}"),
                _ => String::new(),
            };
            let sql =
                format!("UPDATE {name} SET {set} WHERE id = $1 AND state = 'pending'{returning}");
            let mut query = sqlx::query_scalar::<_, Option<i64>>(&sql).bind(outbox_id);
            if let Some(time) = time {
                query = query.bind(format_time(time));
            }
            if let Some(message) = message {
                query = query.bind(message);
            }
            // No row, or a row whose failure is not logged (NULL).
            let incident_id: Option<i64> = query
                .fetch_optional(&mut *transaction)
                .await
                .map_err(error)?
                .flatten();
            if let (Some(incident_id), DeliveryResult::Failed { at, error, .. }) =
                (incident_id, result)
            {
                insert_events(
                    &mut transaction,
                    incident_id,
                    &[EventWrite::new(
                        *at,
                        "relay",
                        &LogEvent::DeliveryFailed {
                            outbox_id: *outbox_id,
                            error: error.clone(),
                        },
                    )],
                )
                .await?;
            }
        }
        transaction.commit().await.map_err(error)?;
        Ok(())
    }
}
