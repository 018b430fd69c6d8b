//! `[cluster]`: how this replica names itself and how long its leases last, for several
//! replicas over one database (PostgreSQL). With SQLite there is one replica and the
//! defaults serve.

use std::time::Duration;

use serde::Deserialize;

use super::{Problems, parse_duration};

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawCluster {
    /// This replica's name in leases, logs and the dashboard, e.g. the host or pod name.
    /// Left out: `SAMSA_RELAY_REPLICA_NAME`, else the host name.
    pub replica_name: Option<String>,
    /// How long a lease (correlation, timers) outlives its holder's last renewal, e.g.
    /// `5s`: when a replica dies, another takes over its roles within this time and a
    /// second. Renewed five times per period.
    pub lease_ttl: String,
}

impl Default for RawCluster {
    fn default() -> RawCluster {
        RawCluster {
            replica_name: None,
            lease_ttl: "5s".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub replica_name: String,
    pub lease_ttl: Duration,
}

/// The shortest lease: renewals every fifth of it must fit a database round trip.
const MIN_LEASE_TTL: Duration = Duration::from_secs(1);

pub(super) fn check_cluster(problems: &mut Problems, raw: RawCluster) -> Option<ClusterConfig> {
    let mut ok = true;
    let replica_name = raw
        .replica_name
        .or_else(|| std::env::var("SAMSA_RELAY_REPLICA_NAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(host_name);
    if replica_name.len() > 128
        || replica_name
            .chars()
            .any(|character| character.is_control() || character.is_whitespace())
    {
        problems.push(
            "cluster.replica_name",
            "at most 128 characters, no spaces or control characters",
        );
        ok = false;
    }
    let lease_ttl = match parse_duration(&raw.lease_ttl) {
        Ok(ttl) if ttl >= MIN_LEASE_TTL => Some(ttl),
        Ok(_) => {
            problems.push("cluster.lease_ttl", "must be at least 1s");
            None
        }
        Err(message) => {
            problems.push("cluster.lease_ttl", message);
            None
        }
    };
    let lease_ttl = lease_ttl?;
    ok.then_some(ClusterConfig {
        replica_name,
        lease_ttl,
    })
}

/// The host name, or `samsa-relay` when it cannot be read.
fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_str()
        .ok()
        .map(str::to_owned)
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "samsa-relay".to_owned())
}
