//! Operator mail in PostgreSQL: `operator_mail` (unique by dedupe key), claimed with a lease
//! like the outbox.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::{Postgres, QueryBuilder, Row as _};

use super::outbox::{OPERATOR_MAIL, claim_due};
use super::rows::{parse_delivery_state, parse_incident_kind, parse_kind};
use super::{Connection, PgStorage, PgTx, format_time, parse_time, storage_error};
use crate::incident::DeliveryState;
use crate::storage::{
    ClaimedOperatorMail, DeliveryResult, OperatorMail, OperatorMailTx, OperatorMailWrite,
    PendingDraftOverview, StorageError,
};

#[async_trait]
impl OperatorMail for PgStorage {
    async fn missing_operator_mail_keys(
        &self,
        keys: &[String],
    ) -> Result<Vec<String>, StorageError> {
        const OPERATION: &str = "missing_operator_mail_keys";
        let mut missing = Vec::new();
        for chunk in keys.chunks(500) {
            let mut builder: QueryBuilder<Postgres> =
                QueryBuilder::new("SELECT dedupe_key FROM operator_mail WHERE dedupe_key IN (");
            let mut separated = builder.separated(", ");
            for key in chunk {
                separated.push_bind(key.as_str());
            }
            builder.push(")");
            let found: Vec<String> = builder
                .build_query_scalar()
                .fetch_all(&self.pool)
                .await
                .map_err(|source| storage_error(OPERATION, source))?;
            missing.extend(chunk.iter().filter(|key| !found.contains(key)).cloned());
        }
        Ok(missing)
    }

    async fn enqueue_operator_mail(
        &self,
        mails: &[OperatorMailWrite],
        now: Timestamp,
    ) -> Result<u64, StorageError> {
        if mails.is_empty() {
            return Ok(0);
        }
        let mut transaction = self.begin().await?;
        let inserted = enqueue_operator_mail(&mut transaction, mails, now).await?;
        transaction
            .commit()
            .await
            .map_err(|source| storage_error("enqueue_operator_mail", source))?;
        Ok(inserted)
    }

    async fn claim_operator_mail(
        &self,
        max: usize,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Vec<ClaimedOperatorMail>, StorageError> {
        const OPERATION: &str = "claim_operator_mail";
        let error = |source: sqlx::Error| storage_error(OPERATION, source);
        let mut transaction = self.begin().await?;
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

    async fn record_operator_mail(&self, results: &[DeliveryResult]) -> Result<(), StorageError> {
        self.record_sends(&OPERATOR_MAIL, "record_operator_mail", results)
            .await
    }

    async fn operator_mail(
        &self,
    ) -> Result<Vec<(String, String, String, DeliveryState)>, StorageError> {
        let rows = sqlx::query(
            "SELECT dedupe_key, to_address, subject, state FROM operator_mail ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|source| storage_error("operator_mail", source))?;
        rows.iter()
            .map(
                |row| -> anyhow::Result<(String, String, String, DeliveryState)> {
                    Ok((
                        row.try_get(0)?,
                        row.try_get(1)?,
                        row.try_get(2)?,
                        parse_delivery_state(row.try_get(3)?)?,
                    ))
                },
            )
            .collect::<anyhow::Result<_>>()
            .map_err(|source| storage_error("operator_mail", source))
    }

    async fn links_valid_from(&self) -> Result<Option<Timestamp>, StorageError> {
        const OPERATION: &str = "links_valid_from";
        let text: Option<String> =
            sqlx::query_scalar("SELECT links_valid_from FROM link_revocation WHERE id = 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(|source| storage_error(OPERATION, source))?;
        text.map(|text| parse_time(&text))
            .transpose()
            .map_err(|source| storage_error(OPERATION, source))
    }

    async fn revoke_links(&self, now: Timestamp) -> Result<(), StorageError> {
        const OPERATION: &str = "revoke_links";
        let mut transaction = self.begin().await?;
        // Times are stored fixed-width, so the text maximum is the later time.
        sqlx::query(
            "INSERT INTO link_revocation (id, links_valid_from) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET links_valid_from = \
             GREATEST(link_revocation.links_valid_from, excluded.links_valid_from)",
        )
        .bind(format_time(now))
        .execute(&mut *transaction)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
        transaction
            .commit()
            .await
            .map_err(|source| storage_error(OPERATION, source))
    }

    async fn pending_drafts_overview(&self) -> Result<Vec<PendingDraftOverview>, StorageError> {
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
        .fetch_all(&self.pool)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
        rows.iter()
            .map(|row| -> anyhow::Result<PendingDraftOverview> {
                let last_mailed_at: Option<String> = row.try_get("last_mailed_at")?;
                Ok(PendingDraftOverview {
                    draft_id: row.try_get("id")?,
                    incident_id: row.try_get("incident_id")?,
                    incident_kind: parse_incident_kind(row.try_get("incident_kind")?)?,
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
            .map_err(|source| storage_error(OPERATION, source))
    }
}

#[async_trait]
impl OperatorMailTx for PgTx {
    async fn enqueue_operator_mail(
        &mut self,
        mails: &[OperatorMailWrite],
        now: Timestamp,
    ) -> Result<u64, StorageError> {
        enqueue_operator_mail(&mut self.0, mails, now).await
    }
}

/// The same rows as `PgStorage::enqueue_operator_mail`, inside the caller's transaction.
pub(super) async fn enqueue_operator_mail(
    connection: &mut Connection,
    mails: &[OperatorMailWrite],
    now: Timestamp,
) -> Result<u64, StorageError> {
    let at = format_time(now);
    let mut inserted = 0;
    for chunk in mails.chunks(300) {
        let mut builder: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO operator_mail (dedupe_key, purpose, incident_id, draft_id, draft_version, to_address, \
             subject, body, state, attempts, next_attempt_at, created_at) ",
        );
        builder.push_values(chunk, |mut row, mail| {
            row.push_bind(mail.dedupe_key.as_str())
                .push_bind(mail.purpose.as_str())
                .push_bind(mail.incident_id)
                .push_bind(mail.draft_id)
                .push_bind(mail.draft_version)
                .push_bind(mail.to_address.as_str())
                .push_bind(mail.subject.as_str())
                .push_bind(mail.body.as_str())
                .push_bind("pending")
                .push_bind(0_i64)
                .push_bind(at.as_str())
                .push_bind(at.as_str());
        });
        builder.push(" ON CONFLICT (dedupe_key) DO NOTHING");
        inserted += builder
            .build()
            .execute(&mut *connection)
            .await
            .map_err(|source| storage_error("enqueue_operator_mail", source))?
            .rows_affected();
    }
    Ok(inserted)
}
