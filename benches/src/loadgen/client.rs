//! One simulated client: connecting from a chosen loopback source address, the handshake up to
//! "synced", and the paced send/receive loop the editing and presence scenarios run.
//!
//! A client never applies what it receives. It classifies each frame ([`Framing::classify`]), scans
//! update and awareness payloads for edit markers ([`super::edits::scan`]) and records, per marker,
//! the time since the edit was due: markers of other clients are deliveries, its own are the
//! server's acknowledgement (Weft echoes an update once it is durable).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use weft_sync_core::yjs::AwarenessEntry;
use weft_sync_core::yjs::awareness::encode_update;

use super::edits::{self, Editor, Marker};
use super::target::Target;
use super::wire::{Framing, Incoming};

/// A client's WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// Close code Weft uses for a peer that does not keep up (see `docs/protocol.md`).
pub const SLOW_CONSUMER: u16 = 4529;

/// Opens connections to one server, rotating over loopback source addresses so that many thousands
/// of connections do not exhaust one address's ephemeral ports.
pub struct Connector {
    target: Target,
    addr: SocketAddr,
    sources: Vec<Ipv4Addr>,
    next: AtomicUsize,
}

impl Connector {
    /// Connections to the server at `addr`, from `sources` source addresses (127.0.0.2, 127.0.0.3 …).
    pub fn new(target: &Target, addr: SocketAddr, sources: u8) -> Self {
        let sources = (0..sources.max(1)).map(|n| Ipv4Addr::new(127, 0, 0, 2 + n)).collect();
        Self { target: target.clone(), addr, sources, next: AtomicUsize::new(0) }
    }

    /// The framing for `doc` in the target's dialect.
    pub fn framing(&self, doc: &str) -> Framing {
        Framing::new(self.target.dialect, doc)
    }

    /// Opens a WebSocket to `doc`.
    ///
    /// # Errors
    /// The TCP connection or the WebSocket handshake fails.
    pub async fn connect(&self, doc: &str) -> anyhow::Result<Ws> {
        let source = self.sources[self.next.fetch_add(1, Ordering::Relaxed) % self.sources.len()];
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0))).with_context(|| format!("binding {source}"))?;
        let stream = socket.connect(self.addr).await.with_context(|| format!("connecting from {source}"))?;
        // Small frames must not wait for Nagle's algorithm on our side either.
        stream.set_nodelay(true)?;
        // Small buffers: thousands of idle clients must not cost the generator gigabytes.
        let config = WebSocketConfig::default().read_buffer_size(16 * 1024).write_buffer_size(0);
        let url = self.target.url(self.addr, doc);
        let (ws, _) = client_async_with_config(url.as_str(), stream, Some(config))
            .await
            .with_context(|| format!("WebSocket handshake with {url}"))?;
        Ok(ws)
    }

    /// Connects to `doc` and completes the handshake: returns the socket, the sync step 2 payload
    /// and the time from the start of the TCP connection to receiving that step 2.
    ///
    /// # Errors
    /// Connecting fails, the server refuses the token, or the connection ends before step 2.
    pub async fn join(&self, doc: &str) -> anyhow::Result<(Ws, Framing, Bytes, Duration)> {
        let started = Instant::now();
        let mut ws = self.connect(doc).await?;
        let framing = self.framing(doc);
        let step2 = handshake(&mut ws, &framing).await?;
        Ok((ws, framing, step2, started.elapsed()))
    }
}

/// Sends the dialect's greeting and an empty sync step 1, then reads until the server's step 2.
///
/// # Errors
/// The server refuses the token or the connection ends first.
pub async fn handshake(ws: &mut Ws, framing: &Framing) -> anyhow::Result<Bytes> {
    if let Some(hello) = framing.hello() {
        ws.send(WsMessage::Binary(hello)).await?;
        loop {
            let frame = next_binary(ws).await?;
            let mut verdict = None;
            framing.classify(&frame, |incoming| match incoming {
                Incoming::Authenticated => verdict = Some(Ok(())),
                Incoming::PermissionDenied(reason) => verdict = Some(Err(reason)),
                _ => {}
            });
            match verdict {
                Some(Ok(())) => break,
                Some(Err(reason)) => bail!("the server refused the token: {reason}"),
                None => {}
            }
        }
    }
    ws.send(WsMessage::Binary(framing.empty_step1())).await?;
    loop {
        let frame = next_binary(ws).await?;
        let mut step2 = None;
        framing.classify(&frame, |incoming| {
            if let Incoming::SyncStep2(payload) = incoming {
                step2 = Some(payload);
            }
        });
        if let Some(step2) = step2 {
            return Ok(step2);
        }
    }
}

/// The next binary frame, skipping control and text frames.
async fn next_binary(ws: &mut Ws) -> anyhow::Result<Bytes> {
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Binary(frame))) => return Ok(frame),
            Some(Ok(WsMessage::Close(frame))) => bail!("the server closed the connection: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err.into()),
            None => bail!("the connection ended"),
        }
    }
}

/// Counters every client of a round bumps, read live by the progress bar and the coordinator.
#[derive(Debug, Default)]
pub struct Counters {
    /// Edits (or presence updates) sent.
    pub sent: AtomicU64,
    /// Markers of other clients received.
    pub delivered: AtomicU64,
    /// Own markers echoed back.
    pub acked: AtomicU64,
    /// Clients whose connection ended before the round did.
    pub closed: AtomicU64,
}

