//! The scenarios `weft-bench` runs, each against one server, each bounded in time, each returning a
//! [`Report`]. The parameters are plain structs so that the CLI and tests build them the same way.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use weft_sync_core::yjs::acknowledged_prefix;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Transact, Update};

use super::client::{self, Action, Connector, Counters, Pace, Ws};
use super::report::{Percentiles, Report, Round};
use super::round::{self, Kind, RoundSpec};
use super::target::{Launch, ProcSample, Target};
use super::trace_cache;
use super::wire::{Framing, Incoming};

/// Settings every scenario shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// Loopback source addresses to connect from (127.0.0.2 onwards).
    pub sources: u8,
    /// Handshakes in flight at once while connecting.
    pub connect_concurrency: usize,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn note_saturation(round: &Round, notes: &mut Vec<String>) {
    if round.other_cores > 0.25 {
        notes.push(format!(
            "other work used {:.2} cores at {:.0}/s offered: the figures are disturbed",
            round.other_cores, round.offered_per_s
        ));
    }
    if round.generator_cores > 0.9 {
        notes.push(format!(
            "load generator used {:.2} cores at {:.0}/s offered: latency may include generator queueing",
            round.generator_cores, round.offered_per_s
        ));
    }
}

/// Fan-out: R rooms × C clients, each editing at a fixed rate.
#[derive(Debug, Clone)]
pub struct Fanout {
    /// Rooms.
    pub rooms: u32,
    /// Clients per room.
    pub clients: u32,
    /// Edits per second per client.
    pub rate: f64,
    /// Seconds of editing.
    pub duration: Duration,
    /// Seconds allowed for deliveries after the last edit.
    pub drain: Duration,
}

/// Runs [`Fanout`].
///
/// # Errors
/// When the server cannot be started or clients cannot connect.
pub async fn fanout(target: &Target, common: &Common, params: &Fanout) -> anyhow::Result<Report> {
    let launch = Launch::start(target).await?;
    let connector = Arc::new(Connector::new(target, launch.addr, common.sources));
    let spec = RoundSpec {
        label: "fanout".into(),
        rooms: params.rooms,
        clients_per_room: params.clients,
        rate_per_client: params.rate,
        duration: params.duration,
        drain: params.drain,
        kind: Kind::Edit,
        connect_concurrency: common.connect_concurrency,
    };
    let result = round::run(&connector, &launch, &spec).await;
    launch.finish().await;
    let round = result?;
    let mut notes = Vec::new();
    note_saturation(&round, &mut notes);
    Ok(Report {
        scenario: "fanout".into(),
        server: target.name.clone(),
        params: json!({
            "rooms": params.rooms, "clients_per_room": params.clients, "rate_per_client": params.rate,
            "duration_s": params.duration.as_secs_f64(), "drain_s": params.drain.as_secs_f64(),
        }),
        result: json!({
            "p50_ms": round.latency.p50_ms, "p99_ms": round.latency.p99_ms, "p999_ms": round.latency.p999_ms,
            "deliveries_per_s": round.deliveries_per_s, "delivery_ratio": round.delivery_ratio,
            "dropped": round.dropped, "server_us_per_delivery": round.server_us_per_delivery,
            "server_cores": round.server_cores, "server_rss_peak_mib": round.server_rss_peak_mib,
            "generator_cores": round.generator_cores, "ack_p99_ms": round.ack.p99_ms,
            "other_cores": round.other_cores,
        }),
        rounds: vec![round],
        notes,
    })
}

/// Max sustained rate into one room: open-loop steps of increasing offered load.
#[derive(Debug, Clone)]
pub struct MaxRate {
    /// Clients in the room; the offered load is split evenly between them.
    pub clients: u32,
    /// Offered loads to try, updates per second into the room, in increasing order.
    pub rates: Vec<f64>,
    /// Seconds per step.
    pub step: Duration,
    /// Seconds allowed for deliveries after each step.
    pub drain: Duration,
    /// A step passes with delivery ratio 1 and p99 below this many milliseconds.
    pub p99_ms: f64,
    /// Steps to run after the first failing one (they draw the rest of the latency curve).
    pub extra_steps: usize,
}

