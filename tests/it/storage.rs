//! The storage contract, checked through the public [`Storage`] handle only (never a
//! backend type), so that the same test bodies run against every backend: each body takes
//! [`Databases`], which opens fresh databases of one backend. [`contract!`] runs every
//! body on SQLite (files in a temporary folder, core tier) and on PostgreSQL (a real
//! server, system tier).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use samsa_relay::alertmanager::{AlertStatus, LabelMap, Notification};
use samsa_relay::classify::{Classification, Level, ScopeSummary, summarize};
use samsa_relay::incident::{
    DeliveryState, DraftState, Incident, IncidentKind, LogEvent, Phase, Published,
};
use samsa_relay::inventory::Inventory;
use samsa_relay::maintenance::{SeriesApproval, Window, WindowPlan, WindowScope, WindowState};
use samsa_relay::notice::{NoticeKind, RenderedNotice};
use samsa_relay::storage::*;

use crate::common::Databases;

/// Runs each named body once per backend: `sqlite::NAME` always, `postgres::NAME` in the
/// system tier.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let databases = crate::common::Databases::sqlite();
                    super::$name(&databases).await;
                }
            )*
        }

        #[cfg(feature = "system-tests")]
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let databases = crate::common::Databases::postgres().await;
                    super::$name(&databases).await;
                }
            )*
        }
    };
}

contract!(
    a_duplicate_dedupe_key_is_stored_once,
    a_processed_receipt_leaves_the_backlog_and_resolved_stays_final,
    an_uncommitted_transaction_writes_nothing,
    one_open_incident_per_kind,
    one_pending_draft_per_incident_and_discard_is_final,
    one_publication_per_draft,
    a_lease_that_ran_out_makes_a_delivery_claimable_again,
    operator_mail_is_enqueued_once_per_key,
    the_followup_snapshot_reads_what_was_written,
    the_database_takes_writes_and_checkpoints,
    revoking_links_only_moves_their_valid_from_time_forward,
    the_installation_id_is_created_once_and_differs_between_installations,
    delivery_ids_are_stable_per_delivery_and_unique_per_installation,
    a_lease_has_one_holder_until_it_expires_or_is_released,
    a_heartbeat_keeps_its_latest_arrival,
    a_token_bucket_grants_no_more_than_its_rate,
    the_banner_hides_drills_unless_asked_and_shows_a_resolution_for_its_window,
    a_subscription_is_confirmed_only_with_its_nonce_and_asking_again_changes_nothing_confirmed,
    subscriber_deliveries_name_no_address_and_deleting_leaves_none,
    a_subscriber_is_suspended_after_permanent_failures_in_a_row_and_pending_rows_cancelled,
    the_purge_deletes_expired_requests_and_ended_subscriptions_only,
    a_maintenance_window_round_trips_with_its_incident_and_log,
    maintenance_windows_open_beside_each_other_and_an_outage_but_drills_stay_one,
    updating_a_window_writes_it_and_its_incident_and_an_ended_window_leaves_the_list,
    windows_in_effect_and_active_windows_are_chosen_by_state_and_times,
    alerts_in_a_window_are_added_then_updated_in_order_of_arrival,
    the_overview_counts_firing_alerts_and_the_recent_list_is_the_same_incidents,
    the_next_receipts_are_the_oldest_whose_alerts_fit_the_budget,
);

pub(crate) fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

pub(crate) fn webhook(group_key: &str, status: &str, starts_at: &str) -> (Notification, String) {
    let body = serde_json::json!({
        "version": "4",
        "groupKey": group_key,
        "status": status,
        "receiver": "samsa-relay",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "SamsaDown", "actor": "a1"},
            "startsAt": starts_at,
            "fingerprint": "f1",
        }],
    })
    .to_string();
    (Notification::parse(body.as_bytes()).unwrap(), body)
}

pub(crate) fn scope() -> (ScopeSummary, Classification) {
    let summary = summarize(&[], &Inventory::default_samsa());
    let classification = Classification {
        level: Level::Two,
        crisis: false,
        reasons: vec!["Övning".to_owned()],
    };
    (summary, classification)
}

fn rendered() -> RenderedNotice {
    RenderedNotice {
        email_subject: "Störning i SAMSA".to_owned(),
        email_text: "SAMSA fungerar inte.".to_owned(),
        email_html: "<p>SAMSA fungerar inte.</p>".to_owned(),
        banner_text: "Störning i SAMSA".to_owned(),
        website_title: "Störning".to_owned(),
        website_body: "Webbtext".to_owned(),
        newsletter_title: "Störning".to_owned(),
        newsletter_body: "Nyhetsbrevstext".to_owned(),
        itnytt_title: "Störning".to_owned(),
        itnytt_body: "IT-Nytt-text".to_owned(),
        crisis_subject: String::new(),
        crisis_text: String::new(),
    }
}

/// Opens a drill with a pending draft by hand; returns (incident id, draft id).
pub(crate) async fn drill_with_draft(storage: &Storage, now: Timestamp) -> (i64, i64) {
    let (summary, classification) = scope();
    let mut transaction = storage.begin_write().await.unwrap();
    let incident_id = transaction
        .insert_drill_incident(&summary, &classification, "Operatör", now)
        .await
        .unwrap()
        .expect("no drill open yet");
    let fields = DraftFields {
        level: Some(Level::Two),
        ..DraftFields::default()
    };
    let draft_id = transaction
        .insert_operator_draft(
            incident_id,
            NoticeKind::Initial,
            &fields,
            &serde_json::json!({"drill": true}),
            &rendered(),
            "Operatör",
            now,
        )
        .await
        .unwrap()
        .expect("no draft pending yet");
    transaction.commit().await.unwrap();
    (incident_id, draft_id)
}

pub(crate) fn publication(incident_id: i64, draft_id: i64, now: Timestamp) -> PublicationWrite {
    let (summary, classification) = scope();
    PublicationWrite {
        incident_id,
        draft_id,
        draft_version: 1,
        kind: NoticeKind::Initial,
        level: Level::Two,
        decided_by: Some("Beslutsfattare".to_owned()),
        decided_role: Some("subregion".to_owned()),
        published_by: "Operatör".to_owned(),
        channels: vec!["email".to_owned(), "banner".to_owned()],
        rendered: rendered(),
        published_at: now,
        published: Published {
            kind: NoticeKind::Initial,
            summary,
            classification,
        },
        deliveries: vec![
            ("email".to_owned(), "a@example.org".to_owned()),
            ("email".to_owned(), "b@example.org".to_owned()),
            ("banner".to_owned(), "banner".to_owned()),
        ],
        events: vec![EventWrite::new(
            now,
            "Operatör",
            &LogEvent::NoticePublished {
                draft_id,
                draft_version: 1,
                kind: NoticeKind::Initial,
                level: 2,
                suggested_level: 2,
                channels: vec!["email".to_owned(), "banner".to_owned()],
                n_deliveries: 3,
                notice_id: None,
            },
        )],
    }
}

/// Publishes the drill's draft; returns the notice id.
pub(crate) async fn publish(
    storage: &Storage,
    incident_id: i64,
    draft_id: i64,
    now: Timestamp,
) -> i64 {
    let mut transaction = storage.begin_write().await.unwrap();
    let notice_id = transaction
        .insert_publication(&publication(incident_id, draft_id, now))
        .await
        .unwrap()
        .expect("not published before");
    transaction.commit().await.unwrap();
    notice_id
}

async fn a_duplicate_dedupe_key_is_stored_once(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let (notification, body) = webhook("g1", "firing", "2026-11-28T04:59:00Z");
    let (other, other_body) = webhook("g2", "firing", "2026-11-28T04:59:00Z");
    let first = storage
        .store_notification(&notification, "key-1", &body, now)
        .await
        .unwrap();
    assert!(!first.duplicate);
    let again = storage
        .store_notification(&notification, "key-1", &body, now)
        .await
        .unwrap();
    assert_eq!(
        again,
        StoredReceipt {
            receipt_id: first.receipt_id,
            duplicate: true
        }
    );
    // Within one group commit: the first copy of a key is new, later copies are not.
    let batch = [
        NewReceipt {
            notification: &other,
            dedupe_key: "key-2",
            raw_payload: &other_body,
            received_at: now,
        },
        NewReceipt {
            notification: &other,
            dedupe_key: "key-2",
            raw_payload: &other_body,
            received_at: now,
        },
        NewReceipt {
            notification: &notification,
            dedupe_key: "key-1",
            raw_payload: &body,
            received_at: now,
        },
    ];
    let stored = storage.store_notifications(&batch).await.unwrap();
    assert_eq!(
        stored.iter().map(|s| s.duplicate).collect::<Vec<_>>(),
        [false, true, true]
    );
    assert_eq!(stored[0].receipt_id, stored[1].receipt_id);
    assert_eq!(stored[2].receipt_id, first.receipt_id);
    let receipts = storage.receipts().await.unwrap();
    assert_eq!(receipts.len(), 2);
    assert_eq!(receipts[0].group_key, "g1");
    assert_eq!(receipts[0].payload, body);
    assert_eq!(storage.n_unprocessed_receipts().await.unwrap(), 2);
}

