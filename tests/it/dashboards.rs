//! The Grafana dashboards in `dashboards/`: their structure (current schema, the
//! `datasource` and `instance` variables, one data source everywhere, a layout without
//! overlaps), and every panel's query run through a real Prometheus (the Debian package
//! `prometheus`) that scrapes a relay after a scripted incident.
//!
//! The incident: refused webhooks, three actors down (and a resend), the initial notice
//! published on five channels (banner, feed, email to a mail folder, a webhook that answers
//! 400 and one that answers 503 once), the alerts resolved and the resolution published
//! through the operator's review page. Prometheus scrapes the relay every second, and a
//! fake blackbox exporter served by the test answers the probe jobs, so the availability
//! dashboard has data as well. Each query must parse, and must return at least one series
//! unless [`NO_DATA_EXPECTED`] says why the scenario cannot produce one.

use crate::common;

use std::collections::BTreeSet;

use common::{dashboard_panels, dashboard_variables};
use serde_json::{Value, json};

// The query test against a real Prometheus (system tier).
#[cfg(feature = "system-tests")]
use {
    axum::extract::{Query, State},
    axum::http::StatusCode,
    axum::response::IntoResponse,
    common::{Prometheus, TestApp},
    jiff::{SignedDuration, Timestamp},
    samsa_relay::notice::NoticeKind,
    std::collections::BTreeMap,
    std::sync::Arc,
    std::sync::atomic::{AtomicUsize, Ordering},
    std::time::{Duration, Instant},
};

const DASHBOARDS: [&str; 2] = ["samsa-relay", "samsa-availability"];

/// What every panel and query names as its data source: the `datasource` variable.
fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// Queries that return no series after the scripted incident, as (dashboard uid, panel
/// title, refId), each with the reason.
#[cfg(feature = "system-tests")]
const NO_DATA_EXPECTED: &[(&str, &str, &str)] = &[
    // samsa_relay_storage_errors_total has a series per operation only after that
    // operation's first failure, and the scenario's storage never fails.
    ("samsa-relay", "Ingest errors", "B"),
    // samsa_relay_deliveries_reclaimed_total has a series per channel only after a
    // replica took over a delivery another left unfinished; the scenario runs one relay
    // that is never killed.
    ("samsa-relay", "Deliveries reclaimed", "A"),
];

/// How long the queries together may take to show the scenario's series.
#[cfg(feature = "system-tests")]
const QUERY_DEADLINE: Duration = Duration::from_secs(30);
#[cfg(feature = "system-tests")]
const STEP_DEADLINE: Duration = Duration::from_secs(20);

#[cfg(feature = "system-tests")]
const OPERATOR_EMAIL: &str = "anna@example.org";

/// The probed actors of the fake exporter (ids from deploy/inventory.toml) and whether
/// their login page is up.
#[cfg(feature = "system-tests")]
const PROBED_ACTORS: &[(&str, &str, bool)] = &[
    ("kommun-trollhattan", "fyrbodal", true),
    ("kommun-uddevalla", "fyrbodal", false),
    ("kommun-goteborg", "goteborg", true),
    ("sjukhus-sahlgrenska", "goteborg", true),
    ("kommun-skovde", "skaraborg", true),
    ("kommun-boras", "sodra-alvsborg", true),
];

/// The actors the scripted incident reports down.
#[cfg(feature = "system-tests")]
const INCIDENT_ACTORS: &[(&str, &str)] = &[
    ("kommun-trollhattan", "fyrbodal"),
    ("kommun-goteborg", "goteborg"),
    ("kommun-skovde", "skaraborg"),
];

// ---------------------------------------------------------------------------------------
// Structure
// ---------------------------------------------------------------------------------------