/// Runs [`MaxRate`]: one fresh room per step on the same server.
///
/// # Errors
/// When the server cannot be started or clients cannot connect.
pub async fn max_rate(target: &Target, common: &Common, params: &MaxRate) -> anyhow::Result<Report> {
    let launch = Launch::start(target).await?;
    let connector = Arc::new(Connector::new(target, launch.addr, common.sources));
    let mut rounds = Vec::new();
    let mut notes = Vec::new();
    let mut best: Option<f64> = None;
    let mut failed_steps = 0;
    for &rate in &params.rates {
        let spec = RoundSpec {
            label: format!("max-rate {rate:.0}/s"),
            rooms: 1,
            clients_per_room: params.clients,
            rate_per_client: rate / f64::from(params.clients),
            duration: params.step,
            drain: params.drain,
            kind: Kind::Edit,
            connect_concurrency: common.connect_concurrency,
        };
        let round = match round::run(&connector, &launch, &spec).await {
            Ok(round) => round,
            Err(err) => {
                notes.push(format!("step {rate:.0}/s could not run: {err:#}"));
                break;
            }
        };
        note_saturation(&round, &mut notes);
        let passed = round.sustained(params.p99_ms);
        eprintln!(
            "  {rate:>8.0}/s offered: p50 {:.2} ms p99 {:.2} ms ratio {:.4} {}",
            round.latency.p50_ms,
            round.latency.p99_ms,
            round.delivery_ratio,
            if passed { "ok" } else { "FAIL" }
        );
        rounds.push(round);
        if passed {
            best = Some(rate);
            // Only consecutive failures end the search: one noisy step must not.
            failed_steps = 0;
        } else {
            failed_steps += 1;
            if failed_steps > params.extra_steps {
                break;
            }
        }
    }
    launch.finish().await;
    Ok(Report {
        scenario: "max-rate".into(),
        server: target.name.clone(),
        params: json!({
            "clients": params.clients, "rates": params.rates, "step_s": params.step.as_secs_f64(),
            "p99_limit_ms": params.p99_ms,
        }),
        result: json!({ "max_sustained_per_s": best.unwrap_or(0.0) }),
        rounds,
        notes,
    })
}

/// Idle connections: server memory as connections accumulate.
#[derive(Debug, Clone)]
pub struct Idle {
    /// Connection counts at which to measure, increasing.
    pub steps: Vec<u32>,
    /// Connections per document.
    pub per_room: u32,
    /// Seconds to let the server settle before each measurement.
    pub settle: Duration,
}

/// Runs [`Idle`].
///
/// # Errors
/// When the server cannot be started.
pub async fn idle(target: &Target, common: &Common, params: &Idle) -> anyhow::Result<Report> {
    let launch = Launch::start(target).await?;
    let connector = Arc::new(Connector::new(target, launch.addr, common.sources));
    tokio::time::sleep(params.settle).await;
    let baseline = launch.sample().context("the server's process is needed to measure memory")?;
    let prefix = round::doc_prefix("idle");
    let per_room = params.per_room.max(1);
    let counters = Arc::new(Counters::default());
    let (finish, finished) = watch::channel(false);
    let mut holders = Vec::new();
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    for &step in &params.steps {
        let have = holders.len() as u32;
        if step > have {
            let joined = round::connect_all(
                &connector,
                step - have,
                |i| format!("{prefix}-r{}", (have + i) / per_room),
                common.connect_concurrency,
                &format!("idle {step}"),
            )
            .await;
            match joined {
                Ok(clients) => {
                    for (n, (ws, framing)) in clients.into_iter().enumerate() {
                        // An idle client only reads (answering pings) until the scenario ends.
                        let never = Instant::now() + Duration::from_secs(86_400);
                        let pace = Pace { first: never, period: Duration::from_secs(86_400), stop: never };
                        let sender = have + n as u32;
                        let counters = Arc::clone(&counters);
                        let finished = finished.clone();
                        holders.push(tokio::spawn(client::run(
                            ws,
                            framing,
                            sender,
                            Action::Idle,
                            pace,
                            counters,
                            finished,
                        )));
                    }
                }
                Err(err) => {
                    notes.push(format!("stopped at {have} connections: {err:#}"));
                    break;
                }
            }
        }
        tokio::time::sleep(params.settle).await;
        let sample = launch.sample().context("the server exited")?;
        let open = holders.len() as u64 - counters.closed.load(Ordering::Relaxed);
        let own = ProcSample::own();
        eprintln!("  {open:>6} connections: server RSS {:.1} MiB", mib(sample.rss_bytes));
        steps.push(json!({
            "connections": open, "server_rss_mib": mib(sample.rss_bytes),
            "generator_rss_mib": own.map(|o| mib(o.rss_bytes)),
        }));
    }
    let last = launch.sample();
    let connections = (holders.len() as u64 - counters.closed.load(Ordering::Relaxed)) as f64;
    let closed = counters.closed.load(Ordering::Relaxed);
    if closed > 0 {
        notes.push(format!("{closed} idle connections were closed by the server"));
    }
    let per_1000 = match last {
        Some(last) if connections > 0.0 => {
            mib(last.rss_bytes.saturating_sub(baseline.rss_bytes)) / connections * 1000.0
        }
        _ => f64::NAN,
    };
    let _ = finish.send(true);
    for holder in holders {
        let _ = holder.await;
    }
    launch.finish().await;
    Ok(Report {
        scenario: "idle".into(),
        server: target.name.clone(),
        params: json!({ "steps": params.steps, "per_room": per_room, "settle_s": params.settle.as_secs_f64() }),
        result: json!({
            "connections": connections, "baseline_rss_mib": mib(baseline.rss_bytes),
            "rss_mib": last.map(|l| mib(l.rss_bytes)), "mib_per_1000": per_1000, "steps": steps,
        }),
        rounds: Vec::new(),
        notes,
    })
}

