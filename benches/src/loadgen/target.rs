//! The server under test: how to reach it, how to start and stop it, and what it costs in CPU time
//! and memory, read from `/proc`.
//!
//! A server is either started by the generator from a launch command (so that every scenario gets a
//! fresh process and the cold-load scenario can restart it) or already running (`--addr` and `--pid`).
//! A launch command must print `listening on http://HOST:PORT` as its first stdout line — `weft serve`
//! does, and the peers' launchers under `scripts/bench/` do too — and stop on SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::wire::Dialect;

/// How to reach the server and which process to measure.
#[derive(Debug, Clone)]
pub struct Target {
    /// Label for reports (`weft-fsync`, `hocuspocus`, …).
    pub name: String,
    /// Protocol spoken.
    pub dialect: Dialect,
    /// WebSocket URL with `{addr}` and `{doc}` placeholders.
    pub url_template: String,
    /// Shell command that starts the server; `{data}` is replaced by a scratch directory that lives
    /// as long as the [`Launch`] (and survives restarts).
    pub launch: Option<String>,
    /// Address of a server already running (used when `launch` is `None`).
    pub addr: Option<SocketAddr>,
    /// Its process id, for CPU and memory figures.
    pub pid: Option<u32>,
}

impl Target {
    /// The WebSocket URL of `doc` on the server at `addr`.
    pub fn url(&self, addr: SocketAddr, doc: &str) -> String {
        self.url_template.replace("{addr}", &addr.to_string()).replace("{doc}", doc)
    }
}

/// A running server (started by us or not) and the scratch directory it stores into.
pub struct Launch {
    target: Target,
    /// Where the server is listening.
    pub addr: SocketAddr,
    /// Its process id, if known.
    pub pid: Option<u32>,
    child: Option<Child>,
    scratch: Option<PathBuf>,
}

impl Launch {
    /// Starts the server (or adopts the running one) and waits until it accepts connections.
    ///
    /// # Errors
    /// The command fails to start, never prints its address, or the address never accepts.
    pub async fn start(target: &Target) -> anyhow::Result<Self> {
        let Some(command) = &target.launch else {
            let addr = target.addr.context("either a launch command or --addr is needed")?;
            wait_accepting(addr).await?;
            return Ok(Self { target: target.clone(), addr, pid: target.pid, child: None, scratch: None });
        };
        let scratch = std::env::temp_dir().join(format!(
            "weft-bench-{}-{}-{}",
            target.name,
            std::process::id(),
            super::edits::now_micros()
        ));
        std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
        let mut launch = Self {
            target: target.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid: None,
            child: None,
            scratch: Some(scratch),
        };
        launch.spawn(command).await?;
        Ok(launch)
    }

    async fn spawn(&mut self, command: &str) -> anyhow::Result<()> {
        let scratch = self.scratch.clone().unwrap_or_else(std::env::temp_dir);
        let command = command.replace("{data}", &scratch.join("data").display().to_string());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(scratch.join("server.log"))
            .context("opening the server log")?;
        // `exec` so that the process we measure and signal is the server itself, not a shell.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {command}"))?;
        let stdout = child.stdout.take().context("the server's stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("the server printed nothing for 60 s")?
            .context("reading the server's stdout")?
            .with_context(|| format!("the server exited; see {}", scratch.join("server.log").display()))?;
        let addr = first
            .strip_prefix("listening on http://")
            .and_then(|rest| rest.trim().parse::<SocketAddr>().ok())
            .with_context(|| format!("expected `listening on http://ADDR`, got {first:?}"))?;
        // Keep draining stdout so that a chatty server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.pid = child.id();
        self.child = Some(child);
        self.addr = addr;
        wait_accepting(addr).await
    }

    /// Stops the server with SIGTERM and starts it again on the same scratch directory.
    ///
    /// # Errors
    /// When the server was not started by the generator, or does not come back.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let Some(command) = self.target.launch.clone() else {
            bail!("only a server the generator started can be restarted");
        };
        self.stop().await;
        self.spawn(&command).await
    }

    /// Stops a server the generator started: SIGTERM, then SIGKILL after 15 s.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
        }
        if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }

    /// A sample of the server's CPU time and memory, if its process is known.
    pub fn sample(&self) -> Option<ProcSample> {
        self.pid.and_then(|pid| ProcSample::read(&format!("/proc/{pid}")).ok())
    }

    /// The scratch directory, if the generator made one.
    pub fn scratch(&self) -> Option<&Path> {
        self.scratch.as_deref()
    }

    /// Stops the server and removes its scratch directory.
    pub async fn finish(mut self) {
        self.stop().await;
        if let Some(scratch) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

async fn wait_accepting(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() > deadline => {
                return Err(err).with_context(|| format!("{addr} does not accept connections"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// CPU time and resident memory of one process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// When it was read.
    pub at: Instant,
    /// User plus system CPU time of every thread, in seconds.
    pub cpu_s: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

impl ProcSample {
    /// Reads `/proc/PID` (or `/proc/self`): `stat` fields 14 and 15 (utime, stime, in clock ticks)
    /// and `status`'s `VmRSS`.
    ///
    /// # Errors
    /// When the process is gone or the files are not as described in proc(5).
    pub fn read(proc_dir: &str) -> std::io::Result<Self> {
        let at = Instant::now();
        let stat = std::fs::read_to_string(format!("{proc_dir}/stat"))?;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected /proc format");
        // The command name may hold spaces; the fields after it start at the last `)`.
        let after_name = stat.rsplit_once(')').ok_or_else(bad)?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // After the name, field 3 (state) is index 0, so utime (14) is index 11 and stime (15) 12.
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or_else(bad);
        let cpu_s = (ticks(11)? + ticks(12)?) as f64 / clock_ticks_per_second();
        let status = std::fs::read_to_string(format!("{proc_dir}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .ok_or_else(bad)?;
        Ok(Self { at, cpu_s, rss_bytes: rss_kib * 1024 })
    }

    /// The generator's own process.
    pub fn own() -> Option<Self> {
        Self::read("/proc/self").ok()
    }

    /// CPU seconds used between `earlier` and `self`.
    pub fn cpu_since(&self, earlier: &Self) -> f64 {
        self.cpu_s - earlier.cpu_s
    }

    /// Share of one core used between `earlier` and `self` (1.0 = one core busy).
    pub fn cores_since(&self, earlier: &Self) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall > 0.0 { self.cpu_since(earlier) / wall } else { 0.0 }
    }
}

/// Busy and total CPU time of the whole machine (all cores), from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy)]
pub struct MachineSample {
    /// When it was read.
    pub at: Instant,
    /// Seconds of CPU time spent busy (everything but idle and iowait), summed over cores.
    pub busy_s: f64,
}

impl MachineSample {
    /// Reads `/proc/stat`.
    pub fn read() -> Option<Self> {
        let at = Instant::now();
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|line| line.starts_with("cpu "))?;
        let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal …; guest time is already in user.
        let busy: u64 =
            ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
        Some(Self { at, busy_s: busy as f64 / clock_ticks_per_second() })
    }

    /// Cores busy on average between `earlier` and `self`, across the machine.
    pub fn cores_since(&self, earlier: &Self) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall > 0.0 { (self.busy_s - earlier.busy_s) / wall } else { 0.0 }
    }
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` once (the workspace forbids the unsafe FFI call);
/// Linux has used 100 on every common architecture for decades, which is the fallback.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|ticks| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_time_and_memory() {
        let sample = ProcSample::own().expect("/proc/self is readable on Linux");
        assert!(sample.rss_bytes > 0);
        assert!(sample.cpu_s >= 0.0);
    }
}