#[test]
fn dashboards_are_current_grafana_json_with_a_datasource_and_an_instance_variable() {
    for name in DASHBOARDS {
        let dashboard = common::load_dashboard(name);
        let at = |what: &str| format!("dashboards/{name}.json: {what}");
        assert!(dashboard.get("__inputs").is_none(), "{}", at("no __inputs"));
        assert!(dashboard["id"].is_null(), "{}", at("id is null"));
        assert_eq!(dashboard["uid"], name, "{}", at("uid is the file name"));
        assert!(
            !dashboard["title"].as_str().unwrap_or_default().is_empty(),
            "{}",
            at("a title")
        );
        let schema = dashboard["schemaVersion"].as_u64().unwrap_or_default();
        assert!(
            schema >= 39,
            "{}",
            at(&format!("schemaVersion {schema} < 39"))
        );
        assert!(
            dashboard["time"]["from"].is_string(),
            "{}",
            at("a time range")
        );

        let variables = dashboard["templating"]["list"]
            .as_array()
            .expect("variables");
        let variable = |wanted: &str| {
            variables
                .iter()
                .find(|variable| variable["name"] == wanted)
                .unwrap_or_else(|| panic!("{}", at(&format!("no {wanted} variable"))))
        };
        let datasource_variable = variable("datasource");
        assert_eq!(
            datasource_variable["type"],
            "datasource",
            "{}",
            at("datasource")
        );
        assert_eq!(
            datasource_variable["query"],
            "prometheus",
            "{}",
            at("datasource")
        );
        let instance = variable("instance");
        assert_eq!(instance["type"], "query", "{}", at("instance"));
        assert_eq!(instance["datasource"], datasource(), "{}", at("instance"));
        assert_eq!(
            instance["definition"],
            "label_values(samsa_relay_build_info, instance)",
            "{}",
            at("instance")
        );
        assert_eq!(
            instance["query"]["query"],
            instance["definition"],
            "{}",
            at("instance")
        );
        assert_eq!(instance["includeAll"], true, "{}", at("instance"));
        assert_eq!(instance["multi"], true, "{}", at("instance"));
        assert_eq!(instance["allValue"], ".*", "{}", at("instance"));
        for variable in variables
            .iter()
            .filter(|variable| variable["type"] == "query")
        {
            assert_eq!(
                variable["datasource"],
                datasource(),
                "{}",
                at("query variable")
            );
            assert!(
                common::label_values_call(variable["definition"].as_str().unwrap_or_default())
                    .is_some(),
                "{}",
                at(&format!(
                    "{} is label_values(selector, label)",
                    variable["name"]
                ))
            );
        }
        let names = dashboard_variables(&dashboard);

        let panels = dashboard_panels(&dashboard);
        assert!(panels.len() > 5, "{}", at("panels"));
        let mut ids = BTreeSet::new();
        let mut areas = Vec::new();
        for panel in &panels {
            let title = panel["title"].as_str().unwrap_or_default();
            let at = |what: &str| at(&format!("panel {title:?}: {what}"));
            assert!(!title.is_empty(), "{}", at("a title"));
            let id = panel["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{}", at("an id")));
            assert!(ids.insert(id), "{}", at(&format!("id {id} is used twice")));
            let grid = &panel["gridPos"];
            let [h, w, x, y] = ["h", "w", "x", "y"].map(|key| {
                grid[key]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{}", at(&format!("gridPos.{key}"))))
            });
            assert!(
                h >= 1 && (1..=24).contains(&w) && x + w <= 24,
                "{}",
                at("gridPos fits")
            );
            areas.push((title.to_owned(), x, y, w, h));
            let kind = panel["type"].as_str().unwrap_or_default();
            if kind == "row" {
                continue;
            }
            assert!(
                [
                    "timeseries",
                    "stat",
                    "gauge",
                    "bargauge",
                    "table",
                    "state-timeline"
                ]
                .contains(&kind),
                "{}",
                at(&format!("a current panel type, not {kind:?}"))
            );
            assert_eq!(panel["datasource"], datasource(), "{}", at("datasource"));
            assert!(
                !panel["description"].as_str().unwrap_or_default().is_empty(),
                "{}",
                at("a description")
            );
            assert!(
                !panel["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty(),
                "{}",
                at("a unit")
            );
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{}", at("at least one query"));
            let mut ref_ids = BTreeSet::new();
            for target in targets {
                assert_eq!(
                    target["datasource"],
                    datasource(),
                    "{}",
                    at("query datasource")
                );
                let ref_id = target["refId"].as_str().unwrap_or_default();
                assert!(ref_ids.insert(ref_id), "{}", at("unique refIds"));
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(!expr.is_empty(), "{}", at("an expression"));
                let problems = selector_problems(expr, &names);
                assert!(
                    problems.is_empty(),
                    "{}",
                    at(&format!("{expr}: {}", problems.join("; ")))
                );
            }
        }
        for (index, first) in areas.iter().enumerate() {
            for second in &areas[index + 1..] {
                let overlap = first.1 < second.1 + second.3
                    && second.1 < first.1 + first.3
                    && first.2 < second.2 + second.4
                    && second.2 < first.2 + first.4;
                assert!(
                    !overlap,
                    "{}",
                    at(&format!("panels {:?} and {:?} overlap", first.0, second.0))
                );
            }
        }
    }
}

