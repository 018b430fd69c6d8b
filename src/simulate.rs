//! `samsa-relay simulate`: rehearse the plan. Runs webhook payloads through the same
//! correlation, classification and drafting code as the relay, with no network and no
//! stored state, and prints the incident, the suggested level with its reasons and every
//! rendered notice.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use jiff::Timestamp;
use serde::Serialize;

use crate::alertmanager::Notification;
use crate::config::Config;
use crate::incident::{IncidentEngine, Phase};
use crate::incident_worker::{alert_updates, plan_step};
use crate::notice::{NoticeRenderer, RenderedNotice, format_swedish_time};
use crate::storage::{CorrelationState, DraftWrite, IncidentWrite};

/// What one payload did, as printed (and as `--json` emits it).
#[derive(Debug, Serialize)]
pub struct SimulatedStep {
    pub payload: String,
    pub at: Timestamp,
    pub n_alerts: usize,
    pub incident_id: Option<i64>,
    pub is_new: bool,
    pub phase: Option<String>,
    pub level: Option<u8>,
    pub crisis: Option<bool>,
    pub reasons: Vec<String>,
    pub events: Vec<String>,
    pub drafts: Vec<SimulatedDraft>,
}

#[derive(Debug, Serialize)]
pub struct SimulatedDraft {
    pub action: String,
    pub kind: Option<String>,
    pub reason: Option<String>,
    pub rendered: Option<RenderedNotice>,
}

/// Runs the payloads in order and returns what each did.
pub fn simulate(config: &Config, payload_paths: &[PathBuf]) -> anyhow::Result<Vec<SimulatedStep>> {
    let renderer =
        NoticeRenderer::new(&config.notices).context("cannot load the notice templates")?;
    let mut state = CorrelationState::new(IncidentEngine::new(1));
    let mut next_draft_id = 1;
    let mut steps = Vec::new();
    for path in payload_paths {
        let body =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let notification = Notification::parse(&body).map_err(|problem| {
            anyhow::anyhow!("{}: {} ({})", path.display(), problem.error, problem.detail)
        })?;
        // The payload's own latest time stands for when Alertmanager would have sent it,
        // so that flap windows behave as they would have.
        let at = notification
            .alerts
            .iter()
            .flat_map(|alert| [Some(alert.starts_at), alert.ends_at])
            .flatten()
            .max()
            .unwrap_or_else(Timestamp::now);
        let updates = alert_updates(&notification, &config.incidents.watchdog_alertname);
        let write = plan_step(&mut state, &updates, at, config, &renderer)?;
        if let Some(pending) = state.pending_draft.as_mut()
            && pending.draft_id == 0
        {
            pending.draft_id = next_draft_id;
            next_draft_id += 1;
        }
        steps.push(describe(path, &notification, at, &write));
    }
    Ok(steps)
}

