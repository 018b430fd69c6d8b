//! Keeping operators in the loop: the notifier decides which emails operators need (a
//! signed review link for each new or revised draft, escalation of a draft nobody acted
//! on, reminders when a promised update is due, the broken monitoring chain, deliveries
//! that failed for good) and enqueues them in the operator mail outbox; the mail worker
//! sends that outbox. Each email has a dedupe key, so a restart or a second look never
//! sends one twice.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use jiff::{SignedDuration, Timestamp};
use lettre::Message;
use lettre::message::{Mailbox, SinglePart};
use sha2::Digest as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cluster::Lease;
use crate::config::{Config, Operator};
use crate::delivery::email::EmailTransport;
use crate::delivery::{DeliveryError, Outcomes, RetryPolicy, StepCounts};
use crate::incident::IncidentKind;
use crate::links::{LinkClaims, LinkPurpose, LinkSigner};
use crate::metrics::Metrics;
use crate::notice::{NoticeKind, format_swedish_time, kind_label};
use crate::storage::{DeliveryResult, OperatorMailWrite, Storage};

/// A signed link for `operator` to `purpose`, issued `now` and valid for the configured
/// time: `review.link_ttl` for a review link, the shorter `review.dashboard_link_ttl` for
/// a dashboard link.
pub fn signed_link(
    config: &Config,
    signer: &LinkSigner,
    operator: &Operator,
    purpose: LinkPurpose,
    now: Timestamp,
) -> (String, Timestamp) {
    let time_to_live = match purpose {
        LinkPurpose::Review { .. } => config.review.link_ttl,
        LinkPurpose::Dashboard => config.review.dashboard_link_ttl,
    };
    let expires_at =
        now + SignedDuration::try_from(time_to_live).unwrap_or(SignedDuration::from_hours(2));
    let token = signer.sign_issued(
        &LinkClaims {
            purpose: purpose.clone(),
            operator: operator.email.clone(),
            expires_at: expires_at.as_second(),
        },
        now,
    );
    let path = match purpose {
        LinkPurpose::Review { .. } => format!("/ops/r/{token}"),
        LinkPurpose::Dashboard => format!("/ops/d/{token}"),
    };
    (config.public_link(&path), expires_at)
}

/// Revokes every operator link issued until `now`, in the configured database (the
/// `revoke-links` command). The operator pages read the time on every link check, so a
/// running relay refuses those links at once.
pub async fn revoke_links(config: &Config, now: Timestamp) -> anyhow::Result<()> {
    // An existing one: a mistyped path must not revoke links in a new, empty database.
    let storage = Storage::open_existing(&config.database)
        .await
        .context("cannot open the database")?;
    storage
        .revoke_links(now)
        .await
        .context("cannot store the revocation")?;
    storage.close().await;
    Ok(())
}

/// The dashboard login email for an operator who asked for it.
pub fn login_mail(
    config: &Config,
    signer: &LinkSigner,
    operator: &Operator,
    now: Timestamp,
) -> OperatorMailWrite {
    let (link, expires_at) = signed_link(config, signer, operator, LinkPurpose::Dashboard, now);
    OperatorMailWrite {
        dedupe_key: format!("login:{}:{}", operator.email, now.as_millisecond()),
        purpose: "login".to_owned(),
        incident_id: None,
        draft_id: None,
        draft_version: None,
        to_address: operator.email.clone(),
        subject: "Din länk till samsa-relay".to_owned(),
        body: format!(
            "Hej {name},\n\nHär är din länk till översikten i samsa-relay:\n{link}\n\n\
             Länken är personlig och gäller till {expires}. Om du inte bad om den kan du bortse från \
             det här meddelandet.\n\n/samsa-relay\n",
            name = operator.name,
            expires = format_swedish_time(expires_at),
        ),
    }
}

pub struct ReviewNotifier {
    pub storage: Storage,
    pub config: Arc<Config>,
    pub signer: LinkSigner,
    pub metrics: Metrics,
    pub mail_wake: Arc<Notify>,
    /// The `timers` lease: over a shared database one replica at a time enqueues review
    /// mails, escalations and reminders (their dedupe keys keep a handover from sending
    /// one twice).
    pub lease: Lease,
}

