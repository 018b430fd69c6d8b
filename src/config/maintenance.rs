//! `[maintenance]`: planned maintenance windows: when reminders go out, when the
//! login-page banner starts showing a window, the Alertmanager API that gets the
//! silences, and the HTTP API's token. The rules are `crate::maintenance`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Problems, parse_duration, parse_http_url, resolve_secret};
use crate::maintenance::MaintenanceConfig;

/// `[maintenance]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawMaintenance {
    /// When reminders go out before a window's start, e.g. `["24h", "1h"]`; `[]` for none.
    pub reminders: Vec<String>,
    /// From how long before its start the login-page banner shows a window, e.g. `48h`.
    pub banner_before: String,
    /// How often the relay looks for a window's next step (reminder, start, end), e.g.
    /// `15s`.
    pub check_interval: String,
    /// The Alertmanager peers whose API v2 gets a silence for each running window, e.g.
    /// `["http://alertmanager-0:9093", "http://alertmanager-1:9093"]` (one answering is
    /// enough: silences spread between peers). Left out: no silences; alerts inside a
    /// window are recorded on it instead of opening an incident.
    pub alertmanager_urls: Vec<String>,
    /// How long one call to Alertmanager may take, e.g. `10s`.
    pub alertmanager_timeout: String,
    /// Bearer token for Alertmanager's API, when a proxy in front of it asks for one.
    pub alertmanager_token: Option<String>,
    /// A file holding `alertmanager_token` (first line).
    pub alertmanager_token_file: Option<String>,
    /// Label equalities every silence carries, so that it never covers more than the
    /// service's own alerts, e.g. `{ service = "samsa" }`.
    pub silence_matchers: BTreeMap<String, String>,
    /// Bearer token of the HTTP API for windows (`/api/maintenance`). Left out: the API
    /// answers 404; windows are made on the dashboard or with the command line.
    pub api_token: Option<String>,
    /// A file holding `api_token` (first line).
    pub api_token_file: Option<String>,
}

impl Default for RawMaintenance {
    fn default() -> RawMaintenance {
        let defaults = MaintenanceConfig::default();
        RawMaintenance {
            reminders: vec!["24h".to_owned(), "1h".to_owned()],
            banner_before: "48h".to_owned(),
            check_interval: "15s".to_owned(),
            alertmanager_urls: Vec::new(),
            alertmanager_timeout: "10s".to_owned(),
            alertmanager_token: None,
            alertmanager_token_file: None,
            silence_matchers: defaults.silence_matchers,
            api_token: None,
            api_token_file: None,
        }
    }
}

/// A label name as Alertmanager and Prometheus accept it.
fn is_label_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
}

pub(super) fn check_maintenance(
    problems: &mut Problems,
    raw: &RawMaintenance,
) -> Option<MaintenanceConfig> {
    let mut ok = true;
    let mut reminders = Vec::new();
    for (index, text) in raw.reminders.iter().enumerate() {
        match problems.check(
            &format!("maintenance.reminders[{index}]"),
            parse_duration(text),
        ) {
            Some(duration) if !duration.is_zero() => reminders.push(duration),
            Some(_) => {
                problems.push(
                    &format!("maintenance.reminders[{index}]"),
                    "must be more than zero",
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    reminders.sort_by(|a, b| b.cmp(a));
    reminders.dedup();
    let banner_before = problems.check(
        "maintenance.banner_before",
        parse_duration(&raw.banner_before),
    );
    let check_interval = problems.check(
        "maintenance.check_interval",
        parse_duration(&raw.check_interval),
    );
    if check_interval.is_some_and(|interval| interval.is_zero() || interval.as_secs() > 300) {
        problems.push("maintenance.check_interval", "must be between 1s and 5m");
        ok = false;
    }
    let alertmanager_timeout = problems.check(
        "maintenance.alertmanager_timeout",
        parse_duration(&raw.alertmanager_timeout),
    );
    let mut alertmanager_urls = Vec::new();
    for (index, text) in raw.alertmanager_urls.iter().enumerate() {
        match problems.check(
            &format!("maintenance.alertmanager_urls[{index}]"),
            parse_http_url(text),
        ) {
            Some(url) => alertmanager_urls.push(url.to_string()),
            None => ok = false,
        }
    }
    for name in raw.silence_matchers.keys() {
        if !is_label_name(name) {
            problems.push(
                "maintenance.silence_matchers",
                format!("`{name}` is not a label name"),
            );
            ok = false;
        }
    }
    let alertmanager_token = problems.check(
        "maintenance.alertmanager_token",
        resolve_secret(
            raw.alertmanager_token.as_deref(),
            raw.alertmanager_token_file.as_deref(),
        ),
    );
    let api_token = problems.check(
        "maintenance.api_token",
        resolve_secret(raw.api_token.as_deref(), raw.api_token_file.as_deref()),
    );
    if let Some(Some(token)) = &api_token
        && token.expose().len() < 16
    {
        problems.push("maintenance.api_token", "must be at least 16 characters");
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(MaintenanceConfig {
        reminders,
        banner_before: banner_before?,
        check_interval: check_interval?,
        alertmanager_urls,
        alertmanager_timeout: alertmanager_timeout?,
        alertmanager_token: alertmanager_token?,
        silence_matchers: raw.silence_matchers.clone(),
        api_token: api_token?,
    })
}
