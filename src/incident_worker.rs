//! The incident worker: takes stored webhooks in order, correlates them into incidents
//! ([`crate::incident`]), renders the drafts ([`crate::notice`]) and writes it all in one
//! transaction together with the receipt's "processed" mark, so that a crash at any point
//! leaves either nothing or everything of a step. Also watches the Watchdog alert.
//!
//! Over a shared database only the replica holding the `correlation` lease
//! ([`crate::cluster`]) processes receipts and checks the Watchdog, and it checks the lease
//! again inside each batch's transaction, so that receipts are taken in order by one
//! replica at a time and one outage stays one incident.
//!
//! [`IncidentWorker::process_next_receipt`] is one step and what tests call;
//! [`IncidentWorker::run`] is the loop that waits, backs off and watches for shutdown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::alertmanager::{AlertStatus, Notification};
use crate::backlog::Backlog;
use crate::classify::{Classification, Level, summarize};
use crate::cluster::Lease;
use crate::config::Config;
use crate::incident::{AlertKey, AlertUpdate, DraftAction, FiringScopes, IncidentEngine, LogEvent};
use crate::metrics::Metrics;
use crate::notice::{NoticeRenderer, format_swedish_time};
use crate::storage::{
    CorrelationReads, CorrelationState, CorrelationVersion, DraftFields, DraftWrite, EventWrite,
    IncidentBatch, IncidentChange, IncidentWrite, MaintenanceAlert, PendingDraft, Storage,
    WriteTransaction,
};

/// How often the loop looks again without being woken (watchdog, missed wake-ups).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Most receipts in one transaction: bounds how long the write connection is held, so
/// that ingest and the operators' writes get it in between.
const MAX_BATCH: usize = 64;
/// The write-connection hold a batch aims under. What a batch writes grows with its
/// alerts (each is written to `incident_alerts` and to its webhook's log row), so the
/// alerts per batch adapt to the holds measured ([`BatchBudget`]); webhooks waiting for
/// their group commit then never wait much longer than this for the worker.
pub const TARGET_HOLD: Duration = Duration::from_millis(4);
/// The alert budget's bounds and start. A receipt with more alerts than the budget is
/// still taken, alone.
/// The floor keeps the worker's throughput: measured with a floor of 16, batches of one
/// 20-alert receipt each (a commit apiece) fell to about 60 receipts/s while ingest took
/// 1,000/s, and the holds still passed 5 ms on a loaded disk (docs/performance.md).
const MIN_BATCH_ALERTS: usize = 256;
const MAX_BATCH_ALERTS: usize = 2048;
const START_BATCH_ALERTS: usize = 512;
/// How many times a batch is planned on a read snapshot before it is planned with the
/// write connection held (see [`IncidentWorker::process_receipts`]).
const PLAN_ATTEMPTS: usize = 3;
/// After a batch, how long the next receipts may gather before the worker takes them.
const GATHER: Duration = Duration::from_millis(10);
/// How often the Watchdog's silence is checked while the worker is busy (two reads), but
/// for at once after it arrives: checking before every batch cost two reads per batch
/// under a backlog.
const WATCHDOG_CHECK: Duration = Duration::from_secs(1);
/// Longest pause after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a replica that does not hold the `correlation` lease reads the backlog's
/// bounds from the database (the holder knows them from its own batches).
const BACKLOG_REFRESH: Duration = Duration::from_secs(1);

/// A batch planned on a read snapshot, waiting to be written; see
/// [`IncidentWorker::plan`].
pub struct BatchPlan {
    /// The alerts of its receipts (those that parse).
    n_alerts: usize,
    /// Each receipt with its step (`None`: its payload no longer parses).
    steps: Vec<(i64, Option<IncidentWrite>)>,
    during_maintenance: BTreeMap<i64, Vec<MaintenanceAlert>>,
    /// What the plan was made from, checked again before it is written.
    version: CorrelationVersion,
    windows: Vec<crate::maintenance::Window>,
    window_range: (Timestamp, Timestamp),
    /// The engine as the batch leaves it.
    engine: IncidentEngine,
    processed_at: Timestamp,
}

/// How many alerts the next batch may take, adapted to the write-connection holds
/// measured: smaller after a hold over [`TARGET_HOLD`], larger after a full batch that
/// held it for under half of it. Shared by clones of the worker.
#[derive(Debug)]
pub struct BatchBudget {
    alerts: std::sync::atomic::AtomicUsize,
}

impl Default for BatchBudget {
    fn default() -> BatchBudget {
        BatchBudget {
            alerts: std::sync::atomic::AtomicUsize::new(START_BATCH_ALERTS),
        }
    }
}

