//! Subscriptions in PostgreSQL: `subscribers` (one row per address), and the outbox's
//! `subscriber_id` (its rows to subscribers); the same statements as `sqlite/`, in
//! PostgreSQL's placeholders. The write methods lock the rows they change and need no
//! serialisation; a request runs inside the serialised write transaction.

use anyhow::Context as _;
use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row as _};

use super::{Connection, PgStorage, PgTx, format_time, parse_time, storage_error};
use crate::storage::{
    CANCELLED_DELIVERY, ImportOutcome, NewSubscriber, RequestOutcome, StorageError,
    SubscriberDelivery, SubscriberOutcome, SubscriberRecord, Subscriptions, SubscriptionsTx,
};
use crate::subscription::{Choices, SubscriberState};

const SUBSCRIBER_COLUMNS: &str = "id, address, state, choices, source, nonce, requested_at, consented_at, ended_at, \
     updated_at, permanent_failures, last_failure";

/// The operator mail purpose of a subscriber's confirmation mail.
const MAIL_PURPOSE: &str = "subscription";

fn subscriber_from_row(row: &PgRow) -> anyhow::Result<SubscriberRecord> {
    let optional_time = |column: &str| -> anyhow::Result<Option<Timestamp>> {
        let text: Option<String> = row.try_get(column)?;
        text.as_deref().map(parse_time).transpose()
    };
    let state: String = row.try_get("state")?;
    Ok(SubscriberRecord {
        subscriber_id: row.try_get("id")?,
        address: row.try_get("address")?,
        state: SubscriberState::parse(&state)
            .with_context(|| format!("unknown stored subscriber state {state:?}"))?,
        choices: serde_json::from_str(row.try_get("choices")?)
            .context("stored choices do not parse")?,
        source: row.try_get("source")?,
        nonce: row.try_get("nonce")?,
        requested_at: parse_time(row.try_get("requested_at")?)?,
        consented_at: optional_time("consented_at")?,
        ended_at: optional_time("ended_at")?,
        updated_at: parse_time(row.try_get("updated_at")?)?,
        permanent_failures: row.try_get("permanent_failures")?,
        last_failure: row.try_get("last_failure")?,
    })
}

fn json(choices: &Choices, operation: &'static str) -> Result<String, StorageError> {
    serde_json::to_string(choices).map_err(|source| storage_error(operation, source))
}

async fn confirmed_choices(
    connection: &mut Connection,
) -> Result<Vec<(i64, Choices)>, StorageError> {
    const OPERATION: &str = "confirmed_choices";
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, choices FROM subscribers WHERE state = 'confirmed' ORDER BY id")
            .fetch_all(&mut *connection)
            .await
            .map_err(|source| storage_error(OPERATION, source))?;
    rows.into_iter()
        .map(|(id, choices)| Ok((id, serde_json::from_str(&choices)?)))
        .collect::<anyhow::Result<_>>()
        .map_err(|source| storage_error(OPERATION, source))
}

async fn earlier_recipients(
    connection: &mut Connection,
    incident_id: i64,
) -> Result<Vec<i64>, StorageError> {
    sqlx::query_scalar(
        "SELECT DISTINCT o.subscriber_id FROM published_notices p \
         JOIN outbox o ON o.notice_id = p.id \
         JOIN subscribers s ON s.id = o.subscriber_id \
         WHERE p.incident_id = $1 AND o.subscriber_id IS NOT NULL \
         AND o.state IN ('sent', 'pending') AND s.state = 'confirmed' ORDER BY o.subscriber_id",
    )
    .bind(incident_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|source| storage_error("earlier_subscriber_recipients", source))
}

/// Cancels the pending deliveries of a subscriber.
async fn cancel_deliveries(
    connection: &mut Connection,
    subscriber_id: i64,
    operation: &'static str,
) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE outbox SET state = 'failed', lease_until = NULL, last_error = $1 \
         WHERE subscriber_id = $2 AND state = 'pending'",
    )
    .bind(CANCELLED_DELIVERY)
    .bind(subscriber_id)
    .execute(&mut *connection)
    .await
    .map_err(|source| storage_error(operation, source))?;
    Ok(())
}