/// What is wrong with the selectors of one expression: a relay metric without the instance
/// variable, a process or `up` series not narrowed to the relay's job, or a variable the
/// dashboard does not define.
fn selector_problems(expr: &str, variables: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for (metric, matchers) in selectors(expr) {
        let relay_metric = metric.starts_with("samsa_relay_");
        let relay_process = metric.starts_with("process_") || metric == "up";
        if (relay_metric || relay_process) && !matchers.contains("instance=~\"$instance\"") {
            problems.push(format!("{metric} without instance=~\"$instance\""));
        }
        if relay_process && !matchers.contains("job=\"samsa-relay\"") {
            problems.push(format!("{metric} without job=\"samsa-relay\""));
        }
    }
    let mut rest = expr;
    while let Some(dollar) = rest.find('$') {
        rest = &rest[dollar + 1..];
        let name: String = rest
            .trim_start_matches('{')
            .chars()
            .take_while(|character| character.is_ascii_alphanumeric() || *character == '_')
            .collect();
        if !name.starts_with("__") && !variables.contains(&name) {
            problems.push(format!("${name} is not a variable of the dashboard"));
        }
    }
    problems
}

/// Each metric name in `expr` that is followed by a `{…}` selector, with the selector's
/// text (empty when there is none). Label values in quotes are skipped.
fn selectors(expr: &str) -> Vec<(String, String)> {
    let characters: Vec<char> = expr.chars().collect();
    let mut found = Vec::new();
    let mut index = 0;
    while index < characters.len() {
        let character = characters[index];
        if character == '"' {
            index += 1;
            while index < characters.len() && characters[index] != '"' {
                index += 1;
            }
            index += 1;
            continue;
        }
        if character.is_ascii_alphabetic() || character == '_' {
            let start = index;
            while index < characters.len()
                && (characters[index].is_ascii_alphanumeric()
                    || characters[index] == '_'
                    || characters[index] == ':')
            {
                index += 1;
            }
            let name: String = characters[start..index].iter().collect();
            let is_metric = name.starts_with("samsa_relay_")
                || name.starts_with("process_")
                || name.starts_with("probe_")
                || name == "up";
            if is_metric {
                let mut matchers = String::new();
                if characters.get(index) == Some(&'{') {
                    let mut in_quotes = false;
                    for &next in &characters[index..] {
                        matchers.push(next);
                        if next == '"' {
                            in_quotes = !in_quotes;
                        }
                        if next == '}' && !in_quotes {
                            break;
                        }
                    }
                    index += matchers.chars().count();
                }
                found.push((name, matchers));
            }
            continue;
        }
        index += 1;
    }
    found
}

