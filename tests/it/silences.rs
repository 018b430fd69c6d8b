//! The Alertmanager API v2 silences client (`samsa_relay::silences`).
//!
//! Core tier: against a fake Alertmanager served by the test (axum on 127.0.0.1:0) that
//! answers what each test sets and records what it was sent: moving on from a failing
//! peer, 4xx rejected at once with the answer quoted, every peer refusing is transient,
//! the wire field names, idempotent expiry, the filters of the list calls.
//!
//! System tier: the real Debian Alertmanager and amtool: a silence created through the
//! client is listed by `amtool silence query`, silences exactly the alerts its matchers
//! name (escaped regex), expires, and expiring again is fine; with a peered pair, a
//! silence created through a dead first URL and the live second reaches the other peer.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use jiff::{SignedDuration, Timestamp};
use reqwest::Url;
use samsa_relay::silences::{
    Matcher, Secret, SilenceClient, SilenceError, SilenceRequest, SilenceState,
};
use serde_json::{Value, json};

/// What the fake Alertmanager was sent.
#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path_and_query: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Bytes,
}

/// A fake Alertmanager peer: answers every request with one status and body.
struct FakePeer {
    url: Url,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl FakePeer {
    /// Serves on 127.0.0.1:0, under `prefix` as the URL path (say "/alertmanager").
    async fn start(status: StatusCode, body: &str, prefix: &str) -> FakePeer {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let recorded = Arc::clone(&requests);
        let body = body.to_owned();
        let router = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, request_body: Bytes| {
                let recorded = Arc::clone(&recorded);
                let body = body.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|value| value.to_str().ok())
                            .map(str::to_owned)
                    };
                    recorded.lock().unwrap().push(Recorded {
                        method,
                        path_and_query: uri
                            .path_and_query()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        authorization: header("authorization"),
                        content_type: header("content-type"),
                        body: request_body,
                    });
                    (status, [("content-type", "application/json")], body)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("fake Alertmanager");
        });
        FakePeer {
            url: Url::parse(&format!("http://{address}{prefix}")).expect("peer URL"),
            requests,
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// A URL on 127.0.0.1 where nothing listens (a port that was free a moment ago).
fn dead_url() -> Url {
    Url::parse(&format!("http://127.0.0.1:{}", common::free_port())).expect("dead URL")
}

fn client(urls: Vec<Url>, token: Option<&str>) -> SilenceClient {
    SilenceClient::new(urls, Duration::from_secs(5), token.map(Secret::new))
        .expect("silence client")
}

fn request() -> SilenceRequest {
    let starts_at: Timestamp = "2026-05-04T20:00:00Z".parse().expect("start");
    SilenceRequest {
        matchers: vec![
            Matcher::equal("service", "samsa"),
            Matcher::one_of("actor", &["skovde".to_owned(), "kommun-boras".to_owned()]),
        ],
        starts_at,
        ends_at: starts_at + SignedDuration::from_hours(2),
        created_by: "samsa-relay".to_owned(),
        comment: "Planerat underhåll, fönster 7".to_owned(),
    }
}

#[tokio::test]
async fn a_503_from_the_first_peer_moves_on_to_the_second() {
    let first = FakePeer::start(StatusCode::SERVICE_UNAVAILABLE, "upptagen", "").await;
    let second = FakePeer::start(StatusCode::OK, r#"{"silenceID":"id-2"}"#, "").await;
    let client = client(vec![first.url.clone(), second.url.clone()], None);

    let id = client
        .create(&request())
        .await
        .expect("created on the second");

    assert_eq!(id, "id-2");
    assert_eq!(first.requests().len(), 1);
    assert_eq!(second.requests().len(), 1);
}

#[tokio::test]
async fn a_400_is_rejected_at_once_with_the_body_quoted() {
    let answer = format!(
        "Failed to create silence: start time must be before end time{}",
        " och mer".repeat(100)
    );
    let first = FakePeer::start(StatusCode::BAD_REQUEST, &answer, "").await;
    let second = FakePeer::start(StatusCode::OK, r#"{"silenceID":"id-2"}"#, "").await;
    let client = client(vec![first.url.clone(), second.url.clone()], None);

    let error = client.create(&request()).await.expect_err("rejected");

    let SilenceError::Rejected(reason) = &error else {
        panic!("expected Rejected, got {error:?}");
    };
    assert!(
        reason.contains("400") && reason.contains("start time must be before end time"),
        "{reason}"
    );
    // The body is quoted, cut to 200 characters.
    assert!(reason.contains('…') && reason.len() < 400, "{reason}");
    // The same request would be refused everywhere: the second peer is not asked.
    assert!(second.requests().is_empty());
    assert!(
        error
            .to_string()
            .starts_with("Alertmanager avvisade begäran")
    );
}

#[tokio::test]
async fn refused_connections_on_every_peer_are_transient_naming_each_peer() {
    let (first, second) = (dead_url(), dead_url());
    let client = client(vec![first.clone(), second.clone()], None);

    let error = client.create(&request()).await.expect_err("nobody listens");

    let SilenceError::Transient(reasons) = &error else {
        panic!("expected Transient, got {error:?}");
    };
    for url in [&first, &second] {
        assert!(reasons.contains(url.as_str()), "{reasons}");
    }
    assert!(reasons.contains("gick inte att ansluta"), "{reasons}");
}

#[tokio::test]
async fn a_429_and_a_500_on_every_peer_are_transient() {
    let first = FakePeer::start(StatusCode::TOO_MANY_REQUESTS, "", "").await;
    let second = FakePeer::start(StatusCode::INTERNAL_SERVER_ERROR, "trasig", "").await;
    let client = client(vec![first.url.clone(), second.url.clone()], None);

    let error = client
        .silences_created_by("samsa-relay")
        .await
        .expect_err("every peer failed");

    assert!(
        matches!(&error, SilenceError::Transient(reasons) if reasons.contains("429") && reasons.contains("trasig")),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_body_sent_has_alertmanagers_field_names_under_the_path_prefix() {
    let peer = FakePeer::start(StatusCode::OK, r#"{"silenceID":"id-1"}"#, "/alertmanager").await;
    let client = client(vec![peer.url.clone()], Some("hemlig-token-123"));

    client.create(&request()).await.expect("created");

    let requests = peer.requests();
    let [sent] = requests.as_slice() else {
        panic!("expected one request, got {requests:?}");
    };
    assert_eq!(sent.method, Method::POST);
    assert_eq!(sent.path_and_query, "/alertmanager/api/v2/silences");
    assert_eq!(
        sent.authorization.as_deref(),
        Some("Bearer hemlig-token-123")
    );
    assert_eq!(sent.content_type.as_deref(), Some("application/json"));
    let body: Value = serde_json::from_slice(&sent.body).expect("JSON body");
    assert_eq!(
        body,
        json!({
            "matchers": [
                {"name": "service", "value": "samsa", "isRegex": false, "isEqual": true},
                {"name": "actor", "value": r"skovde|kommun\-boras", "isRegex": true, "isEqual": true},
            ],
            "startsAt": "2026-05-04T20:00:00Z",
            "endsAt": "2026-05-04T22:00:00Z",
            "createdBy": "samsa-relay",
            "comment": "Planerat underhåll, fönster 7",
        })
    );
}

#[tokio::test]
async fn expiring_an_unknown_silence_is_done_and_other_failures_are_not() {
    // Alertmanager 0.25 answers 500 "silence not found"; later versions 404.
    let old = FakePeer::start(
        StatusCode::INTERNAL_SERVER_ERROR,
        r#""silence not found""#,
        "",
    )
    .await;
    let new = FakePeer::start(StatusCode::NOT_FOUND, "", "").await;
    let id = "3f1e6a0c-96d3-4196-9cda-521009ce3f0c";
    client(vec![old.url.clone(), new.url.clone()], None)
        .expire(id)
        .await
        .expect("unknown at every peer is done");
    // Unknown at one peer moves on: gossip may not have brought it there yet.
    assert_eq!(new.requests().len(), 1);
    assert_eq!(new.requests()[0].method, Method::DELETE);
    assert_eq!(
        new.requests()[0].path_and_query,
        format!("/api/v2/silence/{id}")
    );

    let expired = FakePeer::start(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!(r#""silence {id} already expired""#),
        "",
    )
    .await;
    client(vec![expired.url.clone(), dead_url()], None)
        .expire(id)
        .await
        .expect("already expired is done");

    let broken = FakePeer::start(StatusCode::INTERNAL_SERVER_ERROR, "disk full", "").await;
    let error = client(vec![broken.url.clone()], None)
        .expire(id)
        .await
        .expect_err("a plain 500 is not done");
    assert!(matches!(error, SilenceError::Transient(_)), "{error:?}");

    let malformed = FakePeer::start(StatusCode::UNPROCESSABLE_ENTITY, "not a uuid", "").await;
    let error = client(vec![malformed.url.clone()], None)
        .expire("x")
        .await
        .expect_err("a 422 is rejected");
    assert!(matches!(error, SilenceError::Rejected(_)), "{error:?}");
}

#[tokio::test]
async fn the_lists_are_filtered_by_creator_and_by_silence() {
    let silences = json!([
        {"id": "a", "status": {"state": "active"}, "createdBy": "samsa-relay", "comment": "fönster 1",
         "startsAt": "2026-05-04T20:00:00Z", "endsAt": "2026-05-04T22:00:00Z",
         "updatedAt": "2026-05-04T20:00:00Z",
         "matchers": [{"name": "service", "value": "samsa", "isRegex": false, "isEqual": true}]},
        {"id": "b", "status": {"state": "expired"}, "createdBy": "someone", "comment": "x",
         "startsAt": "2026-05-04T20:00:00Z", "endsAt": "2026-05-04T22:00:00Z",
         "updatedAt": "2026-05-04T20:00:00Z",
         "matchers": [{"name": "service", "value": "samsa", "isRegex": false}]},
    ]);
    let peer = FakePeer::start(StatusCode::OK, &silences.to_string(), "").await;
    let listed = client(vec![peer.url.clone()], None)
        .silences_created_by("samsa-relay")
        .await
        .expect("listed");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, "a");
    assert_eq!(listed[0].state, SilenceState::Active);
    assert_eq!(listed[0].comment, "fönster 1");
    assert_eq!(listed[0].matchers, vec![Matcher::equal("service", "samsa")]);

    let alert = |actor: &str, silenced_by: &[&str]| {
        json!({
            "labels": {"service": "samsa", "actor": actor},
            "annotations": {},
            "fingerprint": actor,
            "startsAt": "2026-05-04T20:00:00Z",
            "endsAt": "2026-05-04T22:00:00Z",
            "updatedAt": "2026-05-04T20:00:00Z",
            "receivers": [{"name": "discard"}],
            "status": {"state": if silenced_by.is_empty() { "active" } else { "suppressed" },
                       "silencedBy": silenced_by, "inhibitedBy": []},
        })
    };
    let alerts = json!([
        alert("skovde", &["a"]),
        alert("boras", &[]),
        alert("vara", &["b"])
    ]);
    let peer = FakePeer::start(StatusCode::OK, &alerts.to_string(), "").await;
    let silenced = client(vec![peer.url.clone()], None)
        .alerts_silenced_by(&["a".to_owned()])
        .await
        .expect("listed");
    assert_eq!(
        silenced,
        vec![BTreeMap::from([
            ("actor".to_owned(), "skovde".to_owned()),
            ("service".to_owned(), "samsa".to_owned()),
        ])]
    );
    let requests = peer.requests();
    assert!(
        requests[0].path_and_query.starts_with("/api/v2/alerts?")
            && requests[0].path_and_query.contains("silenced=true")
            && requests[0].path_and_query.contains("active=true"),
        "{requests:?}"
    );
}

/// The real Alertmanager and amtool (Debian's prometheus-alertmanager).
#[cfg(feature = "system-tests")]
mod real {
    use super::*;

    use std::collections::BTreeSet;
    use std::path::Path;
    use std::process::Command;

    use common::{
        ChildProcess, PROXY_VARIABLES, debian_binary, eventually, free_port, local_client,
    };

    const STEP: Duration = Duration::from_secs(30);

    /// A running Alertmanager; dropping it kills it by its PID.
    struct Alertmanager {
        url: Url,
        _process: ChildProcess,
    }

    /// Starts an Alertmanager that routes everything to a receiver with no integration;
    /// `cluster`: its own gossip port and its peer's, or `None` for no gossip.
    async fn start_alertmanager(
        folder: &Path,
        name: &str,
        cluster: Option<(u16, u16)>,
    ) -> Alertmanager {
        let binary = debian_binary("prometheus-alertmanager", "prometheus-alertmanager");
        let config_path = folder.join(format!("{name}.yml"));
        std::fs::write(
            &config_path,
            "route:\n  receiver: discard\nreceivers:\n  - name: discard\n",
        )
        .expect("write the Alertmanager config");
        let storage = folder.join(format!("{name}-data"));
        std::fs::create_dir_all(&storage).expect("storage folder");
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        match cluster {
            None => {
                command.arg("--cluster.listen-address=");
            }
            Some((own, peer)) => {
                command
                    .arg(format!("--cluster.listen-address=127.0.0.1:{own}"))
                    .arg(format!("--cluster.peer=127.0.0.1:{peer}"))
                    .arg("--cluster.peer-timeout=2s");
            }
        }
        let mut process = ChildProcess::spawn(name, command, folder.join(format!("{name}.log")));
        let url = Url::parse(&format!("http://127.0.0.1:{port}")).expect("Alertmanager URL");
        process
            .wait_until_answers(&local_client(), &format!("{url}-/ready"), STEP)
            .await;
        Alertmanager {
            url,
            _process: process,
        }
    }

    /// `amtool silence query -o json` (active and pending silences; `--expired` for the
    /// expired ones), parsed.
    fn amtool_silences(alertmanager: &Alertmanager, expired: bool) -> Vec<Value> {
        let amtool = debian_binary("amtool", "prometheus-alertmanager");
        let mut command = Command::new(amtool);
        command
            .arg("silence")
            .arg("query")
            .arg(format!("--alertmanager.url={}", alertmanager.url))
            .arg("-o")
            .arg("json");
        if expired {
            command.arg("--expired");
        }
        for variable in PROXY_VARIABLES {
            command.env_remove(variable);
        }
        let output = command.output().expect("run amtool");
        assert!(
            output.status.success(),
            "amtool silence query failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("amtool prints JSON")
    }

    fn ids(silences: &[Value]) -> BTreeSet<String> {
        silences
            .iter()
            .filter_map(|silence| silence["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Posts one firing alert per actor to Alertmanager's API v2, as Prometheus does.
    async fn post_alerts(alertmanager: &Alertmanager, actors: &[&str]) {
        let alerts: Vec<Value> = actors
            .iter()
            .map(|actor| {
                json!({
                    "labels": {"alertname": "SamsaLoginDown", "service": "samsa", "actor": actor},
                    "startsAt": Timestamp::now().to_string(),
                })
            })
            .collect();
        let response = local_client()
            .post(format!("{}api/v2/alerts", alertmanager.url))
            .json(&alerts)
            .send()
            .await
            .expect("POST /api/v2/alerts");
        assert!(response.status().is_success(), "{}", response.status());
    }

    fn window_request(actors: &[&str]) -> SilenceRequest {
        let now = Timestamp::now();
        SilenceRequest {
            matchers: vec![
                Matcher::equal("service", "samsa"),
                Matcher::one_of(
                    "actor",
                    &actors
                        .iter()
                        .map(|actor| (*actor).to_owned())
                        .collect::<Vec<_>>(),
                ),
            ],
            starts_at: now,
            ends_at: now + SignedDuration::from_hours(1),
            created_by: "samsa-relay".to_owned(),
            comment: "Planerat underhåll, fönster 7".to_owned(),
        }
    }

    #[tokio::test]
    async fn a_silence_lives_and_expires_in_a_real_alertmanager() {
        let folder = tempfile::tempdir().expect("temporary folder");
        let alertmanager = start_alertmanager(folder.path(), "alertmanager", None).await;
        let client = client(vec![alertmanager.url.clone()], None);

        // "a.b" escaped: it must not silence actor "axb".
        let id = client
            .create(&window_request(&["skovde", "falkoping-tidaholm", "a.b"]))
            .await
            .expect("created");

        let listed = amtool_silences(&alertmanager, false);
        let silence = listed
            .iter()
            .find(|silence| silence["id"] == id.as_str())
            .unwrap_or_else(|| panic!("amtool does not list {id}: {listed:?}"));
        assert_eq!(silence["createdBy"], "samsa-relay");
        assert_eq!(silence["comment"], "Planerat underhåll, fönster 7");
        assert_eq!(silence["status"]["state"], "active");
        assert_eq!(
            silence["matchers"][1],
            json!({"name": "actor", "value": r"skovde|falkoping\-tidaholm|a\.b", "isRegex": true, "isEqual": true})
        );
        let ours = client
            .silences_created_by("samsa-relay")
            .await
            .expect("listed");
        assert_eq!(ours.len(), 1);
        assert_eq!(
            (ours[0].id.as_str(), ours[0].state),
            (id.as_str(), SilenceState::Active)
        );
        assert!(
            client
                .silences_created_by("någon annan")
                .await
                .expect("listed")
                .is_empty()
        );

        post_alerts(
            &alertmanager,
            &["skovde", "boras", "falkoping-tidaholm", "axb"],
        )
        .await;
        let silenced_actors = |silenced: Vec<BTreeMap<String, String>>| {
            silenced
                .into_iter()
                .filter_map(|labels| labels.get("actor").cloned())
                .collect::<BTreeSet<String>>()
        };
        let silenced = eventually("the alerts in scope are silenced", STEP, || async {
            let silenced = silenced_actors(
                client
                    .alerts_silenced_by(std::slice::from_ref(&id))
                    .await
                    .ok()?,
            );
            (silenced.len() >= 2).then_some(silenced)
        })
        .await;
        assert_eq!(
            silenced,
            BTreeSet::from(["falkoping-tidaholm".to_owned(), "skovde".to_owned()])
        );
        assert!(
            client
                .alerts_silenced_by(&["some-other-id".to_owned()])
                .await
                .expect("listed")
                .is_empty()
        );

        client.expire(&id).await.expect("expired");
        assert!(!ids(&amtool_silences(&alertmanager, false)).contains(&id));
        assert!(ids(&amtool_silences(&alertmanager, true)).contains(&id));
        let ours = client
            .silences_created_by("samsa-relay")
            .await
            .expect("listed");
        assert_eq!(ours[0].state, SilenceState::Expired);
        assert!(
            client
                .alerts_silenced_by(std::slice::from_ref(&id))
                .await
                .expect("listed")
                .is_empty()
        );

        client.expire(&id).await.expect("expiring again is fine");
        client
            .expire("3f1e6a0c-96d3-4196-9cda-521009ce3f0c")
            .await
            .expect("an unknown silence counts as expired");

        // A request Alertmanager refuses is Rejected, quoting its answer.
        let mut backwards = window_request(&["skovde"]);
        backwards.ends_at = backwards.starts_at - SignedDuration::from_hours(1);
        let error = client
            .create(&backwards)
            .await
            .expect_err("ends before it starts");
        assert!(matches!(error, SilenceError::Rejected(_)), "{error:?}");
    }

    #[tokio::test]
    async fn a_silence_made_past_a_dead_first_url_reaches_the_other_peer() {
        let folder = tempfile::tempdir().expect("temporary folder");
        let (first_port, second_port) = (free_port(), free_port());
        let first = start_alertmanager(
            folder.path(),
            "alertmanager-1",
            Some((first_port, second_port)),
        )
        .await;
        let second = start_alertmanager(
            folder.path(),
            "alertmanager-2",
            Some((second_port, first_port)),
        )
        .await;
        eventually("the Alertmanagers are peered", STEP, || async {
            let status: Value = local_client()
                .get(format!("{}api/v2/status", first.url))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (status["cluster"]["peers"].as_array()?.len() == 2).then_some(())
        })
        .await;

        let client = client(vec![dead_url(), first.url.clone()], None);
        let id = client
            .create(&window_request(&["skovde"]))
            .await
            .expect("created on the live peer");

        let on_second = super::client(vec![second.url.clone()], None);
        eventually("the silence gossips to the other peer", STEP, || async {
            let listed = on_second.silences_created_by("samsa-relay").await.ok()?;
            listed
                .iter()
                .any(|silence| silence.id == id && silence.state == SilenceState::Active)
                .then_some(())
        })
        .await;

        client.expire(&id).await.expect("expired");
        eventually("the expiry gossips to the other peer", STEP, || async {
            let listed = on_second.silences_created_by("samsa-relay").await.ok()?;
            listed
                .iter()
                .any(|silence| silence.id == id && silence.state == SilenceState::Expired)
                .then_some(())
        })
        .await;
    }
}
