//! Thin entry point: parse the command line, load and check the config, start logging,
//! build the app, serve until a signal, drain.

use std::process::ExitCode;

use clap::Parser as _;
use samsa_relay::app::{App, shutdown_signal};
use samsa_relay::cli::{Cli, Command, MaintenanceAction, SubscribersAction};
use samsa_relay::config::Config;

/// mimalloc instead of the C library's malloc: under load, glibc's malloc (and its
/// `malloc_consolidate`) took about 40 % of the relay's CPU (ARCHITECTURE.md, Dependencies).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: its place in the C enum `mi_option_t`, which
/// mimalloc keeps stable (retired options keep their places) in 2.x and 3.x.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long freed memory stays committed before mimalloc returns it to the system, in
/// milliseconds. mimalloc 3's default is 1,000: what a webhook's request freed on one
/// thread was still resident while the incident worker allocated on another, and a
/// 10,000-alert webhook peaked at 68 MB instead of 54 (docs/performance.md). 10 is
/// mimalloc 2's default. `MIMALLOC_PURGE_DELAY` in the environment still wins.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// The crate's only unsafe code outside a test: one option set in mimalloc's table,
/// before any thread but this one exists.
#[allow(unsafe_code)]
fn set_allocator_options() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; it takes
        // no pointers and is valid for any option and value.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

/// The purge delay mimalloc uses now.
#[cfg(test)]
#[allow(unsafe_code)]
fn purge_delay() -> std::ffi::c_long {
    // SAFETY: reads an integer from mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
}

