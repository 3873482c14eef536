//! The relay's counters, served at `GET /metrics` in the Prometheus text format.
//!
//! Counters are for events an operator must be able to see without reading logs: documents whose
//! room failed, writes refused because they would break a document, rebuilds, quarantined items and
//! snapshots that did not verify. `docs/operations.md` lists every metric.

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// What a stored item set aside was.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ItemKind {
    /// A log entry.
    Update,
    /// A snapshot.
    Snapshot,
}

impl EncodeLabelValue for ItemKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Update => "update",
            Self::Snapshot => "snapshot",
        })
    }
}

/// The `kind` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Which kind of item.
    pub kind: ItemKind,
}

/// How a job run ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum JobOutcome {
    /// It did its work.
    Done,
    /// It failed and will be retried.
    Failed,
    /// It failed for the last time: dead, kept for an operator.
    Dead,
}

impl EncodeLabelValue for JobOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dead => "dead",
        })
    }
}

/// The labels of a job run.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// The job's kind.
    pub kind: String,
    /// How it ended.
    pub outcome: JobOutcome,
}

/// Every counter the relay keeps. Cheap to clone (the counters are shared).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Rooms that stopped because their document could not go on (peers got 1011).
    pub room_failures: Counter,
    /// Rooms rebuilt from the log after a refused write touched their replica.
    pub room_rebuilds: Counter,
    /// Stored items moved to the quarantine when a document was loaded.
    pub quarantined: Family<KindLabel, Counter>,
    /// Snapshots that did not load back as the replica they came from (kept aside; log kept).
    pub snapshot_verification_failures: Counter,
    /// Background job runs, by kind and outcome.
    pub jobs: Family<JobLabels, Counter>,
}

impl Metrics {
    /// Renders every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("weft");
        registry.register(
            "room_failures",
            "Rooms stopped because their document could not go on; their peers got close code 1011",
            self.room_failures.clone(),
        );
        registry.register(
            "room_rebuilds",
            "Rooms rebuilt from the log after a refused write had touched their replica",
            self.room_rebuilds.clone(),
        );
        registry.register(
            "quarantined_items",
            "Stored items moved to the quarantine because they broke their document",
            self.quarantined.clone(),
        );
        registry.register(
            "snapshot_verification_failures",
            "Snapshots that did not load back as their replica; kept aside, the log was kept",
            self.snapshot_verification_failures.clone(),
        );
        registry.register("jobs", "Background job runs by kind and how they ended", self.jobs.clone());
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }

    /// Counts one run of a `kind` job that ended as `outcome`.
    pub fn count_job(&self, kind: &str, outcome: JobOutcome) {
        self.jobs.get_or_create(&JobLabels { kind: kind.to_owned(), outcome }).inc();
    }

    /// Counts one quarantined item.
    pub fn count_quarantined(&self, kind: ItemKind) {
        self.quarantined.get_or_create(&KindLabel { kind }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_text_format() {
        let metrics = Metrics::default();
        metrics.room_failures.inc();
        metrics.count_quarantined(ItemKind::Update);
        let text = metrics.render();
        assert!(text.contains("weft_room_failures_total 1"), "{text}");
        assert!(text.contains("weft_quarantined_items_total{kind=\"update\"} 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
