//! Thin entry point: parse the command line, load and check the config, start logging,
//! build the app, serve until a signal, drain.

use std::process::ExitCode;

use clap::Parser as _;
use samsa_relay::app::{App, shutdown_signal};
use samsa_relay::cli::{Cli, Command, SubscribersAction};
use samsa_relay::config::Config;

/// mimalloc instead of the C library's malloc: under load, glibc's malloc (and its
/// `malloc_consolidate`) took about 40 % of the relay's CPU (ARCHITECTURE.md, Dependencies).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
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