/// Join storm: many clients join one large document at the same instant.
#[derive(Debug, Clone)]
pub struct JoinStorm {
    /// Clients joining at once.
    pub clients: u32,
}

/// Runs [`JoinStorm`]; the document is the final state of the standard editing trace, written as
/// one update by a seeding client.
///
/// # Errors
/// When the server cannot be started or seeded.
pub async fn join_storm(target: &Target, common: &Common, params: &JoinStorm) -> anyhow::Result<Report> {
    let state = trace_cache::final_state()?;
    let launch = Launch::start(target).await?;
    let connector = Arc::new(Connector::new(target, launch.addr, common.sources));
    let doc = round::doc_prefix("storm");
    let result = storm(&connector, &launch, &doc, &state, params.clients).await;
    launch.finish().await;
    let (times, failures, server_cpu_s, server_cores, step2_bytes) = result?;
    let summary = Percentiles::of_durations(&times);
    let mut notes = Vec::new();
    if failures > 0 {
        notes.push(format!("{failures} of {} clients did not sync within 60 s", params.clients));
    }
    Ok(Report {
        scenario: "join-storm".into(),
        server: target.name.clone(),
        params: json!({ "clients": params.clients, "document_update_bytes": state.len() }),
        result: json!({
            "synced": times.len(), "p50_ms": summary.p50_ms, "p99_ms": summary.p99_ms,
            "max_ms": summary.max_ms, "server_cpu_s": server_cpu_s, "server_cores": server_cores,
            "step2_bytes": step2_bytes,
        }),
        rounds: Vec::new(),
        notes,
    })
}

type StormResult = (Vec<Duration>, u32, f64, f64, usize);

