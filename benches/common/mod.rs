//! What the bench helpers share: Alertmanager v4 payloads that are distinct per request,
//! percentiles, and the command-line parsing they all use.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

/// The actor every throughput payload names (a known actor: a level 1 incident).
pub const ACTOR: &str = "kommun-boras";

/// One firing alert in the Alertmanager v4 form, distinct for each `(stream, sequence,
/// index)`: the fingerprint carries all three, `startsAt` carries the sequence in its
/// nanoseconds (the dedupe key covers both).
pub fn alert_json(stream: u32, sequence: u64, index: usize, actor: &str, out: &mut String) {
    use std::fmt::Write as _;
    write!(
        out,
        r#"{{"status":"firing","labels":{{"alertname":"SamsaLoginDown","service":"samsa","actor":"{actor}"}},"annotations":{{"summary":"SAMSA login page unreachable"}},"startsAt":"2026-11-28T04:12:00.{nanos:09}Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus.example/graph","fingerprint":"{stream:04x}{sequence:012x}{index:04x}"}}"#,
        nanos = sequence % 1_000_000_000,
    )
    .expect("writing to a String");
}

/// A whole webhook body with `n_alerts` alerts, each naming `actor(index)`.
pub fn payload_with(
    stream: u32,
    sequence: u64,
    n_alerts: usize,
    actor: impl Fn(usize) -> String,
) -> String {
    let mut out = String::with_capacity(200 + n_alerts * 420);
    out.push_str(
        r#"{"version":"4","groupKey":"{}/{service=\"samsa\"}:{alertname=\"SamsaLoginDown\"}","truncatedAlerts":0,"status":"firing","receiver":"samsa-relay","groupLabels":{"alertname":"SamsaLoginDown"},"commonLabels":{"service":"samsa"},"commonAnnotations":{},"externalURL":"http://alertmanager.example:9093","alerts":["#,
    );
    for index in 0..n_alerts {
        if index > 0 {
            out.push(',');
        }
        alert_json(stream, sequence, index, &actor(index), &mut out);
    }
    out.push_str("]}");
    out
}

/// The throughput payload: `n_alerts` alerts about [`ACTOR`].
pub fn payload(stream: u32, sequence: u64, n_alerts: usize) -> String {
    payload_with(stream, sequence, n_alerts, |_| ACTOR.to_owned())
}

/// The value at `percent` (0..=100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], percent: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `--key value` pairs after the subcommand (cargo's own `--bench` is ignored).
pub struct Args {
    values: BTreeMap<String, String>,
}

impl Args {
    pub fn parse(raw: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut values = BTreeMap::new();
        let mut raw = raw.filter(|arg| arg != "--bench");
        while let Some(key) = raw.next() {
            let Some(name) = key.strip_prefix("--") else {
                return Err(format!("unexpected argument {key:?}"));
            };
            let value = raw
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            values.insert(name.to_owned(), value);
        }
        Ok(Args { values })
    }

    pub fn string(&self, name: &str) -> Result<String, String> {
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| format!("--{name} is required"))
    }

    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.values
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.values.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| format!("--{name}: {text:?} is not a number")),
        }
    }

    pub fn seconds(&self, name: &str, default: f64) -> Result<Duration, String> {
        let value: f64 = self.number(name, default)?;
        if !(value.is_finite() && value >= 0.0) {
            return Err(format!("--{name}: not a duration in seconds"));
        }
        Ok(Duration::from_secs_f64(value))
    }
}

pub const USAGE_HINT: &str =
    "this is a helper of the bench; run the whole bench with: bash scripts/bench.sh";

/// Mean (in ms) and count of a Prometheus histogram series in /metrics text, e.g.
/// `histogram_mean(text, "samsa_relay_storage_operation_duration_seconds",
/// r#"{operation="incident_step"}"#)`. None when the series is not there.
pub fn histogram_mean(text: &str, name: &str, labels: &str) -> Option<(f64, f64)> {
    let sample = |suffix: &str| {
        let series = format!("{name}_{suffix}{labels}");
        text.lines().find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == series).then(|| value.parse::<f64>().ok())?
        })
    };
    let (sum, count) = (sample("sum")?, sample("count")?);
    let mean = if count > 0.0 {
        sum / count * 1000.0
    } else {
        0.0
    };
    Some((mean, count))
}
