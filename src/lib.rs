//! samsa-relay: Alertmanager alerts about SAMSA in, human-approved notices out.
//! ARCHITECTURE.md is the map; each module's `//!` says what it owns.

pub mod alertmanager;
pub mod app;
pub mod cli;
pub mod config;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod storage;
pub mod telemetry;
