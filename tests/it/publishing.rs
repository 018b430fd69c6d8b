//! Publishing: the operator's decision turned into a publication and outbox rows, the
//! plan's rules enforced, and the drafting rules after publication.

use crate::common;

use std::time::Duration;

use common::{TestApp, alert, payload, spawn_app};
use samsa_relay::classify::Level;
use samsa_relay::publishing::{Decision, DecisionRole, PublishError, PublishRequest, revise_draft};
use samsa_relay::storage::{DraftFields, DraftRecord};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);

fn down(fingerprint: &str, status: &str, labels: Value) -> Value {
    let mut labels = labels;
    labels["alertname"] = json!("SamsaLoginDown");
    labels["service"] = json!("samsa");
    alert(fingerprint, status, labels, "2026-11-28T04:10:00Z")
}

async fn post(app: &TestApp, status: &str, alerts: Vec<Value>) {
    let response = app.post_webhook(payload(status, alerts).to_string()).await;
    assert_eq!(response.status(), 200);
    common::eventually("every receipt processed", DEADLINE, || async {
        (app.state.storage.n_unprocessed_receipts().await.unwrap() == 0).then_some(())
    })
    .await;
}

async fn pending_draft(app: &TestApp, incident_id: i64) -> DraftRecord {
    app.state
        .storage
        .drafts(incident_id)
        .await
        .unwrap()
        .into_iter()
        .find(|draft| draft.state == "pending")
        .expect("a pending draft")
}

fn request(draft: &DraftRecord, level: Level, channels: &[&str]) -> PublishRequest {
    PublishRequest {
        draft_id: draft.draft_id,
        draft_version: draft.versions.last().unwrap().version,
        level,
        channels: channels.iter().map(|name| (*name).to_owned()).collect(),
        decision: None,
        operator: "Anna Andersson".to_owned(),
    }
}

const ALL_LOCAL: [&str; 3] = ["banner", "website", "newsletter"];