impl ReviewNotifier {
    /// Enqueues every operator email now due. Returns how many were new.
    pub async fn notify_due(&self, now: Timestamp) -> anyhow::Result<u64> {
        let review = &self.config.review;
        let pending = self.storage.pending_drafts_overview().await?;
        self.metrics.drafts_pending.set(pending.len() as i64);
        // Candidates are (dedupe key, how to build the mail); only missing keys are built.
        let mut candidates: Vec<(String, Candidate)> = Vec::new();
        for draft in &pending {
            let review_due = match (draft.last_mailed_version, draft.last_mailed_at) {
                (None, _) => true,
                (Some(version), Some(at)) => {
                    draft.latest_version > version
                        && elapsed(at, now) >= review.revision_email_interval
                }
                (Some(_), None) => true,
            };
            if review_due {
                for operator in review.on_duty() {
                    candidates.push((
                        format!(
                            "review:{}:{}:{}",
                            draft.draft_id, draft.latest_version, operator.email
                        ),
                        Candidate::Review {
                            draft_id: draft.draft_id,
                            incident_id: draft.incident_id,
                            version: draft.latest_version,
                            operator: operator.clone(),
                            escalation: false,
                        },
                    ));
                }
            }
            if elapsed(draft.created_at, now) >= review.escalate_after {
                for operator in review.on_duty_and_escalation() {
                    candidates.push((
                        format!("escalate:{}:{}", draft.draft_id, operator.email),
                        Candidate::Review {
                            draft_id: draft.draft_id,
                            incident_id: draft.incident_id,
                            version: draft.latest_version,
                            operator: operator.clone(),
                            escalation: true,
                        },
                    ));
                }
            }
        }
        for due in self.storage.next_updates_due(now).await? {
            for operator in review.on_duty() {
                candidates.push((
                    format!(
                        "reminder:{}:{}:{}:{}",
                        due.incident_id,
                        due.notice_id,
                        due.next_update.as_second(),
                        operator.email
                    ),
                    Candidate::Reminder {
                        incident_id: due.incident_id,
                        next_update: due.next_update,
                        operator: operator.clone(),
                    },
                ));
            }
        }
        for record in &self.storage.recent_incidents(20).await? {
            if record.kind == IncidentKind::Monitoring && record.resolved_at.is_none() {
                for operator in review.on_duty_and_escalation() {
                    candidates.push((
                        format!("monitoring:{}:{}", record.incident_id, operator.email),
                        Candidate::Monitoring {
                            incident_id: record.incident_id,
                            reasons: record.incident.classification.reasons.clone(),
                            operator: operator.clone(),
                        },
                    ));
                }
            }
        }
        for (outbox_id, incident_id, channel, recipient, error) in
            self.storage.failed_deliveries(50).await?
        {
            for operator in review.on_duty() {
                candidates.push((
                    format!("failed:{outbox_id}:{}", operator.email),
                    Candidate::DeliveryFailed {
                        incident_id,
                        channel: channel.clone(),
                        recipient: recipient.clone(),
                        error: error.clone(),
                        operator: operator.clone(),
                    },
                ));
            }
        }
        if candidates.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = candidates.iter().map(|(key, _)| key.clone()).collect();
        let missing = self.storage.missing_operator_mail_keys(&keys).await?;
        if missing.is_empty() {
            return Ok(0);
        }
        let mut mails = Vec::new();
        for (key, candidate) in candidates {
            if missing.contains(&key) {
                mails.push(self.build(key, candidate, now).await?);
            }
        }
        let n_escalations = mails
            .iter()
            .filter(|mail| mail.purpose == "escalation")
            .count();
        let inserted = self.storage.enqueue_operator_mail(&mails, now).await?;
        self.metrics.draft_escalations.inc_by(n_escalations as u64);
        if inserted > 0 {
            self.mail_wake.notify_one();
        }
        Ok(inserted)
    }

