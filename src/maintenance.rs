//! Planned maintenance: a window of time in which SAMSA is expected to be unavailable for
//! some organisations or all of them, announced ahead like a disruption is announced when
//! it happens.
//!
//! A window is an incident of kind `maintenance` with a [`Window`] beside it. Its notices
//! are drafts like any other (reviewed, published, delivered and logged the same way),
//! with a [`MaintenanceNotice`] in the notice input that selects the maintenance
//! templates. The series of one window:
//!
//! ```text
//!  created ──publish announcement──> announced ──start──> running ──end──> completed
//!   (planned)        reminders before the start ┘            │  in-scope alerts
//!                                                            └─ still firing ─> overran
//!  moved: new times, a notice for review; cancelled: a notice for review, no more steps
//! ```
//!
//! Everything here is pure: which step is due ([`Window::due`]), whether an alert falls
//! inside a window ([`WindowScope::covers`]), which Alertmanager matchers silence a scope
//! ([`WindowScope::silence_matchers`]). The notice's part is `notice/maintenance.rs`;
//! the scheduler that acts on all this is `maintenance_scheduler.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::classify::{AlertScope, IncidentsConfig, Level, ScopeSummary};
use crate::inventory::Inventory;
#[cfg(test)]
use crate::notice::NoticeKind;
pub use crate::notice::maintenance::{MaintenanceNotice, Step};
use crate::secret::Secret;

/// Longest title of a window, in characters.
pub const MAX_TITLE_CHARS: usize = 120;
/// Longest impact or advice text, in characters.
pub const MAX_TEXT_CHARS: usize = 2_000;
/// Longest window: longer work is several windows, each announced.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// What users should do, when the operator writes nothing else: the plan's backup routine.
pub const DEFAULT_ADVICE: &str = "Använd er reservrutin för vårdövergångar under underhållet. Planera in utskrivningar och samordnade individuella planer före eller efter underhållet där det går.";

/// The `[maintenance]` settings (`config::RawMaintenance` documents each field).
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceConfig {
    /// When reminders go out, before the start; the longest first.
    pub reminders: Vec<Duration>,
    /// From how long before the start the login-page banner shows an upcoming window.
    pub banner_before: Duration,
    /// How often the scheduler looks for due steps.
    pub check_interval: Duration,
    /// The Alertmanager peers whose API v2 gets the silences; empty: no silences, alerts
    /// in scope are recorded on the window instead.
    pub alertmanager_urls: Vec<String>,
    pub alertmanager_timeout: Duration,
    pub alertmanager_token: Option<Secret>,
    /// Equality matchers every silence carries (`service="samsa"`), so that a silence
    /// never covers alerts beyond the service.
    pub silence_matchers: BTreeMap<String, String>,
    /// The bearer token of the HTTP API (`/api/maintenance`); none: the API is off.
    pub api_token: Option<Secret>,
}

impl Default for MaintenanceConfig {
    fn default() -> MaintenanceConfig {
        MaintenanceConfig {
            reminders: vec![Duration::from_secs(24 * 3600), Duration::from_secs(3600)],
            banner_before: Duration::from_secs(48 * 3600),
            check_interval: Duration::from_secs(15),
            alertmanager_urls: Vec::new(),
            alertmanager_timeout: Duration::from_secs(10),
            alertmanager_token: None,
            silence_matchers: BTreeMap::from([("service".to_owned(), "samsa".to_owned())]),
            api_token: None,
        }
    }
}

/// Who a window concerns: the whole service, or actors and sub-regions by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowScope {
    #[serde(default)]
    pub whole_service: bool,
    #[serde(default)]
    pub actors: Vec<String>,
    #[serde(default)]
    pub subregions: Vec<String>,
}

impl WindowScope {
    pub fn is_empty(&self) -> bool {
        !self.whole_service && self.actors.is_empty() && self.subregions.is_empty()
    }

    /// The scope as the alert scopes it stands for, to summarise and classify like an
    /// incident's.
    pub fn alert_scopes(&self) -> Vec<AlertScope> {
        if self.whole_service {
            return vec![AlertScope::Everything];
        }
        self.subregions
            .iter()
            .cloned()
            .map(AlertScope::Subregion)
            .chain(self.actors.iter().cloned().map(AlertScope::Actor))
            .collect()
    }