// ---------------------------------------------------------------------------------------
// Every query against a real Prometheus
// ---------------------------------------------------------------------------------------

#[cfg(feature = "system-tests")]
#[tokio::test]
async fn every_panel_query_parses_and_returns_series_after_a_scripted_incident() {
    let started = Instant::now();
    let peers = Peers::start().await;
    let app = common::spawn_app_with_tables(&relay_tables(&peers.address)).await;
    let relay_target = app.address.trim_start_matches("http://").to_owned();
    let prometheus =
        Prometheus::start(&prometheus_config(&relay_target, &peers.address), &[], &[]).await;
    prometheus
        .wait_for_value(
            &format!("up{{job=\"samsa-relay\", instance=\"{relay_target}\"}} == 1"),
            STEP_DEADLINE,
        )
        .await;

    scripted_incident(&app, &peers).await;
    eprintln!("the scripted incident took {:?}", started.elapsed());

    // The last things the scenario changes are scraped before any query is judged.
    prometheus
        .wait_for_value(
            "samsa_relay_notices_published_total{kind=\"resolved\"} == 1",
            STEP_DEADLINE,
        )
        .await;

    let deadline = Instant::now() + QUERY_DEADLINE;
    let mut failures = Vec::new();
    let mut n_queries = 0;
    for name in DASHBOARDS {
        let (n, found) = common::dashboard_query_failures(
            &prometheus,
            name,
            NO_DATA_EXPECTED,
            &relay_target,
            deadline,
        )
        .await;
        n_queries += n;
        failures.extend(found);
    }
    assert!(
        failures.is_empty(),
        "{} dashboard queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The scenario's alerts started 3 minutes before the first notice was published.
    let relay = common::load_dashboard("samsa-relay");
    let average = common::dashboard_queries(&relay)
        .into_iter()
        .find(|query| {
            query.panel_title == "Time from first alert to published notice" && query.ref_id == "A"
        })
        .expect("the average time to the first notice");
    let expr = common::expand_dashboard_variables(&average.expr, &dashboard_variables(&relay));
    let seconds = prometheus.wait_for_value(&expr, STEP_DEADLINE).await;
    assert!(
        (170.0..300.0).contains(&seconds),
        "{expr} gave {seconds} s, not about 3 minutes"
    );
    eprintln!(
        "{n_queries} dashboard queries checked; the whole test took {:?}",
        started.elapsed()
    );
    drop(prometheus);
    app.stop().await;
}

/// Refused webhooks, an outage of three actors and a resend, the initial notice published
/// on every channel with one permanent and one transient webhook failure, then the
/// resolution published through the review page.
#[cfg(feature = "system-tests")]
async fn scripted_incident(app: &TestApp, peers: &Peers) {
    let refused = app
        .client
        .post(format!("{}/webhook/alertmanager", app.address))
        .bearer_auth("not-the-relay-token-0123456789")
        .body("{}")
        .send()
        .await
        .expect("request sent");
    assert_eq!(refused.status(), 401);
    assert_eq!(app.post_webhook("not json").await.status(), 400);

    let started_at = Timestamp::now() - SignedDuration::from_mins(3);
    let firing = incident_payload("firing", started_at, None);
    for _ in 0..2 {
        assert_eq!(app.post_webhook(firing.to_string()).await.status(), 200);
    }
    let publication = common::publish_pending(
        app,
        1,
        NoticeKind::Initial,
        &["banner", "website", "email", "cms", "itnytt"],
    )
    .await;
    assert_eq!(
        publication.n_deliveries, 7,
        "banner, feed, 3 emails, 2 webhooks"
    );
    let outbox = wait_until_settled(app, 7).await;
    let state_of = |channel: &str| -> Vec<&str> {
        outbox
            .iter()
            .filter(|row| row.channel == channel)
            .map(|row| row.state.as_str())
            .collect()
    };
    assert_eq!(state_of("cms"), ["failed"], "the CMS answers 400");
    assert_eq!(
        state_of("itnytt"),
        ["sent"],
        "IT-Nytt is retried after its 503"
    );
    assert_eq!(state_of("email"), ["sent"; 3]);
    assert!(peers.itnytt_requests.load(Ordering::SeqCst) >= 2);

    let resolved = incident_payload("resolved", started_at, Some(Timestamp::now()));
    assert_eq!(app.post_webhook(resolved.to_string()).await.status(), 200);
    let (draft_id, version, _) = common::pending_draft(app, 1, NoticeKind::Resolved).await;
    let link = common::review_link(app, OPERATOR_EMAIL, draft_id, version);
    let (status, page) = common::publish_through_review_page(app, &link, &[]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<h1>Publicerat</h1>"), "{page}");
    let n_resolution_deliveries = app
        .state
        .storage
        .outbox(Some(1))
        .await
        .expect("outbox")
        .len();
    wait_until_settled(app, n_resolution_deliveries).await;
}

/// Waits until `n_rows` outbox rows exist and none is pending; returns them.
#[cfg(feature = "system-tests")]
async fn wait_until_settled(
    app: &TestApp,
    n_rows: usize,
) -> Vec<samsa_relay::storage::OutboxRecord> {
    common::eventually("every delivery settled", STEP_DEADLINE, || async {
        let outbox = app.state.storage.outbox(None).await.ok()?;
        (outbox.len() >= n_rows && outbox.iter().all(|row| row.state != "pending"))
            .then_some(outbox)
    })
    .await
}

/// A webhook about the incident's actors, firing or resolved.
#[cfg(feature = "system-tests")]
fn incident_payload(status: &str, started_at: Timestamp, ends_at: Option<Timestamp>) -> Value {
    let alerts = INCIDENT_ACTORS
        .iter()
        .map(|(actor, subregion)| {
            json!({
                "status": status,
                "labels": {
                    "alertname": "SamsaLoginDown",
                    "service": "samsa",
                    "severity": "warning",
                    "actor": actor,
                    "subregion": subregion,
                },
                "annotations": {"summary": format!("SAMSA:s inloggning svarar inte för {actor}")},
                "startsAt": started_at.to_string(),
                "endsAt": ends_at.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), |at| at.to_string()),
                "generatorURL": "http://prometheus.invalid/graph",
                "fingerprint": format!("fp-{actor}"),
            })
        })
        .collect();
    common::payload(status, alerts)
}

