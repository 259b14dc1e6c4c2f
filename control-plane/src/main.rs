//! `streamplane-control`: the binary edge. Parses the command line and configuration, sets up
//! logging, binds sockets and runs the control plane until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use streamplane_config::EXIT_INVALID_CONFIG;
use streamplane_control::config::{Config, LogFormat};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "streamplane-control",
    version,
    about = "Streamplane control plane: REST API, Postgres store, JWT issuer and desired state for workers",
    after_help = "Configuration: YAML file (--config), overridden by STREAMPLANE_* environment variables \
                  (e.g. STREAMPLANE_DATABASE_URL, STREAMPLANE_ENROLLMENT_TOKEN, STREAMPLANE_API_ADDRESS)."
)]
struct Cli {
    /// YAML configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document and exit.
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::Openapi)) {
        print!("{}", streamplane_control::api::openapi_json());
        return ExitCode::SUCCESS;
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (config, unused) = match Config::load(cli.config.as_deref(), env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("streamplane-control: {e}");
            return ExitCode::from(EXIT_INVALID_CONFIG as u8);
        }
    };
    init_tracing(&config);
    for var in unused {
        tracing::warn!(%var, "environment variable is not a configuration key; ignored");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("streamplane-control: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, cli.command.unwrap_or(Command::Serve))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("streamplane-control: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, command: Command) -> anyhow::Result<()> {
    if matches!(command, Command::Migrate) {
        streamplane_control::connect_and_migrate(&config, Duration::from_secs(30)).await?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    // Bind first: a port in use is reported before touching the database.
    let listeners = streamplane_control::Listeners::bind(&config)?;
    let store = streamplane_control::connect_and_migrate(&config, Duration::from_secs(30)).await?;
    let boot = streamplane_control::bootstrap(&store, &config).await?;
    if let Some((user, password)) = &boot.generated_admin {
        // Printed once, on stdout, never logged.
        println!("initial admin credentials: username={user} password={password}");
        println!("(shown only now; change it with PATCH /api/v1/users/{{id}})");
    } else if boot.created_admin {
        tracing::info!(username = %config.admin_username, "created the first admin with the configured password");
    }
    let cancel = CancellationToken::new();
    let signals = cancel.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signals.cancel();
    });
    streamplane_control::serve(config, store, listeners, cancel).await?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