    /// Every actor id the window covers: its actors and those of its sub-regions.
    pub fn actor_ids(&self, inventory: &Inventory) -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = self.actors.iter().cloned().collect();
        for subregion in &self.subregions {
            ids.extend(inventory.actors_in(subregion).map(|actor| actor.id.clone()));
        }
        ids
    }

    /// Whether an alert with these scopes is expected downtime of this window: every
    /// part of it lies inside. An alert about the whole service is inside only a
    /// whole-service window; an alert naming Skövde and Lerum is not inside a window for
    /// Skövde alone.
    pub fn covers(&self, scopes: &[AlertScope], inventory: &Inventory) -> bool {
        if self.whole_service {
            return true;
        }
        if scopes.is_empty() {
            return false;
        }
        scopes.iter().all(|scope| match scope {
            AlertScope::Everything => false,
            AlertScope::Subregion(id) => self.subregions.iter().any(|own| own == id),
            AlertScope::Actor(id) => {
                self.actors.iter().any(|own| own == id)
                    || inventory
                        .actor(id)
                        .is_some_and(|actor| self.subregions.contains(&actor.subregion_id))
            }
        })
    }

    /// The matcher sets of the silences that keep this window's alerts from paging
    /// anyone: one silence per set (Alertmanager ANDs the matchers of one silence). Each
    /// set starts with the configured equality matchers.
    pub fn silence_matchers(
        &self,
        config: &MaintenanceConfig,
        incidents: &IncidentsConfig,
        inventory: &Inventory,
    ) -> Vec<Vec<SilenceMatcher>> {
        let base = || -> Vec<SilenceMatcher> {
            config
                .silence_matchers
                .iter()
                .map(|(name, value)| SilenceMatcher::Equal {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect()
        };
        if self.whole_service {
            return vec![base()];
        }
        let mut sets = Vec::new();
        let actors = self.actor_ids(inventory);
        if !actors.is_empty() {
            let mut set = base();
            set.push(SilenceMatcher::OneOf {
                name: incidents.actor_label.clone(),
                values: actors.into_iter().collect(),
            });
            sets.push(set);
        }
        if !self.subregions.is_empty() {
            let mut set = base();
            set.push(SilenceMatcher::OneOf {
                name: incidents.subregion_label.clone(),
                values: self.subregions.clone(),
            });
            sets.push(set);
        }
        sets
    }
}

/// One matcher of a silence, as the domain decides it; the silences client turns it into
/// Alertmanager's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SilenceMatcher {
    Equal {
        name: String,
        value: String,
    },
    /// The label equals one of the values.
    OneOf {
        name: String,
        values: Vec<String>,
    },
}

/// What an operator enters for a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowPlan {
    pub title: String,
    pub scope: WindowScope,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    /// What users will notice ("SAMSA går inte att nå").
    pub impact: String,
    /// What users should do (the backup routine).
    pub advice: String,
    /// The plan's level whose channels the series uses.
    pub level: Level,
    /// Reminders, start and end go out on their own with the announcement's choices
    /// (approved with it); otherwise each is a draft for review.
    pub auto_series: bool,
}

/// A window as the HTTP API and the command line give it, times as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    pub title: String,
    #[serde(default)]
    pub whole_service: bool,
    #[serde(default)]
    pub actors: Vec<String>,
    #[serde(default)]
    pub subregions: Vec<String>,
    /// RFC 3339 (`2026-12-08T18:00:00+01:00`), or Swedish local time
    /// (`2026-12-08 18:00`).
    pub starts_at: String,
    pub ends_at: String,
    pub impact: String,
    /// Left empty: [`DEFAULT_ADVICE`].
    #[serde(default)]
    pub advice: String,
    /// 1, 2 or 3; left out: 1.
    #[serde(default = "level_one")]
    pub level: u8,
    /// Each later notice waits for review instead of going out on its own.
    #[serde(default)]
    pub review_each: bool,
    /// Who plans it (the HTTP API asks for it; the command line has `--by`).
    #[serde(default)]
    pub requested_by: Option<String>,
}

fn level_one() -> u8 {
    1
}

impl PlanRequest {
    /// The plan, or every problem of its times and level at its field (the rest is
    /// checked by [`WindowPlan::checked`]).
    pub fn into_plan(self) -> Result<WindowPlan, Vec<PlanProblem>> {
        let mut problems = Vec::new();
        let starts_at = parse_time(&self.starts_at).map_err(|message| {
            problems.push(PlanProblem {
                field: "starts_at",
                message,
            })
        });
        let ends_at = parse_time(&self.ends_at).map_err(|message| {
            problems.push(PlanProblem {
                field: "ends_at",
                message,
            })
        });
        let level = Level::from_number(self.level);
        if level.is_none() {
            problems.push(PlanProblem {
                field: "level",
                message: "Nivån är 1, 2 eller 3".to_owned(),
            });
        }
        match (starts_at, ends_at, level) {
            (Ok(starts_at), Ok(ends_at), Some(level)) if problems.is_empty() => Ok(WindowPlan {
                title: self.title,
                scope: WindowScope {
                    whole_service: self.whole_service,
                    actors: self.actors,
                    subregions: self.subregions,
                },
                starts_at,
                ends_at,
                impact: self.impact,
                advice: self.advice,
                level,
                auto_series: !self.review_each,
            }),
            _ => Err(problems),
        }
    }
}

