//! `streamplane-worker`: loads the configuration, binds the metrics port, runs the worker until
//! SIGINT or SIGTERM.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use streamplane_config::EXIT_INVALID_CONFIG;
use streamplane_worker::config::{self, Config, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// Streamplane worker: serves media and follows the control plane's desired state.
///
/// Without controlPlaneUrl it runs standalone. Every key can also be set through an
/// environment variable: metricsAddress → STREAMPLANE_METRICS_ADDRESS.
#[derive(Debug, Parser)]
#[command(name = "streamplane-worker", version)]
struct Cli {
    /// YAML configuration file; without it, defaults and environment variables only.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Read once; variables that are not valid UTF-8 cannot be configuration and are skipped.
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let hostname = hostname::get().ok().and_then(|h| h.into_string().ok());
    let loaded = match config::load(cli.config.as_deref(), env, hostname) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return exit_code(EXIT_INVALID_CONFIG);
        }
    };
    let config = loaded.config;
    if let Err(e) = init_tracing(&config) {
        eprintln!("cannot set up logging: {e:#}");
        return exit_code(EXIT_INVALID_CONFIG);
    }
    for var in &loaded.unused_env {
        warn!(var = %var, "ignoring an environment variable that names no setting");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = streamplane_worker::bind_metrics(config.metrics_address).await?;
    let rtsp_listener = streamplane_worker::bind_rtsp(config.rtsp_address).await?;
    let rtp_sockets = streamplane_worker::bind_udp(config.rtp_address, config.rtcp_address).await?;
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    info!(
        version = streamplane_worker::VERSION,
        name = %config.name,
        mode = config.mode().as_str(),
        metrics_address = %config.metrics_address,
        rtsp_address = %config.rtsp_address,
        rtp_address = %config.rtp_address,
        rtcp_address = %config.rtcp_address,
        "worker starting"
    );
    streamplane_worker::Worker::new(config)
        .with_rtsp_listener(rtsp_listener)
        .with_rtp_sockets(rtp_sockets)
        .run(listener, cancel)
        .await
        .context("worker failed")?;
    info!("worker stopped");
    Ok(())
}

fn init_tracing(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log_filter).context("invalid log filter")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!(e))
}

/// Cancels on the first SIGINT or SIGTERM.
async fn cancel_on_signal(cancel: CancellationToken) {
    match wait_for_signal().await {
        Ok(name) => {
            info!(signal = name, "shutting down");
            cancel.cancel();
        }
        // Still stoppable by SIGKILL; shutting down at once would be worse.
        Err(e) => warn!(error = %e, "cannot listen for shutdown signals; graceful shutdown is off"),
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<&'static str> {
    tokio::signal::ctrl_c().await.map(|()| "ctrl-c")
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
