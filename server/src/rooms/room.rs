//! The room actor: one task per live document, the only owner of its replica.
//!
//! It feeds peer input and storage receipts into the document's sans-IO relay ([`Replica`]) and
//! carries out the events the relay returns: frames go to peer outboxes with `try_send`, appends go to storage in one request
//! per batch of inbox commands (so the storage writer can group-commit them with other rooms'), and
//! receipts come back in order to release echoes. It folds the log into a snapshot every
//! `compact_after_updates` entries and once more before unloading.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weft_sync_core::relay::{Access, Event, Snapshot};
use weft_sync_core::{CloseCode, DocId, PeerId};

use super::replica::{Inbound, Replica};
use super::{JoinError, PeerLink, Shared, Undeliverable};
use crate::storage::{Crdt, DocKey, NewUpdate, Receipt, StorageError};

/// Inbox commands handled before the room dispatches events, so that appends from one burst of
/// messages travel to storage as one request.
const COMMANDS_PER_TURN: usize = 64;

/// How often a room looks for peers whose connection ended without leaving.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// How the registry reaches a room.
#[derive(Clone)]
pub(super) struct RoomHandle {
    pub tx: mpsc::Sender<RoomCommand>,
    pub generation: u64,
}

/// Everything a room is asked to do.
pub(super) enum RoomCommand {
    Join {
        peer: PeerId,
        crdt: Crdt,
        access: Access,
        link: PeerLink,
        reply: oneshot::Sender<Result<(), JoinError>>,
    },
    Input {
        peer: PeerId,
        input: Inbound,
    },
    Leave {
        peer: PeerId,
    },
}

