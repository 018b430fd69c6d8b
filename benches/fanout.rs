//! One notice to many recipients through a real local SMTP server, run by scripts/bench.sh.
//!
//! Usage: fanout --smtp 127.0.0.1:PORT [--recipients 1000] [--subscribers 0] [--timeout 120]
//!
//! With `--subscribers N` the notice goes to N confirmed subscribers with mixed choices
//! (all disruptions; Borås among other organisations; the whole of Södra Älvsborg; at
//! levels 1 or from 1) through a `subscribers` channel instead of an email channel's
//! list, so the publication also finds them (`subscription::targets`) in its
//! transaction; every one of them is concerned by the outage in Borås.
//!
//! Runs the whole relay in this process (release code, the same `App` the binary runs,
//! with a throwaway database and the shipped SMTP defaults: a pool of 4 connections,
//! channel concurrency 8, no rate limit, STARTTLS off for a server on this host). It posts
//! one firing webhook over HTTP, waits for the draft, publishes it the way the operator's
//! Publish button does (`Publisher::publish`), and measures until every outbox row has left
//! "pending". Prints `key=value` lines.

mod common;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{Args, millis};
use samsa_relay::app::App;
use samsa_relay::classify::Level;
use samsa_relay::config::Config;
use samsa_relay::publishing::PublishRequest;

