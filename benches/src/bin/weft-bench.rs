//! `weft-bench`: the load generator. Parses arguments, raises the open-file limit, builds a small
//! tokio runtime and runs one scenario (or draws plots); everything else is in
//! `weft_benches::loadgen`.
//!
//! Every scenario is bounded in time, talks to loopback addresses only, and appends one JSON line to
//! `--out` besides printing a summary. See `docs/benchmarks.md` for what each figure means.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use weft_benches::loadgen::report::Report;
use weft_benches::loadgen::scenarios::{self, Common};
use weft_benches::loadgen::target::Target;
use weft_benches::loadgen::wire::Dialect;
use weft_benches::loadgen::{edits, plot};

#[derive(Debug, Parser)]
#[command(name = "weft-bench", about = "Load generator for Weft and other Yjs relays (loopback only)")]
struct Cli {
    /// JSON-lines file each scenario appends its report to.
    #[arg(long, global = true, default_value = "weft-bench-results.jsonl")]
    out: PathBuf,
    /// Worker threads of the generator's runtime (1 keeps the generator on one core, leaving the
    /// other to the server on a 2-core machine).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// R rooms × C clients, each editing at a fixed rate: latency, deliveries/s, server CPU and RSS.
    Fanout {
        #[command(flatten)]
        target: TargetArgs,
        /// Rooms.
        #[arg(long, default_value_t = 1)]
        rooms: u32,
        /// Clients per room.
        #[arg(long, default_value_t = 100)]
        clients: u32,
        /// Edits per second per client.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Seconds of editing.
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// Seconds allowed for late deliveries after the last edit.
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
    },
    /// The highest open-loop rate into one room with every update delivered and p99 under a limit.
    MaxRate {
        #[command(flatten)]
        target: TargetArgs,
        /// Clients in the room (the offered load is split between them).
        #[arg(long, default_value_t = 2)]
        clients: u32,
        /// Offered loads to step through, updates/s into the room.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "500,1000,2000,5000,10000,20000,35000,50000,75000"
        )]
        rates: Vec<f64>,
        /// Seconds per step.
        #[arg(long, default_value_t = 5.0)]
        step: f64,
        /// Seconds allowed for late deliveries after each step.
        #[arg(long, default_value_t = 3.0)]
        drain: f64,
        /// p99 limit in milliseconds for a step to pass.
        #[arg(long, default_value_t = 50.0)]
        p99_ms: f64,
        /// Steps still run after the first failing one, for the latency curve.
        #[arg(long, default_value_t = 1)]
        extra_steps: usize,
    },
    /// Server RSS as idle, synced connections accumulate.
    Idle {
        #[command(flatten)]
        target: TargetArgs,
        /// Connection counts to measure at.
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,15000")]
        steps: Vec<u32>,
        /// Connections per document.
        #[arg(long, default_value_t = 10)]
        per_room: u32,
        /// Seconds to settle before each measurement.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
    },
    /// N clients join one large document (the editing trace's final state) at the same instant.
    JoinStorm {
        #[command(flatten)]
        target: TargetArgs,
        /// Clients joining at once.
        #[arg(long, default_value_t = 100)]
        clients: u32,
    },
    /// N clients in one room updating awareness at a fixed rate.
    Presence {
        #[command(flatten)]
        target: TargetArgs,
        /// Clients.
        #[arg(long, default_value_t = 200)]
        clients: u32,
        /// Awareness updates per second per client.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Seconds of updates.
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
    },
    /// Write the editing trace through the relay, restart it, and time a fresh client's sync.
    ColdLoad {
        #[command(flatten)]
        target: TargetArgs,
        /// Trace updates to write (default: all 259,778).
        #[arg(long, default_value_t = usize::MAX)]
        updates: usize,
        /// Unacknowledged updates in flight while writing.
        #[arg(long, default_value_t = 1024)]
        window: usize,
        /// Restart-and-sync measurements.
        #[arg(long, default_value_t = 3)]
        repeats: u32,
    },
    /// Draws latency against offered load from a results file, as SVG.
    Plot {
        /// Results file (JSON lines) to read.
        #[arg(long)]
        input: PathBuf,
        /// Scenario whose rounds to plot.
        #[arg(long, default_value = "max-rate")]
        scenario: String,
        /// Title above the plot.
        #[arg(long, default_value = "Delivery latency against offered load")]
        title: String,
        /// SVG file to write.
        #[arg(long)]
        svg: PathBuf,
    },
}

