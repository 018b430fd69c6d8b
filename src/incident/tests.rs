use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;

use super::*;
use crate::classify::Level;
use crate::inventory::Inventory;

fn config() -> IncidentsConfig {
    IncidentsConfig {
        actor_label: "actor".to_owned(),
        subregion_label: "subregion".to_owned(),
        scope_label: "scope".to_owned(),
        flap_window: Duration::from_secs(15 * 60),
        broad_subregion_share: 0.5,
        watchdog_alertname: "Watchdog".to_owned(),
        watchdog_timeout: Duration::from_secs(600),
    }
}

fn at(minute: i64) -> Timestamp {
    Timestamp::from_second(1_795_838_400 + minute * 60).unwrap()
}

fn update(fingerprint: &str, status: AlertStatus, actor: &str, starts_minute: i64) -> AlertUpdate {
    let mut labels = BTreeMap::new();
    labels.insert("alertname".to_owned(), "SamsaLoginDown".to_owned());
    labels.insert("actor".to_owned(), actor.to_owned());
    AlertUpdate {
        key: AlertKey {
            fingerprint: fingerprint.to_owned(),
            starts_at: at(starts_minute),
        },
        status,
        labels: std::sync::Arc::new(labels.into()),
    }
}

use AlertStatus::{Firing, Resolved};

#[test]
fn a_firing_alert_opens_an_incident_with_an_initial_draft() {
    let inventory = Inventory::default_samsa();
    let mut engine = IncidentEngine::new(1);
    let step = engine
        .apply(
            &[update("a", Firing, "kommun-boras", 0)],
            at(1),
            &config(),
            &inventory,
            &mut Vec::new(),
        )
        .unwrap();
    assert!(step.is_new);
    assert_eq!(step.incident_id, 1);
    assert_eq!(
        step.draft_actions,
        vec![DraftAction::Create {
            kind: NoticeKind::Initial
        }]
    );
    let incident = engine.latest.as_ref().unwrap();
    assert_eq!(incident.phase, Phase::Open);
    assert_eq!(incident.started_at, at(0));
    assert_eq!(incident.summary.n_affected, 1);
    assert_eq!(incident.classification.level, Level::One);
}

#[test]
fn more_alerts_join_the_open_incident_and_revise_the_pending_draft() {
    let inventory = Inventory::default_samsa();
    let mut engine = IncidentEngine::new(1);
    engine.apply(
        &[update("a", Firing, "kommun-boras", 0)],
        at(1),
        &config(),
        &inventory,
        &mut Vec::new(),
    );
    let step = engine
        .apply(
            &[update("b", Firing, "kommun-mark", 2)],
            at(3),
            &config(),
            &inventory,
            &mut Vec::new(),
        )
        .unwrap();
    assert!(!step.is_new);
    assert_eq!(step.incident_id, 1);
    assert_eq!(
        step.draft_actions,
        vec![DraftAction::Revise {
            kind: NoticeKind::Initial
        }]
    );
    assert_eq!(engine.latest.as_ref().unwrap().summary.n_affected, 2);
}

#[test]
fn resolving_before_anything_was_published_withdraws_the_draft() {
    let inventory = Inventory::default_samsa();
    let mut engine = IncidentEngine::new(1);
    engine.apply(
        &[update("a", Firing, "kommun-boras", 0)],
        at(1),
        &config(),
        &inventory,
        &mut Vec::new(),
    );
    let step = engine
        .apply(
            &[update("a", Resolved, "kommun-boras", 0)],
            at(5),
            &config(),
            &inventory,
            &mut Vec::new(),
        )
        .unwrap();
    assert!(
        step.events
            .contains(&LogEvent::IncidentResolved { at: at(5) })
    );
    assert!(matches!(
        step.draft_actions.as_slice(),
        [DraftAction::Withdraw {
            kind: NoticeKind::Initial,
            ..
        }]
    ));
    assert_eq!(engine.latest.as_ref().unwrap().pending_draft, None);
}

