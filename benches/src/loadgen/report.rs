//! Result records: what every scenario reports, as JSON lines (one object per scenario run) for the
//! side-by-side script and the plots, and as a short human summary.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Percentiles {
    /// Summarises a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }

    /// Summarises a list of durations.
    pub fn of_durations(samples: &[Duration]) -> Self {
        let mut histogram = super::client::latency_histogram();
        for sample in samples {
            histogram.saturating_record((sample.as_micros() as u64).max(1));
        }
        Self::of(&histogram)
    }
}

/// One editing or presence round: a fixed offered load for a fixed time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Round {
    /// Rooms (documents).
    pub rooms: u32,
    /// Clients per room.
    pub clients_per_room: u32,
    /// Offered load: sends per second into all rooms together.
    pub offered_per_s: f64,
    /// Seconds of sending.
    pub duration_s: f64,
    /// Sends made.
    pub sent: u64,
    /// Deliveries expected: every send reaches every other client of its room.
    pub expected: u64,
    /// Deliveries seen.
    pub delivered: u64,
    /// `expected - delivered` (never negative).
    pub dropped: u64,
    /// `delivered / expected`.
    pub delivery_ratio: f64,
    /// Deliveries per second of sending.
    pub deliveries_per_s: f64,
    /// Delivery latency: from the moment an edit was due to its arrival at another client.
    pub latency: Percentiles,
    /// Acknowledgement latency: from the moment an edit was due to its echo at its sender.
    pub ack: Percentiles,
    /// Connections the server closed as slow consumers (4529).
    pub closed_slow: u32,
    /// Connections that ended otherwise during the round.
    pub closed_other: u32,
    /// Server CPU seconds used from the first send to the end of the drain.
    pub server_cpu_s: f64,
    /// Server cores busy on average over the same span.
    pub server_cores: f64,
    /// Server CPU microseconds per delivered message.
    pub server_us_per_delivery: f64,
    /// Largest server RSS seen during the round, MiB.
    pub server_rss_peak_mib: f64,
    /// Load generator cores busy on average over the same span.
    pub generator_cores: f64,
    /// Cores busy with anything else on the machine over the same span (other processes, and
    /// kernel work not charged to either process): a noisy neighbour shows up here.
    #[serde(default)]
    pub other_cores: f64,
}

impl Round {
    /// Whether the round meets the max-rate criterion: every delivery arrived and p99 < `p99_ms`.
    pub fn sustained(&self, p99_ms: f64) -> bool {
        self.expected > 0 && self.dropped == 0 && self.latency.p99_ms < p99_ms
    }
}

/// A whole scenario run against one server, as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name (`fanout`, `max-rate`, `idle`, `join-storm`, `presence`, `cold-load`).
    pub scenario: String,
    /// Server label.
    pub server: String,
    /// Parameters the scenario ran with.
    pub params: serde_json::Value,
    /// Headline figures, scenario-specific.
    pub result: serde_json::Value,
    /// Rounds, for scenarios made of several (max-rate steps) or one (fan-out, presence).
    #[serde(default)]
    pub rounds: Vec<Round>,
    /// Problems worth knowing when reading the figures (e.g. the generator was saturated).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Report {
    /// Appends this report as one JSON line to `path`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn append_to(&self, path: &Path) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let line = serde_json::to_string(self).map_err(std::io::Error::other)?;
        writeln!(file, "{line}")
    }

    /// Reads every report in a JSON-lines file.
    ///
    /// # Errors
    /// When the file cannot be read or a line is not a report.
    pub fn read_all(path: &Path) -> anyhow::Result<Vec<Report>> {
        let text = std::fs::read_to_string(path)?;
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| Ok(serde_json::from_str(line)?))
            .collect()
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    // Holds: the template is a constant in indicatif's documented syntax.
    let style = ProgressStyle::with_template("{prefix:>18} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
        .expect("valid progress template");
    bar.set_style(style);
    bar.set_prefix(label.to_owned());
    bar
}
