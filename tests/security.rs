//! Issue 15 (security), findings 1 and 7. No client can lock Alertmanager out: the
//! per-client connection cap, the eviction at the global cap, the deadlines on a
//! connection, and `/metrics` on a listener of its own. Oversized webhooks are cut before
//! they are stored, and errors do not echo them back.
//!
//! A test binary of its own: it floods `/public/`, whose per-client limiter is one static
//! shared by every test in a process. It needs nothing but Rust: the flood comes from
//! loopback addresses (127.0.0.2 and up), Alertmanager's webhooks from 127.0.0.1.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use samsa_relay::app::App;
use samsa_relay::config::Config;
use samsa_relay::http::AppState;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

const TOKEN: &str = "test-webhook-token-0123456789";

/// One test at a time: the flood's timing must not depend on what the others cost.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The relay under test, on a runtime and threads of its own: the flood's sockets live on
/// the test's runtime, as they would on the attacker's machines, and do not sit in the
/// relay's task queues.
struct Relay {
    address: SocketAddr,
    metrics_address: Option<SocketAddr>,
    state: AppState,
    shutdown: oneshot::Sender<()>,
    stopped: oneshot::Receiver<anyhow::Result<()>>,
    _folder: tempfile::TempDir,
}

async fn start(server_extra: &str) -> Relay {
    // The database in memory when the system offers a tmpfs: these tests time connection
    // handling, not the disk's fsync while other builds write to it.
    let shared_memory = std::path::Path::new("/dev/shm");
    let folder = if shared_memory.is_dir() {
        tempfile::tempdir_in(shared_memory).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:9095"
shutdown_grace = "5s"
{server_extra}

[database]
url = "sqlite://{database}"

[webhook]
token = "{TOKEN}"

[smtp]
url = "file://{mail}"

[links]
secret = "test-link-secret-0123456789-0123456789"
"#,
        database = folder.path().join("relay.db").display(),
        mail = folder.path().join("mail").display(),
    );
    let config = Config::from_toml(&text, &BTreeMap::new()).expect("test config is valid");
    let (started_sender, started) = oneshot::channel();
    let (shutdown, shutdown_receiver) = oneshot::channel::<()>();
    let (stopped_sender, stopped) = oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = App::build(config).await.expect("app builds");
            let _ =
                started_sender.send((app.local_addr(), app.metrics_addr(), app.state().clone()));
            let result = app
                .run(async move {
                    let _ = shutdown_receiver.await;
                })
                .await;
            let _ = stopped_sender.send(result);
        });
    });
    let (address, metrics_address, state) = started.await.expect("the relay started");
    Relay {
        address,
        metrics_address,
        state,
        shutdown,
        stopped,
        _folder: folder,
    }
}

impl Relay {
    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.stopped.await.unwrap().unwrap();
    }

    fn cut(&self, reason: &str) -> u64 {
        self.state
            .metrics
            .connections_cut
            .with_label_values(&[reason])
            .get()
    }
}

/// A connection from `source` (a loopback address) with a 2 KiB receive buffer.
async fn connect_from(source: Ipv4Addr, relay: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(2048)?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    socket.connect(relay).await
}

/// Reads until the server closes the connection or `deadline` passes; true when closed.
async fn closed_within(stream: &mut TcpStream, deadline: Duration) -> bool {
    let mut buffer = [0_u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(deadline, read).await.is_ok()
}

async fn eventually(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !check() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn webhook(index: usize) -> String {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"SamsaLoginDown\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "samsa-relay",
        "groupLabels": {"alertname": "SamsaLoginDown"},
        "commonLabels": {"service": "samsa"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "SamsaLoginDown", "service": "samsa", "actor": format!("actor-{index}")},
            "annotations": {"summary": "SAMSA login page unreachable"},
            "startsAt": "2026-11-28T04:12:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example/graph",
            "fingerprint": format!("{index:016x}"),
        }],
    })
    .to_string()
}

/// `count` pipelined requests for `path`.
fn pipelined_requests(path: &str, count: usize) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n")
        .repeat(count)
        .into_bytes()
}