#[test]
fn after_publication_a_change_asks_for_an_update_and_resolution_for_a_resolution_notice() {
    let inventory = Inventory::default_samsa();
    let mut engine = IncidentEngine::new(1);
    engine.apply(
        &[update("a", Firing, "kommun-boras", 0)],
        at(1),
        &config(),
        &inventory,
        &mut Vec::new(),
    );
    publish(&mut engine, NoticeKind::Initial);

    let step = engine
        .apply(
            &[update("b", Firing, "kommun-mark", 2)],
            at(3),
            &config(),
            &inventory,
            &mut Vec::new(),
        )
        .unwrap();
    assert_eq!(
        step.draft_actions,
        vec![DraftAction::Create {
            kind: NoticeKind::Update
        }]
    );

    let step = engine
        .apply(
            &[
                update("a", Resolved, "kommun-boras", 0),
                update("b", Resolved, "kommun-mark", 2),
            ],
            at(9),
            &config(),
            &inventory,
            &mut Vec::new(),
        )
        .unwrap();
    assert!(matches!(
        step.draft_actions.as_slice(),
        [
            DraftAction::Withdraw {
                kind: NoticeKind::Update,
                ..
            },
            DraftAction::Create {
                kind: NoticeKind::Resolved
            }
        ]
    ));
    let incident = engine.latest.as_ref().unwrap();
    assert_eq!(incident.phase, Phase::Resolved { at: at(9) });
    assert_eq!(
        incident.summary.n_affected, 2,
        "the scope is kept for the resolution notice"
    );
}

#[test]
fn a_refire_within_the_flap_window_reopens_and_after_it_starts_anew() {
    let inventory = Inventory::default_samsa();
    let mut engine = IncidentEngine::new(1);
    engine.apply(
        &[update("a", Firing, "kommun-boras", 0)],
        at(1),
        &config(),
        &inventory,
        &mut Vec::new(),
    );
    publish(&mut engine, NoticeKind::Initial);
    engine.apply(
        &[update("a", Resolved, "kommun-boras", 0)],
        at(5),
        &config(),
        &inventory,
        &mut Vec::new(),
    );
    assert_eq!(
        engine.latest.as_ref().unwrap().pending_draft,
        Some(NoticeKind::Resolved)
    );

    // Ten minutes later the same probe fails again: the same incident, reopened.
    let step = engine
        .apply(
            &[update("a", Firing, "kommun-boras", 15)],
            at(15),
            &config(),
            &inventory,
            &mut Vec::new(),
        )
        .unwrap();
    assert_eq!(step.incident_id, 1);
    assert!(step.events.contains(&LogEvent::IncidentReopened {
        at: at(15),
        n_reopened: 1
    }));
    assert!(matches!(
        step.draft_actions.as_slice(),
        [
            DraftAction::Withdraw {
                kind: NoticeKind::Resolved,
                ..
            },
            DraftAction::Create {
                kind: NoticeKind::Update
            }
        ]
    ));

    engine.apply(
        &[update("a", Resolved, "kommun-boras", 15)],
        at(20),
        &config(),
        &inventory,
        &mut Vec::new(),
    );
    // Past the window: a new incident.
    let step = engine
        .apply(
            &[update("a", Firing, "kommun-boras", 40)],
            at(40),
            &config(),
            &inventory,
            &mut Vec::new(),
        )
        .unwrap();
    assert!(step.is_new);
    assert_eq!(step.incident_id, 2);
    // An update for an alert of the old incident changes nothing.
    assert_eq!(
        engine.apply(
            &[update("a", Resolved, "kommun-boras", 15)],
            at(41),
            &config(),
            &inventory,
            &mut Vec::new()
        ),
        None
    );
}

#[test]
fn a_resolution_never_seen_firing_changes_nothing_and_stays_final() {
    let inventory = Inventory::default_samsa();
    let mut engine = IncidentEngine::new(1);
    assert_eq!(
        engine.apply(
            &[update("z", Resolved, "kommun-boras", 0)],
            at(1),
            &config(),
            &inventory,
            &mut Vec::new()
        ),
        None
    );
    assert_eq!(
        engine.apply(
            &[update("z", Firing, "kommun-boras", 0)],
            at(2),
            &config(),
            &inventory,
            &mut Vec::new()
        ),
        None
    );
    assert!(engine.latest.is_none());
}

fn publish(engine: &mut IncidentEngine, kind: NoticeKind) {
    let incident = engine.latest.as_mut().unwrap();
    incident.published = Some(Published {
        kind,
        summary: incident.summary.clone(),
        classification: incident.classification.clone(),
    });
    incident.pending_draft = None;
}

/// One generated alert: (fingerprint index, firing?, start index, actor index).
type GeneratedAlert = (u8, bool, u8, u8);
/// One generated webhook: minutes since the previous one, and its alerts.
type GeneratedWebhook = (i64, Vec<GeneratedAlert>);

