//! Publishing: the domain operations behind the operator's Publish button and edits.
//!
//! [`publish`] checks the operator's choices against the plan (level, channels, who
//! decided) and writes, in one transaction, the published notice, the draft's new state,
//! what the incident now says publicly, one outbox row per (channel, recipient), and the
//! log entries. Delivery happens later, outside any transaction ([`crate::delivery`]).
//! The subscribers a notice reaches are found in the same transaction
//! ([`crate::subscription::targets`]), so a confirmation or an unsubscribe is either
//! before the publication or after it.
//! [`revise_draft`] stores an operator's edit as a new draft version, rendered.
//! [`Publisher`] is the service the operator pages call: [`publish`], then wake the
//! delivery workers and count the publication.

use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::classify::Level;
use crate::config::Config;
use crate::incident::{DraftState, IncidentKind};
use crate::incident::{LogEvent, Published};
use crate::metrics::Metrics;
use crate::notice::{NoticeInput, NoticeKind, NoticeRenderer};
use crate::storage::{DraftFields, EventWrite, PublicationWrite, Storage, StorageError};

/// Who took the decision the plan asks for at levels 2 and 3, and in what role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub decided_by: String,
    pub role: DecisionRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionRole {
    /// Level 2: the decision is taken at sub-regional level ("delregional nivå").
    Subregional,
    /// Level 3: the chair of the management council.
    CouncilChair,
    /// Level 3: the vice chair of the management council.
    CouncilViceChair,
}

impl DecisionRole {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionRole::Subregional => "subregional",
            DecisionRole::CouncilChair => "council_chair",
            DecisionRole::CouncilViceChair => "council_vice_chair",
        }
    }

    pub fn parse(text: &str) -> Option<DecisionRole> {
        match text {
            "subregional" => Some(DecisionRole::Subregional),
            "council_chair" => Some(DecisionRole::CouncilChair),
            "council_vice_chair" => Some(DecisionRole::CouncilViceChair),
            _ => None,
        }
    }

    /// The role in Swedish, as operators and the log show it.
    pub fn label(self) -> &'static str {
        match self {
            DecisionRole::Subregional => "delregional nivå",
            DecisionRole::CouncilChair => {
                "ordförande i Ledningsråd Samordnad hälsa, vård och omsorg"
            }
            DecisionRole::CouncilViceChair => {
                "vice ordförande i Ledningsråd Samordnad hälsa, vård och omsorg"
            }
        }
    }

    /// Whether a decision in this role is the plan's decision for `level`.
    pub fn allowed_at(self, level: Level) -> bool {
        match level {
            Level::One => false,
            Level::Two => self == DecisionRole::Subregional,
            Level::Three => matches!(
                self,
                DecisionRole::CouncilChair | DecisionRole::CouncilViceChair
            ),
        }
    }
}

/// The operator's Publish.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishRequest {
    pub draft_id: i64,
    /// The version the operator reviewed; publishing a newer one needs a new review.
    pub draft_version: i64,
    pub level: Level,
    pub channels: Vec<String>,
    pub decision: Option<Decision>,
    /// The operator who publishes.
    pub operator: String,
}

/// What a publication did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub notice_id: i64,
    pub incident_id: i64,
    pub n_deliveries: usize,
    /// The deliveries per channel, in the order the channels were chosen.
    pub deliveries_per_channel: Vec<(String, usize)>,
    pub kind: NoticeKind,
    pub level: u8,
    /// How long after the incident's first alert this notice went out, when it is the
    /// incident's first publication.
    pub first_notice_after: Option<std::time::Duration>,
}

