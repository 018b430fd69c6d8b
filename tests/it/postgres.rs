//! PostgreSQL shared by several replicas: each test opens two or more [`Storage`] handles
//! (two "replicas", each with its own pool) on one database of a real server and makes
//! them race, then checks what the database holds. The storage contract itself runs on
//! PostgreSQL in `storage.rs`; these are what only a shared server can show.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use samsa_relay::alertmanager::Notification;
use samsa_relay::config::DatabaseConfig;
use samsa_relay::storage::{NewReceipt, OperatorMailWrite, Storage, StorageError};
use sqlx::Connection as _;

use crate::common::{Databases, PostgresServer, database_config};
use crate::storage::{at, drill_with_draft, publication, publish, scope, webhook};

/// `n` handles on one fresh database, opened one after another.
async fn replicas(databases: &Databases, n: usize) -> (Vec<Storage>, DatabaseConfig) {
    let (first, config) = databases.fresh_with_config().await;
    let mut handles = vec![first];
    for _ in 1..n {
        handles.push(Storage::open(&config).await.expect("open a second handle"));
    }
    (handles, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_webhook_sent_to_two_replicas_at_once_is_stored_once() {
    let databases = Databases::postgres().await;
    let (replicas, _) = replicas(&databases, 2).await;
    let now = at("2026-12-03T08:00:00Z");
    let keys: Vec<String> = (0..60).map(|index| format!("key-{index}")).collect();
    // Each replica stores every key, in batches of various sizes and orders, all at once.
    let mut tasks = Vec::new();
    for (number, replica) in replicas.iter().enumerate() {
        for chunk_size in [1, 7] {
            let replica = replica.clone();
            let mut keys = keys.clone();
            if number == 1 {
                keys.reverse();
            }
            tasks.push(tokio::spawn(async move {
                let (notification, body) = webhook("g1", "firing", "2026-12-03T07:59:00Z");
                let mut answers = Vec::new();
                for chunk in keys.chunks(chunk_size) {
                    let batch: Vec<NewReceipt<'_>> = chunk
                        .iter()
                        .map(|key| NewReceipt {
                            notification: &notification,
                            dedupe_key: key,
                            raw_payload: &body,
                            received_at: now,
                        })
                        .collect();
                    let stored = replica.store_notifications(&batch).await.unwrap();
                    answers.extend(chunk.iter().cloned().zip(stored));
                }
                answers
            }));
        }
    }
    let mut new_ids = BTreeSet::new();
    let mut ids_of_key = std::collections::BTreeMap::<String, BTreeSet<i64>>::new();
    for task in tasks {
        for (key, stored) in task.await.unwrap() {
            ids_of_key
                .entry(key.clone())
                .or_default()
                .insert(stored.receipt_id);
            if !stored.duplicate {
                assert!(
                    new_ids.insert(stored.receipt_id),
                    "{key} stored as new twice"
                );
            }
        }
    }
    // Every key was answered as new exactly once, and every answer names the same row.
    assert_eq!(new_ids.len(), keys.len());
    assert!(
        ids_of_key.values().all(|ids| ids.len() == 1),
        "{ids_of_key:?}"
    );
    assert_eq!(replicas[1].receipts().await.unwrap().len(), keys.len());
    assert_eq!(
        replicas[0].n_unprocessed_receipts().await.unwrap(),
        keys.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_hand_one_delivery_to_two_claimers() {
    let databases = Databases::postgres().await;
    let (replicas, _) = replicas(&databases, 2).await;
    let now = at("2026-12-03T08:00:00Z");
    let (incident_id, draft_id) = drill_with_draft(&replicas[0], now).await;
    let mut write = publication(incident_id, draft_id, now);
    write.deliveries = (0..400)
        .map(|index| ("email".to_owned(), format!("r{index}@example.org")))
        .collect();
    let mut transaction = replicas[0].begin_write().await.unwrap();
    transaction
        .insert_publication(&write)
        .await
        .unwrap()
        .unwrap();
    transaction.commit().await.unwrap();
    let mails: Vec<OperatorMailWrite> = (0..200)
        .map(|index| OperatorMailWrite {
            dedupe_key: format!("review:{index}"),
            purpose: "review".to_owned(),
            incident_id: Some(incident_id),
            draft_id: None,
            draft_version: None,
            to_address: format!("op{index}@example.org"),
            subject: "Granska".to_owned(),
            body: "Länk".to_owned(),
        })
        .collect();
    replicas[1]
        .enqueue_operator_mail(&mails, now)
        .await
        .unwrap();

    // Four claimers per replica, each claiming small batches until nothing is left.
    let lease = Duration::from_secs(600);
    let mut tasks = Vec::new();
    for replica in &replicas {
        for _ in 0..4 {
            let replica = replica.clone();
            tasks.push(tokio::spawn(async move {
                let mut deliveries = Vec::new();
                let mut mails = Vec::new();
                for _ in 0..1_000 {
                    let claimed = replica
                        .claim_deliveries("email", 7, now, lease)
                        .await
                        .unwrap();
                    let claimed_mail = replica.claim_operator_mail(5, now, lease).await.unwrap();
                    if claimed.is_empty() && claimed_mail.is_empty() {
                        break;
                    }
                    deliveries.extend(claimed.into_iter().map(|delivery| delivery.outbox_id));
                    mails.extend(claimed_mail.into_iter().map(|mail| mail.mail_id));
                }
                (deliveries, mails)
            }));
        }
    }
    let mut deliveries = Vec::new();
    let mut mails = Vec::new();
    for task in tasks {
        let (claimed, claimed_mail) = task.await.unwrap();
        deliveries.extend(claimed);
        mails.extend(claimed_mail);
    }
    let unique: BTreeSet<i64> = deliveries.iter().copied().collect();
    assert_eq!(unique.len(), deliveries.len(), "a delivery claimed twice");
    assert_eq!(deliveries.len(), 400);
    let unique: BTreeSet<i64> = mails.iter().copied().collect();
    assert_eq!(unique.len(), mails.len(), "an operator mail claimed twice");
    assert_eq!(mails.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_at_once_migrate_once() {
    let databases = Databases::postgres().await;
    let config = databases.fresh_config().await;
    let opens: Vec<_> = (0..5)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { Storage::open(&config).await })
        })
        .collect();
    let mut handles = Vec::new();
    for open in opens {
        handles.push(open.await.unwrap().expect("every replica opens"));
    }
    let first = handles[0].installation_id().await.unwrap();
    for handle in &handles {
        assert_eq!(handle.installation_id().await.unwrap(), first);
    }
    let samsa_relay::config::DatabaseUrl::Postgres(url) = &config.url else {
        panic!("not postgres");
    };
    let mut connection = sqlx::PgConnection::connect(url.url.expose()).await.unwrap();
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut connection)
            .await
            .unwrap();
    // Every migration of the backend, each applied once and successfully.
    let n_migrations =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
            .expect("migrations/postgres")
            .filter(|entry| {
                entry
                    .as_ref()
                    .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "sql"))
            })
            .count() as i64;
    let expected: Vec<(i64, bool)> = (1..=n_migrations).map(|version| (version, true)).collect();
    assert_eq!(applied, expected);
    let installations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM installation")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(installations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_transactions_of_two_replicas_run_one_after_the_other() {
    let databases = Databases::postgres().await;
    let (replicas, _) = replicas(&databases, 2).await;
    let now = at("2026-12-03T08:00:00Z");
    let (summary, classification) = scope();
    let first_committed = Arc::new(AtomicBool::new(false));

    let mut first = replicas[0].begin_write().await.unwrap();
    let drill = first
        .insert_drill_incident(&summary, &classification, "Anna", now)
        .await
        .unwrap();
    assert!(drill.is_some());
    let second = {
        let replica = replicas[1].clone();
        let first_committed = first_committed.clone();
        let (summary, classification) = (summary.clone(), classification.clone());
        tokio::spawn(async move {
            let mut transaction = replica.begin_write().await.unwrap();
            // It may begin only once the first has committed ...
            let began_after_commit = first_committed.load(Ordering::SeqCst);
            // ... and then sees the first's drill and opens none of its own.
            let drill = transaction
                .insert_drill_incident(&summary, &classification, "Bertil", now)
                .await
                .unwrap();
            transaction.commit().await.unwrap();
            (began_after_commit, drill)
        })
    };
    // Give the second every chance to begin too early.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first_committed.store(true, Ordering::SeqCst);
    first.commit().await.unwrap();
    let (began_after_commit, second_drill) = second.await.unwrap();
    assert!(
        began_after_commit,
        "the second write began before the first committed"
    );
    assert_eq!(second_drill, None, "one drill open at a time");

    // Monitoring incidents opened by two replicas at once: one.
    let opens: Vec<_> = replicas
        .iter()
        .map(|replica| {
            let replica = replica.clone();
            let (summary, classification) = (summary.clone(), classification.clone());
            tokio::spawn(async move {
                replica
                    .open_monitoring_incident(now, &summary, &classification, serde_json::json!({}))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut opened = Vec::new();
    for open in opens {
        opened.extend(open.await.unwrap());
    }
    assert_eq!(opened.len(), 1, "{opened:?}");
    let ids: Vec<i64> = replicas[0]
        .incidents()
        .await
        .unwrap()
        .iter()
        .map(|record| record.incident_id)
        .collect();
    assert_eq!(ids, [1, 2], "incidents numbered in order, without gaps");
}

/// Whether every one of the operations failed, each with a transient error.
fn all_transient(results: &[Result<(), StorageError>]) -> bool {
    results
        .iter()
        .all(|result| result.as_ref().is_err_and(StorageError::is_transient))
}

async fn some_operations(storage: &Storage, key: &str) -> Vec<Result<(), StorageError>> {
    let (notification, body): (Notification, String) =
        webhook("g1", "firing", "2026-12-03T07:59:00Z");
    vec![
        storage.check_writable().await,
        storage
            .store_notification(&notification, key, &body, at("2026-12-03T08:00:00Z"))
            .await
            .map(|_| ()),
        storage.begin_write().await.map(|_| ()),
        storage.n_unprocessed_receipts().await.map(|_| ()),
        storage
            .claim_deliveries(
                "email",
                10,
                at("2026-12-03T08:00:00Z"),
                Duration::from_secs(60),
            )
            .await
            .map(|_| ()),
    ]
}

#[tokio::test]
async fn a_stopped_database_fails_transiently_and_the_same_handle_recovers() {
    let mut databases = Databases::postgres().await;
    let config = databases.fresh_config().await;
    let config = DatabaseConfig {
        busy_timeout: Duration::from_secs(1),
        ..database_config(config.url)
    };
    let storage = Storage::open(&config).await.unwrap();
    for result in some_operations(&storage, "before").await {
        result.unwrap();
    }
    let server: &mut PostgresServer = databases.server().expect("a postgres server");
    server.stop();
    assert!(!server.is_running());
    let results = some_operations(&storage, "while-down").await;
    assert!(all_transient(&results), "{results:#?}");

    server.start_again().await;
    // The same handle, not reopened: its pool replaces the connections that died.
    for result in some_operations(&storage, "after").await {
        result.unwrap();
    }
    let keys: Vec<String> = storage
        .receipts()
        .await
        .unwrap()
        .into_iter()
        .map(|receipt| receipt.payload)
        .collect();
    assert_eq!(keys.len(), 2, "stored before and after, nothing while down");
    assert!(databases.server().unwrap().port() > 0);
}

/// A fresh database, migrated by a [`Storage`] opened on it, and a connection of the test's
/// own to it (to fill tables and read plans).
async fn migrated_with_connection(databases: &Databases) -> (Storage, sqlx::PgConnection) {
    let (storage, config) = databases.fresh_with_config().await;
    let samsa_relay::config::DatabaseUrl::Postgres(url) = &config.url else {
        panic!("not postgres");
    };
    let connection = sqlx::PgConnection::connect(url.url.expose()).await.unwrap();
    (storage, connection)
}

/// The read of a batch's alerts finds them by primary key among many: one index lookup
/// per key, never a scan of `incident_alerts` (a hash join over the whole table, say,
/// once the keys' types no longer match the index's). The rows it returns are the keys
/// that exist, and only those.
#[tokio::test]
async fn the_alerts_of_a_batch_are_read_by_primary_key_never_by_a_scan() {
    let databases = Databases::postgres().await;
    let (_storage, mut connection) = migrated_with_connection(&databases).await;
    let fingerprint = |n: i64| format!("{n:016x}");
    let starts_at = |n: i64| format!("2026-12-03T08:00:00.{n:09}Z");
    sqlx::query(
        "INSERT INTO incident_alerts (fingerprint, starts_at, incident_id, status, labels) \
         SELECT lpad(to_hex(n), 16, '0'), '2026-12-03T08:00:00.' || lpad(n::text, 9, '0') || 'Z', \
         NULL, 'resolved', '{}' FROM generate_series(1, 50000) AS n",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    sqlx::query("ANALYZE incident_alerts")
        .execute(&mut connection)
        .await
        .unwrap();
    // 240 keys (a batch of twelve 20-alert webhooks): every other one stored.
    let numbers: Vec<i64> = (0..240).map(|index| 49_000 + index * 2).collect();
    let fingerprints: Vec<String> = numbers.iter().map(|&n| fingerprint(n)).collect();
    let starts: Vec<String> = numbers.iter().map(|&n| starts_at(n)).collect();

    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN {}",
        samsa_relay::storage::postgres_statements::TRACKED_ALERTS
    ))
    .bind(&fingerprints)
    .bind(&starts)
    .fetch_all(&mut connection)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("incident_alerts_pkey") && !plan.contains("Seq Scan on incident_alerts"),
        "{plan}"
    );

    let found: Vec<(String, String)> =
        sqlx::query_as(samsa_relay::storage::postgres_statements::TRACKED_ALERTS)
            .bind(&fingerprints)
            .bind(&starts)
            .fetch_all(&mut connection)
            .await
            .unwrap()
            .into_iter()
            .map(|row: (String, String, Option<i64>, String, String)| (row.0, row.1))
            .collect();
    let expected: BTreeSet<(String, String)> = numbers
        .iter()
        .filter(|&&n| n <= 50_000)
        .map(|&n| (fingerprint(n), starts_at(n)))
        .collect();
    assert_eq!(found.into_iter().collect::<BTreeSet<_>>(), expected);
}

/// Choosing the next receipts reads about as many rows as the batch takes, however many
/// receipts were processed before: with 5,000 processed and 100 waiting, no step of the
/// plan handles more than a few times the 64 asked for. (Merged as a join, the backlog
/// was walked together with every processed receipt, on each batch.)
#[tokio::test]
async fn choosing_the_next_receipts_reads_the_batch_not_the_history() {
    let databases = Databases::postgres().await;
    let (_storage, mut connection) = migrated_with_connection(&databases).await;
    sqlx::query(
        "INSERT INTO webhook_receipts (dedupe_key, received_at, group_key, status, receiver, \
         external_url, n_alerts, truncated_alerts, payload) \
         SELECT 'key-' || n, '2026-12-03T08:00:00Z', '{}', 'firing', 'relay', 'http://am', 20, 0, '{}' \
         FROM generate_series(1, 5100) AS n",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO receipts_backlog (receipt_id) SELECT id FROM webhook_receipts WHERE id > 5000",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO receipts_processed (receipt_id, processed_at) \
         SELECT id, '2026-12-03T08:00:01Z' FROM webhook_receipts WHERE id <= 5000",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    sqlx::query("ANALYZE")
        .execute(&mut connection)
        .await
        .unwrap();

    let plan: serde_json::Value = sqlx::query_scalar(&format!(
        "EXPLAIN (ANALYZE, FORMAT JSON) {}",
        samsa_relay::storage::postgres_statements::NEXT_RECEIPTS
    ))
    .bind(64_i64)
    .bind(512_i64)
    .fetch_one(&mut connection)
    .await
    .unwrap();
    fn most_rows(node: &serde_json::Value) -> f64 {
        let own = node["Actual Rows"].as_f64().unwrap_or(0.0)
            * node["Actual Loops"].as_f64().unwrap_or(1.0);
        node["Plans"]
            .as_array()
            .into_iter()
            .flatten()
            .map(most_rows)
            .fold(own, f64::max)
    }
    let most = most_rows(&plan[0]["Plan"]);
    assert!(
        most <= 256.0,
        "a step of the plan read {most} rows: {plan:#}"
    );

    // And it takes what the budget allows, oldest first: 25 receipts of 20 alerts.
    let ids: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM ({}) AS next ORDER BY id",
        samsa_relay::storage::postgres_statements::NEXT_RECEIPTS
    ))
    .bind(64_i64)
    .bind(512_i64)
    .fetch_all(&mut connection)
    .await
    .unwrap();
    assert_eq!(ids, (5001..=5025).collect::<Vec<i64>>());
}

/// The reads of the outbox that run every few seconds (the operators' failed deliveries,
/// the pending deliveries per channel) go through their partial indexes, never through
/// every delivery ever made, and still find what they look for.
#[tokio::test]
async fn the_periodic_reads_of_the_outbox_use_their_partial_indexes() {
    use samsa_relay::storage::postgres_statements::{FAILED_DELIVERIES, OUTBOX_BACKLOG};

    let databases = Databases::postgres().await;
    let (storage, mut connection) = migrated_with_connection(&databases).await;
    let now = at("2026-12-04T08:00:00Z");
    let (incident_id, draft_id) = drill_with_draft(&storage, now).await;
    let notice_id = publish(&storage, incident_id, draft_id, now).await;
    // 50,000 deliveries made long ago, two of which failed for good.
    sqlx::query(
        "INSERT INTO outbox (notice_id, channel, recipient, delivery_id, state, attempts, \
         next_attempt_at, created_at, sent_at) \
         SELECT $1, 'email', 'r' || n || '@example.se', 'old-' || n, \
         CASE WHEN n IN (7, 49000) THEN 'failed' ELSE 'sent' END, 1, \
         '2026-01-01T00:00:00.000000000Z', '2026-01-01T00:00:00.000000000Z', \
         '2026-01-01T00:00:01.000000000Z' FROM generate_series(1, 50000) AS n",
    )
    .bind(notice_id)
    .execute(&mut connection)
    .await
    .unwrap();
    sqlx::query("ANALYZE outbox")
        .execute(&mut connection)
        .await
        .unwrap();
    for (sql, index) in [
        (FAILED_DELIVERIES, "outbox_failed_operators"),
        (OUTBOX_BACKLOG, "outbox_pending"),
    ] {
        let explain = format!("EXPLAIN {sql}");
        let mut query = sqlx::query_scalar::<_, String>(&explain);
        if sql.contains("$1") {
            query = query.bind(50_i64);
        }
        let plan = query.fetch_all(&mut connection).await.unwrap().join("\n");
        assert!(
            plan.contains(index) && !plan.contains("Seq Scan on outbox"),
            "{sql}:\n{plan}"
        );
    }
    // What the publication left waiting (two emails, the banner) and the two failures.
    let failed: Vec<String> = storage
        .failed_deliveries(50)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, _, _, recipient, _)| recipient)
        .collect();
    assert_eq!(failed, ["r49000@example.se", "r7@example.se"]);
    let mut backlog: Vec<(String, i64)> = storage
        .outbox_backlog()
        .await
        .unwrap()
        .into_iter()
        .map(|(channel, waiting, _)| (channel, waiting))
        .collect();
    backlog.sort();
    assert_eq!(backlog, [("banner".to_owned(), 1), ("email".to_owned(), 2)]);
}