/// The issue's attack, from many addresses at once: waves of 1,100 connections (more than
/// `max_connections`, each address below its per-client cap) to the public endpoints, half
/// idle, half sending pipelined requests and never reading, while Alertmanager posts a
/// webhook every 100 ms. Every webhook is answered 2xx within `LOCKOUT`, and every
/// connection of the flood is closed by the relay: refused, evicted, or cut by a deadline.
/// The target is 1 s (the slowest answer is printed; 15–53 ms measured on 2 cores); the
/// assertion allows 5 s because test machines are shared and noisy, which still tells a
/// lockout apart (before the fix: refused connections, or no answer for as long as the
/// flood held its sockets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_and_never_reading_clients_does_not_lock_out_alertmanager() {
    const LOCKOUT: Duration = Duration::from_secs(5);
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    const ADDRESSES: u8 = 20;
    const PER_ADDRESS: usize = 52;
    const WAVES: usize = 2;
    let flood_size = usize::from(ADDRESSES) * PER_ADDRESS * WAVES;
    // Both ends of every connection are in this process.
    let wanted = 2 * flood_size as u64 + 512;
    let limit = samsa_relay::http::server::raise_open_files_limit(wanted).unwrap();
    assert!(
        limit >= wanted,
        "the test needs {wanted} open files; the hard limit allows {limit}"
    );

    let relay = start(
        "header_read_timeout = \"5s\"\nwrite_timeout = \"2s\"\nmetrics_listen = \"127.0.0.1:0\"",
    )
    .await;
    let address = relay.address;
    // Alertmanager sends a group's webhooks minutes apart, and the relay closes an idle
    // connection after header_read_timeout: each webhook comes on a new connection.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://{address}/webhook/alertmanager");
    let post = |index: usize| {
        client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(webhook(index))
            .send()
    };
    let response = post(0).await.unwrap();
    assert!(response.status().is_success());
    response.bytes().await.unwrap();

    let connected = Arc::new(AtomicUsize::new(0));
    let flood = {
        let connected = connected.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            for wave in 0..WAVES {
                if wave > 0 {
                    tokio::time::sleep(Duration::from_millis(3000)).await;
                }
                let started = tokio::time::Instant::now();
                // One attacker per address, all at once.
                let mut attackers = Vec::new();
                for host in 0..ADDRESSES {
                    let connected = connected.clone();
                    attackers.push(tokio::spawn(async move {
                        let source = Ipv4Addr::new(127, 0, 0, 2 + host);
                        let mut holders = Vec::new();
                        for index in 0..PER_ADDRESS {
                            // About 1,000 new connections a second from all addresses:
                            // a debug build on a shared machine spends long enough on a
                            // burst to delay a webhook behind it, which is CPU, not the
                            // lock-out this test is about.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            let Ok(mut stream) = connect_from(source, address).await else {
                                continue;
                            };
                            connected.fetch_add(1, Ordering::Relaxed);
                            // Three in four never send a byte; the others send
                            // pipelined requests and never read an answer.
                            let requests = match index % 4 {
                                1 => pipelined_requests("/public/banner.js", 3),
                                _ => Vec::new(),
                            };
                            holders.push(tokio::spawn(async move {
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(30),
                                    stream.write_all(&requests),
                                )
                                .await;
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                drop(stream);
                            }));
                        }
                        holders
                    }));
                }
                for attacker in attackers {
                    held.extend(attacker.await.unwrap());
                }
                eprintln!("wave {wave} connected in {:?}", started.elapsed());
            }
            held
        })
    };

    let mut answered_in = Vec::new();
    for index in 1..=100 {
        let sent = tokio::time::Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(30), post(index))
            .await
            .unwrap_or_else(|_| panic!("webhook {index} got no answer within 30 s"))
            .unwrap_or_else(|error| panic!("webhook {index} failed: {error:?}"));
        assert!(
            response.status().is_success(),
            "webhook {index}: {}",
            response.status()
        );
        response.bytes().await.unwrap();
        answered_in.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let slowest = answered_in.iter().max().copied().unwrap();
    let late: Vec<(usize, Duration)> = (1..)
        .zip(answered_in.iter().copied())
        .filter(|(_, took)| *took >= LOCKOUT)
        .collect();
    println!("flood: slowest webhook answered in {slowest:?}");
    assert!(
        late.is_empty(),
        "webhooks answered after {LOCKOUT:?} or more (number, time): {late:?}"
    );
    drop(client);
    let held = flood.await.unwrap();
    assert_eq!(connected.load(Ordering::Relaxed), flood_size);

    // Every connection of the flood is closed by the relay: the clients still hold theirs.
    eventually(
        "the relay closed every connection",
        Duration::from_secs(15),
        || relay.state.metrics.connections_open.get() == 0,
    )
    .await;
    let metrics = &relay.state.metrics;
    let refused = metrics.connections_refused.get();
    let refused_per_client = metrics.client_connections_refused.get();
    let evicted = relay.cut("evicted");
    let header_timeouts = relay.cut("header_timeout");
    let write_timeouts = relay.cut("write_timeout");
    eprintln!(
        "flood of {flood_size}: refused {refused} at the cap, {refused_per_client} per client, \
         evicted {evicted}, header timeouts {header_timeouts}, write timeouts \
         {write_timeouts}; slowest webhook {slowest:?}"
    );
    // The webhooks' own connection may have been closed idle (a header timeout) as well.
    let closed = refused + refused_per_client + evicted + header_timeouts + write_timeouts;
    assert!(
        closed >= flood_size as u64,
        "closed {closed} of {flood_size}"
    );
    assert!(
        evicted > 0,
        "the global cap was reached, a newcomer took a place"
    );
    assert!(header_timeouts > 0, "idle clients were cut");
    for task in held {
        task.abort();
    }
    relay.stop().await;
}