/// Spawns the room for `doc`; it loads (or creates) the document as a `crdt` document.
pub(super) fn spawn(doc: DocId, crdt: Crdt, generation: u64, shared: Arc<Shared>) -> RoomHandle {
    let (tx, rx) = mpsc::channel(shared.config.room_inbox);
    let tracker = shared.tracker.clone();
    tracker.spawn(run(doc, crdt, generation, rx, shared));
    RoomHandle { tx, generation }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

async fn run(
    doc: DocId,
    crdt: Crdt,
    generation: u64,
    mut rx: mpsc::Receiver<RoomCommand>,
    shared: Arc<Shared>,
) {
    let room = match load(&doc, crdt, &shared).await {
        Ok(room) => room,
        Err(err) => {
            tracing::warn!(doc = %doc, error = %err, "document could not be loaded");
            shared.forget(&doc, generation);
            refuse_remaining(&mut rx, err).await;
            return;
        }
    };
    let mut room = Room {
        doc,
        generation,
        shared,
        replica: room.1,
        key: room.0,
        peers: HashMap::new(),
        commits: VecDeque::new(),
        compaction: None,
        compacted_upto: 0,
    };
    room.run(rx).await;
}

async fn load(doc: &DocId, crdt: Crdt, shared: &Shared) -> Result<(DocKey, Replica), JoinError> {
    let stored = shared.storage.load_or_create(doc, crdt, now_ms()).await.map_err(|err| match err {
        err @ StorageError::WrongCrdt { .. } => JoinError::WrongCrdt(err),
        other => JoinError::Unavailable(other.to_string()),
    })?;
    let limits = shared.config.limits;
    let key = stored.key;
    // Replaying a long log is CPU work; keep it off the async workers.
    let replica = tokio::task::spawn_blocking(move || Replica::load(crdt, limits, &stored))
        .await
        .map_err(|e| JoinError::Unavailable(format!("load task failed: {e}")))?
        .map_err(|e| JoinError::Unavailable(e.to_string()))?;
    Ok((key, replica))
}

/// Answers every command still queued after the room stopped taking new ones.
async fn refuse_remaining(rx: &mut mpsc::Receiver<RoomCommand>, err: JoinError) {
    rx.close();
    while let Some(command) = rx.recv().await {
        if let RoomCommand::Join { reply, .. } = command {
            let _ = reply.send(Err(err.clone()));
        }
    }
}

struct Room {
    doc: DocId,
    generation: u64,
    shared: Arc<Shared>,
    key: DocKey,
    replica: Replica,
    peers: HashMap<PeerId, PeerLink>,
    /// Appends handed to storage, oldest first, each with the last sequence number it carries.
    commits: VecDeque<(u64, Receipt)>,
    /// The snapshot being written, if any.
    compaction: Option<(Snapshot, JoinHandle<Result<(), StorageError>>)>,
    compacted_upto: u64,
}

enum Exit {
    Idle,
    Shutdown,
    Poisoned,
}

impl Room {
    async fn run(&mut self, mut rx: mpsc::Receiver<RoomCommand>) {
        let shutdown = self.shared.shutdown.clone();
        let idle_unload = self.shared.config.idle_unload;
        let mut idle_since = Instant::now();
        // A connection that ended without saying so (its task panicked) is noticed on the next
        // delivery; this sweep also catches it in a room where nothing is being delivered.
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        let exit = loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break Exit::Shutdown,
                (upto, result) = next_commit(&mut self.commits), if !self.commits.is_empty() => {
                    match result {
                        Ok(()) => self.replica.handle_durable(upto),
                        Err(err) => {
                            tracing::error!(doc = %self.doc, error = %err, "append failed; closing the document");
                            self.replica.handle_storage_failure(&err.to_string());
                        }
                    }
                }
                result = join_compaction(&mut self.compaction), if self.compaction.is_some() => {
                    self.finish_compaction(result);
                }
                command = rx.recv() => {
                    let Some(command) = command else { break Exit::Shutdown };
                    self.handle(command);
                    for _ in 1..COMMANDS_PER_TURN {
                        match rx.try_recv() {
                            Ok(command) => self.handle(command),
                            Err(_) => break,
                        }
                    }
                }
                () = tokio::time::sleep_until(idle_since + idle_unload),
                    if self.peers.is_empty() && self.commits.is_empty() => break Exit::Idle,
                _ = sweep.tick() => {
                    let gone: Vec<PeerId> =
                        self.peers.iter().filter(|(_, link)| link.is_gone()).map(|(peer, _)| *peer).collect();
                    for peer in gone {
                        self.peers.remove(&peer);
                        self.replica.handle_leave(peer);
                    }
                }
            }
            self.dispatch().await;
            if self.replica.is_poisoned() {
                break Exit::Poisoned;
            }
            self.maybe_compact();
            if !self.peers.is_empty() {
                idle_since = Instant::now();
            }
        };
        self.stop(exit, rx).await;
    }

    fn handle(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::Join { peer, crdt, access, link, reply } => {
                let found = self.replica.crdt();
                if crdt != found {
                    let err = StorageError::WrongCrdt { name: self.doc.to_string(), expected: crdt, found };
                    let _ = reply.send(Err(JoinError::WrongCrdt(err)));
                } else if reply.send(Ok(())).is_ok() {
                    if self.replica.handle_join(peer, access, &link).is_ok() {
                        self.peers.insert(peer, link);
                    } else {
                        // A dialect that cannot speak this CRDT; the endpoints never ask for one.
                        link.close(CloseCode::InternalError);
                    }
                }
            }
            RoomCommand::Input { peer, input: Inbound::Stateless(payload) } => {
                self.relay_stateless(peer, &payload)
            }
            RoomCommand::Input { peer, input } => {
                if self.replica.handle_input(peer, input).is_err()
                    && let Some(link) = self.peers.remove(&peer)
                {
                    link.close(CloseCode::MalformedMessage);
                    self.replica.handle_leave(peer);
                }
            }
            RoomCommand::Leave { peer } => {
                self.peers.remove(&peer);
                self.replica.handle_leave(peer);
            }
        }
    }

    /// Carries out the relay's events: frames to outboxes, appends to storage, closes.
    async fn dispatch(&mut self) {
        let mut appends = Vec::new();
        loop {
            while let Some(event) = self.replica.poll_event() {
                match event {
                    Event::Send { peer, frame } => self.deliver(peer, frame),
                    Event::Broadcast { frame, except } => {
                        let recipients: Vec<PeerId> =
                            self.peers.keys().copied().filter(|p| !except.contains(p)).collect();
                        for peer in recipients {
                            self.deliver(peer, frame.clone());
                        }
                    }
                    Event::Append { seq, update, .. } => {
                        appends.push(NewUpdate { seq, bytes: update, user_id: None, at_ms: now_ms() });
                    }
                    Event::Acknowledge { peer } => {
                        let result = self.peers.get(&peer).map(PeerLink::acknowledge);
                        self.undeliverable(peer, result);
                    }
                    Event::Refused { peer } => {
                        let result = self.peers.get(&peer).map(PeerLink::refuse);
                        self.undeliverable(peer, result);
                    }
                    Event::Close { peer, code, detail } => {
                        if let Some(link) = self.peers.remove(&peer) {
                            tracing::info!(doc = %self.doc, %peer, code = code.code(), %detail, "closing peer");
                            link.close(code);
                        }
                    }
                }
            }
            if appends.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut appends);
            let upto = batch.last().map_or(0, |u| u.seq);
            match self.shared.storage.append(self.key, batch).await {
                Ok(receipt) => {
                    self.commits.push_back((upto, receipt));
                    return;
                }
                // The failure closes every peer; loop once more to carry out those closes.
                Err(err) => self.replica.handle_storage_failure(&err.to_string()),
            }
        }
    }

    fn deliver(&mut self, peer: PeerId, frame: Bytes) {
        let result = self.peers.get(&peer).map(|link| link.try_send(frame));
        self.undeliverable(peer, result);
    }

    /// Relays a stateless message to every other peer whose dialect has them.
    fn relay_stateless(&mut self, from: PeerId, payload: &str) {
        // A peer the room already closed may still have a message in flight; it speaks for nobody.
        if !self.peers.contains_key(&from) {
            return;
        }
        let recipients: Vec<PeerId> = self.peers.keys().copied().filter(|p| *p != from).collect();
        for peer in recipients {
            let result = self.peers.get(&peer).map(|link| link.stateless(payload));
            self.undeliverable(peer, result);
        }
    }

    /// Drops a peer whose outbox was full (closing it as a slow consumer) or whose connection is gone.
    fn undeliverable(&mut self, peer: PeerId, result: Option<Result<(), Undeliverable>>) {
        let Some(Err(why)) = result else { return };
        let Some(link) = self.peers.remove(&peer) else { return };
        if why == Undeliverable::Full {
            tracing::info!(doc = %self.doc, %peer, "peer outbox full; disconnecting slow consumer");
            link.close(CloseCode::SlowConsumer);
        }
        self.replica.handle_leave(peer);
    }

    fn maybe_compact(&mut self) {
        let due = self.replica.log_len() >= self.shared.config.compact_after_updates;
        if due && self.compaction.is_none() {
            self.start_compaction();
        }
    }

    /// Snapshots the replica and writes it in the background. Every append the snapshot covers has
    /// already been queued, and the writer keeps queue order, so it replaces exactly those entries.
    fn start_compaction(&mut self) {
        let snapshot = self.replica.snapshot();
        if snapshot.upto <= self.compacted_upto {
            return;
        }
        let storage = self.shared.storage.clone();
        let (key, upto, state) = (self.key, snapshot.upto, snapshot.state.clone());
        let task = tokio::spawn(async move { storage.compact(key, upto, state, now_ms()).await });
        self.compaction = Some((snapshot, task));
    }

    fn finish_compaction(&mut self, result: (Snapshot, Result<(), StorageError>)) {
        match result {
            (snapshot, Ok(())) => {
                tracing::debug!(doc = %self.doc, upto = snapshot.upto, bytes = snapshot.state.len(), "compacted");
                self.compacted_upto = snapshot.upto;
                self.replica.handle_compacted(&snapshot);
            }
            // The log is untouched when compaction fails; nothing is lost, it is retried later.
            (_, Err(err)) => tracing::warn!(doc = %self.doc, error = %err, "compaction failed"),
        }
    }

    async fn stop(&mut self, exit: Exit, mut rx: mpsc::Receiver<RoomCommand>) {
        for (_, link) in self.peers.drain() {
            link.close(match exit {
                Exit::Poisoned => CloseCode::InternalError,
                Exit::Idle | Exit::Shutdown => CloseCode::GoingAway,
            });
        }
        while !self.commits.is_empty() {
            let (upto, result) = next_commit(&mut self.commits).await;
            if result.is_ok() {
                self.replica.handle_durable(upto);
            }
        }
        if self.compaction.is_some() {
            let result = join_compaction(&mut self.compaction).await;
            self.finish_compaction(result);
        }
        if matches!(exit, Exit::Idle) && self.replica.log_len() > 0 {
            self.start_compaction();
            if self.compaction.is_some() {
                let result = join_compaction(&mut self.compaction).await;
                self.finish_compaction(result);
            }
        }
        self.shared.forget(&self.doc, self.generation);
        let reason = match exit {
            Exit::Shutdown => JoinError::ShuttingDown,
            Exit::Idle | Exit::Poisoned => JoinError::RoomClosed,
        };
        refuse_remaining(&mut rx, reason).await;
        tracing::debug!(doc = %self.doc, "room unloaded");
    }
}

/// Waits for the oldest outstanding append.
async fn next_commit(commits: &mut VecDeque<(u64, Receipt)>) -> (u64, Result<(), StorageError>) {
    poll_fn(|cx| {
        let Some((upto, receipt)) = commits.front_mut() else {
            return Poll::Pending;
        };
        let upto = *upto;
        let result = std::task::ready!(Pin::new(receipt).poll(cx));
        commits.pop_front();
        Poll::Ready((upto, result))
    })
    .await
}

/// Waits for the running compaction.
async fn join_compaction(
    compaction: &mut Option<(Snapshot, JoinHandle<Result<(), StorageError>>)>,
) -> (Snapshot, Result<(), StorageError>) {
    let Some((_, task)) = compaction.as_mut() else {
        return std::future::pending().await;
    };
    let result =
        task.await.unwrap_or_else(|e| Err(StorageError::Database(format!("compaction task failed: {e}"))));
    let Some((snapshot, _)) = compaction.take() else {
        return std::future::pending().await;
    };
    (snapshot, result)
}