/// The relay's operator, channels and plan: everything a publication can reach.
#[cfg(feature = "system-tests")]
fn relay_tables(peers: &str) -> String {
    format!(
        r#"
[[operators]]
name = "Anna Andersson"
email = "{OPERATOR_EMAIL}"
groups = ["on-duty"]

[channels.banner]
content = "banner"
transport = "banner"

[channels.website]
content = "website"
transport = "feed"

[channels.email]
content = "email"
transport = "email"
recipients = ["support@example.org", "it-lista@example.org", "samordnare@example.org"]
# Low enough that three recipients wait for it, so the rate-limit panel has data.
rate_limit_per_minute = 600

[channels.cms]
content = "newsletter"
transport = "webhook"
url = "{peers}/cms"
timeout = "5s"

[channels.itnytt]
content = "itnytt"
transport = "webhook"
url = "{peers}/itnytt"
timeout = "5s"

[plan]
level_1 = ["banner", "website", "email", "cms", "itnytt"]
level_2 = ["banner", "website", "email", "cms", "itnytt"]
level_3 = ["banner", "website", "email", "cms", "itnytt"]
"#
    )
}

/// Prometheus scraping the relay every second, and the probe jobs of
/// deploy/prometheus/prometheus.yml pointed at the test's fake exporter. The probed URLs
/// are only labels (the address is rewritten to the exporter), under `.invalid`, which
/// never resolves.
#[cfg(feature = "system-tests")]
fn prometheus_config(relay_target: &str, peers: &str) -> String {
    let exporter = peers.trim_start_matches("http://");
    let mut login_targets = String::new();
    for (actor, subregion, _) in PROBED_ACTORS {
        login_targets.push_str(&format!(
            "      - targets: [\"https://samsa.invalid/login/{actor}\"]\n        labels:\n          actor: {actor}\n          subregion: {subregion}\n"
        ));
    }
    format!(
        r#"
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: samsa-relay
    metrics_path: /metrics
    static_configs:
      - targets: ["{relay_target}"]
  - job_name: samsa-login
    metrics_path: /probe
    params:
      module: [samsa_login]
    static_configs:
{login_targets}    relabel_configs: &blackbox_relabelling
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: "{exporter}"
  - job_name: samsa-central
    metrics_path: /probe
    params:
      module: [samsa_login]
    static_configs:
      - targets: ["https://samsa.invalid/"]
    relabel_configs: *blackbox_relabelling
"#
    )
}

