//! The test harness, one file per concern. Everything is re-exported here, so a test
//! module writes `common::spawn_app()` whatever file the helper lives in.
//!
//! Core tier (needs only Rust and the crate):
//! - `app`: [`TestApp`], the real app on port 0 with a throwaway database and a file mail
//!   folder; the base config and its variants; requests to the app.
//! - `alerts`: Alertmanager webhook payloads, and receipts stored at a given time.
//! - `wait`: [`eventually`], polling with a deadline.
//! - `drafts`: pending drafts, publishing them, the outbox.
//! - `dashboards`: the Grafana dashboards' panels, queries and variables.
//! - `net`: free local ports, a client that bypasses proxies.
//! - `databases`: [`Databases`], fresh databases of one backend for the storage contract.
//!
//! System tier (feature `system-tests`: real programs from Debian packages):
//! - `process`: child processes with a log, killed by their PID; finding a Debian binary.
//! - `postgres`: [`PostgresServer`], a real PostgreSQL server in a temporary folder.
//! - `prometheus`: the real Prometheus.
//! - `review_page`: the operator's review page as a browser submits it (the dashboard
//!   and end-to-end tests publish through it).
//! - `smtp_sink`: the real SMTP server of the email tests (aiosmtpd).

mod alerts;
mod app;
mod dashboards;
mod databases;
mod drafts;
mod net;
mod review_page;
mod wait;

#[cfg(feature = "system-tests")]
mod postgres;
#[cfg(feature = "system-tests")]
mod process;
#[cfg(feature = "system-tests")]
mod prometheus;
#[cfg(feature = "system-tests")]
pub mod smtp_sink;

pub use alerts::*;
pub use app::*;
pub use dashboards::*;
pub use databases::*;
pub use drafts::*;
pub use net::*;
pub use review_page::*;
pub use wait::*;

#[cfg(feature = "system-tests")]
pub use postgres::*;
#[cfg(feature = "system-tests")]
pub use process::*;
#[cfg(feature = "system-tests")]
pub use prometheus::*;
