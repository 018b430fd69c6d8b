//! What operators do with planned maintenance windows, from the dashboard, the HTTP API
//! or the command line: plan one (its announcement drafted for review), move it, call it
//! off, end it early. Each is one write transaction that changes the window, drafts the
//! notice people must get, and logs it. The series' own steps (reminders, start, end) are
//! `maintenance_scheduler.rs`; the rules are `crate::maintenance`.

use jiff::Timestamp;

use crate::classify::{Classification, ScopeSummary};
use crate::config::Config;
use crate::incident::LogEvent;
use crate::maintenance::{PlanProblem, Step, Window, WindowPlan, WindowState};
use crate::notice::{DraftFields, NoticeInput, NoticeRenderer};
use crate::storage::{EventWrite, Storage, StorageError, WriteTransaction};

/// The name the relay's own drafts and log entries carry.
pub const RELAY: &str = "samsa-relay";

/// Why an operator's action on a window was refused; shown to operators, so in Swedish.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("Uppgifterna behöver rättas")]
    Plan(Vec<PlanProblem>),
    #[error("Underhållet finns inte")]
    NotFound,
    #[error("Underhållet är redan {0} och kan inte ändras")]
    Final(&'static str),
    #[error("Underhållet har dragit över tiden; avsluta det när tjänsten fungerar igen")]
    Overran,
    #[error("Skriv varför underhållet ställs in")]
    ReasonRequired,
    #[error("Texten kunde inte skapas: {0}")]
    Render(String),
    #[error("Lagringen är inte tillgänglig just nu; försök igen")]
    Storage(#[from] StorageError),
}

/// The scope's summary and the classification at the plan's level, as an incident's.
pub fn scope_of(plan: &WindowPlan, config: &Config) -> (ScopeSummary, Classification) {
    let summary = crate::maintenance::summarize(&plan.scope, &config.inventory);
    let classification =
        crate::classify::classify(&summary, config.incidents.broad_subregion_share)
            .at_level(plan.level);
    (summary, classification)
}

/// Plans a window: its incident, the window (planned) and the announcement's draft for
/// review. Returns (the window's id, the draft's id).
pub async fn plan_window(
    storage: &Storage,
    config: &Config,
    renderer: &NoticeRenderer,
    plan: WindowPlan,
    operator: &str,
    now: Timestamp,
) -> Result<(i64, i64), MaintenanceError> {
    let plan = plan
        .checked(now, &config.inventory)
        .map_err(MaintenanceError::Plan)?;
    let (summary, classification) = scope_of(&plan, config);
    let mut transaction = storage.begin_write().await?;
    let incident_id = transaction
        .insert_maintenance_window(&plan, &summary, &classification, operator, now)
        .await?;
    let window = transaction
        .maintenance_window_tx(incident_id)
        .await?
        .ok_or(MaintenanceError::NotFound)?;
    let draft_id = draft_step(
        &mut transaction,
        config,
        renderer,
        &window,
        Step::Announcement,
        operator,
        now,
    )
    .await?;
    transaction.commit().await?;
    tracing::info!(incident_id, draft_id, "maintenance window planned");
    Ok((incident_id, draft_id))
}

/// Moves a window to new times. A window not yet announced gets a new announcement
/// draft; an announced or running one a "moved" notice for review, and its reminders
/// whose time now lies ahead will go out again. Returns the new draft's id.
#[allow(clippy::too_many_arguments)]
pub async fn move_window(
    storage: &Storage,
    config: &Config,
    renderer: &NoticeRenderer,
    incident_id: i64,
    starts_at: Timestamp,
    ends_at: Timestamp,
    operator: &str,
    now: Timestamp,
) -> Result<i64, MaintenanceError> {
    let mut transaction = storage.begin_write().await?;
    let mut window = open_window(&mut transaction, incident_id).await?;
    if window.state == WindowState::Overran {
        return Err(MaintenanceError::Overran);
    }
    let (previous_starts_at, previous_ends_at) = (window.plan.starts_at, window.plan.ends_at);
    let mut plan = window.plan.clone();
    plan.starts_at = starts_at;
    plan.ends_at = ends_at;
    window.plan = plan
        .checked(now, &config.inventory)
        .map_err(MaintenanceError::Plan)?;
    let step = if window.state == WindowState::Planned {
        Step::Announcement
    } else {
        window.sequence += 1;
        // Reminders still ahead are due again; a window moved wholly into the future
        // starts again (its start notice and silences come at the new start).
        window.steps_done.retain(|key| {
            !(key.starts_with("reminder:") || key == "started")
                || !window_key_ahead(key, &window.plan, now)
        });
        if window.state == WindowState::Running && window.plan.starts_at > now {
            window.state = WindowState::Announced;
            window.steps_done.remove("started");
        }
        Step::Moved {
            previous_starts_at,
            previous_ends_at,
        }
    };
    window.updated_at = now;
    save_window(
        &mut transaction,
        config,
        &window,
        operator,
        Some(&LogEvent::MaintenanceMoved {
            previous_starts_at,
            previous_ends_at,
            starts_at,
            ends_at,
        }),
        now,
    )
    .await?;
    let draft_id = draft_step(
        &mut transaction,
        config,
        renderer,
        &window,
        step,
        operator,
        now,
    )
    .await?;
    transaction.commit().await?;
    Ok(draft_id)
}

/// Whether the step of `key` lies after `now` in the moved plan.
fn window_key_ahead(key: &str, plan: &WindowPlan, now: Timestamp) -> bool {
    if key == "started" {
        return plan.starts_at > now;
    }
    key.strip_prefix("reminder:")
        .and_then(|minutes| minutes.parse::<i64>().ok())
        .and_then(|minutes| {
            plan.starts_at
                .checked_sub(jiff::SignedDuration::from_mins(minutes))
                .ok()
        })
        .is_some_and(|at| at > now)
}

/// Calls a window off. Not yet announced: its announcement draft is withdrawn and
/// nothing is sent (returns `None`). Otherwise the cancellation notice is drafted for
/// review. Its silences are expired by the scheduler.
pub async fn cancel_window(
    storage: &Storage,
    config: &Config,
    renderer: &NoticeRenderer,
    incident_id: i64,
    reason: &str,
    operator: &str,
    now: Timestamp,
) -> Result<Option<i64>, MaintenanceError> {
    let reason = crate::swedish::single_line(reason, 500);
    if reason.is_empty() {
        return Err(MaintenanceError::ReasonRequired);
    }
    let mut transaction = storage.begin_write().await?;
    let mut window = open_window(&mut transaction, incident_id).await?;
    let was_announced = window.state != WindowState::Planned;
    window.state = WindowState::Cancelled;
    window.ended_at = Some(now);
    window.updated_at = now;
    if was_announced {
        window.sequence += 1;
    }
    save_window(
        &mut transaction,
        config,
        &window,
        operator,
        Some(&LogEvent::MaintenanceCancelled {
            reason: reason.clone(),
        }),
        now,
    )
    .await?;
    let draft_id = if was_announced {
        Some(
            draft_step(
                &mut transaction,
                config,
                renderer,
                &window,
                Step::Cancelled,
                operator,
                now,
            )
            .await?,
        )
    } else {
        transaction
            .withdraw_pending_draft(
                incident_id,
                "Underhållet ställdes in före annonseringen",
                now,
            )
            .await?;
        transaction.close_drill(incident_id, now).await?;
        None
    };
    transaction.commit().await?;
    Ok(draft_id)
}

/// Ends a window now (the work is done early, or an overrun is over): the window is
/// completed and its "klart" notice drafted for review. Returns the draft's id.
pub async fn end_window(
    storage: &Storage,
    config: &Config,
    renderer: &NoticeRenderer,
    incident_id: i64,
    operator: &str,
    now: Timestamp,
) -> Result<i64, MaintenanceError> {
    let mut transaction = storage.begin_write().await?;
    let mut window = open_window(&mut transaction, incident_id).await?;
    if window.state == WindowState::Planned {
        // Nothing was announced: there is nothing to end, only to call off.
        return Err(MaintenanceError::Final(WindowState::Planned.label()));
    }
    let previous_state = window.state;
    window.state = WindowState::Completed;
    window.ended_at = Some(now);
    if window.plan.ends_at > now {
        window.plan.ends_at = now.max(window.plan.starts_at);
    }
    window.steps_done.insert(Step::Completed.key());
    window.updated_at = now;
    save_window(
        &mut transaction,
        config,
        &window,
        operator,
        Some(&LogEvent::MaintenanceEnded {
            state: WindowState::Completed.as_str().to_owned(),
            n_alerts_firing: 0,
        }),
        now,
    )
    .await?;
    let step = if previous_state == WindowState::Announced {
        // Ended before it began: for the people told, it is called off.
        Step::Cancelled
    } else {
        Step::Completed
    };
    let draft_id = draft_step(
        &mut transaction,
        config,
        renderer,
        &window,
        step,
        operator,
        now,
    )
    .await?;
    transaction.commit().await?;
    Ok(draft_id)
}

/// Writes a window (and its incident's scope, from the plan) and logs `event` as `by`'s.
pub async fn save_window(
    transaction: &mut WriteTransaction,
    config: &Config,
    window: &Window,
    by: &str,
    event: Option<&LogEvent>,
    now: Timestamp,
) -> Result<(), StorageError> {
    let (summary, classification) = scope_of(&window.plan, config);
    transaction
        .update_maintenance_window(window, &summary, &classification)
        .await?;
    if let Some(event) = event {
        transaction
            .append_events(window.incident_id, &[EventWrite::new(now, by, event)])
            .await?;
    }
    Ok(())
}

/// A window that is not over, read for a change.
async fn open_window(
    transaction: &mut WriteTransaction,
    incident_id: i64,
) -> Result<Window, MaintenanceError> {
    let window = transaction
        .maintenance_window_tx(incident_id)
        .await?
        .ok_or(MaintenanceError::NotFound)?;
    if window.state.is_final() {
        return Err(MaintenanceError::Final(window.state.label()));
    }
    Ok(window)
}

/// The notice input of one step of a window's series.
pub fn notice_input(window: &Window, step: Step, config: &Config, now: Timestamp) -> NoticeInput {
    let (summary, classification) = scope_of(&window.plan, config);
    let kind = step.notice_kind();
    NoticeInput {
        kind,
        incident_id: window.incident_id,
        started_at: window.plan.starts_at,
        resolved_at: (kind == crate::notice::NoticeKind::Resolved)
            .then(|| window.ended_at.unwrap_or(now)),
        summary,
        classification,
        // The planned end, except when the window ran over it: then the operator writes
        // the new expected time.
        expected_resolution: (step != Step::Overran).then_some(window.plan.ends_at),
        next_update: None,
        additional_information: None,
        feedback_url: config.public_link(&format!("/public/feedback/{}", window.incident_id)),
        drill: false,
        maintenance: Some(window.notice(step)),
    }
}

/// Drafts the notice of `step` for the window, in place of any draft still pending (one
/// pending draft per incident: a reminder nobody published is no longer news once the
/// window starts). Logs the step. Returns the draft's id.
pub async fn draft_step(
    transaction: &mut WriteTransaction,
    config: &Config,
    renderer: &NoticeRenderer,
    window: &Window,
    step: Step,
    by: &str,
    now: Timestamp,
) -> Result<i64, MaintenanceError> {
    let label = step.label();
    let key = step.key();
    let input = notice_input(window, step, config, now);
    let rendered = renderer
        .render(&input)
        .map_err(|error| MaintenanceError::Render(format!("{error:#}")))?;
    let input_json = serde_json::to_value(&input)
        .map_err(|error| StorageError::permanent("encode_notice_input", error))?;
    transaction
        .withdraw_pending_draft(
            window.incident_id,
            &format!("Ersatt av nästa meddelande: {label}"),
            now,
        )
        .await?;
    let fields = DraftFields {
        level: Some(window.plan.level),
        ..DraftFields::default()
    };
    let draft_id = transaction
        .insert_operator_draft(
            window.incident_id,
            input.kind,
            &fields,
            &input_json,
            &rendered,
            by,
            now,
        )
        .await?
        .ok_or_else(|| {
            StorageError::permanent(
                "draft_step",
                anyhow::anyhow!("a draft is still pending after withdrawing it"),
            )
        })?;
    let automatic = by == RELAY && window.approval.is_some() && key != Step::Overran.key();
    transaction
        .append_events(
            window.incident_id,
            &[EventWrite::new(
                now,
                by,
                &LogEvent::MaintenanceStep {
                    step: key,
                    label,
                    draft_id,
                    automatic,
                },
            )],
        )
        .await?;
    Ok(draft_id)
}