async fn a_processed_receipt_leaves_the_backlog_and_resolved_stays_final(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let starts_at = "2026-11-28T04:59:00Z";
    let (resolved, resolved_body) = webhook("g1", "resolved", starts_at);
    let (firing, firing_body) = webhook("g1", "firing", starts_at);
    assert_eq!(storage.backlog_bounds().await.unwrap(), (0, 0));
    storage
        .store_notification(&resolved, "resolved", &resolved_body, now)
        .await
        .unwrap();
    let last = storage
        .store_notification(&firing, "late-firing", &firing_body, now)
        .await
        .unwrap()
        .receipt_id;
    assert_eq!(storage.backlog_bounds().await.unwrap(), (last, 0));

    // A read snapshot sees the same backlog, cut by count and by alerts (one each); the
    // first receipt comes whatever its size.
    let mut snapshot = storage.begin_read().await.unwrap();
    for (limit, alert_budget, expected) in [(10, 10, 2), (1, 10, 1), (10, 1, 1), (10, 0, 1)] {
        let receipts = snapshot
            .next_unprocessed_receipts(limit, alert_budget)
            .await
            .unwrap();
        assert_eq!(
            receipts.len(),
            expected,
            "limit {limit}, budget {alert_budget}"
        );
    }
    drop(snapshot);
    let mut transaction = storage.begin_write().await.unwrap();
    let backlog = transaction.next_unprocessed_receipts(10, 10).await.unwrap();
    assert_eq!(backlog.len(), 2);
    let batch = IncidentBatch {
        receipt_ids: backlog.iter().map(|receipt| receipt.receipt_id).collect(),
        ..IncidentBatch::default()
    };
    transaction
        .finish_incident_batch(&batch, now)
        .await
        .unwrap();
    transaction.commit().await.unwrap();

    assert_eq!(storage.n_unprocessed_receipts().await.unwrap(), 0);
    assert_eq!(storage.backlog_bounds().await.unwrap(), (last, last));
    let mut transaction = storage.begin_write().await.unwrap();
    assert!(
        transaction
            .next_unprocessed_receipts(10, 10)
            .await
            .unwrap()
            .is_empty()
    );
    drop(transaction);
    // Derived from the receipts: the late firing copy does not undo the resolution.
    let alerts = storage.alerts().await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].status, AlertStatus::Resolved);
    assert_eq!(alerts[0].last_receipt_id, backlog[1].receipt_id);
}

/// The next receipts of the backlog are the oldest ones, as many as fit the alert
/// budget (the first whatever its size) and the count, with their payloads.
async fn the_next_receipts_are_the_oldest_whose_alerts_fit_the_budget(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-12-04T08:00:00Z");
    let mut ids = Vec::new();
    for (index, n_alerts) in [3, 5, 1, 10, 2].into_iter().enumerate() {
        let alerts: Vec<serde_json::Value> = (0..n_alerts)
            .map(|alert| {
                serde_json::json!({
                    "status": "firing",
                    "labels": {"alertname": "SamsaDown", "actor": "a1"},
                    "startsAt": "2026-12-04T07:59:00Z",
                    "fingerprint": format!("r{index}a{alert}"),
                })
            })
            .collect();
        let body = serde_json::json!({
            "version": "4", "groupKey": format!("g{index}"), "status": "firing",
            "receiver": "samsa-relay", "alerts": alerts,
        })
        .to_string();
        let notification = Notification::parse(body.as_bytes()).unwrap();
        let stored = storage
            .store_notification(&notification, &format!("key-{index}"), &body, now)
            .await
            .unwrap();
        ids.push((stored.receipt_id, body));
    }
    let mut snapshot = storage.begin_read().await.unwrap();
    for (limit, alert_budget, expected) in [
        (10, 9, 3),
        (10, 8, 2),
        (10, 2, 1),
        (2, 100, 2),
        (10, 20, 4),
        (10, 21, 5),
        (64, 512, 5),
    ] {
        let receipts = snapshot
            .next_unprocessed_receipts(limit, alert_budget)
            .await
            .unwrap();
        let got: Vec<(i64, &str)> = receipts
            .iter()
            .map(|receipt| (receipt.receipt_id, receipt.payload.as_str()))
            .collect();
        let want: Vec<(i64, &str)> = ids[..expected]
            .iter()
            .map(|(id, body)| (*id, body.as_str()))
            .collect();
        assert_eq!(got, want, "limit {limit}, budget {alert_budget}");
    }
}

async fn an_uncommitted_transaction_writes_nothing(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let (summary, classification) = scope();
    let mut transaction = storage.begin_write().await.unwrap();
    transaction
        .insert_drill_incident(&summary, &classification, "Operatör", now)
        .await
        .unwrap()
        .unwrap();
    drop(transaction);
    assert!(storage.incidents().await.unwrap().is_empty());
}

async fn one_open_incident_per_kind(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let (summary, classification) = scope();
    let detail = serde_json::json!({
        "watchdog_alertname": "Watchdog",
        "last_seen": "2026-11-28T04:50:00Z",
        "timeout_seconds": 600,
    });
    let monitoring = storage
        .open_monitoring_incident(now, &summary, &classification, detail.clone())
        .await
        .unwrap()
        .expect("none open");
    assert_eq!(
        storage
            .open_monitoring_incident(now, &summary, &classification, detail.clone())
            .await
            .unwrap(),
        None
    );
    let (drill, _) = drill_with_draft(&storage, now).await;
    let mut transaction = storage.begin_write().await.unwrap();
    assert_eq!(
        transaction
            .insert_drill_incident(&summary, &classification, "Operatör", now)
            .await
            .unwrap(),
        None
    );
    drop(transaction);

    let incidents = storage.incidents().await.unwrap();
    assert_eq!(
        incidents
            .iter()
            .map(|record| (record.incident_id, record.kind))
            .collect::<Vec<_>>(),
        [
            (monitoring, IncidentKind::Monitoring),
            (drill, IncidentKind::Drill)
        ]
    );
    let events = storage.incident_events(monitoring).await.unwrap();
    assert_eq!(events[0].event, "monitoring_chain_broken");
    assert_eq!(events[0].detail, detail);
    assert!(matches!(
        events[0].log_event().unwrap(),
        LogEvent::MonitoringChainBroken {
            timeout_seconds: 600,
            ..
        }
    ));

    let later = now + SignedDuration::from_mins(5);
    assert_eq!(
        storage.resolve_monitoring_incident(later).await.unwrap(),
        Some(monitoring)
    );
    assert_eq!(
        storage.resolve_monitoring_incident(later).await.unwrap(),
        None
    );
    let record = storage
        .followup_incident(monitoring)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.resolved_at, Some(later));
    // Resolved, so a new one may open.
    assert!(
        storage
            .open_monitoring_incident(later, &summary, &classification, detail)
            .await
            .unwrap()
            .is_some()
    );
}