/// Which subscription to end.
enum EndBy<'a> {
    /// The subscriber's own link: id and nonce.
    Own { subscriber_id: i64, nonce: &'a str },
    /// An operator: the address, and who.
    Operator { address: String, by: &'a str },
}

/// Ends a subscription: unsubscribed, ended now, its pending deliveries cancelled.
async fn end_subscription(
    storage: &PgStorage,
    which: EndBy<'_>,
    now: Timestamp,
    operation: &'static str,
) -> Result<bool, StorageError> {
    let error = |source: sqlx::Error| storage_error(operation, source);
    let mut transaction = storage.begin().await?;
    let at = format_time(now);
    let ended: Option<i64> = match which {
        EndBy::Own {
            subscriber_id,
            nonce,
        } => sqlx::query_scalar(
            "UPDATE subscribers SET state = 'unsubscribed', ended_at = $1, updated_at = $2 \
             WHERE id = $3 AND nonce = $4 AND state IN ('pending', 'confirmed', 'suspended') \
             RETURNING id",
        )
        .bind(&at)
        .bind(&at)
        .bind(subscriber_id)
        .bind(nonce),
        EndBy::Operator { address, by } => sqlx::query_scalar(
            "UPDATE subscribers SET state = 'unsubscribed', ended_at = $1, updated_at = $2, \
             source = source || '; removed by ' || $3 WHERE address = $4 \
             AND state IN ('pending', 'confirmed', 'suspended') RETURNING id",
        )
        .bind(&at)
        .bind(&at)
        .bind(by)
        .bind(address),
    }
    .fetch_optional(&mut *transaction)
    .await
    .map_err(error)?;
    if let Some(subscriber_id) = ended {
        cancel_deliveries(&mut transaction, subscriber_id, operation).await?;
    }
    transaction.commit().await.map_err(error)?;
    Ok(ended.is_some())
}

/// Deletes a subscriber row found by `subscriber_id` and everything that names its
/// address, in one transaction.
async fn delete_everything(
    connection: &mut Connection,
    subscriber_id: i64,
    address: &str,
    operation: &'static str,
) -> Result<(), StorageError> {
    let error = |source: sqlx::Error| storage_error(operation, source);
    cancel_deliveries(connection, subscriber_id, operation).await?;
    // A bounce may quote the address.
    sqlx::query("UPDATE outbox SET last_error = $1 WHERE subscriber_id = $2 AND state = 'failed'")
        .bind("(removed with the subscriber's data)")
        .bind(subscriber_id)
        .execute(&mut *connection)
        .await
        .map_err(error)?;
    sqlx::query("DELETE FROM operator_mail WHERE purpose = $1 AND to_address = $2")
        .bind(MAIL_PURPOSE)
        .bind(address)
        .execute(&mut *connection)
        .await
        .map_err(error)?;
    sqlx::query("DELETE FROM subscribers WHERE id = $1")
        .bind(subscriber_id)
        .execute(&mut *connection)
        .await
        .map_err(error)?;
    Ok(())
}

#[async_trait]
impl Subscriptions for PgStorage {
    async fn subscriber(
        &self,
        subscriber_id: i64,
    ) -> Result<Option<SubscriberRecord>, StorageError> {
        const OPERATION: &str = "subscriber";
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id = $1"
        ))
        .bind(subscriber_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
        row.as_ref()
            .map(subscriber_from_row)
            .transpose()
            .map_err(|source| storage_error(OPERATION, source))
    }

    async fn subscriber_by_address(
        &self,
        address: &str,
    ) -> Result<Option<SubscriberRecord>, StorageError> {
        const OPERATION: &str = "subscriber_by_address";
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE address = $1"
        ))
        .bind(address.trim().to_lowercase())
        .fetch_optional(&self.pool)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
        row.as_ref()
            .map(subscriber_from_row)
            .transpose()
            .map_err(|source| storage_error(OPERATION, source))
    }

    async fn subscribers(&self) -> Result<Vec<SubscriberRecord>, StorageError> {
        const OPERATION: &str = "subscribers";
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers ORDER BY address"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
        rows.iter()
            .map(subscriber_from_row)
            .collect::<anyhow::Result<_>>()
            .map_err(|source| storage_error(OPERATION, source))
    }

    async fn subscriber_counts(&self) -> Result<Vec<(SubscriberState, i64)>, StorageError> {
        const OPERATION: &str = "subscriber_counts";
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM subscribers GROUP BY state")
                .fetch_all(&self.pool)
                .await
                .map_err(|source| storage_error(OPERATION, source))?;
        let mut counts = rows
            .into_iter()
            .map(|(state, count)| {
                SubscriberState::parse(&state)
                    .map(|state| (state, count))
                    .with_context(|| format!("unknown stored subscriber state {state:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|source| storage_error(OPERATION, source))?;
        counts.sort();
        Ok(counts)
    }

    async fn confirmed_choices(&self) -> Result<Vec<(i64, Choices)>, StorageError> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(|source| storage_error("confirmed_choices", source))?;
        confirmed_choices(&mut connection).await
    }

    async fn earlier_subscriber_recipients(
        &self,
        incident_id: i64,
    ) -> Result<Vec<i64>, StorageError> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(|source| storage_error("earlier_subscriber_recipients", source))?;
        earlier_recipients(&mut connection, incident_id).await
    }

    async fn confirm_subscriber(
        &self,
        subscriber_id: i64,
        nonce: &str,
        now: Timestamp,
    ) -> Result<Option<SubscriberRecord>, StorageError> {
        const OPERATION: &str = "confirm_subscriber";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let at = format_time(now);
        let mut transaction = self.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE subscribers SET \
               consented_at = CASE state WHEN 'pending' THEN $1 ELSE consented_at END, \
               updated_at = CASE state WHEN 'pending' THEN $2 ELSE updated_at END, \
               state = 'confirmed' \
             WHERE id = $3 AND nonce = $4 AND state IN ('pending', 'confirmed') \
             RETURNING {SUBSCRIBER_COLUMNS}"
        ))
        .bind(&at)
        .bind(&at)
        .bind(subscriber_id)
        .bind(nonce)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(error)?;
        transaction.commit().await.map_err(error)?;
        row.as_ref()
            .map(subscriber_from_row)
            .transpose()
            .map_err(|source| storage_error(OPERATION, source))
    }

    async fn change_choices(
        &self,
        subscriber_id: i64,
        nonce: &str,
        choices: &Choices,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        const OPERATION: &str = "change_choices";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let mut transaction = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE subscribers SET choices = $1, updated_at = $2 \
             WHERE id = $3 AND nonce = $4 AND state = 'confirmed'",
        )
        .bind(json(choices, OPERATION)?)
        .bind(format_time(now))
        .bind(subscriber_id)
        .bind(nonce)
        .execute(&mut *transaction)
        .await
        .map_err(error)?
        .rows_affected();
        transaction.commit().await.map_err(error)?;
        Ok(changed == 1)
    }

    async fn unsubscribe(
        &self,
        subscriber_id: i64,
        nonce: &str,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        end_subscription(
            self,
            EndBy::Own {
                subscriber_id,
                nonce,
            },
            now,
            "unsubscribe",
        )
        .await
    }

    async fn remove_subscriber(
        &self,
        address: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        end_subscription(
            self,
            EndBy::Operator {
                address: address.trim().to_lowercase(),
                by,
            },
            now,
            "remove_subscriber",
        )
        .await
    }

    async fn delete_subscriber(&self, address: &str) -> Result<bool, StorageError> {
        const OPERATION: &str = "delete_subscriber";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let address = address.trim().to_lowercase();
        let mut transaction = self.begin().await?;
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM subscribers WHERE address = $1")
                .bind(&address)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(error)?;
        let mails: u64 =
            sqlx::query("DELETE FROM operator_mail WHERE purpose = $1 AND to_address = $2")
                .bind(MAIL_PURPOSE)
                .bind(&address)
                .execute(&mut *transaction)
                .await
                .map_err(error)?
                .rows_affected();
        if let Some(subscriber_id) = found {
            delete_everything(&mut transaction, subscriber_id, &address, OPERATION).await?;
        }
        transaction.commit().await.map_err(error)?;
        Ok(found.is_some() || mails > 0)
    }

    async fn delete_own_subscription(
        &self,
        subscriber_id: i64,
        nonce: &str,
    ) -> Result<bool, StorageError> {
        const OPERATION: &str = "delete_own_subscription";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let mut transaction = self.begin().await?;
        let address: Option<String> =
            sqlx::query_scalar("SELECT address FROM subscribers WHERE id = $1 AND nonce = $2")
                .bind(subscriber_id)
                .bind(nonce)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(error)?;
        if let Some(address) = &address {
            delete_everything(&mut transaction, subscriber_id, address, OPERATION).await?;
        }
        transaction.commit().await.map_err(error)?;
        Ok(address.is_some())
    }

    async fn import_subscribers(
        &self,
        subscribers: &[NewSubscriber],
        source: &str,
        now: Timestamp,
    ) -> Result<ImportOutcome, StorageError> {
        const OPERATION: &str = "import_subscribers";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let at = format_time(now);
        let mut outcome = ImportOutcome::default();
        let mut transaction = self.begin().await?;
        for chunk in subscribers.chunks(super::ROWS_PER_STATEMENT) {
            let mut builder: QueryBuilder<Postgres> = QueryBuilder::new(
                "INSERT INTO subscribers (address, state, choices, source, nonce, requested_at, \
                 consented_at, updated_at) ",
            );
            let mut rows = Vec::with_capacity(chunk.len());
            for subscriber in chunk {
                rows.push((
                    subscriber.address.trim().to_lowercase(),
                    json(&subscriber.choices, OPERATION)?,
                    subscriber.nonce.as_str(),
                ));
            }
            builder.push_values(&rows, |mut row, (address, choices, nonce)| {
                row.push_bind(address.as_str())
                    .push_bind("confirmed")
                    .push_bind(choices.as_str())
                    .push_bind(source)
                    .push_bind(*nonce)
                    .push_bind(at.as_str())
                    .push_bind(at.as_str())
                    .push_bind(at.as_str());
            });
            builder.push(" ON CONFLICT (address) DO NOTHING RETURNING address");
            let added: Vec<String> = builder
                .build_query_scalar()
                .fetch_all(&mut *transaction)
                .await
                .map_err(error)?;
            for (address, _, _) in rows {
                if added.contains(&address) {
                    outcome.added.push(address);
                } else if !outcome.added.contains(&address) {
                    outcome.already_subscribed.push(address);
                }
            }
        }
        transaction.commit().await.map_err(error)?;
        Ok(outcome)
    }

    async fn subscriber_deliveries(
        &self,
        subscriber_id: i64,
    ) -> Result<Vec<SubscriberDelivery>, StorageError> {
        const OPERATION: &str = "subscriber_deliveries";
        let rows: Vec<(i64, i64, String, String, Option<String>)> = sqlx::query_as(
            "SELECT o.notice_id, p.incident_id, o.channel, o.state, o.sent_at FROM outbox o \
             JOIN published_notices p ON p.id = o.notice_id \
             WHERE o.subscriber_id = $1 ORDER BY o.id",
        )
        .bind(subscriber_id)
        .fetch_all(&self.pool)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
        rows.into_iter()
            .map(|(notice_id, incident_id, channel, state, sent_at)| {
                Ok(SubscriberDelivery {
                    notice_id,
                    incident_id,
                    channel,
                    state,
                    sent_at: sent_at.as_deref().map(parse_time).transpose()?,
                })
            })
            .collect::<anyhow::Result<_>>()
            .map_err(|source| storage_error(OPERATION, source))
    }

    async fn record_subscriber_outcomes(
        &self,
        outcomes: &[(i64, SubscriberOutcome)],
        suspend_after: u32,
        now: Timestamp,
    ) -> Result<Vec<i64>, StorageError> {
        const OPERATION: &str = "record_subscriber_outcomes";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        // The common case: every mail delivered, and none of these subscribers had a
        // failure to forget; then nothing is written (no commit per delivery step).
        if outcomes
            .iter()
            .all(|(_, outcome)| *outcome == SubscriberOutcome::Delivered)
        {
            let mut builder: QueryBuilder<Postgres> = QueryBuilder::new(
                "SELECT EXISTS (SELECT 1 FROM subscribers WHERE permanent_failures > 0 AND id IN (",
            );
            let mut separated = builder.separated(", ");
            for (id, _) in outcomes.iter().take(super::ROWS_PER_STATEMENT) {
                separated.push_bind(*id);
            }
            builder.push("))");
            let any: bool = builder
                .build_query_scalar()
                .fetch_one(&self.pool)
                .await
                .map_err(error)?;
            if !any && outcomes.len() <= super::ROWS_PER_STATEMENT {
                return Ok(Vec::new());
            }
        }
        let at = format_time(now);
        let mut suspended = Vec::new();
        let mut transaction = self.begin().await?;
        let delivered: Vec<i64> = outcomes
            .iter()
            .filter(|(_, outcome)| *outcome == SubscriberOutcome::Delivered)
            .map(|(id, _)| *id)
            .collect();
        for chunk in delivered.chunks(super::ROWS_PER_STATEMENT) {
            let mut builder: QueryBuilder<Postgres> = QueryBuilder::new(
                "UPDATE subscribers SET permanent_failures = 0 WHERE permanent_failures > 0 AND id IN (",
            );
            let mut separated = builder.separated(", ");
            for id in chunk {
                separated.push_bind(*id);
            }
            builder.push(")");
            builder
                .build()
                .execute(&mut *transaction)
                .await
                .map_err(error)?;
        }
        for (subscriber_id, outcome) in outcomes {
            let SubscriberOutcome::Bounced(reason) = outcome else {
                continue;
            };
            let failures: Option<i64> = sqlx::query_scalar(
                "UPDATE subscribers SET permanent_failures = permanent_failures + 1, \
                 last_failure = $1, updated_at = $2 WHERE id = $3 AND state = 'confirmed' \
                 RETURNING permanent_failures",
            )
            .bind(reason)
            .bind(&at)
            .bind(subscriber_id)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(error)?;
            if failures.is_some_and(|failures| failures >= i64::from(suspend_after.max(1))) {
                sqlx::query(
                    "UPDATE subscribers SET state = 'suspended', ended_at = $1 WHERE id = $2",
                )
                .bind(&at)
                .bind(subscriber_id)
                .execute(&mut *transaction)
                .await
                .map_err(error)?;
                cancel_deliveries(&mut transaction, *subscriber_id, OPERATION).await?;
                suspended.push(*subscriber_id);
            }
        }
        transaction.commit().await.map_err(error)?;
        Ok(suspended)
    }

    async fn purge_subscribers(
        &self,
        pending_before: Timestamp,
        ended_before: Timestamp,
    ) -> Result<u64, StorageError> {
        const OPERATION: &str = "purge_subscribers";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let mut transaction = self.begin().await?;
        let gone: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, address FROM subscribers \
             WHERE (state = 'pending' AND requested_at < $1) \
             OR (state IN ('unsubscribed', 'suspended') AND ended_at < $2)",
        )
        .bind(format_time(pending_before))
        .bind(format_time(ended_before))
        .fetch_all(&mut *transaction)
        .await
        .map_err(error)?;
        for (subscriber_id, address) in &gone {
            delete_everything(&mut transaction, *subscriber_id, address, OPERATION).await?;
        }
        sqlx::query(
            "DELETE FROM operator_mail WHERE purpose = $1 AND state <> 'pending' AND created_at < $2",
        )
        .bind(MAIL_PURPOSE)
        .bind(format_time(pending_before))
        .execute(&mut *transaction)
        .await
        .map_err(error)?;
        transaction.commit().await.map_err(error)?;
        Ok(gone.len() as u64)
    }
}

