//! The integration tests: one test binary, so that `cargo test` links once instead of once
//! per file. Each former `tests/NAME.rs` is a module here; the shared harness is `common`.
//!
//! Two tiers:
//!
//! - **Core** (plain `cargo test`): needs nothing but Rust, runs as an unprivileged user,
//!   and sends nothing beyond 127.0.0.1. The app runs for real with SQLite and the file
//!   mail transport; peers that are not programs of their own (a webhook receiver, the
//!   fake login pages) are served by the test process.
//! - **System** (`cargo test --features system-tests`, which `scripts/test-all.sh` runs):
//!   the tests that need a program from a Debian package (Alertmanager, Prometheus, the
//!   blackbox exporter, promtool, amtool, systemd-analyze, PyYAML, the aiosmtpd SMTP
//!   server, Chromium and chromedriver) or root (the tmpfs of the fault tests). A missing
//!   program fails the test with the name of the package to install; nothing is skipped.
//!
//! Whole modules of the system tier are gated below; `dashboards`, `deploy` and `email`
//! gate each test that needs a program, and keep the rest in the core tier.
//!
//! Run one module with `cargo test --test it MODULE::` (say, `ingest::`).
//!
//! No test needs a binary of its own: none changes process-wide state (environment,
//! current folder, signal handlers, a global tracing subscriber), and each starts its own
//! app, database and peers. The one thing the app shares across a process, the per-client
//! limiter of the public read endpoints (a static in `src/http/`, keyed by address, so
//! every test is the same client 127.0.0.1), is shared by all tests here; together they
//! send far fewer public reads than its burst. A test that floods `/public/` would make
//! others answer 429: give it its own `[[test]]` binary.

mod common;

mod cli;
mod config_reference;
mod crash;
mod dashboards;
mod deploy;
mod email;
mod followup;
mod hardening;
mod incidents;
mod ingest;
mod maintenance;
mod maintenance_ops;
mod maintenance_public;
mod notices;
mod operator_links;
mod ops;
mod properties;
mod public;
mod publishing;
// The Alertmanager silences client: a fake peer here, the real one in the system tier.
mod silences;
mod simulate;
// The storage contract: SQLite here, PostgreSQL (postgresql) in the system tier.
mod storage;
mod subscriptions;
mod webhook;

// A real Alertmanager (prometheus-alertmanager) in front of the relay.
#[cfg(feature = "system-tests")]
mod alertmanager;
// Headless Chromium through chromedriver (chromium, chromium-driver).
#[cfg(feature = "system-tests")]
mod browser;
// Three relay processes over one real PostgreSQL, two peered Alertmanagers, the real SMTP
// server; SIGKILLs and a stopped database (postgresql, prometheus-alertmanager,
// python3-aiosmtpd).
#[cfg(feature = "system-tests")]
mod cluster;
// TLS to the real SMTP server (python3-aiosmtpd).
#[cfg(feature = "system-tests")]
mod email_tls;
// Blackbox exporter, Prometheus and Alertmanager around the relay.
#[cfg(feature = "system-tests")]
mod end_to_end;
// The database on a tmpfs that the test mounts and fills (root).
#[cfg(feature = "system-tests")]
mod faults;
// Replicas racing on one real PostgreSQL server (postgresql).
#[cfg(feature = "system-tests")]
mod postgres;

/// Every `.rs` file in this folder is a module of this crate: a file that is not declared
/// above would never be compiled, its tests silently never run.
#[test]
fn every_test_file_is_declared_as_a_module() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let main = std::fs::read_to_string(folder.join("main.rs")).expect("tests/it/main.rs");
    let mut undeclared = Vec::new();
    for entry in std::fs::read_dir(&folder).expect("tests/it") {
        let path = entry.expect("a folder entry").path();
        let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|extension| extension == "rs")
            && name != "main"
            && !main.contains(&format!("\nmod {name};\n"))
        {
            undeclared.push(name.to_owned());
        }
    }
    assert!(
        undeclared.is_empty(),
        "tests/it/ files not declared in main.rs: {undeclared:?}"
    );
}
