//! The command line (a contract: see docs/operations.md, "Command line"). `main` only dispatches on it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "samsa-relay",
    version,
    about = "Alertmanager alerts about SAMSA in, human-approved notices out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay.
    Serve {
        /// The TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file: exit 0 when valid, else list every problem, one per line.
    CheckConfig {
        /// The TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Rehearse the plan: run webhook payloads through correlation, classification and
    /// drafting, with no network and no stored state, and print what the relay would do.
    Simulate {
        /// The TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Alertmanager webhook payloads (JSON files), in the order they arrive.
        #[arg(required = true, value_name = "PAYLOAD.json")]
        payloads: Vec<PathBuf>,
    },
    /// Write the follow-up report of one incident from the configured database: timeline,
    /// durations, scope per sub-region, decisions, deliveries, feedback and lessons learned.
    Report {
        /// The TOML configuration file (its database and inventory are used).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// md (Markdown), html (printable on A4) or json (docs/report-schema.json).
        #[arg(long, value_enum, default_value = "md")]
        format: ReportFormatArg,
        /// Write the report to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The incident: its number, or its reference such as SAMSA-42.
        #[arg(value_name = "INCIDENT", value_parser = parse_incident)]
        incident: i64,
    },
    /// Revoke every operator link issued until now (review and dashboard links alike),
    /// in the configured database; operators ask for new ones at /ops/login. Takes effect
    /// at once, also for a relay that is running.
    RevokeLinks {
        /// The TOML configuration file (its database is used).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Planned maintenance windows, in the configured database: plan, list, move,
    /// cancel, end.
    Maintenance {
        /// The TOML configuration file (its database, inventory and templates are used).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[command(subcommand)]
        action: MaintenanceAction,
    },
    /// The subscribers of the notices, in the configured database: list, count, import,
    /// remove, and a subscriber's data (export, delete).
    Subscribers {
        /// The TOML configuration file (its database and inventory are used).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[command(subcommand)]
        action: SubscribersAction,
    },
}

/// `samsa-relay maintenance …`.
#[derive(Debug, Subcommand)]
pub enum MaintenanceAction {
    /// Plan a window: its announcement waits for an operator's review and publish, like
    /// one planned on the dashboard. Prints the window's id.
    Plan {
        #[arg(long)]
        title: String,
        /// The whole service is affected.
        #[arg(long)]
        whole_service: bool,
        /// An affected organisation's id (deploy/inventory.toml); repeat for more.
        #[arg(long = "actor", value_name = "ID")]
        actors: Vec<String>,
        /// An affected sub-region's id; repeat for more.
        #[arg(long = "subregion", value_name = "ID")]
        subregions: Vec<String>,
        /// Start, in Swedish local time (`2026-12-08 18:00`) or RFC 3339.
        #[arg(long, value_name = "TIME")]
        start: String,
        /// End, like the start.
        #[arg(long, value_name = "TIME")]
        end: String,
        /// What users will notice.
        #[arg(long)]
        impact: String,
        /// What users should do; left out: the backup routine.
        #[arg(long, default_value = "")]
        advice: String,
        /// The plan's level whose channels the notices use (1, 2 or 3).
        #[arg(long, default_value_t = 1)]
        level: u8,
        /// Each later notice waits for review instead of going out on its own.
        #[arg(long)]
        review_each: bool,
        /// Who plans it.
        #[arg(long, value_name = "NAME")]
        by: String,
    },
    /// The windows of the last 30 days and ahead.
    List,
    /// Move a window to new times (a notice for review tells people).
    Move {
        #[arg(value_name = "ID")]
        id: i64,
        #[arg(long, value_name = "TIME")]
        start: String,
        #[arg(long, value_name = "TIME")]
        end: String,
        #[arg(long, value_name = "NAME")]
        by: String,
    },
    /// Call a window off (a notice for review tells people, once it was announced).
    Cancel {
        #[arg(value_name = "ID")]
        id: i64,
        #[arg(long)]
        reason: String,
        #[arg(long, value_name = "NAME")]
        by: String,
    },
    /// End a window now (a "klart" notice for review).
    End {
        #[arg(value_name = "ID")]
        id: i64,
        #[arg(long, value_name = "NAME")]
        by: String,
    },
}

/// `samsa-relay subscribers …`.
#[derive(Debug, Subcommand)]
pub enum SubscribersAction {
    /// Every subscriber: address, state, choices, source, consent time, failures.
    List,
    /// How many subscribers are in each state.
    Count,
    /// Add confirmed subscribers from a CSV file with an address column and an
    /// organisations column (docs/subscriptions.md); addresses subscribed already are
    /// left as they are. Nothing is imported when a line has a problem.
    Import {
        /// The CSV file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Who imports (recorded as the subscriptions' source).
        #[arg(long, value_name = "NAME")]
        by: String,
    },
    /// End the subscription of an address (kept until the retention time, then purged).
    Remove {
        #[arg(value_name = "ADDRESS")]
        address: String,
        /// Who removes it (recorded with the subscription).
        #[arg(long, value_name = "NAME", default_value = "an operator")]
        by: String,
    },
    /// Print everything stored about an address, as JSON.
    Export {
        #[arg(value_name = "ADDRESS")]
        address: String,
    },
    /// Delete everything stored about an address, now.
    Delete {
        #[arg(value_name = "ADDRESS")]
        address: String,
    },
}

/// The report's forms on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormatArg {
    Md,
    Html,
    Json,
}

impl From<ReportFormatArg> for crate::followup::ReportFormat {
    fn from(format: ReportFormatArg) -> crate::followup::ReportFormat {
        match format {
            ReportFormatArg::Md => crate::followup::ReportFormat::Markdown,
            ReportFormatArg::Html => crate::followup::ReportFormat::Html,
            ReportFormatArg::Json => crate::followup::ReportFormat::Json,
        }
    }
}

fn parse_incident(text: &str) -> Result<i64, String> {
    crate::followup::parse_incident_reference(text)
        .ok_or_else(|| format!("{text:?} is not an incident number (42) or reference (SAMSA-42)"))
}