/// Why a publish was refused. Shown to operators, so in Swedish.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Utkastet finns inte")]
    DraftNotFound,
    #[error("Utkastet är redan publicerat")]
    AlreadyPublished,
    #[error("Utkastet kan inte publiceras: det är {0}")]
    NotPending(String),
    #[error("Det finns en nyare version ({latest}) av utkastet; granska den innan du publicerar")]
    StaleVersion { latest: i64 },
    #[error(
        "Förhandsvisningen gäller nivå {rendered}; visa förhandsvisningen för nivå {requested} innan du publicerar"
    )]
    LevelNotPreviewed { rendered: u8, requested: u8 },
    #[error("Välj minst en kanal")]
    NoChannels,
    #[error("Kanalen {channel} ingår inte i planen för nivå {level}")]
    ChannelNotInPlan { channel: String, level: u8 },
    #[error("Nivå {level} är ett beslut: ange vem som beslutade och i vilken roll")]
    DecisionRequired { level: u8 },
    #[error("På nivå {level} fattas beslutet av {expected}")]
    WrongRole { level: u8, expected: &'static str },
    #[error("Ange vem som publicerar")]
    OperatorRequired,
    #[error("Kanalen {channel} används inte vid övningar")]
    ChannelNotForDrills { channel: String },
    #[error("Lagringen är inte tillgänglig just nu; försök igen")]
    Storage(#[from] StorageError),
}

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReviseError {
    #[error("Utkastet finns inte")]
    DraftNotFound,
    #[error("Utkastet kan inte ändras: det är {0}")]
    NotPending(String),
    #[error("Texten kunde inte skapas: {0}")]
    Render(String),
    #[error("Lagringen är inte tillgänglig just nu; försök igen")]
    Storage(#[from] StorageError),
}

/// The publishing service: [`publish`], then wake the delivery workers and count the
/// publication. Cloning shares it.
#[derive(Clone)]
pub struct Publisher {
    storage: Storage,
    config: Arc<Config>,
    metrics: Metrics,
    /// Woken after a publication: its outbox rows are due.
    delivery_wake: Arc<tokio::sync::Notify>,
}

impl Publisher {
    pub fn new(
        storage: Storage,
        config: Arc<Config>,
        metrics: Metrics,
        delivery_wake: Arc<tokio::sync::Notify>,
    ) -> Publisher {
        Publisher {
            storage,
            config,
            metrics,
            delivery_wake,
        }
    }

    /// Publishes (see [`publish`]) and wakes the delivery workers.
    pub async fn publish(&self, request: &PublishRequest) -> Result<Publication, PublishError> {
        let publication = publish(&self.storage, &self.config, request).await?;
        self.delivery_wake.notify_waiters();
        self.metrics
            .notices_published
            .with_label_values(&[publication.kind.as_str(), &publication.level.to_string()])
            .inc();
        if let Some(waited) = publication.first_notice_after {
            self.metrics.first_notice.observe(waited.as_secs_f64());
        }
        Ok(publication)
    }
}

/// Publishes a reviewed draft version on the chosen channels. Exactly one of two
/// concurrent publishes of one draft succeeds.
pub async fn publish(
    storage: &Storage,
    config: &Config,
    request: &PublishRequest,
) -> Result<Publication, PublishError> {
    let operator = request.operator.trim();
    if operator.is_empty() {
        return Err(PublishError::OperatorRequired);
    }
    let level_number = request.level.as_number();
    let channels = check_channels(config, request.level, &request.channels)?;
    let decision = check_decision(request.level, request.decision.as_ref())?;

    let mut transaction = storage.begin_write().await?;
    let draft = transaction
        .draft_for_publish(request.draft_id, request.draft_version)
        .await?
        .ok_or(PublishError::DraftNotFound)?;
    match draft.state.as_str() {
        "pending" => {}
        "published" => return Err(PublishError::AlreadyPublished),
        other => return Err(PublishError::NotPending(state_label(other).to_owned())),
    }
    let incident = transaction
        .incident_by_id(draft.incident_id)
        .await?
        .ok_or(PublishError::DraftNotFound)?;
    let is_drill = incident.kind == IncidentKind::Drill;
    if is_drill
        && let Some(channel) = channels
            .iter()
            .find(|name| !config.channels[name.as_str()].drill)
    {
        return Err(PublishError::ChannelNotForDrills {
            channel: channel.clone(),
        });
    }
    let Some(version) = draft
        .version
        .filter(|_| draft.latest_version == request.draft_version)
    else {
        return Err(PublishError::StaleVersion {
            latest: draft.latest_version,
        });
    };
    let input: NoticeInput = serde_json::from_value(version.input.clone()).map_err(|error| {
        PublishError::Storage(StorageError::permanent("decode_notice_input", error))
    })?;
    let rendered_level = input.classification.level.as_number();
    if rendered_level != level_number {
        return Err(PublishError::LevelNotPreviewed {
            rendered: rendered_level,
            requested: level_number,
        });
    }

    let mut deliveries: Vec<(String, String)> = channels
        .iter()
        .flat_map(|name| {
            let channel = &config.channels[name];
            channel
                .transport
                .recipients()
                .into_iter()
                .map(move |recipient| (name.clone(), recipient))
        })
        .collect();
    // The subscribers the notice concerns now, and everyone who heard of the incident
    // before: one row each (the config allows one subscribers channel).
    if let Some(name) = channels.iter().find(|name| {
        matches!(
            config.channels[name.as_str()].transport,
            crate::config::ChannelTransport::Subscribers
        )
    }) {
        let subscribers = transaction.confirmed_choices().await?;
        let earlier = transaction
            .earlier_subscriber_recipients(draft.incident_id)
            .await?
            .into_iter()
            .collect();
        let targets =
            crate::subscription::targets(&subscribers, &earlier, &input.summary, request.level);
        deliveries.extend(targets.into_iter().map(|target| {
            (
                name.clone(),
                crate::subscription::recipient(target.subscriber_id),
            )
        }));
    }
    let now = Timestamp::now();
    let mut events = Vec::new();
    if let Some(decision) = &decision {
        events.push(EventWrite::new(
            now,
            operator,
            &LogEvent::DecisionRecorded {
                level: level_number,
                decided_by: decision.decided_by.clone(),
                role: decision.role.as_str().to_owned(),
                role_label: decision.role.label().to_owned(),
            },
        ));
    }
    // Storage adds the notice's id, known once the publication is written.
    events.push(EventWrite::new(
        now,
        operator,
        &LogEvent::NoticePublished {
            draft_id: draft.draft_id,
            draft_version: request.draft_version,
            kind: draft.kind,
            level: level_number,
            suggested_level: input.classification.level.as_number(),
            channels: channels.clone(),
            n_deliveries: deliveries.len(),
            notice_id: None,
        },
    ));
    let write = PublicationWrite {
        incident_id: draft.incident_id,
        draft_id: draft.draft_id,
        draft_version: request.draft_version,
        kind: draft.kind,
        level: request.level,
        decided_by: decision
            .as_ref()
            .map(|decision| decision.decided_by.clone()),
        decided_role: decision
            .as_ref()
            .map(|decision| decision.role.as_str().to_owned()),
        published_by: operator.to_owned(),
        channels: channels.clone(),
        rendered: version.rendered.clone(),
        published_at: now,
        published: Published {
            kind: draft.kind,
            summary: input.summary.clone(),
            classification: input.classification.clone(),
        },
        deliveries,
        events,
    };
    let notice_id = match transaction.insert_publication(&write).await? {
        Ok(notice_id) => notice_id,
        Err(_) => return Err(PublishError::AlreadyPublished),
    };
    let is_maintenance = incident.kind == IncidentKind::Maintenance;
    if (is_drill || is_maintenance) && draft.kind == NoticeKind::Resolved {
        transaction.close_drill(draft.incident_id, now).await?;
    }
    if is_maintenance && let Some(notice) = &input.maintenance {
        maintenance_published(
            &mut transaction,
            &incident,
            &notice.step,
            &write,
            operator,
            now,
        )
        .await?;
    }
    transaction.commit().await?;
    tracing::info!(
        notice_id,
        incident_id = draft.incident_id,
        level = level_number,
        n_deliveries = write.deliveries.len(),
        "notice published"
    );
    let first_notice_after = incident.incident.published.is_none().then(|| {
        let waited = now.duration_since(incident.incident.started_at);
        if waited.is_negative() {
            std::time::Duration::ZERO
        } else {
            waited.unsigned_abs()
        }
    });
    Ok(Publication {
        notice_id,
        incident_id: draft.incident_id,
        n_deliveries: write.deliveries.len(),
        deliveries_per_channel: write
            .channels
            .iter()
            .map(|channel| {
                let n = write
                    .deliveries
                    .iter()
                    .filter(|(name, _)| name == channel)
                    .count();
                (channel.clone(), n)
            })
            .collect(),
        kind: draft.kind,
        level: level_number,
        first_notice_after,
    })
}

/// What publishing a maintenance window's notice does to the window: the announcement
/// announces it (and, with `auto_series`, approves the rest of the series with the same
/// channels, level and decision); publishing a moved window's notice renews that approval.
async fn maintenance_published(
    transaction: &mut crate::storage::WriteTransaction,
    incident: &crate::storage::IncidentRecord,
    step: &crate::maintenance::Step,
    write: &PublicationWrite,
    operator: &str,
    now: Timestamp,
) -> Result<(), StorageError> {
    use crate::maintenance::{SeriesApproval, Step, WindowState};
    let Some(mut window) = transaction
        .maintenance_window_tx(incident.incident_id)
        .await?
    else {
        return Ok(());
    };
    let approval = window.plan.auto_series.then(|| SeriesApproval {
        channels: write.channels.clone(),
        level: write.level,
        decided_by: write.decided_by.clone(),
        decided_role: write.decided_role.clone(),
        approved_by: operator.to_owned(),
    });
    match step {
        Step::Announcement if window.state == WindowState::Planned => {
            window.state = WindowState::Announced;
            window.announced_at = Some(now);
            window.steps_done.insert(step.key());
            window.approval = approval;
            transaction
                .append_events(
                    incident.incident_id,
                    &[EventWrite::new(
                        now,
                        operator,
                        &LogEvent::MaintenanceAnnounced {
                            starts_at: window.plan.starts_at,
                            ends_at: window.plan.ends_at,
                            auto_series: window.plan.auto_series,
                        },
                    )],
                )
                .await?;
        }
        Step::Moved { .. } if !window.state.is_final() => window.approval = approval,
        _ => return Ok(()),
    }
    window.updated_at = now;
    transaction
        .update_maintenance_window(
            &window,
            &incident.incident.summary,
            &incident.incident.classification,
        )
        .await
}

/// Stores the operator's fields (and chosen level) as a new version of a pending draft,
/// rendered. Returns the new version number.
pub async fn revise_draft(
    storage: &Storage,
    renderer: &NoticeRenderer,
    draft_id: i64,
    fields: &DraftFields,
    operator: &str,
) -> Result<i64, ReviseError> {
    let mut transaction = storage.begin_write().await?;
    let Some(draft) = transaction.draft_for_publish(draft_id, i64::MAX).await? else {
        return Err(ReviseError::DraftNotFound);
    };
    if draft.state != DraftState::Pending {
        return Err(ReviseError::NotPending(
            state_label(draft.state.as_str()).to_owned(),
        ));
    }
    let Some(latest) = transaction
        .draft_for_publish(draft_id, draft.latest_version)
        .await?
        .and_then(|draft| draft.version)
    else {
        return Err(ReviseError::DraftNotFound);
    };
    let mut input: NoticeInput = serde_json::from_value(latest.input.clone()).map_err(|error| {
        ReviseError::Storage(StorageError::permanent("decode_notice_input", error))
    })?;
    input.expected_resolution = fields.expected_resolution;
    input.next_update = fields.next_update;
    input.additional_information = fields
        .additional_information
        .as_ref()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    if let Some(level) = fields.level {
        input.classification = input.classification.at_level(level);
    }
    let rendered = renderer
        .render(&input)
        .map_err(|error| ReviseError::Render(format!("{error:#}")))?;
    let version = draft.latest_version + 1;
    let input_json = serde_json::to_value(&input).map_err(|error| {
        ReviseError::Storage(StorageError::permanent("encode_notice_input", error))
    })?;
    transaction
        .add_draft_version(
            draft.incident_id,
            draft_id,
            version,
            operator,
            fields,
            &input_json,
            &rendered,
            Timestamp::now(),
        )
        .await?;
    transaction.commit().await?;
    Ok(version)
}

/// Every problem of the operator's choices that publishing would refuse, checked without
/// storage, so that a page can show them all, each at its field, before the final
/// confirmation: the channels against the plan (and, for a drill, the drill channels) and
/// the decision against the level.
pub fn check_choices(
    config: &Config,
    level: Level,
    channels: &[String],
    decision: Option<&Decision>,
    is_drill: bool,
) -> Vec<PublishError> {
    let mut problems = Vec::new();
    match check_channels(config, level, channels) {
        Ok(channels) => {
            if is_drill
                && let Some(channel) = channels
                    .iter()
                    .find(|name| !config.channels[name.as_str()].drill)
            {
                problems.push(PublishError::ChannelNotForDrills {
                    channel: channel.clone(),
                });
            }
        }
        Err(problem) => problems.push(problem),
    }
    if let Err(problem) = check_decision(level, decision) {
        problems.push(problem);
    }
    problems
}

/// The chosen channels, each once and in order, when each is in the plan of `level`.
fn check_channels(
    config: &Config,
    level: Level,
    requested: &[String],
) -> Result<Vec<String>, PublishError> {
    if requested.is_empty() {
        return Err(PublishError::NoChannels);
    }
    let level_number = level.as_number();
    let plan_channels = config.plan.channels_for(level_number);
    let mut channels: Vec<String> = Vec::new();
    for name in requested {
        if !plan_channels.contains(name) {
            return Err(PublishError::ChannelNotInPlan {
                channel: name.clone(),
                level: level_number,
            });
        }
        if !channels.contains(name) {
            channels.push(name.clone());
        }
    }
    Ok(channels)
}

fn check_decision(
    level: Level,
    decision: Option<&Decision>,
) -> Result<Option<Decision>, PublishError> {
    let level_number = level.as_number();
    if level == Level::One {
        // Level 1 is a notice, not a decision; a name given anyway is kept for the log.
        return Ok(decision
            .filter(|decision| !decision.decided_by.trim().is_empty())
            .cloned());
    }
    let Some(decision) = decision.filter(|decision| !decision.decided_by.trim().is_empty()) else {
        return Err(PublishError::DecisionRequired {
            level: level_number,
        });
    };
    if !decision.role.allowed_at(level) {
        let expected = match level {
            Level::Two => "delregional nivå",
            _ => "ordförande eller vice ordförande i Ledningsråd Samordnad hälsa, vård och omsorg",
        };
        return Err(PublishError::WrongRole {
            level: level_number,
            expected,
        });
    }
    Ok(Some(Decision {
        decided_by: decision.decided_by.trim().to_owned(),
        role: decision.role,
    }))
}

fn state_label(state: &str) -> &str {
    match state {
        "withdrawn" => "återkallat",
        "discarded" => "kasserat",
        "published" => "publicerat",
        other => other,
    }
}

impl fmt::Display for DecisionRole {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.label())
    }
}