async fn storm(
    connector: &Arc<Connector>,
    launch: &Launch,
    doc: &str,
    state: &Bytes,
    clients: u32,
) -> anyhow::Result<StormResult> {
    seed(connector, doc, state).await?;
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::with_capacity(clients as usize);
    for _ in 0..clients {
        let connector = Arc::clone(connector);
        let doc = doc.to_owned();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let joined = tokio::time::timeout(Duration::from_secs(60), connector.join(&doc)).await;
            match joined {
                Ok(Ok((ws, _, step2, _))) => Ok((ws, step2.len(), start.elapsed())),
                Ok(Err(err)) => Err(err),
                Err(_) => bail!("timed out"),
            }
        }));
    }
    tokio::time::sleep_until(start.into()).await;
    let before = launch.sample();
    let bar = super::report::bar(u64::from(clients), "join-storm");
    let (mut times, mut failures, mut step2_bytes, mut open) = (Vec::new(), 0, 0, Vec::new());
    for task in tasks {
        match task.await.context("a joining task panicked")? {
            Ok((ws, len, took)) => {
                times.push(took);
                step2_bytes = step2_bytes.max(len);
                open.push(ws);
            }
            Err(_) => failures += 1,
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let after = launch.sample();
    for ws in &mut open {
        let _ = ws.close(None).await;
    }
    let (cpu, cores) = match (before, after) {
        (Some(b), Some(a)) => (a.cpu_since(&b), a.cores_since(&b)),
        _ => (f64::NAN, f64::NAN),
    };
    Ok((times, failures, cpu, cores, step2_bytes))
}

/// Writes `state` into `doc` with one client, then waits until a fresh client's step 2 holds it.
async fn seed(connector: &Arc<Connector>, doc: &str, state: &Bytes) -> anyhow::Result<()> {
    let (mut ws, framing, _, _) = connector.join(doc).await.context("seeding client")?;
    ws.send(WsMessage::Binary(framing.update(state.clone()))).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (mut check, _, step2, _) = connector.join(doc).await?;
        let _ = check.close(None).await;
        // A server may re-encode the state, but not shrink it by more than a few percent.
        if step2.len() * 10 >= state.len() * 9 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the seeded document never appeared ({} of {} bytes)", step2.len(), state.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// Presence: N clients in one room updating their awareness state at a fixed rate.
#[derive(Debug, Clone)]
pub struct Presence {
    /// Clients in the room.
    pub clients: u32,
    /// Awareness updates per second per client.
    pub rate: f64,
    /// Seconds of updates.
    pub duration: Duration,
}

/// Runs [`Presence`].
///
/// # Errors
/// When the server cannot be started or clients cannot connect.
pub async fn presence(target: &Target, common: &Common, params: &Presence) -> anyhow::Result<Report> {
    let launch = Launch::start(target).await?;
    let connector = Arc::new(Connector::new(target, launch.addr, common.sources));
    let spec = RoundSpec {
        label: "presence".into(),
        rooms: 1,
        clients_per_room: params.clients,
        rate_per_client: params.rate,
        duration: params.duration,
        drain: Duration::from_secs(2),
        kind: Kind::Presence,
        connect_concurrency: common.connect_concurrency,
    };
    let result = round::run(&connector, &launch, &spec).await;
    launch.finish().await;
    let round = result?;
    let mut notes = Vec::new();
    note_saturation(&round, &mut notes);
    Ok(Report {
        scenario: "presence".into(),
        server: target.name.clone(),
        params: json!({ "clients": params.clients, "rate_per_client": params.rate,
            "duration_s": params.duration.as_secs_f64() }),
        result: json!({
            "server_cores": round.server_cores, "server_us_per_delivery": round.server_us_per_delivery,
            "deliveries_per_s": round.deliveries_per_s, "delivery_ratio": round.delivery_ratio,
            "p50_ms": round.latency.p50_ms, "p99_ms": round.latency.p99_ms,
            "server_rss_peak_mib": round.server_rss_peak_mib,
        }),
        rounds: vec![round],
        notes,
    })
}

/// Cold load: the whole editing trace written through the relay, the server restarted, a fresh
/// client's sync timed.
#[derive(Debug, Clone)]
pub struct ColdLoad {
    /// Trace updates to write (the whole trace by default).
    pub updates: usize,
    /// Unacknowledged updates the writer keeps in flight.
    pub window: usize,
    /// Restart-and-sync measurements.
    pub repeats: u32,
}

/// Runs [`ColdLoad`]. Needs a server the generator starts and that echoes updates to their sender
/// (the echo paces the writer); in-memory servers lose the document on restart, so the scenario is
/// meant for Weft.
///
/// # Errors
/// When writing the trace or restarting the server fails.
pub async fn cold_load(target: &Target, common: &Common, params: &ColdLoad) -> anyhow::Result<Report> {
    let trace = trace_cache::updates()?;
    let count = params.updates.min(trace.len());
    let expected_text = trace_cache::text_after(&trace[..count])?;
    let mut launch = Launch::start(target).await?;
    let result = cold_load_on(&mut launch, target, common, params, &trace[..count], &expected_text).await;
    launch.finish().await;
    let (write_s, cold, warm, rss_mib, load_cpu_s) = result?;
    let cold_summary = Percentiles::of_durations(&cold);
    Ok(Report {
        scenario: "cold-load".into(),
        server: target.name.clone(),
        params: json!({ "updates": count, "window": params.window, "repeats": params.repeats }),
        result: json!({
            "write_s": write_s, "write_per_s": count as f64 / write_s,
            "cold_sync_ms": cold.iter().map(Duration::as_secs_f64).map(|s| s * 1000.0).collect::<Vec<_>>(),
            "cold_sync_p50_ms": cold_summary.p50_ms, "warm_sync_ms": warm.as_secs_f64() * 1000.0,
            "server_rss_after_load_mib": rss_mib, "server_cpu_load_s": load_cpu_s,
        }),
        rounds: Vec::new(),
        notes: Vec::new(),
    })
}

type ColdResult = (f64, Vec<Duration>, Duration, f64, f64);

async fn cold_load_on(
    launch: &mut Launch,
    target: &Target,
    common: &Common,
    params: &ColdLoad,
    updates: &[Bytes],
    expected_text: &str,
) -> anyhow::Result<ColdResult> {
    let doc = round::doc_prefix("cold");
    let connector = Connector::new(target, launch.addr, common.sources);
    let (ws, framing, _, _) = connector.join(&doc).await.context("writing client")?;
    let started = Instant::now();
    write_acknowledged(ws, &framing, updates, params.window).await?;
    let write_s = started.elapsed().as_secs_f64();
    eprintln!("  wrote {} updates in {write_s:.1} s", updates.len());

    let mut cold = Vec::new();
    let mut warm = Duration::ZERO;
    let (mut rss_mib, mut load_cpu_s) = (f64::NAN, f64::NAN);
    for repeat in 0..params.repeats.max(1) {
        launch.restart().await?;
        let before = launch.sample();
        let connector = Connector::new(target, launch.addr, common.sources);
        let (mut ws, _, step2, took) = connector.join(&doc).await.context("cold client")?;
        cold.push(took);
        let after = launch.sample();
        if let (Some(before), Some(after)) = (before, after) {
            load_cpu_s = after.cpu_since(&before);
            rss_mib = mib(after.rss_bytes);
        }
        eprintln!(
            "  cold sync {}: {:.0} ms ({} bytes)",
            repeat + 1,
            took.as_secs_f64() * 1000.0,
            step2.len()
        );
        if repeat == 0 {
            // Untimed: the document that came back is the trace's.
            let text = text_of(&step2)?;
            if text != expected_text {
                bail!(
                    "the reloaded document differs from the trace ({} vs {} chars)",
                    text.len(),
                    expected_text.len()
                );
            }
            let (mut second, _, _, took) = connector.join(&doc).await.context("warm client")?;
            warm = took;
            let _ = second.close(None).await;
        }
        let _ = ws.close(None).await;
    }
    Ok((write_s, cold, warm, rss_mib, load_cpu_s))
}

/// Sends `updates` in order, keeping at most `window` without an echo.
async fn write_acknowledged(
    ws: Ws,
    framing: &Framing,
    updates: &[Bytes],
    window: usize,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let bar = super::report::bar(updates.len() as u64, "cold-load write");
    let mut sent = 0;
    let mut acked = 0;
    while acked < updates.len() {
        while sent < updates.len() && sent - acked < window.max(1) {
            sink.feed(WsMessage::Binary(framing.update(updates[sent].clone()))).await?;
            sent += 1;
        }
        sink.flush().await?;
        let frame = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .context("no echo for 30 s: does this server echo updates to their sender?")?;
        match frame {
            // Weft merges the updates one commit releases, so one echo can acknowledge several.
            Some(Ok(WsMessage::Binary(frame))) => framing.classify(&frame, |incoming| {
                if let Incoming::Update(update) = incoming {
                    acked += acknowledged_prefix(&update, updates[acked..sent].iter().map(Bytes::as_ref));
                }
            }),
            Some(Ok(WsMessage::Close(frame))) => bail!("the server closed the writer: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err.into()),
            None => bail!("the writer's connection ended"),
        }
        bar.set_position(acked as u64);
    }
    bar.finish_and_clear();
    let mut ws = sink.reunite(stream).context("reuniting the writer's socket")?;
    let _ = ws.close(None).await;
    Ok(())
}

fn text_of(update: &[u8]) -> anyhow::Result<String> {
    let doc = Doc::new();
    let update = Update::decode_v1(update).context("the step 2 does not decode")?;
    doc.transact_mut().apply_update(update).context("the step 2 does not apply")?;
    Ok(doc.get_or_insert_text(crate::TEXT_ROOT).get_string(&doc.transact()))
}
