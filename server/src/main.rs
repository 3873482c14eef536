//! The `weft` binary: parses the configuration, sets up logging, binds, and hands over to
//! [`weft::run`]. SIGINT or SIGTERM starts a graceful shutdown; a second one exits at once.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use weft::config::{Cli, Command, Config, QuarantineCommand, TokenCommand, UserCommand};

fn main() -> anyhow::Result<()> {
    let settings = match Cli::parse().command {
        Command::Serve(settings) => *settings,
        Command::Quarantine { command } => return quarantine(command),
        Command::User { command } => return user(command),
        Command::Token { command } => return token(command),
        Command::RebuildDerived { settings } => return rebuild_derived(*settings),
    };
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

/// `weft user create`: the password comes from the first line of standard input.
fn user(command: UserCommand) -> anyhow::Result<()> {
    let UserCommand::Create { email, name, settings } = command;
    let config = Config::load(*settings)?;
    let mut password = String::new();
    std::io::stdin().read_line(&mut password).context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let user = runtime.block_on(weft::admin::create_user(&config, &email, name.as_deref(), password))?;
    writeln!(std::io::stdout(), "{}", serde_json::to_string(&user)?)?;
    Ok(())
}

/// `weft token issue`: prints the token alone, for `TOKEN=$(weft token issue --email …)`.
fn token(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Issue { email, settings } = command;
    let config = Config::load(*settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let token = runtime.block_on(weft::admin::issue_token(&config, &email))?;
    writeln!(std::io::stdout(), "{token}")?;
    Ok(())
}

/// `weft rebuild-derived`: prints how many documents were derived again, and how the jobs ended.
fn rebuild_derived(settings: weft::config::Settings) -> anyhow::Result<()> {
    let config = Config::load(settings)?;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).context("parsing the log filter")?)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (documents, drained) = runtime.block_on(weft::admin::rebuild_derived(&config))?;
    writeln!(
        std::io::stdout(),
        "derived {documents} documents again: {} jobs done, {} failed (retried when the server runs), {} dead",
        drained.done,
        drained.failed,
        drained.dead
    )?;
    Ok(())
}

/// `weft quarantine list` and `weft quarantine export`.
fn quarantine(command: QuarantineCommand) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match command {
        QuarantineCommand::List { data_dir, json } => {
            let entries = weft::storage::quarantine::list(&data_dir)?;
            if json {
                for entry in &entries {
                    writeln!(stdout, "{}", serde_json::to_string(entry)?)?;
                }
                return Ok(());
            }
            if entries.is_empty() {
                writeln!(stdout, "no quarantined items in {}", data_dir.display())?;
                return Ok(());
            }
            writeln!(
                stdout,
                "{:>5}  {:<24} {:<9} {:<8} {:>8} {:>9}  {:<12} {:<24} reason",
                "id", "document", "crdt", "kind", "seq", "bytes", "user", "quarantined at"
            )?;
            for e in &entries {
                let at = format_ms(e.quarantined_at);
                let user = e.user_id.as_deref().unwrap_or("-");
                writeln!(
                    stdout,
                    "{:>5}  {:<24} {:<9} {:<8} {:>8} {:>9}  {:<12} {:<24} {}",
                    e.id, e.document, e.crdt, e.kind, e.seq, e.size, user, at, e.reason
                )?;
            }
        }
        QuarantineCommand::Export { id, out, data_dir } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let bytes = runtime.block_on(weft::storage::quarantine::export(&data_dir, id))?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            writeln!(stdout, "wrote {} bytes to {}", bytes.len(), out.display())?;
        }
    }
    Ok(())
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC time.
fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
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