/// Why an operator's draft or drill could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DraftByHandError {
    #[error("Incidenten finns inte")]
    IncidentNotFound,
    #[error("Incidenten har redan ett utkast som väntar; granska det")]
    DraftPending,
    #[error("En övning pågår redan")]
    DrillOpen,
    #[error("Välj minst en aktör eller delregion för övningen")]
    EmptyDrill,
    #[error("Texten kunde inte skapas: {0}")]
    Render(String),
    #[error("Lagringen är inte tillgänglig just nu; försök igen")]
    Storage(#[from] StorageError),
}

/// An operator's own draft for an incident: an update, or a resolution by hand (alerts
/// may lag behind reality). Returns the new draft's id.
pub async fn draft_by_hand(
    storage: &Storage,
    config: &Config,
    renderer: &NoticeRenderer,
    incident_id: i64,
    kind: NoticeKind,
    operator: &str,
) -> Result<i64, DraftByHandError> {
    let mut transaction = storage.begin_write().await?;
    let record = transaction
        .incident_by_id(incident_id)
        .await?
        .ok_or(DraftByHandError::IncidentNotFound)?;
    if record.kind == IncidentKind::Monitoring {
        // The broken monitoring chain is for operators only: never a public notice.
        return Err(DraftByHandError::IncidentNotFound);
    }
    let now = Timestamp::now();
    let mut incident = record.incident;
    if kind == NoticeKind::Resolved && incident.phase == crate::incident::Phase::Open {
        // The notice says when it was resolved; the incident itself follows its alerts.
        incident.phase = crate::incident::Phase::Resolved { at: now };
    }
    let fields = DraftFields::default();
    let mut input = incident.notice_input(
        kind,
        &fields,
        config.public_link(&format!("/public/feedback/{}", incident.incident_id)),
    );
    input.drill = record.kind == IncidentKind::Drill;
    let rendered = renderer
        .render(&input)
        .map_err(|error| DraftByHandError::Render(format!("{error:#}")))?;
    let input_json = serde_json::to_value(&input)
        .map_err(|error| StorageError::permanent("encode_notice_input", error))?;
    let draft_id = transaction
        .insert_operator_draft(
            incident_id,
            kind,
            &fields,
            &input_json,
            &rendered,
            operator,
            now,
        )
        .await?
        .ok_or(DraftByHandError::DraftPending)?;
    transaction.commit().await?;
    Ok(draft_id)
}

