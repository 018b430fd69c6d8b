//! Incident correlation and the drafting rules, as a pure state machine.
//!
//! [`IncidentEngine::apply`] takes the alerts of one webhook (in arrival order) and moves
//! the latest incident through its states:
//!
//! ```text
//!            firing alert, no open incident,          all alerts resolved
//!            none resolved within the flap window   ┌──────────────────────┐
//!   (none) ───────────────────────────────────────> Open                  Resolved
//!                                                    ^  └──────────────────────┘ │
//!                                                    └─── firing alert within ───┘
//!                                                         the flap window (reopen)
//! ```
//!
//! and decides what the notices must do ([`DraftAction`]): a new incident gets an initial
//! draft; a change of scope or level revises a pending draft in place, or (after
//! publication) asks for an update; resolution asks for a resolution notice, or withdraws
//! the draft when nothing was ever published. The same code runs on stored state (the
//! incident worker) and on in-memory state (`samsa-relay simulate`), so a rehearsal shows
//! exactly what the relay would do.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::alertmanager::{AlertStatus, Labels};
use crate::classify::IncidentsConfig;
use crate::classify::{
    AlertScope, Classification, ScopeSummary, alert_scopes, classify, summarize,
};
use crate::inventory::Inventory;
use crate::notice::{DraftFields, NoticeInput, NoticeKind};

mod log;
mod states;
pub use log::LogEvent;
pub(crate) use states::text_enum;
pub use states::{DeliveryState, DraftState, IncidentKind};

/// An alert's identity: Alertmanager's fingerprint and when this firing started.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    pub fingerprint: String,
    pub starts_at: Timestamp,
}

/// One alert as a webhook reported it, ready for correlation.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertUpdate {
    pub key: AlertKey,
    pub status: AlertStatus,
    pub labels: Labels,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedAlert {
    pub status: AlertStatus,
    pub labels: Labels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub enum Phase {
    Open,
    Resolved { at: Timestamp },
}

/// What the last publication told the public; set by publishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub kind: NoticeKind,
    pub summary: ScopeSummary,
    pub classification: Classification,
}

/// One outage of the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub incident_id: i64,
    pub phase: Phase,
    /// When the disruption started: the earliest `startsAt` of its alerts.
    pub started_at: Timestamp,
    pub alerts: BTreeMap<AlertKey, TrackedAlert>,
    /// The scope while open; kept as it was at the last firing alert once resolved.
    pub summary: ScopeSummary,
    pub classification: Classification,
    pub published: Option<Published>,
    /// The kind of the draft waiting for an operator, if any.
    pub pending_draft: Option<NoticeKind>,
    pub n_reopened: u32,
}

impl Incident {
    /// What a notice of `kind` about this incident is rendered from, with the operator's
    /// `fields` (a chosen level replaces the suggested one) and the public feedback page.
    pub fn notice_input(
        &self,
        kind: NoticeKind,
        fields: &DraftFields,
        feedback_url: String,
    ) -> NoticeInput {
        NoticeInput {
            kind,
            incident_id: self.incident_id,
            started_at: self.started_at,
            resolved_at: match self.phase {
                Phase::Resolved { at } => Some(at),
                Phase::Open => None,
            },
            summary: self.summary.clone(),
            classification: match fields.level {
                Some(level) => self.classification.at_level(level),
                None => self.classification.clone(),
            },
            expected_resolution: fields.expected_resolution,
            next_update: fields.next_update,
            additional_information: fields.additional_information.clone(),
            feedback_url,
            drill: false,
            maintenance: None,
        }
    }
}

impl Incident {
    /// A copy of everything but the alerts (which can be many): what a step writes and
    /// renders from.
    pub fn without_alerts(&self) -> Incident {
        Incident {
            incident_id: self.incident_id,
            phase: self.phase,
            started_at: self.started_at,
            alerts: BTreeMap::new(),
            summary: self.summary.clone(),
            classification: self.classification.clone(),
            published: self.published.clone(),
            pending_draft: self.pending_draft,
            n_reopened: self.n_reopened,
        }
    }
}

/// What the notices must do after a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum DraftAction {
    /// A new draft of this kind, waiting for an operator.
    Create { kind: NoticeKind },
    /// The pending draft is rendered again as a new version.
    Revise { kind: NoticeKind },
    /// The pending draft is withdrawn, with the reason for the log.
    Withdraw { kind: NoticeKind, reason: String },
}

