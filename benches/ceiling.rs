//! The ceiling of the webhook bench: a bare hyper 1 server that reads the body, parses it
//! with the relay's own `Notification::parse` into the relay's own types, and answers 200
//! with a body shaped like the relay's. No authentication, no storage, no routing, no
//! metrics, no logging: what is left is the HTTP and JSON work every webhook costs.
//!
//! Usage (scripts/bench.sh runs it): ceiling --listen 127.0.0.1:PORT [--max-seconds N]
//! Prints "READY ADDRESS" once it accepts connections. It runs on a multi-threaded tokio
//! runtime with the default number of workers, like the relay, and exits after
//! --max-seconds (default 900) so that it never outlives a bench run.

mod common;

use std::convert::Infallible;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use samsa_relay::alertmanager::Notification;

fn main() -> ExitCode {
    let args = match common::Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(problem) => {
            eprintln!("ceiling: {problem}");
            return ExitCode::from(2);
        }
    };
    let Ok(listen) = args.string("listen") else {
        // `cargo bench` runs every bench target with no arguments.
        println!("ceiling: {}", common::USAGE_HINT);
        return ExitCode::SUCCESS;
    };
    let max_seconds = match args.seconds("max-seconds", 900.0) {
        Ok(max_seconds) => max_seconds,
        Err(problem) => {
            eprintln!("ceiling: {problem}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(serve(&listen, max_seconds)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ceiling: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: &str, max_seconds: Duration) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("READY {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let accept = async {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    eprintln!("ceiling: accept: {error}");
                    continue;
                }
            };
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    };
    tokio::select! {
        () = accept => Ok(()),
        () = tokio::time::sleep(max_seconds) => {
            eprintln!("ceiling: --max-seconds reached, exiting");
            Ok(())
        }
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(respond(StatusCode::BAD_REQUEST, "incomplete body".into())),
    };
    Ok(match Notification::parse(&body) {
        Ok(notification) => respond(
            StatusCode::OK,
            format!(
                r#"{{"receipt_id":0,"duplicate":false,"alerts":{}}}"#,
                notification.alerts.len()
            ),
        ),
        Err(problem) => respond(
            StatusCode::BAD_REQUEST,
            format!(
                r#"{{"error":{:?},"detail":{:?}}}"#,
                problem.error, problem.detail
            ),
        ),
    })
}

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