/// Starts an exercise: an incident of kind drill with the scope the operator chose, and
/// its first draft, marked ÖVNING everywhere. Returns (incident id, draft id).
pub async fn start_drill(
    storage: &Storage,
    config: &Config,
    renderer: &NoticeRenderer,
    scopes: &[crate::classify::AlertScope],
    operator: &str,
) -> Result<(i64, i64), DraftByHandError> {
    if scopes.is_empty() {
        return Err(DraftByHandError::EmptyDrill);
    }
    let summary = crate::classify::summarize(scopes, &config.inventory);
    let classification =
        crate::classify::classify(&summary, config.incidents.broad_subregion_share);
    let now = Timestamp::now();
    let mut transaction = storage.begin_write().await?;
    let incident_id = transaction
        .insert_drill_incident(&summary, &classification, operator, now)
        .await?
        .ok_or(DraftByHandError::DrillOpen)?;
    let incident = crate::incident::Incident {
        incident_id,
        phase: crate::incident::Phase::Open,
        started_at: now,
        alerts: Default::default(),
        summary,
        classification,
        published: None,
        pending_draft: None,
        n_reopened: 0,
    };
    let fields = DraftFields::default();
    let mut input = incident.notice_input(
        NoticeKind::Initial,
        &fields,
        config.public_link(&format!("/public/feedback/{}", incident.incident_id)),
    );
    input.drill = true;
    let rendered = renderer
        .render(&input)
        .map_err(|error| DraftByHandError::Render(format!("{error:#}")))?;
    let input_json = serde_json::to_value(&input)
        .map_err(|error| StorageError::permanent("encode_notice_input", error))?;
    let draft_id = transaction
        .insert_operator_draft(
            incident_id,
            NoticeKind::Initial,
            &fields,
            &input_json,
            &rendered,
            operator,
            now,
        )
        .await?
        .ok_or(DraftByHandError::DraftPending)?;
    transaction.commit().await?;
    Ok((incident_id, draft_id))
}
