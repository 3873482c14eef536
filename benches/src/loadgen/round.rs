//! A *round*: R rooms × C clients connect and sync, then each sends at a fixed rate for a fixed time
//! (open loop), then the round drains until every expected delivery arrived or the drain time is
//! up. Fan-out, max-rate (one round per step) and presence are all rounds.
//!
//! CPU figures cover the span from the first due send to the end of the drain, for the server
//! (`/proc/PID/stat`) and for the generator itself, since both share the machine's cores.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::watch;

use super::client::{self, Action, Connector, Counters, Pace, Ws};
use super::edits::Editor;
use super::report::{self, Percentiles, Round};
use super::target::{Launch, MachineSample, ProcSample};
use super::wire::Framing;

/// What the clients of a round send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Document edits.
    Edit,
    /// Awareness updates.
    Presence,
}

/// The shape of one round.
#[derive(Debug, Clone)]
pub struct RoundSpec {
    /// Label for the progress bar.
    pub label: String,
    /// Rooms (documents); each gets fresh, unique document names.
    pub rooms: u32,
    /// Clients in each room.
    pub clients_per_room: u32,
    /// Sends per second of each client.
    pub rate_per_client: f64,
    /// How long clients send.
    pub duration: Duration,
    /// How long to wait after sending for deliveries still in flight.
    pub drain: Duration,
    /// What is sent.
    pub kind: Kind,
    /// Handshakes in flight at once while connecting.
    pub connect_concurrency: usize,
}

/// A unique prefix for the documents of one round, so rounds never share a document.
pub fn doc_prefix(tag: &str) -> String {
    let nonce: u32 = rand::rng().random();
    // Only characters every server accepts in a URL path segment and a document name.
    let tag: String = tag.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("bench-{tag}-{nonce:08x}")
}

