//! The `weft` binary: parses the configuration, sets up logging, binds, and hands over to
//! [`weft::run`]. SIGINT or SIGTERM starts a graceful shutdown; a second one exits at once.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use weft::config::{Cli, Command, Config};

fn main() -> anyhow::Result<()> {
    let Command::Serve(settings) = Cli::parse().command;
    let config = Config::load(settings)?;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).context("parsing the log filter")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to learn the port when listening on port 0.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    tracing::info!(%addr, data_dir = %config.storage.data_dir.display(), durability = ?config.storage.durability, "weft started");
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    weft::run(config, listener, shutdown).await
}

async fn watch_signals(shutdown: CancellationToken) {
    for round in 0..2 {
        if let Err(err) = next_signal().await {
            tracing::error!(error = %err, "cannot listen for signals");
            return;
        }
        if round == 0 {
            tracing::info!("shutting down (send the signal again to exit now)");
            shutdown.cancel();
        }
    }
    tracing::warn!("second signal; exiting without waiting");
    std::process::exit(130);
}

async fn next_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = term.recv() => Ok(()),
    }
}