#[async_trait]
impl SubscriptionsTx for PgTx {
    async fn request_subscription(
        &mut self,
        address: &str,
        choices: &Choices,
        source: &str,
        nonce: &str,
        now: Timestamp,
    ) -> Result<RequestOutcome, StorageError> {
        const OPERATION: &str = "request_subscription";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let address = address.trim().to_lowercase();
        let at = format_time(now);
        let existing: Option<(i64, String, String)> =
            sqlx::query_as("SELECT id, state, nonce FROM subscribers WHERE address = $1")
                .bind(&address)
                .fetch_optional(&mut *self.0)
                .await
                .map_err(error)?;
        let choices = json(choices, OPERATION)?;
        match existing {
            Some((subscriber_id, state, nonce)) if state == "confirmed" => {
                Ok(RequestOutcome::AlreadyConfirmed {
                    subscriber_id,
                    nonce,
                })
            }
            Some((subscriber_id, state, nonce)) if state == "pending" => {
                sqlx::query(
                    "UPDATE subscribers SET choices = $1, requested_at = $2, updated_at = $3 WHERE id = $4",
                )
                .bind(&choices)
                .bind(&at)
                .bind(&at)
                .bind(subscriber_id)
                .execute(&mut *self.0)
                .await
                .map_err(error)?;
                Ok(RequestOutcome::Pending {
                    subscriber_id,
                    nonce,
                })
            }
            Some((subscriber_id, _, _)) => {
                // Ended or suspended: a new subscription, whose earlier links stop working.
                sqlx::query(
                    "UPDATE subscribers SET state = 'pending', choices = $1, source = $2, nonce = $3, \
                     requested_at = $4, consented_at = NULL, ended_at = NULL, updated_at = $5, \
                     permanent_failures = 0, last_failure = NULL WHERE id = $6",
                )
                .bind(&choices)
                .bind(source)
                .bind(nonce)
                .bind(&at)
                .bind(&at)
                .bind(subscriber_id)
                .execute(&mut *self.0)
                .await
                .map_err(error)?;
                Ok(RequestOutcome::Pending {
                    subscriber_id,
                    nonce: nonce.to_owned(),
                })
            }
            None => {
                let subscriber_id: i64 = sqlx::query_scalar(
                    "INSERT INTO subscribers (address, state, choices, source, nonce, requested_at, updated_at) \
                     VALUES ($1, 'pending', $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(&address)
                .bind(&choices)
                .bind(source)
                .bind(nonce)
                .bind(&at)
                .bind(&at)
                .fetch_one(&mut *self.0)
                .await
                .map_err(error)?;
                Ok(RequestOutcome::Pending {
                    subscriber_id,
                    nonce: nonce.to_owned(),
                })
            }
        }
    }

    async fn confirmed_choices(&mut self) -> Result<Vec<(i64, Choices)>, StorageError> {
        confirmed_choices(&mut self.0).await
    }

    async fn earlier_subscriber_recipients(
        &mut self,
        incident_id: i64,
    ) -> Result<Vec<i64>, StorageError> {
        earlier_recipients(&mut self.0, incident_id).await
    }
}