impl BatchBudget {
    /// The alerts the next batch may take.
    pub fn alerts(&self) -> usize {
        self.alerts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Adapts the budget to a batch of `n_alerts` that held the write connection for
    /// `held`: cut by a quarter when over the target; grown by a quarter when a batch
    /// that used at least most of the budget stayed under half the target. A batch
    /// limited by what was waiting says nothing about a larger one.
    pub fn observe(&self, n_alerts: usize, held: Duration) {
        let budget = self.alerts();
        let next = if held > TARGET_HOLD {
            (budget - budget / 4).max(MIN_BATCH_ALERTS)
        } else if held < TARGET_HOLD / 2 && n_alerts >= budget - budget / 4 {
            (budget + budget / 4).min(MAX_BATCH_ALERTS)
        } else {
            budget
        };
        self.alerts
            .store(next, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// No receipt was waiting.
    Idle,
    /// One receipt was processed; the incident it changed, if any.
    Processed {
        receipt_id: i64,
        incident_id: Option<i64>,
    },
}

/// The heartbeat name the Watchdog's arrivals are stored under.
pub const WATCHDOG_HEARTBEAT: &str = "watchdog";

/// When the Watchdog alert last arrived at this replica. Its arrivals are also written to
/// the database (by [`IncidentWorker::flush_watchdog`], off the webhook's path), so that
/// the replica that checks the Watchdog counts arrivals at every replica. Starts at the
/// process's start: with no arrival stored, a new relay gives the monitoring chain a whole
/// timeout before it raises the alarm.
#[derive(Debug)]
pub struct WatchdogClock {
    last_seen: Mutex<Timestamp>,
    /// The latest arrival not yet written to the database.
    unflushed: Mutex<Option<Timestamp>>,
}

impl WatchdogClock {
    pub fn new(now: Timestamp) -> WatchdogClock {
        WatchdogClock {
            last_seen: Mutex::new(now),
            unflushed: Mutex::new(None),
        }
    }

    pub fn seen(&self, at: Timestamp) {
        let mut last_seen = self.last_seen.lock().expect("watchdog clock lock");
        *last_seen = (*last_seen).max(at);
        let mut unflushed = self.unflushed.lock().expect("watchdog clock lock");
        *unflushed = Some(unflushed.map_or(at, |earlier| earlier.max(at)));
    }

    /// The arrival to write to the database, if one came since the last call.
    fn take_unflushed(&self) -> Option<Timestamp> {
        self.unflushed.lock().expect("watchdog clock lock").take()
    }

    pub fn last_seen(&self) -> Timestamp {
        *self.last_seen.lock().expect("watchdog clock lock")
    }

    /// Records the Watchdog if this notification carries it firing.
    pub fn observe(&self, notification: &Notification, watchdog_alertname: &str, now: Timestamp) {
        if carries_watchdog(notification, watchdog_alertname) {
            self.seen(now);
        }
    }
}

/// Whether `notification` carries the Watchdog alert firing.
pub fn carries_watchdog(notification: &Notification, watchdog_alertname: &str) -> bool {
    notification.alerts.iter().any(|alert| {
        alert.status == AlertStatus::Firing
            && alert.labels.get("alertname") == Some(watchdog_alertname)
    })
}

#[derive(Clone)]
pub struct IncidentWorker {
    pub storage: Storage,
    pub config: Arc<Config>,
    pub renderer: Arc<NoticeRenderer>,
    pub metrics: Metrics,
    pub wake: Arc<Notify>,
    pub watchdog: Arc<WatchdogClock>,
    /// Wakes the operator notifier when drafts changed.
    pub review_wake: Arc<Notify>,
    /// The `correlation` lease: only its holder processes receipts.
    pub lease: Lease,
    /// The correlation engine as the last committed batch left it (see
    /// [`IncidentWorker::process_receipts`]), with the lease term it was built under (a
    /// replica that lost the lease and took it again must not trust it); shared by
    /// clones, and held for a whole batch so that batches never interleave.
    pub kept_engine: Arc<tokio::sync::Mutex<Option<(u64, IncidentEngine)>>>,
    /// The alerts per batch, adapted to the holds measured.
    pub batch_budget: Arc<BatchBudget>,
    /// The receipts waiting, as ingest sees them: told after each batch commits.
    pub backlog: Backlog,
}

impl IncidentWorker {
    /// Processes the oldest unprocessed receipt, if any, in one transaction.
    pub async fn process_next_receipt(&self) -> anyhow::Result<StepOutcome> {
        let outcomes = self.process_receipts(1).await?;
        Ok(outcomes.into_iter().next().unwrap_or(StepOutcome::Idle))
    }

    /// Processes the oldest unprocessed receipts, at most `limit` (and at most the
    /// [`BatchBudget`]'s alerts, a larger receipt alone), in one transaction: one
    /// commit for a whole backlog. Each receipt is still its own correlation step, in
    /// order. Returns one [`StepOutcome::Processed`] per receipt; empty when none was
    /// waiting. Processes nothing when another replica holds the `correlation` lease.
    ///
    /// The batch is planned (payloads parsed, alerts correlated, drafts rendered) on a
    /// read snapshot, without the write connection; the write transaction then checks
    /// that nothing the plan was made from has changed meanwhile (an operator published
    /// or edited the pending draft, a drill took the next incident id, a maintenance
    /// window began) and writes the plan. When something has changed, the plan is made
    /// again from a new snapshot; after [`PLAN_ATTEMPTS`] such misses it is made inside
    /// the write transaction, as a last resort that always progresses.
    pub async fn process_receipts(&self, limit: usize) -> anyhow::Result<Vec<StepOutcome>> {
        if !self.lease.is_held() && !self.lease.renew(&self.storage, &self.metrics).await {
            return Ok(Vec::new());
        }
        let term = self.lease.term();
        // The engine of the last committed batch, taken out: it is put back only after
        // this batch commits, so a failure anywhere leaves nothing stale behind. One kept
        // under an earlier term is dropped: another replica may have changed incidents.
        let mut kept = self.kept_engine.lock().await;
        let mut previous = kept
            .take()
            .filter(|(kept_term, _)| *kept_term == term)
            .map(|(_, engine)| engine);
        let _timer = self
            .metrics
            .storage_duration
            .with_label_values(&["incident_step"])
            .start_timer();
        let now = Timestamp::now();
        for _ in 0..PLAN_ATTEMPTS {
            let Some(plan) = self.plan(limit, &mut previous, now).await? else {
                // Nothing waited: the engine is still the last batch's; keep it, or the
                // next batch would count its scopes again from the database.
                *kept = previous.map(|engine| (term, engine));
                return Ok(Vec::new());
            };
            match self.write(plan).await? {
                Some(plan) => return Ok(self.committed(plan, term, &mut kept)),
                None => self.metrics.incident_replans.inc(),
            }
        }
        // The state kept changing under the plans: plan with the write connection held.
        let mut transaction = self.storage.begin_write().await?;
        let hold = Instant::now();
        let result = async {
            if !self.holds_lease(&mut transaction).await? {
                return Ok(None);
            }
            let Some(plan) = self
                .plan_batch(&mut *transaction, limit, &mut None, now)
                .await?
            else {
                return Ok(None);
            };
            let plan = self.write_plan(&mut transaction, plan).await?;
            transaction.commit().await?;
            anyhow::Ok(Some(plan))
        }
        .await;
        self.note_hold(hold.elapsed());
        Ok(match result? {
            Some(plan) => self.committed(plan, term, &mut kept),
            None => Vec::new(),
        })
    }

    /// Plans the next batch (at most `limit` receipts) on a read snapshot, without the
    /// write connection: `None` when no receipt is waiting. `previous` is the engine the
    /// last committed batch left; it is taken only when a batch is planned. Part of [`IncidentWorker::process_receipts`]; public so
    /// that tests can change the state between a plan and its write.
    pub async fn plan(
        &self,
        limit: usize,
        previous: &mut Option<IncidentEngine>,
        now: Timestamp,
    ) -> anyhow::Result<Option<BatchPlan>> {
        let mut snapshot = self.storage.begin_read().await?;
        self.plan_batch(&mut *snapshot, limit, previous, now).await
    }

    /// Writes and commits a plan of [`IncidentWorker::plan`] if nothing it was made from
    /// has changed and this replica still holds the lease. `None`: nothing written (plan
    /// again). The time the write connection was held goes to `write_hold`.
    pub async fn write(&self, plan: BatchPlan) -> anyhow::Result<Option<BatchPlan>> {
        let n_alerts = plan.n_alerts;
        let mut transaction = self.storage.begin_write().await?;
        let hold = Instant::now();
        let written = match self.write_planned(&mut transaction, plan).await {
            Ok(Some(plan)) => transaction
                .commit()
                .await
                .map(|()| Some(plan))
                .map_err(Into::into),
            Ok(None) => Ok(None),
            Err(error) => Err(error),
        };
        let held = hold.elapsed();
        self.note_hold(held);
        if matches!(written, Ok(Some(_))) {
            self.batch_budget.observe(n_alerts, held);
        }
        written
    }

    /// Plans the next batch from `reads`: `None` when no receipt is waiting.
    async fn plan_batch(
        &self,
        reads: &mut dyn CorrelationReads,
        limit: usize,
        previous: &mut Option<IncidentEngine>,
        now: Timestamp,
    ) -> anyhow::Result<Option<BatchPlan>> {
        let receipts = reads
            .next_unprocessed_receipts(limit, self.batch_budget.alerts())
            .await?;
        if receipts.is_empty() {
            return Ok(None);
        }
        let watchdog_alertname = &self.config.incidents.watchdog_alertname;
        let parsed: Vec<Option<Vec<AlertUpdate>>> = receipts
            .iter()
            .map(
                |receipt| match Notification::parse(receipt.payload.as_bytes()) {
                    Ok(notification) => Some(alert_updates(&notification, watchdog_alertname)),
                    Err(problem) => {
                        // Stored payloads were checked on arrival; one that no longer parses
                        // (after an upgrade, say) must not block every later receipt.
                        tracing::error!(
                            receipt_id = receipt.receipt_id,
                            error = %problem.error,
                            detail = %problem.detail,
                            "stored payload no longer parses; skipping it"
                        );
                        None
                    }
                },
            )
            .collect();
        let keys: Vec<AlertKey> = parsed
            .iter()
            .flatten()
            .flatten()
            .map(|update| update.key.clone())
            .collect();
        let mut state = reads.load_correlation(&keys, previous.take()).await?;
        if let (Some(label_counts), Some(latest)) =
            (state.firing_labels.take(), state.engine.latest.as_ref())
        {
            state.engine.firing_scopes = FiringScopes::from_label_counts(
                latest.incident_id,
                &label_counts,
                &self.config.incidents,
            );
        }
        // Planned maintenance: alerts inside a window's scope and times are recorded on
        // the window, not correlated (one small read per batch).
        let first_at = receipts.first().map_or(now, |receipt| receipt.received_at);
        let last_at = receipts.last().map_or(now, |receipt| receipt.received_at);
        let window_range = (first_at.min(last_at), first_at.max(last_at));
        let windows = reads
            .maintenance_windows_in_effect(window_range.0, window_range.1)
            .await?;
        let mut during_maintenance: BTreeMap<i64, Vec<MaintenanceAlert>> = BTreeMap::new();
        let mut steps = Vec::with_capacity(receipts.len());
        for (receipt, updates) in receipts.iter().zip(parsed) {
            let write = match updates {
                Some(mut updates) => {
                    if !windows.is_empty() {
                        updates = set_aside_for_maintenance(
                            updates,
                            &windows,
                            receipt.received_at,
                            &state.engine,
                            &self.config,
                            &mut during_maintenance,
                        );
                    }
                    let write = plan_step(
                        &mut state,
                        &updates,
                        receipt.received_at,
                        &self.config,
                        &self.renderer,
                    )
                    .with_context(|| format!("cannot plan receipt {}", receipt.receipt_id))?;
                    Some(write)
                }
                None => None,
            };
            steps.push((receipt.receipt_id, write));
        }
        Ok(Some(BatchPlan {
            n_alerts: keys.len(),
            steps,
            during_maintenance,
            version: state.version,
            windows,
            window_range,
            engine: state.engine,
            processed_at: now,
        }))
    }

    /// Inside the write transaction: the lease fence, then the check that the plan's
    /// reads still hold, then the writes. `None` (nothing written) when the lease has
    /// passed or the state changed since the plan.
    async fn write_planned(
        &self,
        transaction: &mut WriteTransaction,
        plan: BatchPlan,
    ) -> anyhow::Result<Option<BatchPlan>> {
        if !self.holds_lease(transaction).await? {
            return Ok(None);
        }
        let version = transaction.correlation_version().await?;
        let windows = transaction
            .maintenance_windows_in_effect(plan.window_range.0, plan.window_range.1)
            .await?;
        if version != plan.version || windows != plan.windows {
            tracing::debug!("the state changed while the batch was planned; planning again");
            return Ok(None);
        }
        Ok(Some(self.write_plan(transaction, plan).await?))
    }

    /// The fence: a replica that stalled past its lease writes nothing.
    async fn holds_lease(&self, transaction: &mut WriteTransaction) -> anyhow::Result<bool> {
        let held = transaction
            .hold_lease(self.lease.name(), self.lease.holder())
            .await?;
        if !held {
            tracing::warn!("the correlation lease passed to another replica; not processing");
        }
        Ok(held)
    }

    /// Writes a plan: each step's incident and drafts, then the batch's alerts, log and
    /// processed marks. A draft created in the batch gets its id here; later steps of the
    /// batch that revise or withdraw it were planned with id 0 and get that id.
    async fn write_plan(
        &self,
        transaction: &mut WriteTransaction,
        mut plan: BatchPlan,
    ) -> anyhow::Result<BatchPlan> {
        let mut batch = IncidentBatch::default();
        let mut created_in_batch = None;
        for (receipt_id, write) in &mut plan.steps {
            if let Some(write) = write {
                if let Some(change) = write.change.as_mut() {
                    for draft in &mut change.drafts {
                        if let DraftWrite::Revise { draft_id, .. }
                        | DraftWrite::Withdraw { draft_id, .. } = draft
                            && *draft_id == 0
                        {
                            *draft_id = created_in_batch.context(
                                "a draft of the batch was revised before it was created",
                            )?;
                        }
                    }
                }
                if let Some(draft_id) = transaction.stage_incident_step(write, &mut batch).await? {
                    created_in_batch = Some(draft_id);
                }
            }
            batch.receipt_ids.push(*receipt_id);
        }
        for (window_id, alerts) in &plan.during_maintenance {
            transaction
                .record_maintenance_alerts(*window_id, alerts)
                .await?;
            let events: Vec<EventWrite> = alerts
                .iter()
                .map(|alert| {
                    EventWrite::new(
                        alert.last_seen,
                        "alertmanager",
                        &LogEvent::AlertDuringMaintenance {
                            fingerprint: alert.fingerprint.clone(),
                            starts_at: alert.starts_at,
                            status: alert.status.as_str().to_owned(),
                            labels: alert.labels.clone(),
                        },
                    )
                })
                .collect();
            transaction.append_events(*window_id, &events).await?;
        }
        transaction
            .finish_incident_batch(&batch, plan.processed_at)
            .await?;
        Ok(plan)
    }

    fn note_hold(&self, held: Duration) {
        self.metrics
            .write_hold
            .with_label_values(&["incident_worker"])
            .observe(held.as_secs_f64());
    }

    /// After a batch committed: keep its engine (without the alerts it loaded: the next
    /// batch loads its own), count and log. Returns one outcome per receipt.
    fn committed(
        &self,
        plan: BatchPlan,
        term: u64,
        kept: &mut Option<(u64, IncidentEngine)>,
    ) -> Vec<StepOutcome> {
        let BatchPlan {
            steps,
            during_maintenance,
            mut engine,
            ..
        } = plan;
        if let Some(latest) = engine.latest.as_mut() {
            latest.alerts = BTreeMap::new();
        }
        engine.retired_alerts = std::collections::HashSet::new();
        *kept = Some((term, engine));
        if let Some((receipt_id, _)) = steps.last() {
            self.backlog.note_processed(*receipt_id);
        }
        let n_during_maintenance: usize = during_maintenance.values().map(Vec::len).sum();
        self.metrics
            .maintenance_alerts
            .inc_by(n_during_maintenance as u64);
        let mut drafts_changed = false;
        let mut outcomes = Vec::with_capacity(steps.len());
        for (receipt_id, write) in &steps {
            let change = write.as_ref().and_then(|write| write.change.as_ref());
            if let Some(change) = change {
                self.record_metrics(change);
                drafts_changed |= !change.drafts.is_empty();
                tracing::info!(
                    receipt_id,
                    incident_id = change.incident.incident_id,
                    is_new = change.is_new,
                    level = change.incident.classification.level.as_number(),
                    n_drafts_written = change.drafts.len(),
                    "incident updated"
                );
            }
            outcomes.push(StepOutcome::Processed {
                receipt_id: *receipt_id,
                incident_id: change.map(|change| change.incident.incident_id),
            });
        }
        if drafts_changed {
            self.review_wake.notify_one();
        }
        outcomes
    }

    /// Opens or resolves the internal "monitoring chain broken" incident from the
    /// Watchdog's last arrival. Returns the incident changed, if any.
    pub async fn check_watchdog(&self, now: Timestamp) -> anyhow::Result<Option<i64>> {
        let timeout = self.config.incidents.watchdog_timeout;
        let stored = self.storage.last_heartbeat(WATCHDOG_HEARTBEAT).await?;
        let last_seen = self
            .watchdog
            .last_seen()
            .max(stored.unwrap_or(Timestamp::MIN));
        let silent_for = now.duration_since(last_seen);
        let is_silent = !silent_for.is_negative() && silent_for.unsigned_abs() > timeout;
        if is_silent {
            let summary = summarize(&[], &self.config.inventory);
            let classification = Classification {
                level: Level::One,
                crisis: false,
                reasons: vec![format!(
                    "Larmet {} har inte kommit sedan {}: övervakningskedjan är bruten",
                    self.config.incidents.watchdog_alertname,
                    format_swedish_time(last_seen)
                )],
            };
            let detail = serde_json::json!({
                "watchdog_alertname": self.config.incidents.watchdog_alertname,
                "last_seen": last_seen,
                "timeout_seconds": timeout.as_secs(),
            });
            let opened = self
                .storage
                .open_monitoring_incident(now, &summary, &classification, detail)
                .await?;
            if let Some(incident_id) = opened {
                tracing::error!(
                    incident_id,
                    last_seen = %last_seen,
                    "the Watchdog alert stopped arriving: the monitoring chain is broken"
                );
            }
            Ok(opened)
        } else {
            let resolved = self.storage.resolve_monitoring_incident(now).await?;
            if let Some(incident_id) = resolved {
                tracing::info!(incident_id, "the Watchdog alert arrives again");
            }
            Ok(resolved)
        }
    }

    /// The loop: process receipts while there are any, otherwise wait to be woken (or
    /// for the idle poll), backing off after failures. Ends at shutdown, after the step in
    /// hand.
    /// Writes the Watchdog's latest arrival at this replica to the database, for whichever
    /// replica checks it. On failure it is kept for the next call.
    pub async fn flush_watchdog(&self) -> anyhow::Result<()> {
        if let Some(at) = self.watchdog.take_unflushed()
            && let Err(error) = self.storage.record_heartbeat(WATCHDOG_HEARTBEAT, at).await
        {
            self.watchdog.seen(at);
            return Err(error.into());
        }
        Ok(())
    }

    /// Every replica runs the loop; only the holder of the `correlation` lease does more
    /// than write the Watchdog's arrivals: the others wait until they take the lease.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::ZERO;
        let mut backlog_read_at: Option<Instant> = None;
        // When the Watchdog's silence was last checked, and its last arrival then.
        let mut watchdog_checked: Option<(Instant, Timestamp)> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if let Err(error) = self.flush_watchdog().await {
                tracing::warn!(error = ?error, "cannot store the Watchdog's arrival; retrying");
            }
            if !self.lease.is_held() {
                if backlog_read_at.is_none_or(|at| at.elapsed() >= BACKLOG_REFRESH) {
                    backlog_read_at = Some(Instant::now());
                    self.refresh_backlog().await;
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            let watchdog_seen = self.watchdog.last_seen();
            if watchdog_checked
                .is_none_or(|(at, seen)| at.elapsed() >= WATCHDOG_CHECK || seen != watchdog_seen)
            {
                watchdog_checked = Some((Instant::now(), watchdog_seen));
                if let Err(error) = self.check_watchdog(Timestamp::now()).await {
                    tracing::warn!(error = ?error, "watchdog check failed");
                }
            }
            let stored_before = self.backlog.stored_up_to();
            let outcome = self.process_receipts(MAX_BATCH).await;
            let wait = match outcome {
                Ok(outcomes) => {
                    backoff = Duration::ZERO;
                    let last_id = match outcomes.last() {
                        Some(StepOutcome::Processed { receipt_id, .. }) => *receipt_id,
                        _ => 0,
                    };
                    match after_batch(outcomes.len(), last_id, stored_before) {
                        AfterBatch::Next => continue,
                        AfterBatch::Gather => {
                            tokio::select! {
                                () = shutdown.cancelled() => break,
                                () = tokio::time::sleep(GATHER) => {}
                            }
                            continue;
                        }
                        AfterBatch::Idle => IDLE_POLL,
                    }
                }
                Err(error) => {
                    self.metrics.incident_step_failures.inc();
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                    tracing::error!(error = ?error, retry_in_ms = backoff.as_millis() as u64, "incident step failed");
                    backoff
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!("incident worker stopped");
    }

    /// Reads the backlog's bounds from the database, for a replica whose ingest would
    /// otherwise never learn that another replica processed its receipts.
    pub async fn refresh_backlog(&self) {
        match self.storage.backlog_bounds().await {
            Ok((highest_receipt_id, processed_up_to)) => {
                self.backlog.note_stored(highest_receipt_id);
                self.backlog.note_processed(processed_up_to);
            }
            Err(error) => {
                tracing::warn!(error = ?anyhow::Error::from(error), "cannot read the backlog's bounds; retrying");
            }
        }
    }

    fn record_metrics(&self, change: &IncidentChange) {
        if change.is_new {
            self.metrics.incidents_opened.inc();
        }
        for draft in &change.drafts {
            let action = match draft {
                DraftWrite::Create { .. } => "created",
                DraftWrite::Revise { .. } => "revised",
                DraftWrite::Withdraw { .. } => "withdrawn",
            };
            self.metrics
                .draft_changes
                .with_label_values(&[action])
                .inc();
        }
    }
}

/// What the worker's loop does after a batch.
#[derive(Debug, PartialEq, Eq)]
enum AfterBatch {
    /// Take the next batch at once.
    Next,
    /// Let the next receipts gather for [`GATHER`] first.
    Gather,
    /// Nothing was waiting: sleep until woken or [`IDLE_POLL`].
    Idle,
}

/// After a batch of `n_processed` receipts, the last of them `last_id`, begun when
/// receipts up to `stored_before` were known to be stored. A full batch, or one cut short
/// (by the alert budget) while receipts it could not take were already waiting, is
/// followed at once: gathering then only idles the worker while the backlog grows (it
/// drained 20-alert receipts at a third of the rate when it paused after each
/// budget-sized batch). A batch that took everything waiting when it began is followed
/// by a moment of gathering, even when more arrived while it was written: under a steady
/// stream the worker otherwise takes a few receipts at a time, and each of its commits
/// costs a hold of the write connection and an fsync, CPU and disk that ingest then
/// lacks (at 16 connections of 1-alert webhooks, batches of 3.5 receipts held the
/// connection 44 % of the time). The first receipt after a quiet spell is still taken at
/// once.
fn after_batch(n_processed: usize, last_id: i64, stored_before: i64) -> AfterBatch {
    if n_processed == 0 {
        AfterBatch::Idle
    } else if n_processed >= MAX_BATCH || last_id < stored_before {
        AfterBatch::Next
    } else {
        AfterBatch::Gather
    }
}

/// The alerts of a notification as correlation input, without the Watchdog (it only
/// proves that the chain works and is never an outage).
pub fn alert_updates(notification: &Notification, watchdog_alertname: &str) -> Vec<AlertUpdate> {
    notification
        .alerts
        .iter()
        .filter(|alert| alert.labels.get("alertname") != Some(watchdog_alertname))
        .map(|alert| AlertUpdate {
            key: AlertKey {
                fingerprint: alert.fingerprint.clone(),
                starts_at: alert.starts_at,
            },
            status: alert.status,
            labels: alert.labels.clone(),
        })
        .collect()
}

/// Takes out of `updates` the alerts that are expected downtime of a maintenance window
/// in effect at `at` (wholly inside its scope) and adds them to `during`, by window. An
/// alert the latest incident already tracks stays with it: an outage that began before
/// the window is not hidden by it.
pub fn set_aside_for_maintenance(
    updates: Vec<AlertUpdate>,
    windows: &[crate::maintenance::Window],
    at: Timestamp,
    engine: &IncidentEngine,
    config: &Config,
    during: &mut BTreeMap<i64, Vec<MaintenanceAlert>>,
) -> Vec<AlertUpdate> {
    let in_effect: Vec<_> = windows
        .iter()
        .filter(|window| window.in_effect(at))
        .collect();
    if in_effect.is_empty() {
        return updates;
    }
    let tracked = |key: &AlertKey| {
        engine
            .latest
            .as_ref()
            .is_some_and(|incident| incident.alerts.contains_key(key))
    };
    updates
        .into_iter()
        .filter(|update| {
            if tracked(&update.key) {
                return true;
            }
            let scopes = crate::classify::alert_scopes(&update.labels, &config.incidents);
            let Some(window) = in_effect
                .iter()
                .find(|window| window.plan.scope.covers(&scopes, &config.inventory))
            else {
                return true;
            };
            let alerts = during.entry(window.incident_id).or_default();
            alerts.retain(|alert| {
                alert.fingerprint != update.key.fingerprint
                    || alert.starts_at != update.key.starts_at
            });
            alerts.push(MaintenanceAlert {
                fingerprint: update.key.fingerprint.clone(),
                starts_at: update.key.starts_at,
                status: update.status,
                labels: update.labels.clone(),
                first_seen: at,
                last_seen: at,
            });
            false
        })
        .collect()
}

/// Correlates one receipt's alerts against `state` and renders what the drafting rules
/// ask for. Pure: the worker writes the result, `simulate` prints it.
pub fn plan_step(
    state: &mut CorrelationState,
    updates: &[AlertUpdate],
    at: Timestamp,
    config: &Config,
    renderer: &NoticeRenderer,
) -> anyhow::Result<IncidentWrite> {
    let mut retired_unseen = Vec::new();
    let step = state.engine.apply(
        updates,
        at,
        &config.incidents,
        &config.inventory,
        &mut retired_unseen,
    );
    let Some(step) = step else {
        return Ok(IncidentWrite {
            at,
            retired_unseen,
            change: None,
        });
    };
    let latest = state
        .engine
        .latest
        .as_ref()
        .expect("a step always leaves a latest incident");
    if step.is_new {
        // A new incident has no draft yet; a pending one belonged to the previous incident.
        state.pending_draft = None;
    }

    // Only the alerts this webhook touched are written, and only they are copied.
    let mut alerts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for update in updates {
        if let Some(alert) = latest.alerts.get(&update.key)
            && seen.insert(&update.key)
        {
            alerts.push((update.key.clone(), alert.clone()));
        }
    }
    let incident = latest.without_alerts();

    let events = crate::storage::event_writes(&step.events, at);

    let mut drafts = Vec::new();
    for action in &step.draft_actions {
        match action {
            DraftAction::Create { kind } => {
                let fields = DraftFields::default();
                let input = incident.notice_input(
                    *kind,
                    &fields,
                    config.public_link(&format!("/public/feedback/{}", incident.incident_id)),
                );
                let rendered = renderer
                    .render(&input)
                    .with_context(|| format!("cannot render the {} notice", kind.as_str()))?;
                drafts.push(DraftWrite::Create {
                    kind: *kind,
                    fields: fields.clone(),
                    input: serde_json::to_value(&input).context("notice input as JSON")?,
                    rendered,
                });
                state.pending_draft = Some(PendingDraft {
                    draft_id: 0,
                    kind: *kind,
                    version: 1,
                    fields,
                });
            }
            DraftAction::Revise { kind } => {
                let Some(pending) = state.pending_draft.as_mut() else {
                    tracing::warn!(
                        incident_id = incident.incident_id,
                        "no pending draft to revise"
                    );
                    continue;
                };
                let input = incident.notice_input(
                    *kind,
                    &pending.fields,
                    config.public_link(&format!("/public/feedback/{}", incident.incident_id)),
                );
                let rendered = renderer
                    .render(&input)
                    .with_context(|| format!("cannot render the {} notice", kind.as_str()))?;
                drafts.push(DraftWrite::Revise {
                    draft_id: pending.draft_id,
                    fields: pending.fields.clone(),
                    input: serde_json::to_value(&input).context("notice input as JSON")?,
                    rendered,
                });
                pending.version += 1;
            }
            DraftAction::Withdraw { reason, .. } => {
                if let Some(pending) = state.pending_draft.take() {
                    drafts.push(DraftWrite::Withdraw {
                        draft_id: pending.draft_id,
                        reason: reason.clone(),
                    });
                }
            }
        }
    }
    Ok(IncidentWrite {
        at,
        retired_unseen,
        change: Some(IncidentChange {
            incident,
            is_new: step.is_new,
            alerts,
            events,
            drafts,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_batch_the_worker_goes_on_at_once_only_when_receipts_it_could_not_take_wait() {
        assert_eq!(after_batch(0, 0, 0), AfterBatch::Idle);
        // A batch the alert budget cut short: receipts 113 to 120 were waiting already.
        assert_eq!(after_batch(12, 112, 120), AfterBatch::Next);
        assert_eq!(after_batch(MAX_BATCH, 164, 164), AfterBatch::Next);
        assert_eq!(after_batch(MAX_BATCH - 1, 163, 163), AfterBatch::Gather);
        assert_eq!(after_batch(1, 7, 7), AfterBatch::Gather);
    }

    #[test]
    fn the_batch_budget_shrinks_after_long_holds_and_grows_after_short_full_batches() {
        let budget = BatchBudget::default();
        assert_eq!(budget.alerts(), START_BATCH_ALERTS);
        budget.observe(512, Duration::from_millis(9));
        assert_eq!(budget.alerts(), 384);
        // A short hold of a batch limited by what was waiting changes nothing.
        budget.observe(10, Duration::from_micros(300));
        assert_eq!(budget.alerts(), 384);
        // A short hold of a full batch grows it; a hold between half and the target keeps it.
        budget.observe(384, Duration::from_millis(1));
        assert_eq!(budget.alerts(), 480);
        budget.observe(480, Duration::from_millis(3));
        assert_eq!(budget.alerts(), 480);
        for _ in 0..100 {
            budget.observe(20_000, Duration::from_secs(1));
        }
        assert_eq!(budget.alerts(), MIN_BATCH_ALERTS);
        for _ in 0..100 {
            budget.observe(budget.alerts(), Duration::from_micros(100));
        }
        assert_eq!(budget.alerts(), MAX_BATCH_ALERTS);
    }
}