const TOKEN: &str = "bench-webhook-token-0123456789";

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(problem) => {
            eprintln!("fanout: {problem}");
            return ExitCode::from(2);
        }
    };
    if args.string("smtp").is_err() {
        println!("fanout: {}", common::USAGE_HINT);
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("fanout: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let smtp = args.string("smtp")?;
    let smtp_address: std::net::SocketAddr = smtp
        .parse()
        .map_err(|_| format!("--smtp {smtp:?}: expected IP:PORT"))?;
    if !smtp_address.ip().is_loopback() {
        return Err("--smtp must be a loopback address".to_owned());
    }
    let n_subscribers: usize = args.number("subscribers", 0)?;
    let n_recipients: usize = if n_subscribers > 0 {
        n_subscribers
    } else {
        args.number("recipients", 1000)?
    };
    let timeout = args.seconds("timeout", 120.0)?;
    let folder = tempfile::tempdir().map_err(|e| e.to_string())?;
    let recipients = folder.path().join("kontakter.txt");
    let list: String = (0..n_recipients)
        .map(|index| format!("it-support-{index:04}@kommun-{index:04}.example\n"))
        .collect();
    std::fs::write(&recipients, list).map_err(|e| e.to_string())?;
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:9095"

[database]
url = "sqlite://{database}"

[webhook]
token = "{TOKEN}"

[smtp]
url = "smtp://{smtp_address}"
from = "SAMSA förvaltning <noreply.samsa@samsa.example>"
starttls = "none"

[links]
secret = "bench-link-secret-0123456789-0123456789"

[logging]
level = "{log_level}"

{channel}

[plan]
level_1 = ["{channel_name}"]
level_2 = ["{channel_name}"]
level_3 = ["{channel_name}"]
"#,
        database = folder.path().join("relay.db").display(),
        log_level = args.string_or("log-level", "info"),
        channel = if n_subscribers > 0 {
            "[channels.newsletter]\ncontent = \"newsletter\"\ntransport = \"subscribers\""
                .to_owned()
        } else {
            format!(
                "[channels.email]\ncontent = \"email\"\ntransport = \"email\"\nrecipients_file = \"{}\"",
                recipients.display()
            )
        },
        channel_name = if n_subscribers > 0 {
            "newsletter"
        } else {
            "email"
        },
    );
    let config = Config::from_toml(&text, &BTreeMap::new()).map_err(|e| e.to_string())?;
    samsa_relay::telemetry::init(&config.logging);
    let app = App::build(config)
        .await
        .map_err(|e| format!("the app does not build: {e:#}"))?;
    let url = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));

    let channel = if n_subscribers > 0 {
        "newsletter"
    } else {
        "email"
    };
    if n_subscribers > 0 {
        import_subscribers(&state, n_subscribers).await?;
    }
    let result = tokio::time::timeout(timeout, async {
        // One actor down: a level 1 incident with one pending initial draft.
        let actor = if n_subscribers > 0 {
            "kommun-boras"
        } else {
            "kommun-uddevalla"
        };
        let body = common::payload_with(1, 0, 1, |_| actor.to_owned());
        let (status, answer) = post(&url, &body).await?;
        if status != 200 {
            return Err(format!("the webhook answered {status}: {answer}"));
        }
        let (incident_id, draft_id, version) = loop {
            if let Some(found) = pending_draft(&state).await? {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let started = Instant::now();
        let publication = state
            .publisher
            .publish(&PublishRequest {
                draft_id,
                draft_version: version,
                level: Level::One,
                channels: vec![channel.to_owned()],
                decision: None,
                operator: "bench@samsa.example".to_owned(),
            })
            .await
            .map_err(|e| format!("publish refused: {e}"))?;
        let committed = started.elapsed();
        let (sent, failed) = loop {
            let outbox = state
                .storage
                .outbox(Some(incident_id))
                .await
                .map_err(|e| e.to_string())?;
            if outbox.len() >= n_recipients && outbox.iter().all(|row| row.state != "pending") {
                let sent = outbox.iter().filter(|row| row.state == "sent").count();
                break (sent, outbox.len() - sent);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let settled = started.elapsed();
        if publication.n_deliveries != n_recipients {
            return Err(format!(
                "the notice reached {} of {n_recipients}",
                publication.n_deliveries
            ));
        }
        println!("recipients={n_recipients}");
        println!("deliveries={}", publication.n_deliveries);
        println!("publish_commit_ms={:.1}", millis(committed));
        println!("all_sent_ms={:.1}", millis(settled));
        println!("sent={sent}");
        println!("not_sent={failed}");
        // Where the time went, from the relay's own histograms.
        let metrics = state.metrics.render();
        for (key, name, labels) in [
            (
                "send",
                "samsa_relay_delivery_attempt_duration_seconds",
                if n_subscribers > 0 {
                    r#"{channel="newsletter"}"#
                } else {
                    r#"{channel="email"}"#
                },
            ),
            (
                "claim",
                "samsa_relay_storage_operation_duration_seconds",
                r#"{operation="claim_deliveries"}"#,
            ),
            (
                "record",
                "samsa_relay_storage_operation_duration_seconds",
                r#"{operation="record_deliveries"}"#,
            ),
        ] {
            if let Some((mean, count)) = common::histogram_mean(&metrics, name, labels) {
                println!("{key}_mean_ms={mean:.2}");
                println!("{key}_count={count}");
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|_| Err(format!("not done within {timeout:?}")));
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    result
}

/// `n` confirmed subscribers with mixed choices, every one concerned by an outage in
/// Borås: a quarter all disruptions, a quarter the whole of Södra Älvsborg and one other
/// organisation, half Borås among two other organisations.
async fn import_subscribers(state: &samsa_relay::http::AppState, n: usize) -> Result<(), String> {
    use samsa_relay::subscription::Choices;
    let others: Vec<String> = state
        .config
        .inventory
        .actors()
        .iter()
        .map(|actor| actor.id.clone())
        .filter(|id| id != "kommun-boras")
        .collect();
    let subscribers: Vec<samsa_relay::storage::NewSubscriber> = (0..n)
        .map(|index| {
            let choices = match index % 4 {
                0 => Choices::default(),
                1 => Choices {
                    all: false,
                    actors: vec![others[index % others.len()].clone()],
                    subregions: vec!["sodra-alvsborg".to_owned()],
                    min_level: 1,
                },
                _ => Choices {
                    all: false,
                    actors: vec![
                        others[index % others.len()].clone(),
                        "kommun-boras".to_owned(),
                        others[(index * 7) % others.len()].clone(),
                    ],
                    subregions: Vec::new(),
                    min_level: 1,
                },
            };
            samsa_relay::storage::NewSubscriber {
                address: format!("prenumerant-{index:05}@kommun-{:03}.example", index % 49),
                choices,
                nonce: samsa_relay::subscription::new_nonce(),
            }
        })
        .collect();
    let outcome = state
        .storage
        .import_subscribers(&subscribers, "import by bench", jiff::Timestamp::now())
        .await
        .map_err(|e| e.to_string())?;
    if outcome.added.len() != n {
        return Err(format!(
            "imported {} of {n} subscribers",
            outcome.added.len()
        ));
    }
    Ok(())
}

async fn post(url: &str, body: &str) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt as _, Full};
    use hyper::body::Bytes;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = hyper::Request::post(format!("{url}/webhook/alertmanager"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The first pending draft of any incident: (incident, draft, latest version).
async fn pending_draft(
    state: &samsa_relay::http::AppState,
) -> Result<Option<(i64, i64, i64)>, String> {
    for incident in state.storage.incidents().await.map_err(|e| e.to_string())? {
        let drafts = state
            .storage
            .drafts(incident.incident_id)
            .await
            .map_err(|e| e.to_string())?;
        for draft in drafts {
            if draft.state == "pending"
                && let Some(version) = draft.versions.last()
            {
                return Ok(Some((
                    incident.incident_id,
                    draft.draft_id,
                    version.version,
                )));
            }
        }
    }
    Ok(None)
}
