//! The bench's own client tools, run by scripts/bench.sh. Every load is bounded in count
//! and in time, and only ever goes to the URL given (the script gives 127.0.0.1).
//!
//! ```text
//! drive free-port
//! drive wait-ready  --url URL --since EPOCH_SECONDS [--timeout S]
//! drive fixed-rate  --url URL --token T --rate R --seconds S --alerts N --stream K
//!                   [--max-requests M] [--timeout S]
//! drive big-payload --url URL --token T --alerts N [--timeout S]
//! drive metric      --url URL --series 'name{label="value"}' [--absent TEXT]
//! drive storage     --url URL
//! drive hold        --url URL --holder NAME [--over SECONDS]
//! drive fsync       --dir DIR [--count N]
//! drive store-floor --dir DIR --batch B --alerts N [--seconds S] [--max-webhooks M]
//! ```
//!
//! `fixed-rate` is an open-loop generator: request i is due at start + i/R whatever
//! happened to the earlier ones, each carries a payload no other request carries, and its
//! latency counts from when it was due (so a slow answer cannot hide the requests queued
//! behind it). Results are printed as `key=value` lines for the script.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Args, millis, percentile};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Request, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn main() -> ExitCode {
    let mut raw = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let Some(command) = raw.next() else {
        println!("drive: {}", common::USAGE_HINT);
        return ExitCode::SUCCESS;
    };
    let result = Args::parse(raw).and_then(|args| run(&command, &args));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("drive {command}: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: &str, args: &Args) -> Result<(), String> {
    match command {
        "free-port" => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            println!("{port}");
            Ok(())
        }
        "wait-ready" => wait_ready(args),
        "fixed-rate" => runtime()?.block_on(fixed_rate(args)),
        "big-payload" => runtime()?.block_on(big_payload(args)),
        "fsync" => fsync(args),
        "store-floor" => runtime()?.block_on(store_floor(args)),
        "storage" => runtime()?.block_on(storage_summary(args)),
        "hold" => runtime()?.block_on(write_hold(args)),
        "metric" => runtime()?.block_on(async {
            let url = args.string("url")?;
            socket_address(&url)?;
            let text = metrics_text(&client(), &url).await?;
            // A series the relay does not export at all (not yet built in) is told apart
            // from one at 0 when the script asks for it with --absent.
            match series_value(&text, &args.string("series")?) {
                Some(value) => println!("{value}"),
                None => println!("{}", args.string_or("absent", "0")),
            }
            Ok(())
        }),
        other => Err(format!("unknown command {other:?}")),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `http://127.0.0.1:PORT` to its socket address.
fn socket_address(url: &str) -> Result<SocketAddr, String> {
    let host = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?
        .trim_end_matches('/');
    let address: SocketAddr = host
        .parse()
        .map_err(|_| format!("{url}: expected http://IP:PORT"))?;
    if !address.ip().is_loopback() {
        return Err(format!("{url}: the bench only sends to a loopback address"));
    }
    Ok(address)
}

/// The disk's own price of durability: `count` times, write 4 KiB and `fdatasync`, once
/// over blocks already written (as SQLite reuses its write-ahead log) and once at the end
/// of a growing file (as a fresh log grows). A durable commit cannot be faster, so with c
/// connections each waiting for its own 2xx, c / this time bounds webhooks per second.
fn fsync(args: &Args) -> Result<(), String> {
    let dir = std::path::PathBuf::from(args.string("dir")?);
    let count: usize = args.number("count", 2000)?;
    let count = count.clamp(1, 20_000);
    let block = [0x5a_u8; 4096];
    let report = |name: &str, append: bool| -> Result<(), String> {
        use std::os::unix::fs::FileExt as _;
        let path = dir.join(format!("fsync-probe-{name}"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let blocks: u64 = 64;
        if !append {
            for index in 0..blocks {
                file.write_all_at(&block, index * 4096)
                    .map_err(|e| e.to_string())?;
            }
            file.sync_all().map_err(|e| e.to_string())?;
        }
        let mut samples = Vec::with_capacity(count);
        for index in 0..count as u64 {
            let offset = if append { index } else { index % blocks } * 4096;
            file.write_all_at(&block, offset)
                .map_err(|e| e.to_string())?;
            let started = Instant::now();
            file.sync_data().map_err(|e| e.to_string())?;
            samples.push(started.elapsed());
        }
        drop(file);
        let _ = std::fs::remove_file(&path);
        samples.sort_unstable();
        println!("{name}_p50_ms={:.3}", millis(percentile(&samples, 50.0)));
        println!("{name}_p99_ms={:.3}", millis(percentile(&samples, 99.0)));
        Ok(())
    };
    report("overwrite", false)?;
    report("append", true)?;
    Ok(())
}

/// The relay's durable store alone, without HTTP or the incident worker: webhooks with
/// `alerts` alerts each, distinct, stored by `Storage::store_notifications` in batches of
/// `batch` (one transaction and fsync each, as a group commit of that size) into a fresh
/// database in `dir`. Only the calls are timed; parsing and keys are made before each.
/// What the relay can answer per second cannot exceed this at that commit size.
async fn store_floor(args: &Args) -> Result<(), String> {
    use samsa_relay::alertmanager::Notification;
    use samsa_relay::config::{DatabaseConfig, DatabaseUrl};
    use samsa_relay::storage::{NewReceipt, Storage};

    let dir = std::path::PathBuf::from(args.string("dir")?);
    let batch: usize = args.number("batch", 16)?;
    let n_alerts: usize = args.number("alerts", 1)?;
    let seconds = args.seconds("seconds", 3.0)?;
    let max_webhooks: u64 = args.number("max-webhooks", 200_000)?;
    if !(1..=256).contains(&batch) {
        return Err("--batch must be in 1..=256".to_owned());
    }
    let path = dir.join(format!("store-floor-{batch}x{n_alerts}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let storage = Storage::open(&DatabaseConfig {
        url: DatabaseUrl::Sqlite { path: path.clone() },
        busy_timeout: Duration::from_secs(5),
        min_free_bytes: 0,
        max_connections: 16,
    })
    .await
    .map_err(|e| format!("{e:#}"))?;
    let mut stored: u64 = 0;
    let mut spent = Duration::ZERO;
    let mut sequence: u64 = 0;
    let deadline = Instant::now() + seconds;
    while Instant::now() < deadline && stored < max_webhooks {
        let bodies: Vec<String> = (0..batch)
            .map(|_| {
                sequence += 1;
                common::payload(u32::MAX >> 16, sequence, n_alerts)
            })
            .collect();
        let notifications: Vec<Notification> = bodies
            .iter()
            .map(|body| Notification::parse(body.as_bytes()).map_err(|e| e.error))
            .collect::<Result<_, _>>()?;
        let keys: Vec<String> = notifications.iter().map(Notification::dedupe_key).collect();
        let at = jiff::Timestamp::now();
        let receipts: Vec<NewReceipt<'_>> = (0..batch)
            .map(|index| NewReceipt {
                notification: &notifications[index],
                dedupe_key: &keys[index],
                raw_payload: &bodies[index],
                received_at: at,
            })
            .collect();
        let started = Instant::now();
        let answers = storage
            .store_notifications(&receipts)
            .await
            .map_err(|e| format!("{e:#}"))?;
        spent += started.elapsed();
        if answers.iter().any(|answer| answer.duplicate) {
            return Err("a distinct webhook was taken for a duplicate".to_owned());
        }
        stored += batch as u64;
    }
    storage.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    println!("webhooks={stored}");
    println!(
        "webhooks_per_s={:.0}",
        stored as f64 / spent.as_secs_f64().max(1e-9)
    );
    println!(
        "commit_ms={:.3}",
        millis(spent) / (stored as f64 / batch as f64).max(1.0)
    );
    Ok(())
}

/// Polls GET /readyz as tightly as it can (a refused connection returns at once; 1 ms
/// between attempts) and prints the time since `--since` (seconds since the epoch, as
/// bash's $EPOCHREALTIME, taken just before the relay was spawned).
fn wait_ready(args: &Args) -> Result<(), String> {
    let url = args.string("url")?;
    let address = socket_address(&url)?;
    let since: f64 = args.number("since", 0.0)?;
    let timeout = args.seconds("timeout", 10.0)?;
    let started = Instant::now();
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let mut attempts = 0_u64;
    loop {
        attempts += 1;
        if let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(4)));
            let mut answer = Vec::new();
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_to_end(&mut answer).is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                break;
            }
        }
        if started.elapsed() > timeout {
            return Err(format!("{url}/readyz not 200 within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64();
    println!("ready_ms={:.1}", (now - since) * 1000.0);
    println!("attempts={attempts}");
    Ok(())
}

async fn post(
    client: &HttpClient,
    url: &str,
    token: &str,
    body: String,
) -> Result<(u16, Bytes), String> {
    let request = Request::post(format!("{url}/webhook/alertmanager"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

async fn fixed_rate(args: &Args) -> Result<(), String> {
    let url = args.string("url")?;
    socket_address(&url)?;
    let token = args.string_or("token", "");
    let rate: f64 = args.number("rate", 200.0)?;
    let seconds = args.seconds("seconds", 10.0)?;
    let n_alerts: usize = args.number("alerts", 1)?;
    let stream: u32 = args.number("stream", 0)?;
    let max_requests: u64 = args.number("max-requests", 100_000)?;
    let timeout = args.seconds("timeout", 10.0)?;
    if !(rate > 0.0 && rate <= 10_000.0) {
        return Err("--rate must be in (0, 10000]".to_owned());
    }
    let n_requests = ((rate * seconds.as_secs_f64()).round() as u64).min(max_requests);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let client = client();
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut sends = tokio::task::JoinSet::new();
    let mut worst_lateness = Duration::ZERO;
    for sequence in 0..n_requests {
        let due = start + interval.mul_f64(sequence as f64);
        tokio::time::sleep_until(due).await;
        worst_lateness = worst_lateness.max(due.elapsed());
        let body = common::payload(stream, sequence, n_alerts);
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        sends.spawn(async move {
            let result = tokio::time::timeout(timeout, post(&client, &url, &token, body)).await;
            let latency = due.elapsed();
            match result {
                Ok(Ok((status, _))) => (Some(status), latency),
                Ok(Err(_)) | Err(_) => (None, latency),
            }
        });
    }
    let scheduled_for = start.elapsed();
    let mut latencies = Vec::with_capacity(n_requests as usize);
    let (mut n_ok, mut n_bad_status, mut n_failed) = (0_u64, 0_u64, 0_u64);
    let drained = tokio::time::timeout(timeout + Duration::from_secs(1), async {
        while let Some(joined) = sends.join_next().await {
            let (status, latency) = joined.map_err(|e| e.to_string())?;
            match status {
                Some(200) => {
                    n_ok += 1;
                    latencies.push(latency);
                }
                Some(_) => n_bad_status += 1,
                None => n_failed += 1,
            }
        }
        Ok::<(), String>(())
    })
    .await;
    if drained.is_err() {
        n_failed += sends.len() as u64;
        sends.abort_all();
    }
    drained.unwrap_or(Ok(()))?;
    latencies.sort_unstable();
    println!("requests={n_requests}");
    println!("ok={n_ok}");
    println!("non_200={n_bad_status}");
    println!("failed={n_failed}");
    println!(
        "achieved_rps={:.1}",
        n_requests as f64 / scheduled_for.as_secs_f64().max(1e-9)
    );
    println!("p50_ms={:.2}", millis(percentile(&latencies, 50.0)));
    println!("p90_ms={:.2}", millis(percentile(&latencies, 90.0)));
    println!("p99_ms={:.2}", millis(percentile(&latencies, 99.0)));
    println!(
        "max_ms={:.2}",
        millis(latencies.last().copied().unwrap_or_default())
    );
    println!("generator_late_ms={:.2}", millis(worst_lateness));
    Ok(())
}

/// The value of one series in /metrics; a series not (yet) there counts as 0.
async fn metric(client: &HttpClient, url: &str, series: &str) -> Result<f64, String> {
    let text = metrics_text(client, url).await?;
    Ok(series_value(&text, series).unwrap_or(0.0))
}

fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse::<f64>().ok())?
    })
}

/// How long one holder kept the write connection, from the relay's histogram
/// `samsa_relay_write_hold_seconds{holder=...}`: how many holds, how many took longer
/// than `--over` (count minus the bucket at that bound, which must be one of the
/// histogram's bounds), and the smallest bucket bound that every hold stayed within
/// (`max_le_ms`, `+Inf` past the last bound, `-` with no hold yet). `present=0` alone
/// when the relay does not export the histogram for that holder.
async fn write_hold(args: &Args) -> Result<(), String> {
    const NAME: &str = "samsa_relay_write_hold_seconds";
    let url = args.string("url")?;
    socket_address(&url)?;
    let holder = args.string("holder")?;
    let over: f64 = args.number("over", 0.005)?;
    let text = metrics_text(&client(), &url).await?;
    let holder_label = format!(r#"holder="{holder}""#);
    // (upper bound, cumulative count) of each bucket of this holder, +Inf as infinity.
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&format!("{NAME}_bucket{{")) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels: Vec<&str> = labels.split(',').collect();
        if !labels.contains(&holder_label.as_str()) {
            continue;
        }
        let Some(bound) = labels.iter().find_map(|label| label.strip_prefix("le=")) else {
            continue;
        };
        let bound = match bound.trim_matches('"') {
            "+Inf" => f64::INFINITY,
            number => number
                .parse()
                .map_err(|_| format!("{NAME}: bucket bound {number:?}"))?,
        };
        let count: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("{NAME}: bucket count {value:?}"))?;
        buckets.push((bound, count));
    }
    if buckets.is_empty() {
        println!("present=0");
        return Ok(());
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let count = buckets.last().map_or(0.0, |bucket| bucket.1);
    let within = buckets
        .iter()
        .find(|bucket| (bucket.0 - over).abs() < 1e-12)
        .ok_or_else(|| format!("{NAME}{{{holder_label}}} has no bucket at {over} s"))?
        .1;
    // Buckets are cumulative: the first that holds them all bounds the longest hold.
    let max_le = if count == 0.0 {
        "-".to_owned()
    } else {
        match buckets.iter().find(|bucket| bucket.1 >= count) {
            Some((bound, _)) if bound.is_finite() => format!("{}", (bound * 1e6).round() / 1e3),
            _ => "+Inf".to_owned(),
        }
    };
    println!("present=1");
    println!("count={count:.0}");
    println!("over={:.0}", count - within);
    println!("max_le_ms={max_le}");
    if let Some((mean, _)) = common::histogram_mean(&text, NAME, &format!("{{{holder_label}}}")) {
        println!("mean_ms={mean:.3}");
    }
    Ok(())
}

/// Where a relay's time went, from its own histograms: the mean time of each storage
/// operation (waiting for the single write connection included) and how many there were.
/// Operations the relay does not report are left out.
async fn storage_summary(args: &Args) -> Result<(), String> {
    let url = args.string("url")?;
    socket_address(&url)?;
    let text = metrics_text(&client(), &url).await?;
    for operation in [
        "store_notification",
        "incident_step",
        "claim_deliveries",
        "record_deliveries",
    ] {
        if let Some((mean, count)) = common::histogram_mean(
            &text,
            "samsa_relay_storage_operation_duration_seconds",
            &format!(r#"{{operation="{operation}"}}"#),
        ) {
            println!("{operation}_mean_ms={mean:.2}");
            println!("{operation}_count={count}");
        }
    }
    // histogram_mean gives seconds as milliseconds; a batch size is a plain count.
    if let Some((mean_times_1000, _)) =
        common::histogram_mean(&text, "samsa_relay_ingest_batch_webhooks", "")
    {
        println!("ingest_batch_mean={:.1}", mean_times_1000 / 1000.0);
    }
    Ok(())
}

async fn metrics_text(client: &HttpClient, url: &str) -> Result<String, String> {
    let uri: hyper::Uri = format!("{url}/metrics")
        .parse()
        .map_err(|_| format!("{url}: not a URL"))?;
    let response = client
        .get(uri)
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Posts one payload of `--alerts` alerts (each naming one of the inventory's actors in
/// turn, as a wide outage would) and polls /metrics every 5 ms until the worker has
/// committed the incident's first draft.
async fn big_payload(args: &Args) -> Result<(), String> {
    const DRAFTS_CREATED: &str = r#"samsa_relay_draft_changes_total{action="created"}"#;
    let url = args.string("url")?;
    socket_address(&url)?;
    let token = args.string_or("token", "");
    let n_alerts: usize = args.number("alerts", 10_000)?;
    let timeout = args.seconds("timeout", 60.0)?;
    let inventory = samsa_relay::inventory::Inventory::default_samsa();
    let actors: Vec<String> = inventory
        .actors()
        .iter()
        .map(|actor| actor.id.clone())
        .collect();
    let body = common::payload_with(9999, 0, n_alerts, |index| {
        actors[index % actors.len()].clone()
    });
    let body_bytes = body.len();
    let client = client();
    let before = metric(&client, &url, DRAFTS_CREATED).await?;
    let started = Instant::now();
    let (status, answer) = tokio::time::timeout(timeout, post(&client, &url, &token, body))
        .await
        .map_err(|_| "no answer in time".to_owned())??;
    let acknowledged = started.elapsed();
    if status != 200 {
        return Err(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&answer)
        ));
    }
    loop {
        if metric(&client, &url, DRAFTS_CREATED).await? > before {
            break;
        }
        if started.elapsed() > timeout {
            return Err(format!("no draft within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drafted = started.elapsed();
    println!("body_bytes={body_bytes}");
    println!("ack_ms={:.1}", millis(acknowledged));
    println!("draft_ms={:.1}", millis(drafted));
    println!("ack_to_draft_ms={:.1}", millis(drafted - acknowledged));
    Ok(())
}
