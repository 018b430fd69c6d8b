//! The accept loop and request limits: a connection cap, slow clients, request deadlines,
//! and HTTPS served with rustls.

use crate::common;

use std::time::Duration;

use common::{TOKEN, spawn_app_with};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

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

fn host(app: &common::TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_the_cap_frees_up() {
    let app = spawn_app_with("max_connections = 3", "", "").await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(host(&app)).await.unwrap());
    }
    // Let the server accept the three.
    common::eventually("three connections open", Duration::from_secs(5), || async {
        (app.state.metrics.connections_open.get() == 3).then_some(())
    })
    .await;
    let mut over = TcpStream::connect(host(&app)).await.unwrap();
    assert!(
        closed_within(&mut over, Duration::from_secs(5)).await,
        "the fourth is closed"
    );
    assert!(app.state.metrics.connections_refused.get() >= 1);
    drop(idle);
    common::eventually(
        "a request once the cap frees up",
        Duration::from_secs(10),
        || async {
            let response = app
                .client
                .get(format!("{}/healthz", app.address))
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_sends_its_head_too_slowly_is_disconnected() {
    let app = spawn_app_with("header_read_timeout = \"1s\"", "", "").await;
    let mut slow = TcpStream::connect(host(&app)).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Never finishes the head: the server must close within its timeout (plus slack).
    assert!(closed_within(&mut slow, Duration::from_secs(8)).await);
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_body_that_trickles_in_is_answered_503_so_alertmanager_retries() {
    let app = spawn_app_with("request_timeout = \"1s\"", "", "").await;
    let mut slow = TcpStream::connect(host(&app)).await.unwrap();
    let head = format!(
        "POST /webhook/alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"version\""
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut response = vec![0_u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(8), slow.read(&mut response)).await;
    let n = read.expect("an answer within the deadline").unwrap();
    let text = String::from_utf8_lossy(&response[..n]);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert_eq!(app.state.metrics.requests_timed_out.get(), 1);
    assert!(app.state.storage.receipts().await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn the_relay_serves_https_with_the_configured_certificate() {
    let folder = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate_file = folder.path().join("relay.crt");
    let key_file = folder.path().join("relay.key");
    std::fs::write(&certificate_file, certified.cert.pem()).unwrap();
    std::fs::write(&key_file, certified.signing_key.serialize_pem()).unwrap();
    let server_extra = format!(
        "tls_certificate_file = {:?}\ntls_key_file = {:?}",
        certificate_file.display().to_string(),
        key_file.display().to_string()
    );
    let app = spawn_app_with(&server_extra, "", "").await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = app
        .client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    // A client that does not trust the certificate refuses it.
    let untrusting = reqwest::Client::builder()
        .no_proxy()
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
            .is_err()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_certificate_that_cannot_be_read_is_a_config_problem() {
    let folder = tempfile::tempdir().unwrap();
    let text = common::base_config(
        folder.path(),
        "tls_certificate_file = \"/nonexistent/relay.crt\"\ntls_key_file = \"/nonexistent/relay.key\"",
        "",
        "",
    );
    let errors = samsa_relay::config::Config::from_toml(&text, &Default::default()).unwrap_err();
    assert_eq!(errors.0[0].path, "server.tls_certificate_file");
}

#[tokio::test]
async fn a_client_flooding_the_public_endpoints_is_slowed_with_429() {
    let app = common::spawn_app().await;
    let mut n_limited = 0;
    let mut retry_after = None;
    // 400 requests, as fast as one client can: well past the burst of 200.
    for _ in 0..400 {
        let response = app.get("/public/status.json").await;
        match response.status().as_u16() {
            200 => {}
            429 => {
                n_limited += 1;
                retry_after = response.headers().get("retry-after").cloned();
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(n_limited > 0, "the flood is limited");
    assert!(retry_after.is_some(), "429 says when to come back");
    // The relay itself stays reachable for Alertmanager and probes.
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let app = spawn_app_with(r#"trusted_proxies = ["127.0.0.1"]"#, "", "").await;
    let url = format!("{}/public/status.json", app.address);
    let get_as = |forwarded: &'static str| {
        app.client
            .get(&url)
            .header("x-forwarded-for", forwarded)
            .send()
    };
    // One client behind the proxy floods: it is limited.
    let mut n_limited = 0;
    for _ in 0..400 {
        match get_as("198.51.100.7").await.unwrap().status().as_u16() {
            200 => {}
            429 => n_limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(n_limited > 0, "the flood is limited");
    // Another client behind the same proxy is not, even when the flooding client's address
    // comes first in its header: only the hop the proxy appended counts.
    for forwarded in ["198.51.100.8", "198.51.100.7, 198.51.100.9"] {
        assert_eq!(
            get_as(forwarded).await.unwrap().status(),
            200,
            "{forwarded}"
        );
    }
    app.stop().await;
}