/// Connects `count` clients, `doc_of(i)` naming each one's document, and completes their handshakes.
///
/// # Errors
/// When any client fails to connect or sync.
pub async fn connect_all(
    connector: &Arc<Connector>,
    count: u32,
    doc_of: impl Fn(u32) -> String,
    concurrency: usize,
    label: &str,
) -> anyhow::Result<Vec<(Ws, Framing)>> {
    let bar = report::bar(u64::from(count), label);
    let joins = futures_util::stream::iter(0..count)
        .map(|i| {
            let connector = Arc::clone(connector);
            let doc = doc_of(i);
            async move {
                let joined = tokio::time::timeout(Duration::from_secs(60), connector.join(&doc)).await;
                (i, joined)
            }
        })
        .buffered(concurrency.max(1));
    tokio::pin!(joins);
    let mut clients = Vec::with_capacity(count as usize);
    while let Some((i, joined)) = joins.next().await {
        let (ws, framing, _, _) = joined
            .with_context(|| format!("client {i} did not sync within 60 s"))?
            .with_context(|| format!("client {i} could not join"))?;
        clients.push((ws, framing));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(clients)
}

/// Runs one round against the server behind `launch`.
///
/// # Errors
/// When clients cannot connect.
pub async fn run(connector: &Arc<Connector>, launch: &Launch, spec: &RoundSpec) -> anyhow::Result<Round> {
    let prefix = doc_prefix(&spec.label);
    let total = spec.rooms * spec.clients_per_room;
    let per_room = spec.clients_per_room;
    let clients = connect_all(
        connector,
        total,
        |i| format!("{prefix}-r{}", i / per_room),
        spec.connect_concurrency,
        &format!("{} connect", spec.label),
    )
    .await?;

    let period = Duration::from_secs_f64(1.0 / spec.rate_per_client);
    let start = Instant::now() + Duration::from_millis(300);
    let stop = start + spec.duration;
    let counters = Arc::new(Counters::default());
    let (finish_tx, finish_rx) = watch::channel(false);
    let client_id_base: u32 = rand::rng().random_range(1..1 << 30);
    let mut rng = rand::rng();
    let mut handles = Vec::with_capacity(clients.len());
    for (n, (ws, framing)) in clients.into_iter().enumerate() {
        let sender = n as u32;
        let client_id = u64::from(client_id_base) + u64::from(sender);
        let action = match spec.kind {
            Kind::Edit => Action::Edit(Editor::new(sender, client_id)),
            Kind::Presence => Action::Presence { sender, client_id, clock: 0 },
        };
        // Spread first sends over one period so that clients do not all send in the same instant.
        let phase = period.mul_f64(rng.random::<f64>());
        let pace = Pace { first: start + phase, period, stop };
        handles.push(tokio::spawn(client::run(
            ws,
            framing,
            sender,
            action,
            pace,
            Arc::clone(&counters),
            finish_rx.clone(),
        )));
    }

    let rss_peak = spawn_rss_sampler(launch.pid);
    tokio::time::sleep_until(start.into()).await;
    let (server_before, own_before, machine_before) =
        (launch.sample(), ProcSample::own(), MachineSample::read());
    let bar = report::bar(spec.duration.as_millis() as u64, &spec.label);
    let others = u64::from(spec.clients_per_room.saturating_sub(1));
    let drain_until = stop + spec.drain;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        let (sent, delivered) =
            (counters.sent.load(Ordering::Relaxed), counters.delivered.load(Ordering::Relaxed));
        bar.set_position(
            now.saturating_duration_since(start).as_millis().min(spec.duration.as_millis()) as u64
        );
        bar.set_message(format!("sent {sent} delivered {delivered}/{}", sent * others));
        let all_closed = counters.closed.load(Ordering::Relaxed) >= u64::from(total);
        if now >= drain_until || all_closed || (now >= stop && delivered >= sent * others) {
            break;
        }
    }
    bar.finish_and_clear();
    let (server_after, own_after, machine_after) =
        (launch.sample(), ProcSample::own(), MachineSample::read());
    let _ = finish_tx.send(true);
    let mut deliveries = client::latency_histogram();
    let mut acks = client::latency_histogram();
    let (mut closed_slow, mut closed_other) = (0, 0);
    for handle in handles {
        let outcome = handle.await.context("a client task panicked")?;
        if let Some(histogram) = &outcome.deliveries {
            deliveries.add(histogram).context("merging histograms")?;
        }
        if let Some(histogram) = &outcome.acks {
            acks.add(histogram).context("merging histograms")?;
        }
        match outcome.closed_with {
            Some(code) if client::is_slow_consumer(code) => closed_slow += 1,
            Some(_) => closed_other += 1,
            None if outcome.dropped => closed_other += 1,
            None => {}
        }
    }
    let rss_peak_bytes = rss_peak.finish().await;

    let sent = counters.sent.load(Ordering::Relaxed);
    let delivered = counters.delivered.load(Ordering::Relaxed);
    let expected = sent * others;
    let duration_s = spec.duration.as_secs_f64();
    let (server_cpu_s, server_cores) = match (server_before, server_after) {
        (Some(before), Some(after)) => (after.cpu_since(&before), after.cores_since(&before)),
        _ => (f64::NAN, f64::NAN),
    };
    let generator_cores = match (own_before, own_after) {
        (Some(before), Some(after)) => after.cores_since(&before),
        _ => f64::NAN,
    };
    let other_cores = match (machine_before, machine_after) {
        (Some(before), Some(after)) => (after.cores_since(&before) - server_cores - generator_cores).max(0.0),
        _ => f64::NAN,
    };
    Ok(Round {
        rooms: spec.rooms,
        clients_per_room: spec.clients_per_room,
        offered_per_s: spec.rate_per_client * f64::from(total),
        duration_s,
        sent,
        expected,
        delivered,
        dropped: expected.saturating_sub(delivered),
        delivery_ratio: if expected > 0 { delivered as f64 / expected as f64 } else { f64::NAN },
        deliveries_per_s: delivered as f64 / duration_s,
        latency: Percentiles::of(&deliveries),
        ack: Percentiles::of(&acks),
        closed_slow,
        closed_other,
        server_cpu_s,
        server_cores,
        server_us_per_delivery: if delivered > 0 { server_cpu_s * 1e6 / delivered as f64 } else { f64::NAN },
        server_rss_peak_mib: rss_peak_bytes as f64 / (1024.0 * 1024.0),
        generator_cores,
        other_cores,
    })
}

/// Samples a process's RSS every 250 ms until told to stop; reports the largest value seen.
pub struct RssSampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<u64>,
}

/// Starts an [`RssSampler`] for `pid` (a no-op reporting 0 when the pid is unknown).
pub fn spawn_rss_sampler(pid: Option<u32>) -> RssSampler {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let Some(pid) = pid else { return 0 };
        let dir = format!("/proc/{pid}");
        let mut peak = 0;
        loop {
            if let Ok(sample) = ProcSample::read(&dir) {
                peak = peak.max(sample.rss_bytes);
            }
            tokio::select! {
                _ = stopped.changed() => return peak,
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    });
    RssSampler { stop, task }
}

impl RssSampler {
    /// Stops sampling and returns the peak RSS in bytes.
    pub async fn finish(self) -> u64 {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(0)
    }
}