async fn one_pending_draft_per_incident_and_discard_is_final(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let (incident_id, draft_id) = drill_with_draft(&storage, now).await;
    let mut transaction = storage.begin_write().await.unwrap();
    let second = transaction
        .insert_operator_draft(
            incident_id,
            NoticeKind::Update,
            &DraftFields::default(),
            &serde_json::json!({}),
            &rendered(),
            "Operatör",
            now,
        )
        .await
        .unwrap();
    assert_eq!(second, None);
    transaction
        .add_draft_version(
            incident_id,
            draft_id,
            2,
            "Operatör",
            &DraftFields {
                level: Some(Level::Three),
                ..DraftFields::default()
            },
            &serde_json::json!({"drill": true}),
            &rendered(),
            now,
        )
        .await
        .unwrap();
    transaction.commit().await.unwrap();

    let overview = storage.pending_drafts_overview().await.unwrap();
    assert_eq!(overview.len(), 1);
    assert_eq!(overview[0].incident_kind, IncidentKind::Drill);
    assert_eq!(overview[0].latest_version, 2);
    let drafts = storage.drafts(incident_id).await.unwrap();
    assert_eq!(drafts[0].state, DraftState::Pending);
    assert_eq!(drafts[0].versions[1].fields.level, Some(Level::Three));

    let discarded = storage
        .discard_draft(draft_id, "fel", "Operatör", now)
        .await
        .unwrap();
    assert_eq!(discarded, Some((incident_id, now)));
    assert_eq!(
        storage
            .discard_draft(draft_id, "fel", "Operatör", now)
            .await
            .unwrap(),
        None
    );
    let (draft, incident) = storage
        .draft_with_incident(draft_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(draft.state, DraftState::Discarded);
    assert_eq!(draft.state_reason.as_deref(), Some("fel"));
    assert_eq!(incident.kind, IncidentKind::Drill);
    assert!(storage.pending_drafts_overview().await.unwrap().is_empty());
}

async fn one_publication_per_draft(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let (incident_id, draft_id) = drill_with_draft(&storage, now).await;
    let mut transaction = storage.begin_write().await.unwrap();
    let for_publish = transaction
        .draft_for_publish(draft_id, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(for_publish.state, DraftState::Pending);
    assert_eq!(for_publish.latest_version, 1);
    assert!(
        transaction
            .draft_for_publish(draft_id, 2)
            .await
            .unwrap()
            .unwrap()
            .version
            .is_none()
    );
    drop(transaction);

    assert!(!storage.has_publication(incident_id).await.unwrap());
    let notice_id = publish(&storage, incident_id, draft_id, now).await;
    assert!(storage.has_publication(incident_id).await.unwrap());
    let mut transaction = storage.begin_write().await.unwrap();
    assert_eq!(
        transaction
            .insert_publication(&publication(incident_id, draft_id, now))
            .await
            .unwrap(),
        Err(AlreadyPublished)
    );
    drop(transaction);

    let drafts = storage.drafts(incident_id).await.unwrap();
    assert_eq!(drafts[0].state, DraftState::Published);
    let notices = storage.published_notices(None, 10).await.unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].notice_id, notice_id);
    assert_eq!(notices[0].level, Level::Two);
    let banner = storage
        .current_banner(&["banner".to_owned()], true, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(banner.notice.notice_id, notice_id);
    assert!(banner.drill);
    assert!(
        storage
            .current_banner(&["sms".to_owned()], true, now)
            .await
            .unwrap()
            .is_none()
    );
    let outbox = storage.outbox(Some(incident_id)).await.unwrap();
    assert_eq!(outbox.len(), 3);
    assert!(outbox.iter().all(|row| row.state == DeliveryState::Pending));
    // The log entry carries the notice id storage assigned.
    let events = storage.incident_events(incident_id).await.unwrap();
    let published = events
        .iter()
        .find(|event| event.event == "notice_published")
        .unwrap();
    assert_eq!(published.detail["notice_id"], notice_id);
}

async fn a_lease_that_ran_out_makes_a_delivery_claimable_again(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let (incident_id, draft_id) = drill_with_draft(&storage, now).await;
    publish(&storage, incident_id, draft_id, now).await;
    let lease = Duration::from_secs(60);

    let claimed = storage
        .claim_deliveries("email", 10, now, lease)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|delivery| delivery.attempt == 1));
    assert_eq!(claimed[0].notice.level, Level::Two);
    // Leased: nobody else gets them, not even a moment before the lease runs out.
    let almost = now + SignedDuration::from_secs(59);
    assert!(
        storage
            .claim_deliveries("email", 10, almost, lease)
            .await
            .unwrap()
            .is_empty()
    );
    let expired = now + SignedDuration::from_secs(61);
    let again = storage
        .claim_deliveries("email", 10, expired, lease)
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|delivery| delivery.attempt == 2));
    // Their first attempts never recorded a result: the recipients may have them already.
    assert!(claimed.iter().all(|delivery| !delivery.reclaimed));
    assert!(again.iter().all(|delivery| delivery.reclaimed));
    assert_eq!(again[0].delivery_id, claimed[0].delivery_id);

    storage
        .record_deliveries(&[
            DeliveryResult::Sent {
                outbox_id: again[0].outbox_id,
                at: expired,
            },
            DeliveryResult::Failed {
                outbox_id: again[1].outbox_id,
                at: expired,
                error: "550 no such user".to_owned(),
            },
        ])
        .await
        .unwrap();
    let states: Vec<DeliveryState> = storage
        .outbox(Some(incident_id))
        .await
        .unwrap()
        .iter()
        .filter(|row| row.channel == "email")
        .map(|row| row.state)
        .collect();
    assert_eq!(states, [DeliveryState::Sent, DeliveryState::Failed]);
    assert_eq!(storage.failed_deliveries(10).await.unwrap().len(), 1);
    let summary = storage.delivery_summary(10).await.unwrap();
    assert!(
        summary
            .iter()
            .any(|(_, channel, state, count)| channel == "email"
                && *state == DeliveryState::Sent
                && *count == 1)
    );

    // An operator's retry makes only a failed row pending again.
    assert!(
        storage
            .retry_failed_delivery(again[1].outbox_id, expired, "Operatör")
            .await
            .unwrap()
    );
    assert!(
        !storage
            .retry_failed_delivery(again[0].outbox_id, expired, "Operatör")
            .await
            .unwrap()
    );
    let retried = storage
        .claim_deliveries("email", 10, expired, lease)
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].outbox_id, again[1].outbox_id);
    // The attempt before recorded its result.
    assert!(!retried[0].reclaimed);
    // At start-up every lease is released.
    assert_eq!(storage.release_delivery_leases().await.unwrap(), 1);
    assert_eq!(
        storage
            .claim_deliveries("email", 10, expired, lease)
            .await
            .unwrap()
            .len(),
        1
    );

    // Every entry written on the way reads back as the typed log.
    let events: Vec<LogEvent> = storage
        .incident_events(incident_id)
        .await
        .unwrap()
        .iter()
        .map(|event| event.log_event().unwrap())
        .collect();
    let kinds: Vec<String> = events.iter().map(LogEvent::kind).collect();
    assert_eq!(
        kinds,
        [
            "drill_started",
            "draft_created",
            "notice_published",
            "delivery_failed",
            "delivery_retried"
        ]
    );
    assert!(matches!(
        events[1],
        LogEvent::DraftCreated { by_hand: true, .. }
    ));
    assert!(matches!(
        events[2],
        LogEvent::NoticePublished {
            notice_id: Some(_),
            ..
        }
    ));
}