/// A random webhook: a few alerts from a small pool, so that keys repeat, resolve and
/// re-fire; the minute advances by a random step so that flap windows both hold and pass.
fn arbitrary_sequence() -> impl Strategy<Value = Vec<GeneratedWebhook>> {
    prop::collection::vec(
        (
            0i64..30,
            prop::collection::vec((0u8..6, any::<bool>(), 0u8..3, 0u8..8), 1..4),
        ),
        1..40,
    )
}

const ACTORS: [&str; 8] = [
    "kommun-boras",
    "kommun-mark",
    "kommun-tanum",
    "kommun-skovde",
    "kommun-goteborg",
    "sjukhus-nal",
    "primarvard-skaraborg",
    "kommun-okand",
];

/// A generated webhook's alerts as correlation input.
fn generated_updates(alerts: &[GeneratedAlert]) -> Vec<AlertUpdate> {
    alerts
        .iter()
        .map(|(fingerprint, firing, start, actor)| {
            update(
                &format!("f{fingerprint}"),
                if *firing { Firing } else { Resolved },
                ACTORS[*actor as usize],
                *start as i64 * 20,
            )
        })
        .collect()
}

fn run(
    sequence: &[GeneratedWebhook],
) -> (BTreeMap<i64, Incident>, BTreeMap<AlertKey, AlertStatus>) {
    let inventory = Inventory::default_samsa();
    let mut engine = IncidentEngine::new(1);
    let mut incidents = BTreeMap::new();
    let mut effective: BTreeMap<AlertKey, AlertStatus> = BTreeMap::new();
    let mut minute = 0;
    for (step_minutes, alerts) in sequence {
        minute += step_minutes;
        let updates = generated_updates(alerts);
        for update in &updates {
            let status = effective.entry(update.key.clone()).or_insert(update.status);
            if update.status == Resolved {
                *status = Resolved;
            }
        }
        engine.apply(&updates, at(minute), &config(), &inventory, &mut Vec::new());
        if let Some(latest) = &engine.latest {
            incidents.insert(latest.incident_id, latest.clone());
        }
    }
    (incidents, effective)
}

proptest! {
    #[test]
    fn every_firing_alert_belongs_to_exactly_one_open_incident(sequence in arbitrary_sequence()) {
        let (incidents, effective) = run(&sequence);
        let n_open = incidents.values().filter(|incident| incident.phase == Phase::Open).count();
        prop_assert!(n_open <= 1, "{n_open} open incidents");
        for (key, status) in &effective {
            if *status != Firing {
                continue;
            }
            let holders: Vec<&Incident> = incidents
                .values()
                .filter(|incident| incident.alerts.get(key).is_some_and(|alert| alert.status == Firing))
                .collect();
            prop_assert_eq!(holders.len(), 1, "{:?} is firing in {} incidents", key, holders.len());
            prop_assert_eq!(holders[0].phase, Phase::Open);
        }
        for incident in incidents.values() {
            let any_firing = incident.alerts.values().any(|alert| alert.status == Firing);
            prop_assert_eq!(any_firing, incident.phase == Phase::Open);
        }
    }

    #[test]
    fn replaying_the_same_sequence_gives_the_same_incidents(sequence in arbitrary_sequence()) {
        let (first, _) = run(&sequence);
        let (second, _) = run(&sequence);
        prop_assert_eq!(first, second);
    }
}

proptest! {
    /// The firing scopes kept step by step are what counting the latest incident's alerts
    /// from scratch gives, and the summary is the one of those alerts: keeping the counts
    /// changes the cost of a step, never its outcome.
    #[test]
    fn kept_firing_scopes_match_a_recount(sequence in arbitrary_sequence()) {
        let inventory = Inventory::default_samsa();
        let config = config();
        let mut engine = IncidentEngine::new(1);
        let mut minute = 0;
        for (step_minutes, alerts) in &sequence {
            minute += step_minutes;
            let updates = generated_updates(alerts);
            let step = engine.apply(&updates, at(minute), &config, &inventory, &mut Vec::new());
            let Some(latest) = &engine.latest else { continue };
            let recount = FiringScopes::of(latest, &config);
            prop_assert_eq!(&engine.firing_scopes, &recount);
            // A step without events (the same labels again) leaves the summary as it was.
            if step.is_some() && latest.phase == Phase::Open {
                let scopes: std::collections::BTreeSet<AlertScope> = latest
                    .alerts
                    .values()
                    .filter(|alert| alert.status == Firing)
                    .flat_map(|alert| alert_scopes(&alert.labels, &config))
                    .collect();
                let scopes: Vec<AlertScope> = scopes.into_iter().collect();
                prop_assert_eq!(&latest.summary, &summarize(&scopes, &inventory));
            }
        }
    }
}