/// What a client sends on its schedule.
pub enum Action {
    /// Nothing: an idle client that only keeps its connection open.
    Idle,
    /// A document edit from a real Yjs replica.
    Edit(Editor),
    /// An awareness (presence) update carrying a marker in its state.
    Presence {
        /// Client number, written into the marker.
        sender: u32,
        /// Yjs client id the awareness entry is for.
        client_id: u64,
        /// Awareness clock; bumped for every update.
        clock: u64,
    },
}

impl Action {
    fn frame(&mut self, framing: &Framing, due: Instant) -> Option<Bytes> {
        match self {
            Self::Idle => None,
            Self::Edit(editor) => Some(framing.update(editor.edit(due))),
            Self::Presence { sender, client_id, clock } => {
                *clock += 1;
                let marker = Marker { sender: *sender, seq: *clock as u32, due_us: edits::micros_at(due) };
                let state = format!(
                    r##"{{"user":{{"name":"bench-{sender}","color":"#30bced"}},"cursor":{{"anchor":{clock},"head":{clock}}},"m":"{}"}}"##,
                    marker.encode()
                );
                let entry =
                    AwarenessEntry { client_id: *client_id, clock: *clock, state: Bytes::from(state) };
                Some(framing.awareness(encode_update(std::iter::once(&entry))))
            }
        }
    }
}

/// When and how fast a client sends.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Due time of the first send.
    pub first: Instant,
    /// Time between sends.
    pub period: Duration,
    /// No send is due at or after this instant.
    pub stop: Instant,
}

/// What one client saw in a round.
pub struct Outcome {
    /// Latency of other clients' markers, in microseconds (allocated on the first sample: a
    /// histogram is about 150 KiB, and idle clients record nothing).
    pub deliveries: Option<Histogram<u64>>,
    /// Latency of the client's own markers coming back, in microseconds.
    pub acks: Option<Histogram<u64>>,
    /// Close code, if the server closed the connection during the round.
    pub closed_with: Option<u16>,
    /// The connection ended without a close frame.
    pub dropped: bool,
}

/// A fresh latency histogram: 1 µs to 100 s at 3 significant digits; longer samples are recorded
/// as 100 s.
pub fn latency_histogram() -> Histogram<u64> {
    // Holds: the bounds are constants that satisfy hdrhistogram's requirements (low >= 1, high >= 2 low).
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

fn record(histogram: &mut Option<Histogram<u64>>, micros: u64) {
    histogram.get_or_insert_with(latency_histogram).saturating_record(micros.max(1));
}

/// Runs a client until `finish` turns true: sends `action`'s frames on `pace` (open loop: every
/// send that is due goes out, late ones in a burst, each stamped with its due time) and times every
/// marker it receives.
pub async fn run(
    mut ws: Ws,
    framing: Framing,
    sender: u32,
    mut action: Action,
    pace: Pace,
    counters: Arc<Counters>,
    mut finish: watch::Receiver<bool>,
) -> Outcome {
    let mut outcome = Outcome { deliveries: None, acks: None, closed_with: None, dropped: false };
    let sending = !matches!(action, Action::Idle);
    // Timers fire at millisecond granularity; faster paces send every edit that fell due since the
    // last tick, so the offered rate holds whatever the period.
    let tick = pace.period.max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval_at(pace.first.into(), tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_due = pace.first;
    let mut active = sending;
    loop {
        tokio::select! {
            biased;
            changed = finish.changed() => {
                if changed.is_err() || *finish.borrow() {
                    break;
                }
            }
            message = ws.next() => match message {
                Some(Ok(WsMessage::Binary(frame))) => {
                    receive(&framing, &frame, sender, &mut outcome, &counters);
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    outcome.closed_with = Some(frame.map_or(1005, |f| u16::from(f.code)));
                    counters.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    outcome.dropped = true;
                    counters.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            },
            _ = ticker.tick(), if active => {
                let now = Instant::now();
                let mut batch = 0;
                while next_due <= now && next_due < pace.stop {
                    if let Some(frame) = action.frame(&framing, next_due)
                        && ws.feed(WsMessage::Binary(frame)).await.is_err()
                    {
                        break;
                    }
                    next_due += pace.period;
                    batch += 1;
                }
                if batch > 0 {
                    counters.sent.fetch_add(batch, Ordering::Relaxed);
                    let _ = ws.flush().await;
                }
                if next_due >= pace.stop {
                    active = false;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    outcome
}

fn receive(framing: &Framing, frame: &Bytes, me: u32, outcome: &mut Outcome, counters: &Counters) {
    framing.classify(frame, |incoming| {
        let payload = match incoming {
            Incoming::Update(payload) | Incoming::Awareness(payload) => payload,
            _ => return,
        };
        let now = edits::now_micros();
        let (mut delivered, mut acked) = (0, 0);
        edits::scan(&payload, |marker| {
            let latency = edits::latency_since(&marker, now).as_micros() as u64;
            if marker.sender == me {
                record(&mut outcome.acks, latency);
                acked += 1;
            } else {
                record(&mut outcome.deliveries, latency);
                delivered += 1;
            }
        });
        if delivered > 0 {
            counters.delivered.fetch_add(delivered, Ordering::Relaxed);
        }
        if acked > 0 {
            counters.acked.fetch_add(acked, Ordering::Relaxed);
        }
    });
}

/// Whether a close code means the server dropped the client for being slow.
pub fn is_slow_consumer(code: u16) -> bool {
    code == SLOW_CONSUMER
}