async fn operator_mail_is_enqueued_once_per_key(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let mail = |key: &str| OperatorMailWrite {
        dedupe_key: key.to_owned(),
        purpose: "review".to_owned(),
        incident_id: None,
        draft_id: None,
        draft_version: None,
        to_address: "operator@example.org".to_owned(),
        subject: "Granska".to_owned(),
        body: "Länk".to_owned(),
    };
    assert_eq!(
        storage
            .enqueue_operator_mail(&[mail("a"), mail("a")], now)
            .await
            .unwrap(),
        1
    );
    let mut transaction = storage.begin_write().await.unwrap();
    assert_eq!(
        transaction
            .enqueue_operator_mail(&[mail("a"), mail("b")], now)
            .await
            .unwrap(),
        1
    );
    transaction.commit().await.unwrap();
    assert_eq!(
        storage
            .missing_operator_mail_keys(&["a".to_owned(), "c".to_owned()])
            .await
            .unwrap(),
        ["c"]
    );
    let lease = Duration::from_secs(60);
    let claimed = storage.claim_operator_mail(10, now, lease).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        storage
            .claim_operator_mail(10, now, lease)
            .await
            .unwrap()
            .is_empty()
    );
    storage
        .record_operator_mail(&[DeliveryResult::Sent {
            outbox_id: claimed[0].mail_id,
            at: now,
        }])
        .await
        .unwrap();
    let mails = storage.operator_mail().await.unwrap();
    assert_eq!(mails[0].3, DeliveryState::Sent);
    assert_eq!(mails[1].3, DeliveryState::Pending);
    // The second one's lease runs out: claimable again.
    let later = now + SignedDuration::from_secs(61);
    assert_eq!(
        storage
            .claim_operator_mail(10, later, lease)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn the_followup_snapshot_reads_what_was_written(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let (incident_id, draft_id) = drill_with_draft(&storage, now).await;
    publish(&storage, incident_id, draft_id, now).await;
    let mut transaction = storage.begin_write().await.unwrap();
    transaction
        .insert_feedback(&FeedbackWrite {
            incident_id,
            received_at: now,
            name: "Anna".to_owned(),
            organisation: "Vårdcentral".to_owned(),
            message: "Bra information.".to_owned(),
        })
        .await
        .unwrap();
    transaction
        .insert_lesson(&LessonWrite {
            incident_id,
            created_at: now,
            created_by: "Operatör".to_owned(),
            kind: "lesson".to_owned(),
            audience: Some("suppliers".to_owned()),
            text: "Testa reservrutinen.".to_owned(),
        })
        .await
        .unwrap();
    transaction.close_drill(incident_id, now).await.unwrap();
    transaction.commit().await.unwrap();

    let snapshot = storage
        .followup_snapshot(incident_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.incident.kind, IncidentKind::Drill);
    assert_eq!(snapshot.incident.resolved_at, Some(now));
    assert_eq!(snapshot.drafts.len(), 1);
    assert_eq!(snapshot.drafts[0].state, DraftState::Published);
    assert_eq!(snapshot.notices.len(), 1);
    assert_eq!(snapshot.deliveries.len(), 2);
    assert_eq!(snapshot.feedback[0].name, "Anna");
    assert_eq!(snapshot.lessons[0].audience.as_deref(), Some("suppliers"));
    assert!(
        storage
            .followup_snapshot(incident_id + 1)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        storage.followup_incident_ids(None, None).await.unwrap(),
        [incident_id]
    );
    assert!(
        storage
            .followup_incident_ids(Some(now + SignedDuration::from_secs(1)), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(storage.incident_overview(10).await.unwrap().len(), 1);
}

async fn the_database_takes_writes_and_checkpoints(databases: &Databases) {
    let storage = databases.fresh().await;
    storage.check_writable().await.unwrap();
    storage.checkpoint().await.unwrap();
    storage.close().await;
}

#[test]
fn a_storage_error_says_whether_it_is_transient() {
    assert!(StorageError::transient("x", anyhow::anyhow!("busy")).is_transient());
    assert!(!StorageError::permanent("x", anyhow::anyhow!("bad row")).is_transient());
}

async fn revoking_links_only_moves_their_valid_from_time_forward(databases: &Databases) {
    let storage = databases.fresh().await;
    assert_eq!(storage.links_valid_from().await.unwrap(), None);
    let first = at("2026-11-28T04:10:00.123456789Z");
    storage.revoke_links(first).await.unwrap();
    assert_eq!(storage.links_valid_from().await.unwrap(), Some(first));
    storage
        .revoke_links(at("2026-11-28T04:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        storage.links_valid_from().await.unwrap(),
        Some(first),
        "an earlier revocation does not bring back revoked links"
    );
    let second = at("2026-11-28T05:00:00Z");
    storage.revoke_links(second).await.unwrap();
    assert_eq!(storage.links_valid_from().await.unwrap(), Some(second));
}

async fn the_installation_id_is_created_once_and_differs_between_installations(
    databases: &Databases,
) {
    let (storage, config) = databases.fresh_with_config().await;
    let id = storage.installation_id().await.unwrap();
    assert!(id.len() >= 32, "{id:?} is random enough");
    assert_eq!(storage.installation_id().await.unwrap(), id);
    storage.close().await;
    let reopened = Storage::open(&config).await.unwrap();
    assert_eq!(
        reopened.installation_id().await.unwrap(),
        id,
        "reopening keeps the id"
    );
    let other = databases.fresh().await;
    assert_ne!(other.installation_id().await.unwrap(), id);
}

async fn delivery_ids_are_stable_per_delivery_and_unique_per_installation(databases: &Databases) {
    let now = at("2026-11-28T05:00:00Z");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let storage = databases.fresh().await;
        let (incident_id, draft_id) = drill_with_draft(&storage, now).await;
        publish(&storage, incident_id, draft_id, now).await;
        let outbox = storage.outbox(Some(incident_id)).await.unwrap();
        let again = storage.outbox(Some(incident_id)).await.unwrap();
        let mut these: Vec<String> = outbox.iter().map(|row| row.delivery_id.clone()).collect();
        let kept: Vec<String> = again.iter().map(|row| row.delivery_id.clone()).collect();
        assert_eq!(these, kept, "a delivery keeps its id");
        these.sort();
        ids.push(these);
    }
    // The same notice number, channels and recipients on two installations.
    assert_eq!(ids[0].len(), ids[1].len());
    assert!(
        ids[0].iter().all(|id| !ids[1].contains(id)),
        "a new installation reuses no delivery id: {ids:?}"
    );
}

async fn a_lease_has_one_holder_until_it_expires_or_is_released(databases: &Databases) {
    let storage = databases.fresh().await;
    let ttl = Duration::from_secs(60);
    let first = storage
        .acquire_lease("correlation", "a", ttl)
        .await
        .unwrap();
    assert!(first.is_held_by("a", Timestamp::now()));
    // Another replica meets the holder and does not take it.
    let second = storage
        .acquire_lease("correlation", "b", ttl)
        .await
        .unwrap();
    assert_eq!(second.holder, "a");
    assert!(!second.is_held_by("b", Timestamp::now()));
    // The holder renews it, keeping the time it took it.
    let renewed = storage
        .acquire_lease("correlation", "a", ttl)
        .await
        .unwrap();
    assert_eq!(renewed.acquired_at, first.acquired_at);
    assert!(renewed.expires_at >= first.expires_at);
    // Leases are independent of each other.
    let timers = storage.acquire_lease("timers", "b", ttl).await.unwrap();
    assert!(timers.is_held_by("b", Timestamp::now()));
    // Inside a write transaction, only the holder holds it.
    let mut transaction = storage.begin_write().await.unwrap();
    assert!(transaction.hold_lease("correlation", "a").await.unwrap());
    assert!(!transaction.hold_lease("correlation", "b").await.unwrap());
    assert!(!transaction.hold_lease("no-such-lease", "a").await.unwrap());
    drop(transaction);
    // Released by someone else: nothing happens; by the holder: free for the next.
    storage.release_lease("correlation", "b").await.unwrap();
    assert_eq!(
        storage
            .acquire_lease("correlation", "b", ttl)
            .await
            .unwrap()
            .holder,
        "a"
    );
    storage.release_lease("correlation", "a").await.unwrap();
    let taken = storage
        .acquire_lease("correlation", "b", ttl)
        .await
        .unwrap();
    assert!(taken.is_held_by("b", Timestamp::now()));
    // An expired lease passes to the next replica that asks.
    storage
        .acquire_lease("short", "a", Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut transaction = storage.begin_write().await.unwrap();
    assert!(!transaction.hold_lease("short", "a").await.unwrap());
    drop(transaction);
    let next = storage.acquire_lease("short", "b", ttl).await.unwrap();
    assert!(next.is_held_by("b", Timestamp::now()));
    let names: Vec<String> = storage
        .leases()
        .await
        .unwrap()
        .into_iter()
        .map(|lease| lease.name)
        .collect();
    assert_eq!(names, ["correlation", "short", "timers"]);
    assert_eq!(storage.clear_leases().await.unwrap(), 3);
    assert!(storage.leases().await.unwrap().is_empty());
}

async fn a_heartbeat_keeps_its_latest_arrival(databases: &Databases) {
    let storage = databases.fresh().await;
    assert_eq!(storage.last_heartbeat("watchdog").await.unwrap(), None);
    let later = at("2026-12-03T08:01:00Z");
    storage.record_heartbeat("watchdog", later).await.unwrap();
    storage
        .record_heartbeat("watchdog", at("2026-12-03T08:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        storage.last_heartbeat("watchdog").await.unwrap(),
        Some(later)
    );
}

async fn a_token_bucket_grants_no_more_than_its_rate(databases: &Databases) {
    let storage = databases.fresh().await;
    let start = at("2026-12-03T08:00:00Z");
    // A full bucket of 30 at first; then empty.
    assert_eq!(
        storage
            .take_tokens("email", 20, 30.0, 30, start)
            .await
            .unwrap(),
        20
    );
    assert_eq!(
        storage
            .take_tokens("email", 20, 30.0, 30, start)
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        storage
            .take_tokens("email", 5, 30.0, 30, start)
            .await
            .unwrap(),
        0
    );
    // 30 a minute is one every 2 s.
    let later = start + SignedDuration::from_secs(10);
    assert_eq!(
        storage
            .take_tokens("email", 20, 30.0, 30, later)
            .await
            .unwrap(),
        5
    );
    // Buckets are per key.
    assert_eq!(
        storage
            .take_tokens("itnytt", 3, 30.0, 30, later)
            .await
            .unwrap(),
        3
    );
}

async fn the_banner_hides_drills_unless_asked_and_shows_a_resolution_for_its_window(
    databases: &Databases,
) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let banner = ["banner".to_owned()];
    let (incident_id, draft_id) = drill_with_draft(&storage, now).await;
    let notice_id = publish(&storage, incident_id, draft_id, now).await;
    assert!(
        storage
            .current_banner(&banner, false, now)
            .await
            .unwrap()
            .is_none(),
        "a drill stays off the live banner"
    );
    let shown = storage
        .current_banner(&banner, true, now)
        .await
        .unwrap()
        .expect("the drill banner when asked for");
    assert_eq!(shown.notice.notice_id, notice_id);
    assert!(shown.drill);
    assert_eq!(shown.fields.level, Some(Level::Two), "the version's fields");

    // The resolution: shown from its publication for as long as the caller's window.
    let resolved_at = at("2026-11-28T06:00:00Z");
    let mut transaction = storage.begin_write().await.unwrap();
    let resolution_id = transaction
        .insert_operator_draft(
            incident_id,
            NoticeKind::Resolved,
            &DraftFields::default(),
            &serde_json::json!({"drill": true}),
            &rendered(),
            "Operatör",
            resolved_at,
        )
        .await
        .unwrap()
        .expect("no draft pending");
    let mut write = publication(incident_id, resolution_id, resolved_at);
    write.kind = NoticeKind::Resolved;
    let resolution_notice = transaction
        .insert_publication(&write)
        .await
        .unwrap()
        .expect("published once");
    transaction.commit().await.unwrap();
    let all_clear = storage
        .current_banner(&banner, true, at("2026-11-28T05:30:00Z"))
        .await
        .unwrap()
        .expect("the all-clear within its window");
    assert_eq!(all_clear.notice.notice_id, resolution_notice);
    assert_eq!(all_clear.notice.kind, NoticeKind::Resolved);
    assert!(
        storage
            .current_banner(&banner, true, at("2026-11-28T06:00:01Z"))
            .await
            .unwrap()
            .is_none(),
        "nothing once the window is over"
    );
}

// ---- subscriptions ----------------------------------------------------------------------

fn choices_of(actors: &[&str]) -> samsa_relay::subscription::Choices {
    samsa_relay::subscription::Choices {
        all: false,
        actors: actors.iter().map(|id| (*id).to_owned()).collect(),
        subregions: Vec::new(),
        min_level: 1,
    }
}

/// Asks for a subscription in its own transaction.
async fn request(storage: &Storage, address: &str, nonce: &str, now: Timestamp) -> RequestOutcome {
    let mut transaction = storage.begin_write().await.unwrap();
    let outcome = transaction
        .request_subscription(
            address,
            &choices_of(&["kommun-boras"]),
            "self-service",
            nonce,
            now,
        )
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    outcome
}

async fn a_subscription_is_confirmed_only_with_its_nonce_and_asking_again_changes_nothing_confirmed(
    databases: &Databases,
) {
    use samsa_relay::subscription::SubscriberState;
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let RequestOutcome::Pending {
        subscriber_id,
        nonce,
    } = request(&storage, " Anna@Boras.example ", "nonce-1", now).await
    else {
        panic!("a new address is pending");
    };
    assert_eq!(nonce, "nonce-1");
    let stored = storage.subscriber(subscriber_id).await.unwrap().unwrap();
    assert_eq!(stored.address, "anna@boras.example");
    assert_eq!(stored.state, SubscriberState::Pending);
    assert_eq!(stored.consented_at, None);
    assert!(storage.confirmed_choices().await.unwrap().is_empty());
    // Asked again while pending: same subscription, same nonce.
    assert_eq!(
        request(&storage, "anna@boras.example", "nonce-2", now).await,
        RequestOutcome::Pending {
            subscriber_id,
            nonce: "nonce-1".to_owned()
        }
    );
    assert_eq!(
        storage
            .confirm_subscriber(subscriber_id, "nonce-2", now)
            .await
            .unwrap(),
        None
    );
    let later = now + SignedDuration::from_mins(5);
    let confirmed = storage
        .confirm_subscriber(subscriber_id, "nonce-1", later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(confirmed.state, SubscriberState::Confirmed);
    assert_eq!(confirmed.consented_at, Some(later));
    // Confirming twice keeps the first consent time.
    let again = storage
        .confirm_subscriber(
            subscriber_id,
            "nonce-1",
            later + SignedDuration::from_mins(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.consented_at, Some(later));
    assert_eq!(
        storage.confirmed_choices().await.unwrap(),
        [(subscriber_id, choices_of(&["kommun-boras"]))]
    );
    assert_eq!(
        request(&storage, "ANNA@boras.example", "nonce-3", later).await,
        RequestOutcome::AlreadyConfirmed {
            subscriber_id,
            nonce: "nonce-1".to_owned()
        }
    );
    assert!(
        storage
            .change_choices(
                subscriber_id,
                "nonce-1",
                &choices_of(&["kommun-skovde"]),
                later
            )
            .await
            .unwrap()
    );
    assert!(
        !storage
            .change_choices(subscriber_id, "wrong", &choices_of(&["kommun-ale"]), later)
            .await
            .unwrap()
    );
    assert_eq!(
        storage
            .subscriber(subscriber_id)
            .await
            .unwrap()
            .unwrap()
            .choices,
        choices_of(&["kommun-skovde"])
    );
    // Ended, then asked for again: a new subscription with a new nonce.
    assert!(
        !storage
            .unsubscribe(subscriber_id, "wrong", later)
            .await
            .unwrap()
    );
    assert!(
        storage
            .unsubscribe(subscriber_id, "nonce-1", later)
            .await
            .unwrap()
    );
    assert!(
        !storage
            .unsubscribe(subscriber_id, "nonce-1", later)
            .await
            .unwrap()
    );
    assert_eq!(
        request(&storage, "anna@boras.example", "nonce-4", later).await,
        RequestOutcome::Pending {
            subscriber_id,
            nonce: "nonce-4".to_owned()
        }
    );
    let counts = storage.subscriber_counts().await.unwrap();
    assert_eq!(counts, [(SubscriberState::Pending, 1)]);
}

async fn subscriber_deliveries_name_no_address_and_deleting_leaves_none(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let RequestOutcome::Pending {
        subscriber_id,
        nonce,
    } = request(&storage, "anna@boras.example", "n1", now).await
    else {
        panic!("pending");
    };
    storage
        .confirm_subscriber(subscriber_id, &nonce, now)
        .await
        .unwrap()
        .unwrap();
    storage
        .enqueue_operator_mail(
            &[OperatorMailWrite {
                dedupe_key: "subscribe:1".to_owned(),
                purpose: "subscription".to_owned(),
                incident_id: None,
                draft_id: None,
                draft_version: None,
                to_address: "anna@boras.example".to_owned(),
                subject: "Bekräfta".to_owned(),
                body: "Länk".to_owned(),
            }],
            now,
        )
        .await
        .unwrap();
    let (incident_id, draft_id) = drill_with_draft(&storage, now).await;
    let mut write = publication(incident_id, draft_id, now);
    write.channels.push("newsletter".to_owned());
    let recipient = samsa_relay::subscription::recipient(subscriber_id);
    write
        .deliveries
        .push(("newsletter".to_owned(), recipient.clone()));
    let mut transaction = storage.begin_write().await.unwrap();
    assert_eq!(
        transaction
            .earlier_subscriber_recipients(incident_id)
            .await
            .unwrap(),
        Vec::<i64>::new()
    );
    transaction
        .insert_publication(&write)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        transaction
            .earlier_subscriber_recipients(incident_id)
            .await
            .unwrap(),
        [subscriber_id]
    );
    transaction.commit().await.unwrap();
    assert_eq!(
        storage
            .earlier_subscriber_recipients(incident_id)
            .await
            .unwrap(),
        [subscriber_id]
    );
    let row = storage
        .outbox(Some(incident_id))
        .await
        .unwrap()
        .into_iter()
        .find(|row| row.channel == "newsletter")
        .unwrap();
    assert_eq!(row.recipient, recipient);
    let deliveries = storage.subscriber_deliveries(subscriber_id).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].incident_id, incident_id);

    // A bounce of a subscriber's delivery is neither an operator alarm nor in the log.
    let claimed = storage
        .claim_deliveries("newsletter", 10, now, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let events_before = storage.incident_events(incident_id).await.unwrap().len();
    storage
        .record_deliveries(&[DeliveryResult::Failed {
            outbox_id: claimed[0].outbox_id,
            at: now,
            error: "550 <anna@boras.example>: no such user".to_owned(),
        }])
        .await
        .unwrap();
    assert_eq!(
        storage.incident_events(incident_id).await.unwrap().len(),
        events_before
    );
    assert!(storage.failed_deliveries(10).await.unwrap().is_empty());
    assert!(
        storage
            .earlier_subscriber_recipients(incident_id)
            .await
            .unwrap()
            .is_empty(),
        "a failed delivery is not hearing of the incident"
    );

    assert!(
        storage
            .delete_subscriber("ANNA@boras.example")
            .await
            .unwrap()
    );
    assert!(
        !storage
            .delete_subscriber("anna@boras.example")
            .await
            .unwrap()
    );
    assert_eq!(storage.subscriber(subscriber_id).await.unwrap(), None);
    assert!(
        storage
            .operator_mail()
            .await
            .unwrap()
            .iter()
            .all(|(_, to, _, _)| to != "anna@boras.example")
    );
    let everything = format!("{:?}", storage.outbox(None).await.unwrap());
    assert!(!everything.contains("anna@"), "{everything}");
    // The id is never given to the next subscriber.
    let RequestOutcome::Pending {
        subscriber_id: next,
        ..
    } = request(&storage, "anna@boras.example", "n2", now).await
    else {
        panic!("pending");
    };
    assert!(next > subscriber_id);
}

async fn a_subscriber_is_suspended_after_permanent_failures_in_a_row_and_pending_rows_cancelled(
    databases: &Databases,
) {
    use samsa_relay::subscription::SubscriberState;
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let outcome = storage
        .import_subscribers(
            &[
                NewSubscriber {
                    address: "Anna@Boras.example".to_owned(),
                    choices: choices_of(&["kommun-boras"]),
                    nonce: "n1".to_owned(),
                },
                NewSubscriber {
                    address: "bo@skovde.example".to_owned(),
                    choices: choices_of(&["kommun-skovde"]),
                    nonce: "n2".to_owned(),
                },
            ],
            "import by Åsa",
            now,
        )
        .await
        .unwrap();
    assert_eq!(outcome.added, ["anna@boras.example", "bo@skovde.example"]);
    let again = storage
        .import_subscribers(
            &[NewSubscriber {
                address: "anna@boras.example".to_owned(),
                choices: choices_of(&["kommun-ale"]),
                nonce: "n3".to_owned(),
            }],
            "import by Bo",
            now,
        )
        .await
        .unwrap();
    assert_eq!(again.added, Vec::<String>::new());
    assert_eq!(again.already_subscribed, ["anna@boras.example"]);
    let anna = storage
        .subscriber_by_address("anna@boras.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(anna.state, SubscriberState::Confirmed);
    assert_eq!(anna.source, "import by Åsa");
    assert_eq!(anna.consented_at, Some(now));
    assert_eq!(anna.choices, choices_of(&["kommun-boras"]));
    let id = anna.subscriber_id;

    let bounce = || {
        (
            id,
            SubscriberOutcome::Bounced("550 no such user".to_owned()),
        )
    };
    assert!(
        storage
            .record_subscriber_outcomes(&[bounce(), bounce()], 3, now)
            .await
            .unwrap()
            .is_empty()
    );
    // A delivery in between starts the count again.
    storage
        .record_subscriber_outcomes(&[(id, SubscriberOutcome::Delivered)], 3, now)
        .await
        .unwrap();
    assert_eq!(
        storage
            .subscriber(id)
            .await
            .unwrap()
            .unwrap()
            .permanent_failures,
        0
    );
    storage
        .record_subscriber_outcomes(&[bounce(), bounce()], 3, now)
        .await
        .unwrap();
    assert_eq!(
        storage
            .record_subscriber_outcomes(&[bounce()], 3, now)
            .await
            .unwrap(),
        [id]
    );
    let suspended = storage.subscriber(id).await.unwrap().unwrap();
    assert_eq!(suspended.state, SubscriberState::Suspended);
    assert_eq!(suspended.last_failure.as_deref(), Some("550 no such user"));
    assert_eq!(suspended.ended_at, Some(now));
    assert_eq!(
        storage.confirmed_choices().await.unwrap().len(),
        1,
        "only bo is left"
    );
    // The operator's remove ends bo's; nothing to end twice.
    assert!(
        storage
            .remove_subscriber("bo@skovde.example", "Åsa", now)
            .await
            .unwrap()
    );
    assert!(
        !storage
            .remove_subscriber("bo@skovde.example", "Åsa", now)
            .await
            .unwrap()
    );
    let bo = storage
        .subscriber_by_address("bo@skovde.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bo.state, SubscriberState::Unsubscribed);
    assert!(bo.source.ends_with("removed by Åsa"), "{}", bo.source);
}

async fn the_purge_deletes_expired_requests_and_ended_subscriptions_only(databases: &Databases) {
    let storage = databases.fresh().await;
    let day = SignedDuration::from_hours(24);
    let start = at("2026-11-01T05:00:00Z");
    // Pending since the start, never confirmed.
    request(&storage, "old-pending@example.org", "a", start).await;
    // Pending, asked for later.
    request(&storage, "new-pending@example.org", "b", start + day * 2).await;
    // Confirmed at the start: stays whatever its age.
    let RequestOutcome::Pending {
        subscriber_id: kept,
        ..
    } = request(&storage, "kept@example.org", "c", start).await
    else {
        panic!("pending");
    };
    storage.confirm_subscriber(kept, "c", start).await.unwrap();
    // Ended at the start.
    let RequestOutcome::Pending {
        subscriber_id: ended,
        ..
    } = request(&storage, "ended@example.org", "d", start).await
    else {
        panic!("pending");
    };
    storage.confirm_subscriber(ended, "d", start).await.unwrap();
    storage.unsubscribe(ended, "d", start).await.unwrap();

    let now = start + day * 3;
    let purged = storage
        .purge_subscribers(now - day * 2, now - day * 30)
        .await
        .unwrap();
    assert_eq!(purged, 1, "only the expired request");
    let left: Vec<String> = storage
        .subscribers()
        .await
        .unwrap()
        .into_iter()
        .map(|subscriber| subscriber.address)
        .collect();
    assert_eq!(
        left,
        [
            "ended@example.org",
            "kept@example.org",
            "new-pending@example.org"
        ]
    );
    let later = start + day * 40;
    assert_eq!(
        storage
            .purge_subscribers(later - day * 2, later - day * 30)
            .await
            .unwrap(),
        2
    );
    let left: Vec<String> = storage
        .subscribers()
        .await
        .unwrap()
        .into_iter()
        .map(|subscriber| subscriber.address)
        .collect();
    assert_eq!(left, ["kept@example.org"]);
}

// Planned maintenance ----------------------------------------------------------------

fn window_plan(title: &str, starts_at: &str, ends_at: &str) -> WindowPlan {
    WindowPlan {
        title: title.to_owned(),
        scope: WindowScope {
            whole_service: false,
            actors: vec!["a1".to_owned()],
            subregions: vec!["skaraborg".to_owned()],
        },
        starts_at: at(starts_at),
        ends_at: at(ends_at),
        impact: "SAMSA går inte att nå.".to_owned(),
        advice: "Använd reservrutinen.".to_owned(),
        level: Level::Two,
        auto_series: true,
    }
}

/// Plans a window in a transaction of its own; returns its id.
async fn plan_window(storage: &Storage, plan: &WindowPlan, now: Timestamp) -> i64 {
    let (summary, classification) = scope();
    let mut transaction = storage.begin_write().await.unwrap();
    let incident_id = transaction
        .insert_maintenance_window(plan, &summary, &classification, "Operatör", now)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    incident_id
}

/// Writes a window as changed, with the scope of `scope()`.
async fn update_window(storage: &Storage, window: &Window) {
    let (summary, classification) = scope();
    let mut transaction = storage.begin_write().await.unwrap();
    transaction
        .update_maintenance_window(window, &summary, &classification)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
}

/// Moves a planned window to `state`.
async fn set_state(storage: &Storage, incident_id: i64, state: WindowState) -> Window {
    let mut window = storage
        .maintenance_window(incident_id)
        .await
        .unwrap()
        .unwrap();
    window.state = state;
    update_window(storage, &window).await;
    window
}

fn ids(windows: &[Window]) -> Vec<i64> {
    windows.iter().map(|window| window.incident_id).collect()
}

async fn a_maintenance_window_round_trips_with_its_incident_and_log(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00.123456789Z");
    let plan = window_plan(
        "Uppgradering av SAMSA",
        "2026-12-01T19:00:00Z",
        "2026-12-01T21:30:00Z",
    );
    let incident_id = plan_window(&storage, &plan, now).await;
    let expected = Window {
        incident_id,
        plan: plan.clone(),
        state: WindowState::Planned,
        sequence: 0,
        steps_done: BTreeSet::new(),
        silence_ids: Vec::new(),
        approval: None,
        created_by: "Operatör".to_owned(),
        created_at: now,
        announced_at: None,
        ended_at: None,
        updated_at: now,
    };
    assert_eq!(
        storage.maintenance_window(incident_id).await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        storage.maintenance_window(incident_id + 1).await.unwrap(),
        None
    );
    assert_eq!(
        storage.maintenance_windows(now).await.unwrap(),
        std::slice::from_ref(&expected)
    );
    let mut transaction = storage.begin_write().await.unwrap();
    assert_eq!(
        transaction
            .maintenance_window_tx(incident_id)
            .await
            .unwrap(),
        Some(expected)
    );
    drop(transaction);

    let incidents = storage.incidents().await.unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].incident_id, incident_id);
    assert_eq!(incidents[0].kind, IncidentKind::Maintenance);
    assert_eq!(incidents[0].incident.phase, Phase::Open);
    assert_eq!(incidents[0].incident.started_at, plan.starts_at);
    let events = storage.incident_events(incident_id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "maintenance_planned");
    assert_eq!(events[0].source, "Operatör");
    assert_eq!(events[0].at, now);
    assert_eq!(
        events[0].log_event().unwrap(),
        LogEvent::MaintenancePlanned {
            title: plan.title.clone(),
            starts_at: plan.starts_at,
            ends_at: plan.ends_at,
        }
    );
}

/// Opens an outage as the incident worker does; returns its id.
/// Writes one incident step as the incident worker does: staged, then the batch finished
/// and committed.
async fn write_step(storage: &Storage, write: &mut IncidentWrite, now: Timestamp) {
    let mut batch = IncidentBatch::default();
    let mut transaction = storage.begin_write().await.unwrap();
    transaction
        .stage_incident_step(write, &mut batch)
        .await
        .unwrap();
    transaction
        .finish_incident_batch(&batch, now)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
}

async fn open_outage(storage: &Storage, incident_id: i64, now: Timestamp) {
    let (summary, classification) = scope();
    let incident = Incident {
        incident_id,
        phase: Phase::Open,
        started_at: now,
        alerts: BTreeMap::new(),
        summary,
        classification,
        published: None,
        pending_draft: None,
        n_reopened: 0,
    };
    let mut write = IncidentWrite {
        at: now,
        retired_unseen: Vec::new(),
        change: Some(IncidentChange {
            incident,
            is_new: true,
            alerts: Vec::new(),
            events: Vec::new(),
            drafts: Vec::new(),
        }),
    };
    write_step(storage, &mut write, now).await;
}

/// The overview (the operators' dashboard) counts each incident's firing alerts; the
/// recent list (the loops that look every few seconds) gives the same incidents in the
/// same order, open first, without reading their alerts.
async fn the_overview_counts_firing_alerts_and_the_recent_list_is_the_same_incidents(
    databases: &Databases,
) {
    let storage = databases.fresh().await;
    let now = at("2026-12-04T08:00:00Z");
    let (drill_id, _) = drill_with_draft(&storage, now).await;
    let outage_id = drill_id + 1;
    open_outage(&storage, outage_id, now).await;
    let (summary, classification) = scope();
    let alert = |n: u32, status: AlertStatus| {
        (
            samsa_relay::incident::AlertKey {
                fingerprint: format!("f{n}"),
                starts_at: now,
            },
            samsa_relay::incident::TrackedAlert {
                status,
                labels: std::sync::Arc::new(LabelMap::from(BTreeMap::from([(
                    "actor".to_owned(),
                    "kommun-boras".to_owned(),
                )]))),
            },
        )
    };
    let alerts = vec![
        alert(1, AlertStatus::Firing),
        alert(2, AlertStatus::Firing),
        alert(3, AlertStatus::Resolved),
    ];
    let mut write = IncidentWrite {
        at: now,
        retired_unseen: Vec::new(),
        change: Some(IncidentChange {
            incident: Incident {
                incident_id: outage_id,
                phase: Phase::Open,
                started_at: now,
                alerts: alerts.iter().cloned().collect(),
                summary,
                classification,
                published: None,
                pending_draft: None,
                n_reopened: 0,
            },
            is_new: false,
            alerts,
            events: Vec::new(),
            drafts: Vec::new(),
        }),
    };
    write_step(&storage, &mut write, now).await;

    let overview = storage.incident_overview(10).await.unwrap();
    let counted: Vec<(i64, i64)> = overview
        .iter()
        .map(|overview| (overview.record.incident_id, overview.n_firing))
        .collect();
    assert_eq!(counted, [(outage_id, 2), (drill_id, 0)]);
    let recent = storage.recent_incidents(10).await.unwrap();
    let records: Vec<&IncidentRecord> = overview.iter().map(|overview| &overview.record).collect();
    assert_eq!(recent.iter().collect::<Vec<_>>(), records);
    assert_eq!(storage.recent_incidents(1).await.unwrap().len(), 1);
}

async fn maintenance_windows_open_beside_each_other_and_an_outage_but_drills_stay_one(
    databases: &Databases,
) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let first = plan_window(
        &storage,
        &window_plan("Första", "2026-12-01T19:00:00Z", "2026-12-01T21:00:00Z"),
        now,
    )
    .await;
    let second = plan_window(
        &storage,
        &window_plan("Andra", "2026-12-01T20:00:00Z", "2026-12-01T22:00:00Z"),
        now,
    )
    .await;
    assert_eq!(second, first + 1, "numbered like every incident");
    let outage = second + 1;
    open_outage(&storage, outage, now).await;
    let (drill, _) = drill_with_draft(&storage, now).await;
    assert_eq!(drill, outage + 1);
    let (summary, classification) = scope();
    let mut transaction = storage.begin_write().await.unwrap();
    assert_eq!(
        transaction
            .insert_drill_incident(&summary, &classification, "Operatör", now)
            .await
            .unwrap(),
        None,
        "still one open drill at a time"
    );
    drop(transaction);

    let incidents = storage.incidents().await.unwrap();
    let mut open: Vec<(i64, IncidentKind)> = incidents
        .iter()
        .filter(|record| record.incident.phase == Phase::Open)
        .map(|record| (record.incident_id, record.kind))
        .collect();
    open.sort();
    assert_eq!(
        open,
        [
            (first, IncidentKind::Maintenance),
            (second, IncidentKind::Maintenance),
            (outage, IncidentKind::Outage),
            (drill, IncidentKind::Drill),
        ]
    );
    assert_eq!(
        ids(&storage.maintenance_windows(now).await.unwrap()),
        [first, second]
    );
}

async fn updating_a_window_writes_it_and_its_incident_and_an_ended_window_leaves_the_list(
    databases: &Databases,
) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let incident_id = plan_window(
        &storage,
        &window_plan(
            "Uppgradering",
            "2026-12-01T19:00:00Z",
            "2026-12-01T21:00:00Z",
        ),
        now,
    )
    .await;
    let mut window = storage
        .maintenance_window(incident_id)
        .await
        .unwrap()
        .unwrap();
    window.plan = window_plan(
        "Flyttad uppgradering",
        "2026-12-02T19:00:00Z",
        "2026-12-02T22:00:00Z",
    );
    window.plan.scope = WindowScope {
        whole_service: true,
        ..WindowScope::default()
    };
    window.state = WindowState::Running;
    window.sequence = 2;
    window.steps_done = BTreeSet::from(["announcement".to_owned(), "start".to_owned()]);
    window.silence_ids = vec!["silence-1".to_owned(), "silence-2".to_owned()];
    window.approval = Some(SeriesApproval {
        channels: vec!["email".to_owned(), "banner".to_owned()],
        level: Level::Two,
        decided_by: Some("Beslutsfattare".to_owned()),
        decided_role: Some("subregion".to_owned()),
        approved_by: "Operatör".to_owned(),
    });
    window.announced_at = Some(at("2026-11-28T06:00:00Z"));
    window.updated_at = at("2026-12-02T19:00:00.5Z");
    let summary = summarize(
        &[samsa_relay::classify::AlertScope::Everything],
        &Inventory::default_samsa(),
    );
    let classification = Classification {
        level: Level::Three,
        crisis: false,
        reasons: vec!["Hela tjänsten".to_owned()],
    };
    let mut transaction = storage.begin_write().await.unwrap();
    transaction
        .update_maintenance_window(&window, &summary, &classification)
        .await
        .unwrap();
    assert_eq!(
        transaction
            .maintenance_window_tx(incident_id)
            .await
            .unwrap(),
        Some(window.clone())
    );
    transaction.commit().await.unwrap();
    assert_eq!(
        storage.maintenance_window(incident_id).await.unwrap(),
        Some(window.clone())
    );
    let incident = storage.incidents().await.unwrap().remove(0);
    assert_eq!(incident.incident_id, incident_id);
    assert_eq!(incident.incident.started_at, window.plan.starts_at);
    assert_eq!(incident.incident.summary, summary);
    assert_eq!(incident.incident.classification, classification);
    assert_eq!(incident.incident.phase, Phase::Open);

    // Ended: listed from its end on, not after.
    let ended_at = at("2026-12-02T22:00:00Z");
    window.state = WindowState::Completed;
    window.ended_at = Some(ended_at);
    window.updated_at = ended_at;
    update_window(&storage, &window).await;
    assert_eq!(
        storage.maintenance_windows(ended_at).await.unwrap(),
        [window.clone()]
    );
    assert!(
        storage
            .maintenance_windows(ended_at + SignedDuration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
    // Still among those started in a period, by its (moved) start.
    assert_eq!(
        ids(&storage
            .maintenance_windows_started(at("2026-12-02T00:00:00Z"), at("2026-12-03T00:00:00Z"))
            .await
            .unwrap()),
        [incident_id]
    );
    assert!(
        storage
            .maintenance_windows_started(at("2026-12-01T00:00:00Z"), window.plan.starts_at)
            .await
            .unwrap()
            .is_empty()
    );

    // A window that does not exist is an error, not a silent no-op.
    let mut missing = window.clone();
    missing.incident_id = incident_id + 100;
    let mut transaction = storage.begin_write().await.unwrap();
    let error = transaction
        .update_maintenance_window(&missing, &summary, &classification)
        .await
        .unwrap_err();
    assert!(!error.is_transient());
}

async fn windows_in_effect_and_active_windows_are_chosen_by_state_and_times(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-11-28T05:00:00Z");
    let day = |time: &str| format!("2026-12-01T{time}:00Z");
    let mut windows = Vec::new();
    for (title, starts, ends, state) in [
        ("announced", "10:00", "12:00", WindowState::Announced),
        ("running", "11:00", "13:00", WindowState::Running),
        ("planned", "10:00", "12:00", WindowState::Planned),
        ("completed", "10:00", "12:00", WindowState::Completed),
        ("overran", "10:00", "12:00", WindowState::Overran),
        ("later", "14:00", "15:00", WindowState::Announced),
    ] {
        let incident_id =
            plan_window(&storage, &window_plan(title, &day(starts), &day(ends)), now).await;
        set_state(&storage, incident_id, state).await;
        windows.push(incident_id);
    }
    let [announced, running, _, _, _, later] = windows[..] else {
        unreachable!()
    };
    let mut transaction = storage.begin_write().await.unwrap();
    assert_eq!(
        ids(&transaction.active_maintenance_windows().await.unwrap()),
        [announced, running, later],
        "announced or running, by start"
    );
    for (from, to, expected) in [
        ("09:00", "09:59", vec![]),
        ("09:00", "10:00", vec![announced]),
        ("10:30", "10:45", vec![announced]),
        ("11:59", "12:00", vec![announced, running]),
        ("12:00", "12:30", vec![running]),
        ("13:00", "14:00", vec![later]),
        ("15:00", "16:00", vec![]),
    ] {
        let found = transaction
            .maintenance_windows_in_effect(at(&day(from)), at(&day(to)))
            .await
            .unwrap();
        assert_eq!(ids(&found), expected, "in effect in [{from}, {to}]");
        assert!(
            found
                .iter()
                .all(|window| window.state != WindowState::Planned)
        );
    }
}

async fn alerts_in_a_window_are_added_then_updated_in_order_of_arrival(databases: &Databases) {
    let storage = databases.fresh().await;
    let now = at("2026-12-01T10:00:00Z");
    let incident_id = plan_window(
        &storage,
        &window_plan(
            "Uppgradering",
            "2026-12-01T10:00:00Z",
            "2026-12-01T12:00:00Z",
        ),
        now,
    )
    .await;
    let other = plan_window(
        &storage,
        &window_plan("Annat", "2026-12-01T10:00:00Z", "2026-12-01T12:00:00Z"),
        now,
    )
    .await;
    let alert = |fingerprint: &str, status: AlertStatus, seen: &str| MaintenanceAlert {
        fingerprint: fingerprint.to_owned(),
        starts_at: at("2026-12-01T10:05:00Z"),
        status,
        labels: BTreeMap::from([
            ("alertname".to_owned(), "SamsaDown".to_owned()),
            ("status_seen".to_owned(), seen.to_owned()),
        ])
        .into_iter()
        .collect::<LabelMap>()
        .into(),
        first_seen: at(seen),
        last_seen: at(seen),
    };
    let first = alert("f2", AlertStatus::Firing, "2026-12-01T10:06:00Z");
    let second = alert("f1", AlertStatus::Firing, "2026-12-01T10:07:00Z");
    let mut transaction = storage.begin_write().await.unwrap();
    transaction
        .record_maintenance_alerts(incident_id, &[first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(
        transaction
            .maintenance_alerts_tx(incident_id)
            .await
            .unwrap(),
        [first.clone(), second.clone()]
    );
    transaction.commit().await.unwrap();

    let resolved = alert("f2", AlertStatus::Resolved, "2026-12-01T10:30:00Z");
    let mut transaction = storage.begin_write().await.unwrap();
    transaction
        .record_maintenance_alerts(incident_id, std::slice::from_ref(&resolved))
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    let updated = MaintenanceAlert {
        first_seen: first.first_seen,
        ..resolved
    };
    assert_eq!(
        storage.maintenance_alerts(incident_id).await.unwrap(),
        [updated, second],
        "the first arrival stays; status, labels and last_seen change"
    );
    assert!(storage.maintenance_alerts(other).await.unwrap().is_empty());
}

/// The tables of a SQLite database that migrations made (not sqlx's or SQLite's own).
async fn sqlite_tables(connection: &mut sqlx::SqliteConnection, schema: &str) -> Vec<String> {
    sqlx::query_scalar(&format!(
        "SELECT name FROM {schema}.sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx_%' ORDER BY name"
    ))
    .fetch_all(connection)
    .await
    .unwrap()
}

/// A database from before maintenance (migrated up to 0011) with an outage, a drill, a
/// draft, a publication with its outbox and a subscriber in it is migrated by opening it:
/// the incidents table is rebuilt for the new kind, and everything that pointed at an
/// incident still does.
#[tokio::test]
async fn an_sqlite_database_from_before_maintenance_keeps_its_data_and_foreign_keys() {
    use sqlx::Connection as _;

    let databases = Databases::sqlite();
    let now = at("2026-11-28T05:00:00Z");
    // The data, written by the relay's own code into a current database …
    let (source, source_config) = databases.fresh_with_config().await;
    open_outage(&source, 1, now).await;
    let (drill, draft_id) = drill_with_draft(&source, now).await;
    publish(&source, drill, draft_id, now).await;
    request(&source, "person@example.org", "nonce-1", now).await;
    for (n, status) in ["firing", "resolved"].into_iter().enumerate() {
        let (notification, body) = webhook("{}:{}", status, "2026-11-28T04:00:00Z");
        source
            .store_notification(&notification, &format!("key-{n}"), &body, now)
            .await
            .unwrap();
    }
    let incidents = source.incidents().await.unwrap();
    let drafts = source.drafts(drill).await.unwrap();
    let events = source.incident_events(drill).await.unwrap();
    let outbox = source.outbox(None).await.unwrap();
    let subscribers = source.subscribers().await.unwrap();
    let receipts = source.receipts().await.unwrap();
    assert_eq!(incidents.len(), 2);
    assert!(!outbox.is_empty());
    assert!(!receipts.is_empty());
    source.close().await;
    let samsa_relay::config::DatabaseUrl::Sqlite { path: source_path } = &source_config.url else {
        unreachable!("a SQLite database")
    };

    // … copied into a database migrated only up to 0011 (no table before 0012 changed
    // its columns, so the rows fit as they are).
    let folder = tempfile::tempdir().unwrap();
    let old_path = folder.path().join("old.db");
    let url = format!("sqlite://{}?mode=rwc", old_path.display());
    let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations/sqlite"
    )))
    .await
    .unwrap();
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|migration| migration.version < 12)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    assert_eq!(migrator.migrations.len(), 11);
    migrator.run(&mut connection).await.unwrap();
    let tables = sqlite_tables(&mut connection, "main").await;
    assert!(!tables.contains(&"maintenance_windows".to_owned()));
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::query("ATTACH DATABASE ? AS source")
        .bind(source_path.display().to_string())
        .execute(&mut connection)
        .await
        .unwrap();
    // Receipts are kept in a file of their own since 0013: back then they were in the
    // database.
    sqlx::query("ATTACH DATABASE ? AS source_receipts")
        .bind(
            samsa_relay::storage::sqlite_receipts_path(source_path)
                .display()
                .to_string(),
        )
        .execute(&mut connection)
        .await
        .unwrap();
    // `alerts` is in the old schema only (0014 dropped it: alerts are derived from the
    // receipts), so the current database has no rows for it.
    for table in tables.iter().filter(|table| *table != "alerts") {
        sqlx::query(&format!("DELETE FROM main.{table}"))
            .execute(&mut connection)
            .await
            .unwrap();
        let source_schema = if table == "webhook_receipts" {
            "source_receipts"
        } else {
            "source"
        };
        sqlx::query(&format!(
            "INSERT INTO main.{table} SELECT * FROM {source_schema}.{table}"
        ))
        .execute(&mut connection)
        .await
        .unwrap();
    }
    for schema in ["source", "source_receipts"] {
        sqlx::query(&format!("DETACH DATABASE {schema}"))
            .execute(&mut connection)
            .await
            .unwrap();
    }
    connection.close().await.unwrap();

    let config = crate::common::database_config(samsa_relay::config::DatabaseUrl::Sqlite {
        path: old_path.clone(),
    });
    let storage = Storage::open(&config).await.unwrap();
    assert_eq!(storage.receipts().await.unwrap(), receipts);
    assert_eq!(storage.incidents().await.unwrap(), incidents);
    assert_eq!(storage.drafts(drill).await.unwrap(), drafts);
    assert_eq!(storage.incident_events(drill).await.unwrap(), events);
    assert_eq!(storage.outbox(None).await.unwrap(), outbox);
    assert_eq!(storage.subscribers().await.unwrap(), subscribers);
    // The rules of the rebuilt table: still one open drill, and windows beside it.
    let (summary, classification) = scope();
    let mut transaction = storage.begin_write().await.unwrap();
    assert_eq!(
        transaction
            .insert_drill_incident(&summary, &classification, "Operatör", now)
            .await
            .unwrap(),
        None
    );
    drop(transaction);
    let window = plan_window(
        &storage,
        &window_plan(
            "Uppgradering",
            "2026-12-01T19:00:00Z",
            "2026-12-01T21:00:00Z",
        ),
        now,
    )
    .await;
    assert_eq!(window, drill + 1);
    storage.close().await;

    let mut connection =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", old_path.display()))
            .await
            .unwrap();
    let violations = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut connection)
        .await
        .unwrap();
    assert!(
        violations.is_empty(),
        "{} foreign key violations",
        violations.len()
    );
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    let foreign_keys: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list('drafts')")
            .fetch_all(&mut connection)
            .await
            .unwrap();
    assert_eq!(
        foreign_keys,
        ["incidents"],
        "drafts still point at incidents"
    );
    let tables = sqlite_tables(&mut connection, "main").await;
    assert!(tables.contains(&"maintenance_windows".to_owned()));
    assert!(
        !tables.contains(&"webhook_receipts".to_owned()),
        "the receipts moved to the receipts file"
    );
}