/// A time as operators write it: RFC 3339 with an offset, or Swedish local time
/// (`2026-12-08 18:00`, `2026-12-08T18:00`). A local time that a clock change skips or
/// repeats takes the later (compatible) reading.
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(timestamp) = text.parse::<Timestamp>() {
        return Ok(timestamp);
    }
    let local: jiff::civil::DateTime = text.replacen(' ', "T", 1).parse().map_err(|_| {
        format!(
            "Ange tiden som ÅÅÅÅ-MM-DD TT:MM, till exempel 2026-12-08 18:00 (fick \"{}\")",
            crate::swedish::single_line(text, 40)
        )
    })?;
    crate::swedish::stockholm_time(local)
        .map_err(|error| format!("Tiden finns inte i svensk tid: {error}"))
}

/// A problem with a plan, at its field; shown to operators, so in Swedish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanProblem {
    /// The form field (`title`, `scope`, `starts_at`, `ends_at`, `impact`, `advice`).
    pub field: &'static str,
    pub message: String,
}

impl WindowPlan {
    /// Every problem of the plan: empty texts, an empty or unknown scope, an end not
    /// after the start, a window already over or longer than [`MAX_WINDOW`]. The texts
    /// are trimmed and bounded first.
    pub fn checked(
        mut self,
        now: Timestamp,
        inventory: &Inventory,
    ) -> Result<WindowPlan, Vec<PlanProblem>> {
        let mut problems = Vec::new();
        let mut problem =
            |field: &'static str, message: String| problems.push(PlanProblem { field, message });
        self.title = crate::swedish::single_line(&self.title, MAX_TITLE_CHARS);
        self.impact = crate::swedish::clean_multiline(&self.impact, MAX_TEXT_CHARS);
        self.advice = crate::swedish::clean_multiline(&self.advice, MAX_TEXT_CHARS);
        if self.title.is_empty() {
            problem("title", "Skriv en rubrik för underhållet".to_owned());
        }
        if self.impact.is_empty() {
            problem(
                "impact",
                "Beskriv vad användarna märker under underhållet".to_owned(),
            );
        }
        if self.advice.is_empty() {
            self.advice = DEFAULT_ADVICE.to_owned();
        }
        self.scope.actors.sort();
        self.scope.actors.dedup();
        self.scope.subregions.sort();
        self.scope.subregions.dedup();
        if self.scope.is_empty() {
            problem(
                "scope",
                "Välj hela tjänsten, eller minst en verksamhet eller delregion".to_owned(),
            );
        }
        let unknown: Vec<&str> = self
            .scope
            .actors
            .iter()
            .filter(|id| inventory.actor(id).is_none())
            .chain(
                self.scope
                    .subregions
                    .iter()
                    .filter(|id| inventory.subregion(id).is_none()),
            )
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            problem(
                "scope",
                format!("Okänd verksamhet eller delregion: {}", unknown.join(", ")),
            );
        }
        if self.ends_at <= self.starts_at {
            problem("ends_at", "Slutet måste vara efter starten".to_owned());
        } else if self.ends_at.duration_since(self.starts_at)
            > jiff::SignedDuration::from_secs(MAX_WINDOW.as_secs() as i64)
        {
            problem(
                "ends_at",
                "Ett underhåll får vara högst 7 dygn; dela upp längre arbeten".to_owned(),
            );
        }
        if self.ends_at <= now {
            problem("ends_at", "Slutet har redan passerat".to_owned());
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(problems)
        }
    }
}

crate::incident::text_enum! {
    /// Where a window stands.
    WindowState {
        /// Created; its announcement is not published yet.
        Planned = "planned",
        /// Announced; the start lies ahead.
        Announced = "announced",
        /// Started (silenced, the start notice made).
        Running = "running",
        /// Ended with alerts in scope still firing: an outage goes on past the window.
        Overran = "overran",
        /// Ended (final).
        Completed = "completed",
        /// Called off (final).
        Cancelled = "cancelled",
    }
}

impl WindowState {
    /// Swedish, for operator pages and the public status.
    pub fn label(self) -> &'static str {
        match self {
            WindowState::Planned => "planerat, inte annonserat",
            WindowState::Announced => "annonserat",
            WindowState::Running => "pågår",
            WindowState::Overran => "drog över tiden",
            WindowState::Completed => "klart",
            WindowState::Cancelled => "inställt",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, WindowState::Completed | WindowState::Cancelled)
    }
}