#[tokio::test]
async fn publishing_writes_the_notice_and_one_outbox_row_per_channel_and_recipient() {
    let app = spawn_app().await;
    post(
        &app,
        "firing",
        vec![down("a", "firing", json!({"actor": "kommun-boras"}))],
    )
    .await;
    let draft = pending_draft(&app, 1).await;
    let publication = app
        .state
        .publisher
        .publish(&request(&draft, Level::One, &ALL_LOCAL))
        .await
        .unwrap();
    assert_eq!(publication.incident_id, 1);
    // The banner and the feed; the newsletter reaches the subscribers, and there are none.
    assert_eq!(publication.n_deliveries, 2);

    // The relay's own channels are delivered as soon as the workers see them.
    let outbox = common::eventually("local channels delivered", DEADLINE, || async {
        let outbox = app.state.storage.outbox(Some(1)).await.unwrap();
        outbox
            .iter()
            .all(|row| row.state == "sent")
            .then_some(outbox)
    })
    .await;
    let mut channels: Vec<&str> = outbox.iter().map(|row| row.channel.as_str()).collect();
    channels.sort();
    assert_eq!(channels, vec!["banner", "website"]);
    assert!(
        outbox
            .iter()
            .all(|row| row.attempts == 1 && row.sent_at.is_some())
    );

    let drafts = app.state.storage.drafts(1).await.unwrap();
    assert_eq!(drafts[0].state, "published");
    let incident = &app.state.storage.incidents().await.unwrap()[0];
    assert_eq!(
        incident
            .incident
            .published
            .as_ref()
            .unwrap()
            .classification
            .level,
        Level::One
    );
    let notices = app.state.storage.published_notices(None, 10).await.unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].published_by, "Anna Andersson");
    assert_eq!(
        notices[0].rendered, draft.versions[0].rendered,
        "exactly what was reviewed"
    );
    let events: Vec<String> = app
        .state
        .storage
        .incident_events(1)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.event)
        .collect();
    assert!(
        events.contains(&"notice_published".to_owned()),
        "{events:?}"
    );
    assert_eq!(
        app.metric(r#"samsa_relay_deliveries_total{channel="banner",outcome="sent"}"#)
            .await,
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn two_concurrent_publishes_give_exactly_one_publication() {
    let app = spawn_app().await;
    post(
        &app,
        "firing",
        vec![down("a", "firing", json!({"actor": "kommun-boras"}))],
    )
    .await;
    let draft = pending_draft(&app, 1).await;
    let publish = request(&draft, Level::One, &ALL_LOCAL);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let state = app.state.clone();
        let publish = publish.clone();
        tasks.push(tokio::spawn(async move {
            state.publisher.publish(&publish).await
        }));
    }
    let mut n_published = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => n_published += 1,
            Err(PublishError::AlreadyPublished) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(n_published, 1);
    assert_eq!(
        app.state
            .storage
            .published_notices(None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // The banner and the feed (no subscribers for the newsletter).
    assert_eq!(app.state.storage.outbox(Some(1)).await.unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn the_plan_decides_levels_channels_and_who_must_decide() {
    let app = spawn_app().await;
    post(
        &app,
        "firing",
        vec![down("a", "firing", json!({"subregion": "fyrbodal"}))],
    )
    .await;
    let draft = pending_draft(&app, 1).await;
    // The whole of Fyrbodal: the relay suggests level 2, which is a decision.
    assert_eq!(draft.versions[0].input["classification"]["level"], 2);

    let error = app
        .state
        .publisher
        .publish(&request(&draft, Level::Two, &ALL_LOCAL))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PublishError::DecisionRequired { level: 2 }),
        "{error:?}"
    );

    let mut wrong_role = request(&draft, Level::Two, &ALL_LOCAL);
    wrong_role.decision = Some(Decision {
        decided_by: "Bo Berg".to_owned(),
        role: DecisionRole::CouncilChair,
    });
    assert!(matches!(
        app.state.publisher.publish(&wrong_role).await.unwrap_err(),
        PublishError::WrongRole { level: 2, .. }
    ));

    let unknown_channel = request(&draft, Level::Two, &["banner", "carrier-pigeon"]);
    assert!(matches!(
        app.state
            .publisher
            .publish(&unknown_channel)
            .await
            .unwrap_err(),
        PublishError::ChannelNotInPlan { .. }
    ));
    assert!(matches!(
        app.state
            .publisher
            .publish(&request(&draft, Level::Two, &[]))
            .await
            .unwrap_err(),
        PublishError::NoChannels
    ));
    // Level 1 was not previewed: the notice on screen says level 2.
    assert!(matches!(
        app.state
            .publisher
            .publish(&request(&draft, Level::One, &ALL_LOCAL))
            .await
            .unwrap_err(),
        PublishError::LevelNotPreviewed {
            rendered: 2,
            requested: 1
        }
    ));

    // The operator edits: level 3, an expected resolution time and added information.
    let fields = DraftFields {
        level: Some(samsa_relay::classify::Level::Three),
        expected_resolution: Some("2026-11-28T09:00:00Z".parse().unwrap()),
        next_update: None,
        additional_information: Some("Cerner felsöker inloggningen.".to_owned()),
    };
    let version = revise_draft(
        &app.state.storage,
        &app.state.renderer,
        draft.draft_id,
        &fields,
        "Anna Andersson",
    )
    .await
    .unwrap();
    assert_eq!(version, 2);
    // Publishing the old version is refused: it is not what is on screen now.
    let mut stale = request(&draft, Level::Two, &ALL_LOCAL);
    stale.decision = Some(Decision {
        decided_by: "Bo Berg".to_owned(),
        role: DecisionRole::Subregional,
    });
    assert!(matches!(
        app.state.publisher.publish(&stale).await.unwrap_err(),
        PublishError::StaleVersion { latest: 2 }
    ));
    let draft = pending_draft(&app, 1).await;
    let rendered = &draft.versions[1].rendered;
    assert!(
        rendered
            .email_text
            .contains("Cerner felsöker inloggningen.")
    );
    assert!(
        rendered.email_text.contains("28 november 2026 kl. 10:00"),
        "{}",
        rendered.email_text
    );
    assert!(
        !rendered.crisis_text.is_empty(),
        "level 3 writes to the council"
    );

    let mut decided = request(&draft, Level::Three, &["banner", "website"]);
    decided.decision = Some(Decision {
        decided_by: "Cecilia Carlsson".to_owned(),
        role: DecisionRole::CouncilViceChair,
    });
    app.state.publisher.publish(&decided).await.unwrap();
    let notice = &app.state.storage.published_notices(None, 1).await.unwrap()[0];
    assert_eq!(notice.level, 3);
    assert_eq!(notice.decided_by.as_deref(), Some("Cecilia Carlsson"));
    assert_eq!(notice.decided_role.as_deref(), Some("council_vice_chair"));
    assert_eq!(notice.channels, vec!["banner", "website"]);
    let events = app.state.storage.incident_events(1).await.unwrap();
    let decision = events
        .iter()
        .find(|event| event.event == "decision_recorded")
        .unwrap();
    assert_eq!(decision.source, "Anna Andersson");
    assert_eq!(decision.detail["decided_by"], "Cecilia Carlsson");
    app.stop().await;
}

#[tokio::test]
async fn after_publication_changes_ask_for_an_update_and_resolution_for_a_resolution_notice() {
    let app = spawn_app().await;
    post(
        &app,
        "firing",
        vec![down("a", "firing", json!({"actor": "kommun-boras"}))],
    )
    .await;
    let draft = pending_draft(&app, 1).await;
    app.state
        .publisher
        .publish(&request(&draft, Level::One, &ALL_LOCAL))
        .await
        .unwrap();

    post(
        &app,
        "firing",
        vec![
            down("a", "firing", json!({"actor": "kommun-boras"})),
            down("b", "firing", json!({"actor": "kommun-mark"})),
        ],
    )
    .await;
    let update = pending_draft(&app, 1).await;
    assert_eq!(update.kind.as_str(), "update");
    assert!(update.versions[0].rendered.email_text.contains("Mark"));

    post(
        &app,
        "resolved",
        vec![
            down("a", "resolved", json!({"actor": "kommun-boras"})),
            down("b", "resolved", json!({"actor": "kommun-mark"})),
        ],
    )
    .await;
    let drafts = app.state.storage.drafts(1).await.unwrap();
    let states: Vec<(&str, &str)> = drafts
        .iter()
        .map(|draft| (draft.kind.as_str(), draft.state.as_str()))
        .collect();
    assert_eq!(
        states,
        vec![
            ("initial", "published"),
            ("update", "withdrawn"),
            ("resolved", "pending")
        ]
    );
    let resolved = pending_draft(&app, 1).await;
    app.state
        .publisher
        .publish(&request(&resolved, Level::One, &ALL_LOCAL))
        .await
        .unwrap();
    let incident = &app.state.storage.incidents().await.unwrap()[0];
    assert_eq!(
        incident.incident.published.as_ref().unwrap().kind.as_str(),
        "resolved"
    );
    app.stop().await;
}
