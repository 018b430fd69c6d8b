//! `MaintenanceScheduler`: the steps of every planned maintenance window's series as
//! their times come, on the replica holding the `timers` lease.
//!
//! One [`MaintenanceScheduler::step`] (what tests call, with the clock they choose):
//! 1. windows over or called off whose Alertmanager silences are still on: expired;
//! 2. the next due step of each announced or running window ([`Window::due`]): a
//!    reminder, the start (silences made first, outside any transaction), the end
//!    (`completed`, or `overran` when alerts inside the window still fire: those recorded
//!    on the window are handed to the incident worker as a receipt of their own, so the
//!    outage opens an incident); each drafted in one transaction, and published at once
//!    with the announcement's choices when the operator approved the series with it;
//! 3. running windows moved to a later end get silences that reach it.
//!
//! Calls to Alertmanager happen with no transaction open; a window's state is read again
//! inside the transaction that acts on it, so an operator's change in between wins.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::alertmanager::{AlertStatus, Notification};
use crate::cluster::Lease;
use crate::config::Config;
use crate::incident::{DraftState, LogEvent};
use crate::maintenance::{SilenceMatcher, Step, Window, WindowState};
use crate::maintenance_actions::{MaintenanceError, RELAY, draft_step, save_window, scope_of};
use crate::metrics::Metrics;
use crate::notice::NoticeRenderer;
use crate::publishing::{Decision, DecisionRole, PublishRequest, Publisher};
use crate::silences::{Matcher, SilenceClient, SilenceRequest};
use crate::storage::{EventWrite, NewReceipt, Storage};

/// How far back finished windows are looked at for silences left to expire.
const FINISHED_LOOKBACK: Duration = Duration::from_secs(7 * 24 * 3600);

/// The key in `steps_done` saying the window's silences reach its end `at`.
fn silenced_until_key(ends_at: Timestamp) -> String {
    format!("silenced-until:{}", ends_at.as_second())
}

/// The key saying the alerts still firing at the end were handed over.
const HANDED_OVER: &str = "handed-over";

#[derive(Clone)]
pub struct MaintenanceScheduler {
    pub storage: Storage,
    pub config: Arc<Config>,
    pub renderer: Arc<NoticeRenderer>,
    pub publisher: Publisher,
    /// `None` without `maintenance.alertmanager_urls`.
    pub silences: Option<SilenceClient>,
    pub metrics: Metrics,
    /// Wakes the incident worker for a handed-over receipt.
    pub incident_wake: Arc<Notify>,
    /// Wakes the operator notifier for a draft to review.
    pub review_wake: Arc<Notify>,
    /// The `timers` lease: one replica at a time runs the series.
    pub lease: Lease,
}

/// What one step did, for tests and the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SchedulerOutcome {
    /// (window, step key, draft id, published at once).
    pub drafted: Vec<(i64, String, i64, bool)>,
    pub silences_made: usize,
    pub silences_expired: usize,
}

impl MaintenanceScheduler {
    /// Everything due at `now`; see the module's comment.
    pub async fn step(&self, now: Timestamp) -> anyhow::Result<SchedulerOutcome> {
        let mut outcome = SchedulerOutcome::default();
        let since = now
            .checked_sub(jiff::SignedDuration::from_secs(
                FINISHED_LOOKBACK.as_secs() as i64
            ))
            .unwrap_or(now);
        let windows = self.storage.maintenance_windows(since).await?;
        for window in &windows {
            let finished = window.state.is_final() || window.state == WindowState::Overran;
            if finished && !window.silence_ids.is_empty() {
                outcome.silences_expired += self.expire_silences(window, now).await?;
            }
            if window.state == WindowState::Overran && !window.steps_done.contains(HANDED_OVER) {
                self.hand_over(window.incident_id, now).await?;
            }
        }
        for window in &windows {
            if let Some(step) = window.due(now, &self.config.maintenance.reminders) {
                if let Some((drafted, made, expired)) = self.take_step(window, step, now).await? {
                    outcome.silences_made += made;
                    outcome.silences_expired += expired;
                    outcome.drafted.push(drafted);
                }
            } else if window.state == WindowState::Running
                && !window
                    .steps_done
                    .contains(&silenced_until_key(window.plan.ends_at))
            {
                outcome.silences_made += self.extend_silences(window, now).await?;
            }
        }
        self.publish_left_over(&windows).await?;
        Ok(outcome)
    }