    async fn build(
        &self,
        dedupe_key: String,
        candidate: Candidate,
        now: Timestamp,
    ) -> anyhow::Result<OperatorMailWrite> {
        let config = &self.config;
        Ok(match candidate {
            Candidate::Review {
                draft_id,
                incident_id,
                version,
                operator,
                escalation,
            } => {
                let drafts = self.storage.drafts(incident_id).await?;
                let draft = drafts.iter().find(|draft| draft.draft_id == draft_id);
                let input = draft
                    .and_then(|draft| draft.versions.last())
                    .map(|version| version.input.clone())
                    .unwrap_or_default();
                let level = input["classification"]["level"].as_u64().unwrap_or(1);
                let crisis = input["classification"]["crisis"].as_bool().unwrap_or(false);
                let drill = input["drill"].as_bool().unwrap_or(false);
                let reasons: Vec<String> = input["classification"]["reasons"]
                    .as_array()
                    .map(|reasons| {
                        reasons
                            .iter()
                            .filter_map(|reason| reason.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let notice_kind = draft.map(|draft| draft.kind);
                let affected = affected_line(&input["summary"]);
                let (link, expires_at) = signed_link(
                    config,
                    &self.signer,
                    &operator,
                    LinkPurpose::Review { draft_id, version },
                    now,
                );
                let drill_prefix = if drill { "ÖVNING: " } else { "" };
                let subject = if escalation {
                    format!(
                        "{drill_prefix}Väntar fortfarande: utkast för incident {incident_id} har inte granskats på {} minuter",
                        config.review.escalate_after.as_secs() / 60
                    )
                } else {
                    format!(
                        "{drill_prefix}{}",
                        review_subject(notice_kind, incident_id, level)
                    )
                };
                let mut body = format!("Hej {},\n\n", operator.name);
                if escalation {
                    body.push_str("Ingen har ännu granskat utkastet nedan. Det skickas nu till alla i jour och eskalering.\n\n");
                }
                body.push_str(&review_opening(notice_kind, incident_id, version));
                body.push('\n');
                if let Some(affected) = &affected {
                    body.push_str(&format!("{affected}\n"));
                }
                body.push_str(&format!(
                    "Föreslagen nivå: {level}{}.\n",
                    if crisis { " (kriskommunikation)" } else { "" }
                ));
                for reason in &reasons {
                    body.push_str(&format!("- {reason}\n"));
                }
                body.push_str(&format!(
                    "\nGranska, ändra och publicera:\n{link}\n\nInget publiceras förrän du har bekräftat. \
                     Länken är personlig och gäller till {}.\n\n/samsa-relay\n",
                    format_swedish_time(expires_at)
                ));
                OperatorMailWrite {
                    dedupe_key,
                    purpose: if escalation { "escalation" } else { "review" }.to_owned(),
                    incident_id: Some(incident_id),
                    draft_id: Some(draft_id),
                    draft_version: Some(version),
                    to_address: operator.email.clone(),
                    subject,
                    body,
                }
            }
            Candidate::Reminder {
                incident_id,
                next_update,
                operator,
            } => {
                let (link, _) =
                    signed_link(config, &self.signer, &operator, LinkPurpose::Dashboard, now);
                OperatorMailWrite {
                    dedupe_key,
                    purpose: "reminder".to_owned(),
                    incident_id: Some(incident_id),
                    draft_id: None,
                    draft_version: None,
                    to_address: operator.email.clone(),
                    subject: format!("Dags för uppdatering: incident {incident_id}"),
                    body: format!(
                        "Hej {},\n\nDet senaste meddelandet om incident {incident_id} lovade nästa uppdatering {}. \
                         Den tiden har passerat.\n\nSkriv en uppdatering från översikten:\n{link}\n\n/samsa-relay\n",
                        operator.name,
                        format_swedish_time(next_update)
                    ),
                }
            }
            Candidate::Monitoring {
                incident_id,
                reasons,
                operator,
            } => {
                let (link, _) =
                    signed_link(config, &self.signer, &operator, LinkPurpose::Dashboard, now);
                OperatorMailWrite {
                    dedupe_key,
                    purpose: "monitoring".to_owned(),
                    incident_id: Some(incident_id),
                    draft_id: None,
                    draft_version: None,
                    to_address: operator.email.clone(),
                    subject: "Övervakningen av SAMSA är bruten".to_owned(),
                    body: format!(
                        "Hej {},\n\n{}\n\nTills larmkedjan fungerar igen kan relän inte se avbrott i SAMSA. \
                         Kontrollera Prometheus och Alertmanager.\n\nÖversikten:\n{link}\n\n/samsa-relay\n",
                        operator.name,
                        reasons.join("\n")
                    ),
                }
            }
            Candidate::DeliveryFailed {
                incident_id,
                channel,
                recipient,
                error,
                operator,
            } => {
                let (link, _) =
                    signed_link(config, &self.signer, &operator, LinkPurpose::Dashboard, now);
                // The channel as people read it, never its id.
                let channel = config
                    .channels
                    .get(&channel)
                    .map_or(channel, |configured| configured.label.clone());
                OperatorMailWrite {
                    dedupe_key,
                    purpose: "delivery_failed".to_owned(),
                    incident_id: Some(incident_id),
                    draft_id: None,
                    draft_version: None,
                    to_address: operator.email.clone(),
                    subject: format!("Leverans misslyckades: {channel} (incident {incident_id})"),
                    body: format!(
                        "Hej {},\n\nMeddelandet om incident {incident_id} kunde inte levereras i kanalen {channel} till {recipient}.\n\
                         Svar: {error}\n\nFörsök igen från översikten när felet är åtgärdat:\n{link}\n\n/samsa-relay\n",
                        operator.name
                    ),
                }
            }
        })
    }

    /// The loop: look every second (and when woken) while this replica holds the
    /// `timers` lease, until shutdown.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            if self.lease.is_held()
                && let Err(error) = self.notify_due(Timestamp::now()).await
            {
                tracing::warn!(error = ?error, "operator notification check failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

enum Candidate {
    Review {
        draft_id: i64,
        incident_id: i64,
        version: i64,
        operator: Operator,
        escalation: bool,
    },
    Reminder {
        incident_id: i64,
        next_update: Timestamp,
        operator: Operator,
    },
    Monitoring {
        incident_id: i64,
        reasons: Vec<String>,
        operator: Operator,
    },
    DeliveryFailed {
        incident_id: i64,
        channel: String,
        recipient: String,
        error: String,
        operator: Operator,
    },
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    let elapsed = now.duration_since(since);
    if elapsed.is_negative() {
        Duration::ZERO
    } else {
        elapsed.unsigned_abs()
    }
}

/// Sends the operator mail outbox through the same transport as the notices.
pub struct OperatorMailWorker {
    pub storage: Storage,
    pub config: Arc<Config>,
    pub transport: EmailTransport,
    pub policy: RetryPolicy,
    pub wake: Arc<Notify>,
}

impl OperatorMailWorker {
    pub async fn try_send_next(&self) -> anyhow::Result<StepCounts> {
        let timeout = self.config.smtp.details.timeout;
        let claimed = self
            .storage
            .claim_operator_mail(8, Timestamp::now(), timeout * 2 + Duration::from_secs(60))
            .await?;
        let mut outcomes = Outcomes::new(self.policy);
        let installation = if claimed.is_empty() {
            String::new()
        } else {
            self.storage.installation_id().await?
        };
        for mail in claimed {
            let outcome = match self.message(
                &mail.to_address,
                &mail.subject,
                &mail.body,
                &installation,
                &mail.dedupe_key,
            ) {
                Ok(message) => {
                    match tokio::time::timeout(timeout, self.transport.send(message)).await {
                        Ok(result) => result,
                        Err(_) => Err(DeliveryError::transient("no answer in time")),
                    }
                }
                Err(error) => Err(error),
            };
            let now = Timestamp::now();
            if let DeliveryResult::Failed { error, .. } =
                outcomes.add(mail.mail_id, mail.attempt, outcome, now)
            {
                tracing::error!(to = %mail.to_address, error = %error, "operator email failed for good");
            }
        }
        let Outcomes {
            results, counts, ..
        } = outcomes;
        self.storage.record_operator_mail(&results).await?;
        Ok(counts)
    }

    fn message(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        installation: &str,
        dedupe_key: &str,
    ) -> Result<Message, DeliveryError> {
        let to: Mailbox = to.parse().map_err(|error| {
            DeliveryError::permanent(format!("{to:?} is not an email address ({error})"))
        })?;
        let details = &self.config.smtp.details;
        // The installation id keeps a new installation from reusing an earlier one's ids.
        let digest = crate::alertmanager::hex(&sha2::Sha256::digest(
            format!("{installation}\0{dedupe_key}").as_bytes(),
        ));
        Message::builder()
            .from(details.from.clone())
            .reply_to(details.reply_to.clone())
            .to(to)
            .subject(subject.replace(['\r', '\n'], " "))
            .message_id(Some(format!(
                "<samsa-relay.operator.{}@{}>",
                &digest[..32],
                details.from.email.domain()
            )))
            .singlepart(SinglePart::plain(body.to_owned()))
            .map_err(|error| DeliveryError::permanent(format!("cannot build the message: {error}")))
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let wait = match self.try_send_next().await {
                Ok(counts) if counts.attempted() > 0 => continue,
                Ok(_) => Duration::from_millis(500),
                Err(error) => {
                    tracing::warn!(error = ?error, "operator mail step failed");
                    Duration::from_secs(2)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The review mail's subject (without a drill prefix): a resolution reads as the
/// all-clear it is, so that a tired operator knows at once what they approve.
fn review_subject(kind: Option<NoticeKind>, incident_id: i64, level: u64) -> String {
    match kind {
        Some(NoticeKind::Resolved) => {
            format!("Granska: SAMSA fungerar igen (incident {incident_id})")
        }
        Some(kind) => format!(
            "Granska utkast: {} för incident {incident_id} (föreslagen nivå {level})",
            kind_label(kind)
        ),
        None => format!("Granska utkast för incident {incident_id} (föreslagen nivå {level})"),
    }
}

/// The review mail's first line: what waits for the operator's approval.
fn review_opening(kind: Option<NoticeKind>, incident_id: i64, version: i64) -> String {
    let what = match kind {
        Some(NoticeKind::Initial) => "Ett första meddelande om en driftstörning i SAMSA",
        Some(NoticeKind::Update) => "En uppdatering om driftstörningen i SAMSA",
        Some(NoticeKind::Resolved) => {
            "Ett meddelande om att SAMSA fungerar igen och att driftstörningen är över"
        }
        None => "Ett meddelande om driftstörningen i SAMSA",
    };
    format!("{what} väntar på din granskning (incident {incident_id}, version {version}).")
}

/// Up to this many affected actors are named in a review mail; the rest are counted.
const MAX_NAMED_AFFECTED: usize = 5;

/// Who is affected, from a draft's stored scope summary: "1 av 67 aktörer påverkas:
/// Borås stad". `None` when the summary is missing or nobody known is affected.
fn affected_line(summary: &serde_json::Value) -> Option<String> {
    let n_affected = summary["n_affected"].as_u64()?;
    let n_actors = summary["n_actors"].as_u64()?;
    if summary["whole_service"].as_bool() == Some(true) {
        return Some(format!("Hela SAMSA påverkas: alla {n_actors} aktörer."));
    }
    // A municipality says so ("kommunen Borås"), unlike the hospital in the same town.
    let names: Vec<String> = summary["subregions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|subregion| {
            let kommuner = &subregion["affected_kommuner"];
            subregion["affected_names"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .filter_map(move |(index, name)| {
                    let name = name.as_str()?;
                    Some(if kommuner[index].as_bool() == Some(true) {
                        format!("kommunen {name}")
                    } else {
                        name.to_owned()
                    })
                })
        })
        .collect();
    if n_affected == 0 || names.is_empty() {
        return (n_affected > 0).then(|| format!("{n_affected} av {n_actors} aktörer påverkas."));
    }
    let named = if names.len() > MAX_NAMED_AFFECTED {
        format!(
            "{} och {} till",
            names[..MAX_NAMED_AFFECTED].join(", "),
            names.len() - MAX_NAMED_AFFECTED
        )
    } else {
        crate::swedish::join_swedish_list(&names)
    };
    Some(format!(
        "{n_affected} av {n_actors} aktörer påverkas: {named}."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_mail_names_who_is_affected() {
        let summary = serde_json::json!({
            "whole_service": false,
            "subregions": [
                {"id": "sodra-alvsborg", "name": "Södra Älvsborg", "affected": ["kommun-boras"],
                 "affected_names": ["Borås"], "affected_kommuner": [true],
                 "n_affected": 1, "n_actors": 10},
                {"id": "fyrbodal", "name": "Fyrbodal", "affected": [], "affected_names": [],
                 "n_affected": 0, "n_actors": 14},
            ],
            "unknown_actor_ids": [], "unknown_subregion_ids": [],
            "n_affected": 1, "n_actors": 67,
        });
        assert_eq!(
            affected_line(&summary).as_deref(),
            Some("1 av 67 aktörer påverkas: kommunen Borås.")
        );
        let many = serde_json::json!({
            "whole_service": false,
            "subregions": [{"affected_names": ["A", "B", "C", "D", "E", "F", "G"]}],
            "n_affected": 7, "n_actors": 67,
        });
        assert_eq!(
            affected_line(&many).as_deref(),
            Some("7 av 67 aktörer påverkas: A, B, C, D, E och 2 till.")
        );
        assert_eq!(affected_line(&serde_json::Value::Null), None);
    }

    #[test]
    fn a_resolution_review_mail_reads_as_the_all_clear() {
        assert_eq!(
            review_subject(Some(NoticeKind::Resolved), 1, 1),
            "Granska: SAMSA fungerar igen (incident 1)"
        );
        let opening = review_opening(Some(NoticeKind::Resolved), 1, 2);
        assert!(opening.contains("SAMSA fungerar igen"), "{opening}");
        assert!(!opening.contains("åtgärdat om"), "{opening}");
        assert_eq!(
            review_subject(Some(NoticeKind::Initial), 3, 2),
            "Granska utkast: första meddelande för incident 3 (föreslagen nivå 2)"
        );
    }
}