#[tokio::test]
async fn one_client_holds_at_most_its_share_unless_it_is_a_trusted_proxy() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let relay = start(
        "max_connections_per_client = 3\ntrusted_proxies = [\"127.0.0.4\"]\nheader_read_timeout = \"30s\"",
    )
    .await;
    let client = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(client, relay.address).await.unwrap());
    }
    eventually("three connections open", Duration::from_secs(5), || {
        relay.state.metrics.connections_open.get() == 3
    })
    .await;
    let mut fourth = connect_from(client, relay.address).await.unwrap();
    assert!(closed_within(&mut fourth, Duration::from_secs(5)).await);
    assert_eq!(relay.state.metrics.client_connections_refused.get(), 1);
    // Another client gets in, and so does a proxy with more than the share.
    let _other = connect_from(Ipv4Addr::new(127, 0, 0, 3), relay.address)
        .await
        .unwrap();
    for _ in 0..5 {
        held.push(
            connect_from(Ipv4Addr::new(127, 0, 0, 4), relay.address)
                .await
                .unwrap(),
        );
    }
    eventually("nine connections open", Duration::from_secs(5), || {
        relay.state.metrics.connections_open.get() == 9
    })
    .await;
    assert_eq!(relay.state.metrics.client_connections_refused.get(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_its_responses_is_cut_at_the_write_timeout() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let relay = start("write_timeout = \"1s\"\nheader_read_timeout = \"30s\"").await;
    let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 5), relay.address)
        .await
        .unwrap();
    // The issue's attack (pipelined GET /metrics, never read), with far more than the
    // socket buffers hold (the sender's grows up to 4 MiB on Linux).
    let metrics_size = relay.state.metrics.render().len();
    assert!(
        2000 * metrics_size > 8 << 20,
        "/metrics is {metrics_size} bytes"
    );
    let writer = tokio::spawn(async move {
        let _ = stream
            .write_all(&pipelined_requests("/metrics", 2000))
            .await;
        // Holds the socket open without reading.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    eventually(
        "the connection cut by the write deadline",
        Duration::from_secs(20),
        || relay.cut("write_timeout") == 1 && relay.state.metrics.connections_open.get() == 0,
    )
    .await;
    writer.abort();
    relay.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_idle_too_long_is_closed() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let relay = start("header_read_timeout = \"1s\"").await;
    let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 6), relay.address)
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0_u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    let started = tokio::time::Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(8)).await);
    assert!(started.elapsed() >= Duration::from_millis(900));
    eventually("the cut counted", Duration::from_secs(5), || {
        relay.cut("header_timeout") == 1
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn metrics_move_to_their_own_listener_when_one_is_configured() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let relay = start("metrics_listen = \"127.0.0.1:0\"").await;
    let metrics_address = relay.metrics_address.expect("a metrics listener");
    let main = client
        .get(format!("http://{}/metrics", relay.address))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404);
    let separate = client
        .get(format!("http://{metrics_address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(separate.status(), 200);
    let text = separate.text().await.unwrap();
    assert!(text.contains("samsa_relay_connections_cut_total{reason=\"write_timeout\"} 0"));
    // Only /metrics there.
    let other = client
        .get(format!("http://{metrics_address}/public/banner.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    relay.stop().await;

    // Unset: /metrics stays on the main listener.
    let relay = start("").await;
    assert!(relay.metrics_address.is_none());
    let main = client
        .get(format!("http://{}/metrics", relay.address))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 200);
    relay.stop().await;
}

#[tokio::test]
async fn a_25_mb_label_is_cut_before_it_is_stored_and_errors_echo_no_input() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let relay = start("").await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{}/webhook/alertmanager", relay.address);
    let huge = "x".repeat(25 * 1024 * 1024);
    let body = webhook(1).replace(
        r#""actor":"actor-1""#,
        &format!(r#""actor":"actor-1","instance":"{huge}""#),
    );
    let response = client
        .post(&url)
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let receipts = relay.state.storage.receipts().await.unwrap();
    assert_eq!(receipts.len(), 1);
    assert!(
        receipts[0].payload.len() < 64 * 1024,
        "stored {} bytes",
        receipts[0].payload.len()
    );
    let cut = |kind: &str| {
        relay
            .state
            .metrics
            .webhook_values_cut
            .with_label_values(&[kind])
            .get()
    };
    assert_eq!(cut("label_value"), 1);
    // The payload is stored cut, so every alert read from it is short too.
    relay.state.incident_wake.notify_one();
    let start = tokio::time::Instant::now();
    let alerts = loop {
        let alerts = relay.state.storage.alerts().await.unwrap();
        if !alerts.is_empty() {
            break alerts;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no alert stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let instance = &alerts[0].labels["instance"];
    assert_eq!(
        instance.chars().count(),
        samsa_relay::alertmanager::MAX_LABEL_VALUE_CHARS + 1
    );
    assert!(instance.ends_with('…'));

    // A 1 MB version is refused with a short excerpt of it.
    let long_version = "4".repeat(1024 * 1024);
    let body = webhook(2).replace(
        r#""version":"4""#,
        &format!(r#""version":"{long_version}""#),
    );
    let response = client
        .post(&url)
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.len() < 1024, "a 400 of {} bytes", text.len());
    assert!(text.contains("unsupported payload version"), "{text}");
    relay.stop().await;
}