/// The operator's approval of the series, taken from the published announcement: the
/// channels, level and decision every automatic notice of the window reuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesApproval {
    pub channels: Vec<String>,
    pub level: Level,
    pub decided_by: Option<String>,
    pub decided_role: Option<String>,
    pub approved_by: String,
}

/// A stored window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The window's incident, which is also the window's id.
    pub incident_id: i64,
    pub plan: WindowPlan,
    pub state: WindowState,
    /// Raised by every change people were told of (iCalendar `SEQUENCE`).
    pub sequence: i64,
    /// The keys ([`Step::key`]) of the steps made.
    pub steps_done: BTreeSet<String>,
    /// The Alertmanager silences made for the window, to expire at its end.
    pub silence_ids: Vec<String>,
    /// Set when the announcement is published with `auto_series`.
    pub approval: Option<SeriesApproval>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub announced_at: Option<Timestamp>,
    /// When it ended or was called off.
    pub ended_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// How a window stands on the login page at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BannerPhase {
    Upcoming,
    Running,
}

impl Window {
    /// Whether alerts inside the window's scope are expected downtime at `at`: announced
    /// or running, and `at` inside its times. An overrun window no longer covers anything:
    /// what still fails is an outage.
    pub fn in_effect(&self, at: Timestamp) -> bool {
        matches!(self.state, WindowState::Announced | WindowState::Running)
            && self.plan.starts_at <= at
            && at < self.plan.ends_at
    }

    /// The next step of the series due at `now`, if any. Reminders only count when their
    /// time came after the announcement (a window announced an hour ahead gets no
    /// reminder a day before), and of several due at once only the latest is sent: the
    /// others are [`Window::reminders_passed`].
    pub fn due(&self, now: Timestamp, reminders: &[Duration]) -> Option<Step> {
        match self.state {
            WindowState::Announced if now >= self.plan.ends_at => Some(Step::Completed),
            WindowState::Announced if now >= self.plan.starts_at => Some(Step::Started),
            WindowState::Announced => {
                let announced_at = self.announced_at?;
                reminders
                    .iter()
                    .map(|before| minutes(*before))
                    .filter(|before| {
                        let at = self.reminder_at(*before);
                        at <= now
                            && at > announced_at
                            && !self.steps_done.contains(
                                &Step::Reminder {
                                    before_minutes: *before,
                                }
                                .key(),
                            )
                    })
                    .min()
                    .map(|before_minutes| Step::Reminder { before_minutes })
            }
            WindowState::Running if now >= self.plan.ends_at => Some(Step::Completed),
            _ => None,
        }
    }

    /// The keys of every reminder whose time has come by `now`: done once one is sent.
    pub fn reminders_passed(&self, now: Timestamp, reminders: &[Duration]) -> Vec<String> {
        reminders
            .iter()
            .map(|before| minutes(*before))
            .filter(|before| self.reminder_at(*before) <= now)
            .map(|before_minutes| Step::Reminder { before_minutes }.key())
            .collect()
    }

    fn reminder_at(&self, before_minutes: i64) -> Timestamp {
        self.plan
            .starts_at
            .checked_sub(jiff::SignedDuration::from_mins(before_minutes))
            .unwrap_or(self.plan.starts_at)
    }

    /// What the login page shows of the window at `now`: upcoming from `banner_before`
    /// ahead of the start, running until the end; nothing for a window not announced,
    /// over, or called off.
    pub fn banner_phase(&self, now: Timestamp, banner_before: Duration) -> Option<BannerPhase> {
        match self.state {
            WindowState::Announced | WindowState::Running => {}
            _ => return None,
        }
        if now >= self.plan.ends_at {
            return None;
        }
        if now >= self.plan.starts_at {
            return Some(BannerPhase::Running);
        }
        let shown_from = self
            .plan
            .starts_at
            .checked_sub(jiff::SignedDuration::from_secs(
                banner_before.as_secs() as i64
            ))
            .unwrap_or(self.plan.starts_at);
        (now >= shown_from).then_some(BannerPhase::Upcoming)
    }

    /// The notice input's maintenance part for `step`.
    pub fn notice(&self, step: Step) -> MaintenanceNotice {
        MaintenanceNotice {
            title: self.plan.title.clone(),
            starts_at: self.plan.starts_at,
            ends_at: self.plan.ends_at,
            impact: self.plan.impact.clone(),
            advice: self.plan.advice.clone(),
            step,
        }
    }
}

fn minutes(duration: Duration) -> i64 {
    (duration.as_secs() / 60) as i64
}

/// The summary of a window's scope, as an incident's (for notices, reach and the report).
pub fn summarize(scope: &WindowScope, inventory: &Inventory) -> ScopeSummary {
    crate::classify::summarize(&scope.alert_scopes(), inventory)
}

#[cfg(test)]
mod tests;