    /// Takes one due step of a window. Returns what was drafted and how many silences
    /// were made and expired, or `None` when the window changed meanwhile.
    async fn take_step(
        &self,
        seen: &Window,
        step: Step,
        now: Timestamp,
    ) -> anyhow::Result<Option<((i64, String, i64, bool), usize, usize)>> {
        let incident_id = seen.incident_id;
        let mut silence_ids = Vec::new();
        let mut silence_error = None;
        let mut firing_elsewhere = 0;
        match step {
            Step::Started => match self.make_silences(seen).await {
                Ok(ids) => silence_ids = ids,
                Err(error) => silence_error = Some(error),
            },
            Step::Completed => {
                if let Some(client) = &self.silences
                    && !seen.silence_ids.is_empty()
                {
                    // Alerts Alertmanager kept quiet that still fire: the outage goes on.
                    match client.alerts_silenced_by(&seen.silence_ids).await {
                        Ok(alerts) => firing_elsewhere = alerts.len(),
                        Err(error) => tracing::warn!(
                            incident_id,
                            error = %error,
                            "cannot ask Alertmanager which silenced alerts still fire"
                        ),
                    }
                }
            }
            _ => {}
        }

        let mut transaction = self.storage.begin_write().await?;
        let Some(mut window) = transaction.maintenance_window_tx(incident_id).await? else {
            return Ok(None);
        };
        if window.state != seen.state
            || window.plan != seen.plan
            || window.due(now, &self.config.maintenance.reminders).as_ref() != Some(&step)
        {
            // An operator changed it since it was read; the next step looks again. Any
            // silences just made are expired then, from the window's list or by age.
            self.expire_ids(&silence_ids).await;
            return Ok(None);
        }
        let mut events = Vec::new();
        let mut step = step;
        match &step {
            Step::Reminder { .. } => {
                let passed = window.reminders_passed(now, &self.config.maintenance.reminders);
                window.steps_done.extend(passed);
            }
            Step::Started => {
                window.state = WindowState::Running;
                if !silence_ids.is_empty() {
                    window.silence_ids.extend(silence_ids.iter().cloned());
                    window
                        .steps_done
                        .insert(silenced_until_key(window.plan.ends_at));
                    events.push(LogEvent::MaintenanceSilenced {
                        silence_ids: silence_ids.clone(),
                    });
                }
                if let Some(error) = &silence_error {
                    events.push(LogEvent::MaintenanceSilenceFailed {
                        error: error.clone(),
                    });
                }
            }
            Step::Completed => {
                let recorded = transaction.maintenance_alerts_tx(incident_id).await?;
                let firing = recorded
                    .iter()
                    .filter(|alert| alert.status == AlertStatus::Firing)
                    .count()
                    + firing_elsewhere;
                if firing > 0 {
                    window.state = WindowState::Overran;
                    step = Step::Overran;
                } else {
                    window.state = WindowState::Completed;
                    window.ended_at = Some(now);
                }
                events.push(LogEvent::MaintenanceEnded {
                    state: window.state.as_str().to_owned(),
                    n_alerts_firing: firing,
                });
            }
            _ => {}
        }
        window.steps_done.insert(step.key());
        window.updated_at = now;
        let (summary, classification) = scope_of(&window.plan, &self.config);
        transaction
            .update_maintenance_window(&window, &summary, &classification)
            .await?;
        let events: Vec<EventWrite> = events
            .iter()
            .map(|event| EventWrite::new(now, RELAY, event))
            .collect();
        transaction.append_events(incident_id, &events).await?;
        let key = step.key();
        let draft_id = match draft_step(
            &mut transaction,
            &self.config,
            &self.renderer,
            &window,
            step.clone(),
            RELAY,
            now,
        )
        .await
        {
            Ok(draft_id) => draft_id,
            Err(MaintenanceError::Storage(error)) => return Err(error.into()),
            Err(error) => return Err(anyhow::anyhow!("{error}")),
        };
        transaction.commit().await?;
        tracing::info!(incident_id, step = %key, draft_id, "maintenance step drafted");
        let published = if step != Step::Overran
            && let Some(approval) = &window.approval
        {
            self.publish_approved(draft_id, approval).await
        } else {
            false
        };
        if !published {
            self.review_wake.notify_one();
        }
        if window.state == WindowState::Overran {
            self.hand_over(incident_id, now).await?;
        }
        let expired = if window.state.is_final() || window.state == WindowState::Overran {
            self.expire_silences(&window, now).await?
        } else {
            0
        };
        Ok(Some((
            (incident_id, key, draft_id, published),
            silence_ids.len(),
            expired,
        )))
    }