/// The outcome of one webhook for the latest incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub incident_id: i64,
    pub is_new: bool,
    pub events: Vec<LogEvent>,
    pub draft_actions: Vec<DraftAction>,
}

/// The correlation state: the latest incident (the only one alerts can still join) and the
/// identities of alerts that belong to older incidents.
///
/// The engine needs, of the latest incident's alerts, only those an update names: the
/// incident worker loads just those for each batch (an incident can gather hundreds of
/// thousands), with [`IncidentEngine::firing_scopes`] counted from all of them, and
/// clears them after the batch; tests and `simulate` keep every alert. Either way the
/// scope follows `firing_scopes`, never a walk over `latest.alerts`.
#[derive(Debug, Clone, Default)]
pub struct IncidentEngine {
    pub latest: Option<Incident>,
    /// Alerts of older incidents, and alerts first seen resolved: updates for them change
    /// nothing.
    pub retired_alerts: HashSet<AlertKey>,
    pub next_incident_id: i64,
    /// The scopes named by the latest incident's firing alerts, kept up to date by
    /// [`IncidentEngine::apply`] so that a step costs the size of its webhook, not of the
    /// incident. Derived from `latest.alerts`; rebuilt whenever it belongs to another
    /// incident.
    pub firing_scopes: FiringScopes,
}

/// How many firing alerts of one incident name each scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FiringScopes {
    incident_id: Option<i64>,
    counts: BTreeMap<AlertScope, usize>,
}

impl FiringScopes {
    /// Counts the firing alerts of `incident` from scratch.
    pub fn of(incident: &Incident, config: &IncidentsConfig) -> FiringScopes {
        let mut scopes = FiringScopes {
            incident_id: Some(incident.incident_id),
            counts: BTreeMap::new(),
        };
        for alert in incident.alerts.values() {
            scopes.add(alert, config);
        }
        scopes
    }

    /// Counts the scopes of an incident's firing alerts from their label sets, each with
    /// how many firing alerts carry it (what storage can aggregate without reading every
    /// alert into memory).
    pub fn from_label_counts(
        incident_id: i64,
        label_counts: &[(crate::alertmanager::LabelMap, usize)],
        config: &IncidentsConfig,
    ) -> FiringScopes {
        let mut scopes = FiringScopes {
            incident_id: Some(incident_id),
            counts: BTreeMap::new(),
        };
        for (labels, n) in label_counts {
            for scope in alert_scopes(labels, config) {
                *scopes.counts.entry(scope).or_default() += n;
            }
        }
        scopes
    }

    /// The incident these counts belong to.
    pub fn incident_id(&self) -> Option<i64> {
        self.incident_id
    }

    fn add(&mut self, alert: &TrackedAlert, config: &IncidentsConfig) {
        if alert.status == AlertStatus::Firing {
            for scope in alert_scopes(&alert.labels, config) {
                *self.counts.entry(scope).or_default() += 1;
            }
        }
    }

    fn remove(&mut self, alert: &TrackedAlert, config: &IncidentsConfig) {
        if alert.status == AlertStatus::Firing {
            for scope in alert_scopes(&alert.labels, config) {
                if let Some(count) = self.counts.get_mut(&scope) {
                    *count -= 1;
                    if *count == 0 {
                        self.counts.remove(&scope);
                    }
                }
            }
        }
    }

    /// Each scope named by a firing alert, once, in a fixed order.
    fn scopes(&self) -> Vec<AlertScope> {
        self.counts.keys().cloned().collect()
    }
}

impl IncidentEngine {
    pub fn new(next_incident_id: i64) -> IncidentEngine {
        IncidentEngine {
            latest: None,
            retired_alerts: HashSet::new(),
            next_incident_id,
            firing_scopes: FiringScopes::default(),
        }
    }

