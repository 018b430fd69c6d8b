//! samsa-relay: Alertmanager alerts about SAMSA in, human-approved notices out.
//! ARCHITECTURE.md is the map; each module's `//!` says what it owns.

pub mod alertmanager;
pub mod app;
pub mod backlog;
pub mod classify;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod followup;
mod gauges;
pub mod http;
pub mod incident;
pub mod incident_worker;
mod ingest;
pub mod inventory;
#[cfg(test)]
mod layering;
pub mod links;
pub mod maintenance;
pub mod maintenance_actions;
pub mod maintenance_scheduler;
mod metrics;
pub mod notice;
pub mod operators;
pub mod publishing;
mod secret;
pub mod silences;
pub mod simulate;
pub mod storage;
pub mod subscribers;
pub mod subscription;
mod swedish;
pub mod telemetry;
mod tls;