fn main() -> ExitCode {
    set_allocator_options();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(loaded) => {
                println!("{}: valid", config.display());
                for note in loaded.banner_notes() {
                    println!("note: {note}");
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Simulate {
            config,
            json,
            payloads,
        } => {
            let config = match Config::load(&config) {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(2);
                }
            };
            let steps = match samsa_relay::simulate::simulate(&config, &payloads) {
                Ok(steps) => steps,
                Err(error) => {
                    eprintln!("simulate: {error:#}");
                    return ExitCode::FAILURE;
                }
            };
            let mut out = std::io::stdout().lock();
            let written = if json {
                serde_json::to_writer_pretty(&mut out, &steps)
                    .map_err(std::io::Error::other)
                    .and_then(|()| std::io::Write::write_all(&mut out, b"\n"))
            } else {
                samsa_relay::simulate::print_steps(&steps, &mut out)
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("simulate: cannot write the output: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Report {
            config,
            format,
            output,
            incident,
        } => report(&config, format.into(), output.as_deref(), incident),
        Command::RevokeLinks { config } => revoke_links(&config),
        Command::Subscribers { config, action } => subscribers(&config, action),
        Command::Maintenance { config, action } => maintenance(&config, action),
        Command::Serve { config } => {
            let config = match Config::load(&config) {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("refusing to start: the configuration has problems");
                    return ExitCode::from(2);
                }
            };
            samsa_relay::telemetry::init(&config.logging);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = ?error, "samsa-relay stopped with an error");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `report`: exit 0 with the report written, 1 when the incident does not exist or the
/// database cannot be read, 2 when the config is invalid.
fn report(
    config: &std::path::Path,
    format: samsa_relay::followup::ReportFormat,
    output: Option<&std::path::Path>,
    incident_id: i64,
) -> ExitCode {
    let (config, runtime) = match config_and_runtime(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let text = match runtime.block_on(samsa_relay::followup::report_from_config(
        &config,
        incident_id,
        format,
        jiff::Timestamp::now(),
    )) {
        Ok(Some(text)) => text,
        Ok(None) => {
            eprintln!("report: incident {incident_id} does not exist");
            return ExitCode::FAILURE;
        }
        Err(error) => {
            eprintln!("report: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let written = match output {
        Some(path) => std::fs::write(path, text.as_bytes())
            .map_err(|error| format!("cannot write {}: {error}", path.display())),
        None => std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())
            .map_err(|error| format!("cannot write the report: {error}")),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("report: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `revoke-links`: exit 0 once every link issued until now is revoked, 1 when the
/// database cannot be written, 2 when the config is invalid.
fn revoke_links(config: &std::path::Path) -> ExitCode {
    let (config, runtime) = match config_and_runtime(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let now = jiff::Timestamp::now();
    match runtime.block_on(samsa_relay::operators::revoke_links(&config, now)) {
        Ok(()) => {
            println!("every operator link issued until {now} is revoked");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("revoke-links: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `subscribers`: exit 0 when done, 1 when the address has nothing stored, the file has
/// problems or the database cannot be used, 2 when the config is invalid.
fn subscribers(config: &std::path::Path, action: SubscribersAction) -> ExitCode {
    use samsa_relay::subscribers;
    let (config, runtime) = match config_and_runtime(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let now = jiff::Timestamp::now();
    let result: anyhow::Result<Option<String>> = runtime.block_on(async {
        let storage = samsa_relay::storage::Storage::open_existing(&config.database).await?;
        let out = match action {
            SubscribersAction::List => Some(subscribers::list(&storage, &config.inventory).await?),
            SubscribersAction::Count => Some(subscribers::count(&storage).await?),
            SubscribersAction::Import { file, by } => {
                Some(subscribers::import(&storage, &config, &file, &by, now).await?)
            }
            SubscribersAction::Remove { address, by } => {
                subscribers::remove(&storage, &address, &by, now)
                    .await?
                    .then(|| format!("{} is unsubscribed\n", address.trim()))
            }
            SubscribersAction::Export { address } => {
                match subscribers::export(&storage, &config, &address).await? {
                    Some(json) => Some(format!("{}\n", serde_json::to_string_pretty(&json)?)),
                    None => None,
                }
            }
            SubscribersAction::Delete { address } => subscribers::delete(&storage, &address)
                .await?
                .then(|| format!("everything stored about {} is deleted\n", address.trim())),
        };
        storage.close().await;
        Ok(out)
    });
    match result {
        Ok(Some(out)) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("subscribers: no subscription is stored for that address");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("subscribers: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `maintenance`: exit 0 when done, 1 when refused (with the reasons) or the database
/// cannot be used, 2 when the config is invalid.
fn maintenance(config: &std::path::Path, action: MaintenanceAction) -> ExitCode {
    use samsa_relay::maintenance::{PlanRequest, parse_time};
    use samsa_relay::maintenance_actions as actions;
    let (config, runtime) = match config_and_runtime(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let now = jiff::Timestamp::now();
    let result: anyhow::Result<String> = runtime.block_on(async {
        let storage = samsa_relay::storage::Storage::open_existing(&config.database).await?;
        let renderer = samsa_relay::notice::NoticeRenderer::new(&config.notices)?;
        let times = |start: &str, end: &str| -> anyhow::Result<(jiff::Timestamp, jiff::Timestamp)> {
            let start = parse_time(start).map_err(|message| anyhow::anyhow!("--start: {message}"))?;
            let end = parse_time(end).map_err(|message| anyhow::anyhow!("--end: {message}"))?;
            Ok((start, end))
        };
        let out = match action {
            MaintenanceAction::Plan {
                title,
                whole_service,
                actors,
                subregions,
                start,
                end,
                impact,
                advice,
                level,
                review_each,
                by,
            } => {
                let plan = PlanRequest {
                    title,
                    whole_service,
                    actors,
                    subregions,
                    starts_at: start,
                    ends_at: end,
                    impact,
                    advice,
                    level,
                    review_each,
                    requested_by: Some(by.clone()),
                }
                .into_plan()
                .map_err(actions::MaintenanceError::Plan);
                let planned = match plan {
                    Ok(plan) => actions::plan_window(&storage, &config, &renderer, plan, &by, now).await,
                    Err(error) => Err(error),
                };
                let (id, draft_id) = planned.map_err(describe_maintenance_error)?;
                format!("window {id} planned; its announcement (draft {draft_id}) waits for review on the dashboard\n")
            }
            MaintenanceAction::List => {
                let since = now
                    .checked_sub(jiff::SignedDuration::from_hours(24 * 30))
                    .unwrap_or(jiff::Timestamp::MIN);
                let mut out = String::new();
                for window in storage.maintenance_windows(since).await? {
                    out.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\n",
                        window.incident_id,
                        window.state.as_str(),
                        window.plan.starts_at,
                        window.plan.ends_at,
                        window.plan.title
                    ));
                }
                out
            }
            MaintenanceAction::Move { id, start, end, by } => {
                let (start, end) = times(&start, &end)?;
                let draft_id = actions::move_window(&storage, &config, &renderer, id, start, end, &by, now)
                    .await
                    .map_err(describe_maintenance_error)?;
                format!("window {id} moved; the notice (draft {draft_id}) waits for review\n")
            }
            MaintenanceAction::Cancel { id, reason, by } => {
                match actions::cancel_window(&storage, &config, &renderer, id, &reason, &by, now)
                    .await
                    .map_err(describe_maintenance_error)?
                {
                    Some(draft_id) => format!("window {id} cancelled; the notice (draft {draft_id}) waits for review\n"),
                    None => format!("window {id} cancelled before it was announced; nothing is sent\n"),
                }
            }
            MaintenanceAction::End { id, by } => {
                let draft_id = actions::end_window(&storage, &config, &renderer, id, &by, now)
                    .await
                    .map_err(describe_maintenance_error)?;
                format!("window {id} ended; the notice (draft {draft_id}) waits for review\n")
            }
        };
        storage.close().await;
        Ok(out)
    });
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("maintenance: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A refused action in words, each problem of a plan at its field.
fn describe_maintenance_error(
    error: samsa_relay::maintenance_actions::MaintenanceError,
) -> anyhow::Error {
    match error {
        samsa_relay::maintenance_actions::MaintenanceError::Plan(problems) => anyhow::anyhow!(
            "{}",
            problems
                .iter()
                .map(|problem| format!("{}: {}", problem.field, problem.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => anyhow::anyhow!("{other}"),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Each connection is an open file: room for both listeners' caps and the relay's own.
    let max_connections = config.server.max_connections as u64;
    match samsa_relay::http::server::raise_open_files_limit(2 * max_connections + 256) {
        Ok(limit) if limit < max_connections + 64 => tracing::warn!(
            limit,
            max_connections,
            "the open-files limit is below server.max_connections; raise LimitNOFILE"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the open-files limit"),
    }
    let app = App::build(config).await?;
    tracing::info!(address = %app.local_addr(), version = env!("CARGO_PKG_VERSION"), "samsa-relay listening");
    app.run(shutdown_signal()).await
}

/// What `report` and `revoke-links` start with: the checked config (exit 2 with its
/// problems when invalid) and a current-thread runtime (exit 1 when none can be made).
fn config_and_runtime(
    config: &std::path::Path,
) -> Result<(Config, tokio::runtime::Runtime), ExitCode> {
    let config = Config::load(config).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(2)
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("cannot start the async runtime: {error}");
            ExitCode::FAILURE
        })?;
    Ok((config, runtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option's place is right: unset, it reads mimalloc 3's purge delay default (no
    /// other option defaults to 1,000), and what is set reads back.
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay(), 1000);
        }
        set_allocator_options();
        let expected = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(PURGE_DELAY_MS);
        assert_eq!(purge_delay(), expected);
    }
}