    /// Applies the alerts of one webhook received at `at`. Returns `None` when nothing
    /// about any incident changed (for example a resolution of an alert never seen firing).
    /// Keys first seen resolved are added to `retired_alerts` and to `newly_retired`.
    pub fn apply(
        &mut self,
        updates: &[AlertUpdate],
        at: Timestamp,
        config: &IncidentsConfig,
        inventory: &Inventory,
        newly_retired: &mut Vec<AlertKey>,
    ) -> Option<Step> {
        let mut events = Vec::new();
        let mut is_new = false;
        let mut reopened = false;
        if let Some(incident) = &self.latest
            && self.firing_scopes.incident_id != Some(incident.incident_id)
        {
            self.firing_scopes = FiringScopes::of(incident, config);
        }
        let was_open = matches!(
            self.latest.as_ref().map(|incident| incident.phase),
            Some(Phase::Open)
        );

        for update in updates {
            if self.retired_alerts.contains(&update.key) {
                continue;
            }
            let known = self
                .latest
                .as_mut()
                .and_then(|incident| incident.alerts.get_mut(&update.key));
            if let Some(tracked) = known {
                match (tracked.status, update.status) {
                    (AlertStatus::Firing, AlertStatus::Resolved) => {
                        self.firing_scopes.remove(tracked, config);
                        tracked.status = AlertStatus::Resolved;
                        events.push(LogEvent::AlertResolved {
                            fingerprint: update.key.fingerprint.clone(),
                            starts_at: update.key.starts_at,
                        });
                    }
                    (AlertStatus::Firing, AlertStatus::Firing) => {
                        if tracked.labels != update.labels {
                            self.firing_scopes.remove(tracked, config);
                            tracked.labels = update.labels.clone();
                            self.firing_scopes.add(tracked, config);
                        }
                    }
                    // Resolved is final for one (fingerprint, startsAt): a re-fire has a new
                    // startsAt, so a late "firing" is an older message.
                    (AlertStatus::Resolved, _) => {}
                }
                continue;
            }
            if update.status == AlertStatus::Resolved {
                // Never seen firing (the relay started late, or messages crossed): the key is
                // final as resolved, so a late "firing" for it must not open an incident.
                if self.retired_alerts.insert(update.key.clone()) {
                    newly_retired.push(update.key.clone());
                }
                continue;
            }
            // A new firing alert: join, reopen, or start an incident.
            match self.latest.as_mut() {
                Some(incident) if incident.phase == Phase::Open => {}
                Some(incident)
                    if matches!(incident.phase, Phase::Resolved { at: resolved_at }
                        if within(resolved_at, at, config.flap_window)) =>
                {
                    incident.phase = Phase::Open;
                    incident.n_reopened += 1;
                    reopened = true;
                    events.push(LogEvent::IncidentReopened {
                        at,
                        n_reopened: incident.n_reopened,
                    });
                }
                _ => {
                    if let Some(old) = self.latest.take() {
                        self.retired_alerts.extend(old.alerts.into_keys());
                    }
                    let incident_id = self.next_incident_id;
                    self.next_incident_id += 1;
                    let summary = summarize(&[], inventory);
                    let classification = classify(&summary, config.broad_subregion_share);
                    self.latest = Some(Incident {
                        incident_id,
                        phase: Phase::Open,
                        started_at: update.key.starts_at,
                        alerts: BTreeMap::new(),
                        summary,
                        classification,
                        published: None,
                        pending_draft: None,
                        n_reopened: 0,
                    });
                    self.firing_scopes = FiringScopes {
                        incident_id: Some(incident_id),
                        counts: BTreeMap::new(),
                    };
                    is_new = true;
                    events.push(LogEvent::IncidentOpened {
                        started_at: update.key.starts_at,
                        n_affected: 0,
                        level: 1,
                        crisis: false,
                        reasons: Vec::new(),
                    });
                }
            }
            let incident = self.latest.as_mut().expect("an open incident exists here");
            incident.started_at = incident.started_at.min(update.key.starts_at);
            let tracked = TrackedAlert {
                status: AlertStatus::Firing,
                labels: update.labels.clone(),
            };
            self.firing_scopes.add(&tracked, config);
            incident.alerts.insert(update.key.clone(), tracked);
            events.push(LogEvent::AlertFiring {
                fingerprint: update.key.fingerprint.clone(),
                starts_at: update.key.starts_at,
                labels: update.labels.clone(),
            });
        }

        let incident = self.latest.as_mut()?;
        if events.is_empty() {
            return None;
        }

        // Scope and level follow the firing alerts while the incident is open.
        let firing_scopes = self.firing_scopes.scopes();
        let resolved_now = firing_scopes.is_empty() && incident.phase == Phase::Open;
        let mut scope_or_level_changed = false;
        if !firing_scopes.is_empty() {
            let summary = summarize(&firing_scopes, inventory);
            let classification = classify(&summary, config.broad_subregion_share);
            if is_new {
                // The opening event carries the first scope and level; they did not change.
                if let Some(LogEvent::IncidentOpened {
                    started_at,
                    n_affected,
                    level,
                    crisis,
                    reasons,
                }) = events
                    .iter_mut()
                    .find(|event| matches!(event, LogEvent::IncidentOpened { .. }))
                {
                    *started_at = incident.started_at;
                    *n_affected = summary.n_affected;
                    *level = classification.level.as_number();
                    *crisis = classification.crisis;
                    *reasons = classification.reasons.clone();
                }
            } else if summary != incident.summary {
                events.push(LogEvent::ScopeChanged {
                    n_affected_before: incident.summary.n_affected,
                    n_affected: summary.n_affected,
                    whole_service: summary.whole_service,
                });
                scope_or_level_changed = true;
            }
            if !is_new
                && (classification.level != incident.classification.level
                    || classification.crisis != incident.classification.crisis)
            {
                events.push(LogEvent::LevelChanged {
                    before: incident.classification.level.as_number(),
                    after: classification.level.as_number(),
                    crisis: classification.crisis,
                    reasons: classification.reasons.clone(),
                });
                scope_or_level_changed = true;
            }
            incident.summary = summary;
            incident.classification = classification;
        }
        if resolved_now {
            incident.phase = Phase::Resolved { at };
            events.push(LogEvent::IncidentResolved { at });
        }

        let draft_actions = decide_drafts(
            incident,
            is_new,
            was_open,
            reopened,
            resolved_now,
            scope_or_level_changed,
        );
        for action in &draft_actions {
            match action {
                DraftAction::Create { kind } | DraftAction::Revise { kind } => {
                    incident.pending_draft = Some(*kind)
                }
                DraftAction::Withdraw { .. } => incident.pending_draft = None,
            }
        }
        Some(Step {
            incident_id: incident.incident_id,
            is_new,
            events,
            draft_actions,
        })
    }
}