// ---------------------------------------------------------------------------------------
// The test's peers: webhook receivers and a fake blackbox exporter
// ---------------------------------------------------------------------------------------

/// One local HTTP server: `POST /cms` answers 400 (a permanent failure), `POST /itnytt`
/// answers 503 with `Retry-After: 1` once and then 200, and `GET /probe` answers like the
/// blackbox exporter for [`PROBED_ACTORS`] and the central page.
#[cfg(feature = "system-tests")]
struct Peers {
    address: String,
    itnytt_requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "system-tests")]
impl Peers {
    async fn start() -> Peers {
        let itnytt_requests = Arc::new(AtomicUsize::new(0));
        let router = axum::Router::new()
            .route(
                "/cms",
                axum::routing::post(|| async { (StatusCode::BAD_REQUEST, "okänd webbplats") }),
            )
            .route(
                "/itnytt",
                axum::routing::post(|State(requests): State<Arc<AtomicUsize>>| async move {
                    if requests.fetch_add(1, Ordering::SeqCst) == 0 {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "1")],
                            "underhåll",
                        )
                            .into_response()
                    } else {
                        (StatusCode::OK, "ok").into_response()
                    }
                }),
            )
            .route("/probe", axum::routing::get(probe))
            .with_state(itnytt_requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the peers' port");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the peers serve");
        });
        Peers {
            address,
            itnytt_requests,
            task,
        }
    }
}

#[cfg(feature = "system-tests")]
impl Drop for Peers {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The blackbox exporter's answer for one target: the series the availability dashboard
/// reads, in Prometheus' text format.
#[cfg(feature = "system-tests")]
async fn probe(Query(parameters): Query<BTreeMap<String, String>>) -> impl IntoResponse {
    let target = parameters.get("target").cloned().unwrap_or_default();
    let up = PROBED_ACTORS
        .iter()
        .find(|(actor, _, _)| target.ends_with(&format!("/login/{actor}")))
        .is_none_or(|(_, _, up)| *up);
    let certificate_expiry = Timestamp::now().as_second() + 60 * 24 * 3600;
    let body = format!(
        "# HELP probe_success Displays whether or not the probe was a success\n\
         # TYPE probe_success gauge\n\
         probe_success {success}\n\
         # HELP probe_duration_seconds Returns how long the probe took to complete in seconds\n\
         # TYPE probe_duration_seconds gauge\n\
         probe_duration_seconds {duration}\n\
         # HELP probe_http_status_code Response HTTP status code\n\
         # TYPE probe_http_status_code gauge\n\
         probe_http_status_code {status}\n\
         # HELP probe_ssl_earliest_cert_expiry Returns last SSL chain expiry in unixtime\n\
         # TYPE probe_ssl_earliest_cert_expiry gauge\n\
         probe_ssl_earliest_cert_expiry {certificate_expiry}\n",
        success = u8::from(up),
        duration = if up { 0.12 } else { 0.04 },
        status = if up { 200 } else { 503 },
    );
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}