/// Which server to load and how to reach it.
#[derive(Debug, Args)]
struct TargetArgs {
    /// Label in reports.
    #[arg(long, default_value = "weft")]
    name: String,
    /// Protocol: y-websocket (`yjs`) or Hocuspocus.
    #[arg(long, value_enum, default_value = "yjs")]
    dialect: Dialect,
    /// WebSocket URL with `{addr}` and `{doc}` placeholders.
    #[arg(long, default_value = "ws://{addr}/ws/yjs/{doc}")]
    url: String,
    /// Shell command starting a fresh server per scenario; it must print `listening on
    /// http://ADDR` first. `{data}` becomes a scratch directory.
    #[arg(long, conflicts_with = "addr")]
    launch: Option<String>,
    /// Address of a server already running.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Process id of that server (for CPU and memory figures).
    #[arg(long, requires = "addr")]
    pid: Option<u32>,
    /// Loopback source addresses to spread connections over (127.0.0.2 onwards).
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
}

impl TargetArgs {
    fn split(&self) -> (Target, Common) {
        let target = Target {
            name: self.name.clone(),
            dialect: self.dialect,
            url_template: self.url.clone(),
            launch: self.launch.clone(),
            addr: self.addr,
            pid: self.pid,
        };
        let common = Common { sources: self.sources, connect_concurrency: self.connect_concurrency };
        (target, common)
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Thousands of sockets: take the hard limit. Servers the generator starts inherit it.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => eprintln!("open-file limit: {limit}"),
        Err(err) => eprintln!("could not raise the open-file limit: {err}"),
    }
    edits::start_clock();
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cli.threads).enable_all().build()?
    };
    let report = runtime.block_on(run(cli.command))?;
    if let Some(report) = report {
        println!("{}", serde_json::to_string_pretty(&summary(&report))?);
        report.append_to(&cli.out).with_context(|| format!("writing {}", cli.out.display()))?;
    }
    Ok(())
}

async fn run(command: Command) -> anyhow::Result<Option<Report>> {
    let report = match command {
        Command::Fanout { target, rooms, clients, rate, duration, drain } => {
            let (target, common) = target.split();
            let params =
                scenarios::Fanout { rooms, clients, rate, duration: secs(duration), drain: secs(drain) };
            scenarios::fanout(&target, &common, &params).await?
        }
        Command::MaxRate { target, clients, rates, step, drain, p99_ms, extra_steps } => {
            let (target, common) = target.split();
            let params = scenarios::MaxRate {
                clients,
                rates,
                step: secs(step),
                drain: secs(drain),
                p99_ms,
                extra_steps,
            };
            scenarios::max_rate(&target, &common, &params).await?
        }
        Command::Idle { target, steps, per_room, settle } => {
            let (target, common) = target.split();
            let params = scenarios::Idle { steps, per_room, settle: secs(settle) };
            scenarios::idle(&target, &common, &params).await?
        }
        Command::JoinStorm { target, clients } => {
            let (target, common) = target.split();
            scenarios::join_storm(&target, &common, &scenarios::JoinStorm { clients }).await?
        }
        Command::Presence { target, clients, rate, duration } => {
            let (target, common) = target.split();
            let params = scenarios::Presence { clients, rate, duration: secs(duration) };
            scenarios::presence(&target, &common, &params).await?
        }
        Command::ColdLoad { target, updates, window, repeats } => {
            let (target, common) = target.split();
            let params = scenarios::ColdLoad { updates, window, repeats };
            scenarios::cold_load(&target, &common, &params).await?
        }
        Command::Plot { input, scenario, title, svg } => {
            let reports = Report::read_all(&input).with_context(|| format!("reading {}", input.display()))?;
            plot::latency_against_load(&reports, &scenario, &title, &svg)?;
            eprintln!("wrote {}", svg.display());
            return Ok(None);
        }
    };
    Ok(Some(report))
}

/// The report without its per-round detail, for the terminal.
fn summary(report: &Report) -> serde_json::Value {
    serde_json::json!({
        "scenario": report.scenario,
        "server": report.server,
        "params": report.params,
        "result": report.result,
        "notes": report.notes,
    })
}