/// Prints the steps for a person, in Swedish like everything operators read.
pub fn print_steps(steps: &[SimulatedStep], out: &mut impl Write) -> std::io::Result<()> {
    for (index, step) in steps.iter().enumerate() {
        writeln!(
            out,
            "=== Meddelande {} av {}: {} ===",
            index + 1,
            steps.len(),
            step.payload
        )?;
        writeln!(
            out,
            "Tid: {}  Larm: {}",
            format_swedish_time(step.at),
            step.n_alerts
        )?;
        let Some(incident_id) = step.incident_id else {
            writeln!(out, "Ingen incident påverkas.\n")?;
            continue;
        };
        let phase = step.phase.as_deref().unwrap_or("");
        writeln!(
            out,
            "Incident {incident_id}{}: {phase}",
            if step.is_new { " (ny)" } else { "" }
        )?;
        if let (Some(level), Some(crisis)) = (step.level, step.crisis) {
            writeln!(
                out,
                "Föreslagen nivå: {level}{}",
                if crisis { " (kriskommunikation)" } else { "" }
            )?;
        }
        for reason in &step.reasons {
            writeln!(out, "  - {reason}")?;
        }
        writeln!(out, "Händelser: {}", step.events.join(", "))?;
        for draft in &step.drafts {
            let kind = draft.kind.as_deref().unwrap_or("");
            match draft.action.as_str() {
                "withdraw" => writeln!(
                    out,
                    "Utkast återkallat: {}",
                    draft.reason.as_deref().unwrap_or("")
                )?,
                action => {
                    let verb = if action == "create" {
                        "skapat"
                    } else {
                        "reviderat"
                    };
                    writeln!(out, "Utkast {verb}: {kind}")?;
                }
            }
            if let Some(rendered) = &draft.rendered {
                print_notice(rendered, out)?;
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

fn print_notice(rendered: &RenderedNotice, out: &mut impl Write) -> std::io::Result<()> {
    // The HTML email says what the text email says; --json carries it.
    let sections: [(&str, &str); 11] = [
        ("E-post, ämne", &rendered.email_subject),
        ("E-post, text", &rendered.email_text),
        ("Inloggningssidan", &rendered.banner_text),
        ("Webbplatsen, rubrik", &rendered.website_title),
        ("Webbplatsen, text", &rendered.website_body),
        ("Nyhetsbrevet, rubrik", &rendered.newsletter_title),
        ("Nyhetsbrevet, text", &rendered.newsletter_body),
        ("IT-Nytt, rubrik", &rendered.itnytt_title),
        ("IT-Nytt, text", &rendered.itnytt_body),
        ("Kris-e-post, ämne", &rendered.crisis_subject),
        ("Kris-e-post, text", &rendered.crisis_text),
    ];
    for (heading, text) in sections {
        if text.is_empty() {
            continue;
        }
        writeln!(out, "--- {heading} ---")?;
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}

fn describe(
    path: &std::path::Path,
    notification: &Notification,
    at: Timestamp,
    write: &IncidentWrite,
) -> SimulatedStep {
    let mut step = SimulatedStep {
        payload: path.display().to_string(),
        at,
        n_alerts: notification.alerts.len(),
        incident_id: None,
        is_new: false,
        phase: None,
        level: None,
        crisis: None,
        reasons: Vec::new(),
        events: Vec::new(),
        drafts: Vec::new(),
    };
    let Some(change) = &write.change else {
        return step;
    };
    let incident = &change.incident;
    step.incident_id = Some(incident.incident_id);
    step.is_new = change.is_new;
    step.phase = Some(match incident.phase {
        Phase::Open => "pågår".to_owned(),
        Phase::Resolved { at } => format!("åtgärdad {}", format_swedish_time(at)),
    });
    step.level = Some(incident.classification.level.as_number());
    step.crisis = Some(incident.classification.crisis);
    step.reasons = incident.classification.reasons.clone();
    // Many alerts give many identical event names: count them instead of repeating.
    let mut counted: Vec<(String, usize)> = Vec::new();
    for event in &change.events {
        match counted.last_mut() {
            Some((name, count)) if *name == event.event => *count += 1,
            _ => counted.push((event.event.clone(), 1)),
        }
    }
    step.events = counted
        .into_iter()
        .map(|(name, count)| {
            if count > 1 {
                format!("{name} ×{count}")
            } else {
                name
            }
        })
        .collect();
    step.drafts = change
        .drafts
        .iter()
        .map(|draft| match draft {
            DraftWrite::Create { kind, rendered, .. } => SimulatedDraft {
                action: "create".to_owned(),
                kind: Some(kind.as_str().to_owned()),
                reason: None,
                rendered: Some(rendered.clone()),
            },
            DraftWrite::Revise {
                rendered, input, ..
            } => SimulatedDraft {
                action: "revise".to_owned(),
                kind: input
                    .get("kind")
                    .and_then(|kind| kind.as_str())
                    .map(str::to_owned),
                reason: None,
                rendered: Some(rendered.clone()),
            },
            DraftWrite::Withdraw { reason, .. } => SimulatedDraft {
                action: "withdraw".to_owned(),
                kind: None,
                reason: Some(reason.clone()),
                rendered: None,
            },
        })
        .collect();
    step
}
