//! The command line (a contract: see README). `main` only dispatches on it.

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
}