    /// Publishes a series draft with the announcement's choices. A failure (the plan
    /// changed, a channel went away) leaves the draft for an operator to review.
    async fn publish_approved(
        &self,
        draft_id: i64,
        approval: &crate::maintenance::SeriesApproval,
    ) -> bool {
        let decision = match (&approval.decided_by, approval.decided_role.as_deref()) {
            (Some(decided_by), Some(role)) => DecisionRole::parse(role).map(|role| Decision {
                decided_by: decided_by.clone(),
                role,
            }),
            _ => None,
        };
        let request = PublishRequest {
            draft_id,
            draft_version: 1,
            level: approval.level,
            channels: approval.channels.clone(),
            decision,
            operator: format!("{RELAY} (godkänt av {})", approval.approved_by),
        };
        match self.publisher.publish(&request).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(
                    draft_id,
                    error = %error,
                    "a pre-approved maintenance notice could not be published; left for review"
                );
                false
            }
        }
    }

    /// Publishes the relay's own pending series drafts of approved windows that a crash
    /// left between drafting and publishing.
    async fn publish_left_over(&self, windows: &[Window]) -> anyhow::Result<()> {
        for window in windows {
            let Some(approval) = &window.approval else {
                continue;
            };
            if window.state == WindowState::Overran {
                continue;
            }
            for draft in self.storage.drafts(window.incident_id).await? {
                let Some(first) = draft.versions.first() else {
                    continue;
                };
                if draft.state == DraftState::Pending
                    && draft.versions.len() == 1
                    && first.created_by == RELAY
                    && !first
                        .input
                        .pointer("/maintenance/step/step")
                        .is_some_and(|step| step == "overran")
                {
                    self.publish_approved(draft.draft_id, approval).await;
                }
            }
        }
        Ok(())
    }

    /// Makes the silences of a window's scope until its end. Returns their ids; an error
    /// in words for the log. Without Alertmanager configured, none.
    async fn make_silences(&self, window: &Window) -> Result<Vec<String>, String> {
        let Some(client) = &self.silences else {
            return Ok(Vec::new());
        };
        let sets = window.plan.scope.silence_matchers(
            &self.config.maintenance,
            &self.config.incidents,
            &self.config.inventory,
        );
        let mut ids = Vec::new();
        for set in sets {
            let request = SilenceRequest {
                matchers: set.into_iter().map(to_matcher).collect(),
                starts_at: window.plan.starts_at,
                ends_at: window.plan.ends_at,
                created_by: RELAY.to_owned(),
                comment: format!(
                    "Planerat underhåll {} ({}): {}",
                    window.incident_id,
                    self.config
                        .public_link(&format!("/public/maintenance/{}", window.incident_id)),
                    window.plan.title
                ),
            };
            match client.create(&request).await {
                Ok(id) => ids.push(id),
                Err(error) => {
                    self.metrics
                        .maintenance_silence_errors
                        .with_label_values(&["create"])
                        .inc();
                    // Half a scope silenced is worse than none to reason about.
                    self.expire_ids(&ids).await;
                    return Err(error.to_string());
                }
            }
        }
        Ok(ids)
    }

    /// A running window whose end moved later: new silences to the new end, then the
    /// old ones expired.
    async fn extend_silences(&self, seen: &Window, now: Timestamp) -> anyhow::Result<usize> {
        if self.silences.is_none() {
            return Ok(0);
        }
        let ids = match self.make_silences(seen).await {
            Ok(ids) => ids,
            Err(error) => {
                tracing::warn!(incident_id = seen.incident_id, %error, "cannot extend the silences");
                return Ok(0);
            }
        };
        let mut transaction = self.storage.begin_write().await?;
        let Some(mut window) = transaction.maintenance_window_tx(seen.incident_id).await? else {
            self.expire_ids(&ids).await;
            return Ok(0);
        };
        if window.state != WindowState::Running || window.plan != seen.plan {
            self.expire_ids(&ids).await;
            return Ok(0);
        }
        let old = std::mem::replace(&mut window.silence_ids, ids.clone());
        window
            .steps_done
            .retain(|key| !key.starts_with("silenced-until:"));
        window
            .steps_done
            .insert(silenced_until_key(window.plan.ends_at));
        window.updated_at = now;
        save_window(
            &mut transaction,
            &self.config,
            &window,
            RELAY,
            Some(&LogEvent::MaintenanceSilenced {
                silence_ids: ids.clone(),
            }),
            now,
        )
        .await?;
        transaction.commit().await?;
        self.expire_ids(&old).await;
        Ok(ids.len())
    }

    /// Expires a window's silences and clears them from it. Returns how many.
    async fn expire_silences(&self, seen: &Window, now: Timestamp) -> anyhow::Result<usize> {
        let Some(client) = &self.silences else {
            return Ok(0);
        };
        let mut expired = Vec::new();
        for id in &seen.silence_ids {
            match client.expire(id).await {
                Ok(()) => expired.push(id.clone()),
                Err(error) => {
                    self.metrics
                        .maintenance_silence_errors
                        .with_label_values(&["expire"])
                        .inc();
                    tracing::warn!(incident_id = seen.incident_id, %error, "cannot expire a silence; trying again");
                }
            }
        }
        if expired.is_empty() {
            return Ok(0);
        }
        let mut transaction = self.storage.begin_write().await?;
        if let Some(mut window) = transaction.maintenance_window_tx(seen.incident_id).await? {
            window.silence_ids.retain(|id| !expired.contains(id));
            window.updated_at = now;
            save_window(
                &mut transaction,
                &self.config,
                &window,
                RELAY,
                Some(&LogEvent::MaintenanceSilenceExpired {
                    silence_ids: expired.clone(),
                }),
                now,
            )
            .await?;
            transaction.commit().await?;
        }
        Ok(expired.len())
    }

    /// Expires silences no window holds (best effort: Alertmanager ends them at their
    /// end time anyway).
    async fn expire_ids(&self, ids: &[String]) {
        if let Some(client) = &self.silences {
            for id in ids {
                if let Err(error) = client.expire(id).await {
                    tracing::warn!(silence_id = %id, %error, "cannot expire a silence");
                }
            }
        }
    }

    /// Hands the alerts recorded firing on an overrun window to the incident worker: one
    /// receipt in Alertmanager's own form, stored like a webhook (a retry is a
    /// duplicate), then the window notes it.
    async fn hand_over(&self, incident_id: i64, now: Timestamp) -> anyhow::Result<()> {
        let firing: Vec<_> = self
            .storage
            .maintenance_alerts(incident_id)
            .await?
            .into_iter()
            .filter(|alert| alert.status == AlertStatus::Firing)
            .collect();
        let mut receipt_id = None;
        if !firing.is_empty() {
            let payload = serde_json::json!({
                "version": "4",
                "groupKey": format!("samsa-relay/maintenance/{incident_id}"),
                "status": "firing",
                "receiver": "samsa-relay-maintenance",
                "groupLabels": {},
                "commonLabels": {},
                "commonAnnotations": {},
                "externalURL": "",
                "truncatedAlerts": 0,
                "alerts": firing.iter().map(|alert| serde_json::json!({
                    "status": "firing",
                    "labels": alert.labels,
                    "annotations": {},
                    "startsAt": alert.starts_at,
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "",
                    "fingerprint": alert.fingerprint,
                })).collect::<Vec<_>>(),
            })
            .to_string();
            let notification = Notification::parse(payload.as_bytes())
                .map_err(|problem| anyhow::anyhow!("handed-over alerts: {}", problem.error))?;
            let dedupe_key = notification.dedupe_key();
            let stored = self
                .storage
                .store_notifications(&[NewReceipt {
                    notification: &notification,
                    dedupe_key: &dedupe_key,
                    raw_payload: &payload,
                    received_at: now,
                }])
                .await?;
            receipt_id = stored.first().map(|stored| stored.receipt_id);
            self.incident_wake.notify_one();
        }
        let mut transaction = self.storage.begin_write().await?;
        if let Some(mut window) = transaction.maintenance_window_tx(incident_id).await? {
            window.steps_done.insert(HANDED_OVER.to_owned());
            window.updated_at = now;
            let event = receipt_id.map(|receipt_id| LogEvent::MaintenanceAlertsHandedOver {
                n_alerts: firing.len(),
                receipt_id,
            });
            save_window(
                &mut transaction,
                &self.config,
                &window,
                RELAY,
                event.as_ref(),
                now,
            )
            .await?;
            transaction.commit().await?;
        }
        Ok(())
    }

    /// The loop: a step every `maintenance.check_interval` while this replica holds the
    /// `timers` lease, until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let interval = self.config.maintenance.check_interval;
        loop {
            if self.lease.is_held()
                && let Err(error) = self.step(Timestamp::now()).await
            {
                tracing::warn!(error = ?error, "maintenance step failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

fn to_matcher(matcher: SilenceMatcher) -> Matcher {
    match matcher {
        SilenceMatcher::Equal { name, value } => Matcher::equal(name, value),
        SilenceMatcher::OneOf { name, values } => Matcher::one_of(name, &values),
    }
}