/// The drafting rules. `incident` is in its state after the step.
fn decide_drafts(
    incident: &Incident,
    is_new: bool,
    was_open: bool,
    reopened: bool,
    resolved_now: bool,
    scope_or_level_changed: bool,
) -> Vec<DraftAction> {
    let mut actions = Vec::new();
    let pending = incident.pending_draft;
    let published_outage = incident
        .published
        .as_ref()
        .is_some_and(|published| published.kind != NoticeKind::Resolved);

    if resolved_now {
        match (published_outage, pending) {
            (true, Some(NoticeKind::Resolved)) => actions.push(DraftAction::Revise {
                kind: NoticeKind::Resolved,
            }),
            (true, pending) => {
                if let Some(kind) = pending {
                    actions.push(DraftAction::Withdraw {
                        kind,
                        reason: "Störningen är åtgärdad innan utkastet publicerades".to_owned(),
                    });
                }
                actions.push(DraftAction::Create {
                    kind: NoticeKind::Resolved,
                });
            }
            (false, Some(kind)) => actions.push(DraftAction::Withdraw {
                kind,
                reason: "Störningen är åtgärdad innan något publicerades; inget åtgärdat-meddelande behövs"
                    .to_owned(),
            }),
            (false, None) => {}
        }
        return actions;
    }
    if incident.phase != Phase::Open {
        return actions;
    }
    if is_new {
        actions.push(DraftAction::Create {
            kind: NoticeKind::Initial,
        });
        return actions;
    }
    if reopened && !was_open {
        if pending == Some(NoticeKind::Resolved) {
            actions.push(DraftAction::Withdraw {
                kind: NoticeKind::Resolved,
                reason: "Störningen återkom innan åtgärdat-meddelandet publicerades".to_owned(),
            });
        }
        let kind = if incident.published.is_some() {
            NoticeKind::Update
        } else {
            NoticeKind::Initial
        };
        actions.push(DraftAction::Create { kind });
        return actions;
    }
    if scope_or_level_changed {
        match pending {
            Some(kind) => actions.push(DraftAction::Revise { kind }),
            None => {
                let differs_from_published = incident.published.as_ref().is_some_and(|published| {
                    published.summary != incident.summary
                        || published.classification.level != incident.classification.level
                });
                if differs_from_published {
                    actions.push(DraftAction::Create {
                        kind: NoticeKind::Update,
                    });
                }
            }
        }
    }
    actions
}

fn within(earlier: Timestamp, later: Timestamp, window: Duration) -> bool {
    let elapsed = later.duration_since(earlier);
    elapsed.is_negative() || elapsed.unsigned_abs() <= window
}

#[cfg(test)]
mod tests;
