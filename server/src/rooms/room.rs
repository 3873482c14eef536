//! The room actor: one task per live document, the only owner of its replica.
//!
//! It feeds peer input and storage receipts into the document's sans-IO relay ([`Replica`]) and
//! carries out the events the relay returns: frames go to peer outboxes with `try_send`, appends go
//! to storage in one request per batch of inbox commands (so the storage writer can group-commit
//! them with other rooms'), and receipts come back in order to release echoes. It folds the log
//! into a snapshot every `compact_after_updates` entries and once more before unloading; a snapshot
//! replaces log entries only after it loaded back as the replica (off the async workers).
//!
//! Failures: loading quarantines whatever breaks the document before the room serves it. A refused
//! write that touched the replica makes the relay ask for a rebuild: the room stops taking input,
//! lets everything appended become durable, loads the document again and hands the peers to the new
//! relay — they stay connected. Anything the relay cannot recover from (storage, a replica that no
//! longer encodes, a snapshot that does not verify) stops the room: its peers get 1011 with the
//! reason, the event is logged and counted, and the next join loads the document afresh.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weft_sync_core::relay::{Event, Health, Snapshot, StoredItem};
use weft_sync_core::{CloseCode, CrdtFailure, DocId, DocKind, PeerId};

use super::history::{Captured, History, Request};
use super::replica::{Inbound, Replica};
use super::{Identity, JoinError, PeerLink, Shared, Undeliverable, WriteRefused};
use crate::clock::now_ms;
use crate::metrics::ItemKind;
use crate::storage::versions::{StoredVersion, Version, VersionKind};
use crate::storage::{Crdt, DocKey, NewUpdate, Receipt, StorageError};
use weft_sync_core::domain::Projection;
use weft_sync_core::domain::write::Change;
use weft_sync_core::relay::WriteFailure;

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
        identity: Identity,
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
    /// Read the document through its kind's projection, once everything it holds is durable.
    Project {
        kind: DocKind,
        reply: oneshot::Sender<Result<Projection, JoinError>>,
    },
    /// Write `changes` as the relay's own update, attributed to `author`; answered once durable.
    Write {
        changes: Vec<Change>,
        author: Arc<str>,
        reply: oneshot::Sender<Result<(), WriteRefused>>,
    },
    /// The full state (a Yjs update or a saved Automerge document), once everything is durable.
    State {
        reply: oneshot::Sender<Result<Vec<u8>, JoinError>>,
    },
    /// Record a named version of everything written so far.
    Checkpoint {
        name: String,
        by: Arc<str>,
        reply: oneshot::Sender<Result<Version, String>>,
    },
    /// Restore `version` (one of this document's), as `by`; answered with the version the
    /// restore made, once durable.
    Restore {
        version: StoredVersion,
        by: Arc<str>,
        reply: oneshot::Sender<Result<Version, String>>,
    },
}

/// Spawns the room for `doc`; it loads (or creates) the document as a `crdt` document.
pub(super) fn spawn(doc: DocId, crdt: Crdt, generation: u64, shared: Arc<Shared>) -> RoomHandle {
    let (tx, rx) = mpsc::channel(shared.config.room_inbox);
    let tracker = shared.tracker.clone();
    tracker.spawn(run(doc, crdt, generation, rx, shared));
    RoomHandle { tx, generation }
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
    // Everything loaded is durable.
    let loaded_upto = room.1.relay().last_seq();
    let mut room = Room {
        doc,
        generation,
        replica: room.1,
        key: room.0,
        history: History::new(shared.config.history.clone()),
        durable: tokio::sync::watch::Sender::new(loaded_upto),
        shared,
        peers: HashMap::new(),
        writers: HashMap::new(),
        commits: VecDeque::new(),
        compaction: None,
        compacted_upto: 0,
        untaken: Vec::new(),
        reads: Vec::new(),
        states: Vec::new(),
        restores: Vec::new(),
        writes: Vec::new(),
        local_writers: HashMap::new(),
    };
    room.run(rx).await;
}

/// Loads `doc` (creating it as a `crdt` document if new), quarantining every stored item that
/// breaks it before the document is served.
async fn load(doc: &DocId, crdt: Crdt, shared: &Shared) -> Result<(DocKey, Replica), JoinError> {
    let stored = shared.storage.load_or_create(doc, crdt, now_ms()).await.map_err(|err| match err {
        err @ StorageError::WrongCrdt { .. } => JoinError::WrongCrdt(err),
        other => JoinError::Unavailable(other.to_string()),
    })?;
    let limits = shared.config.limits;
    let key = stored.key;
    // Replaying a long log is CPU work; keep it off the async workers.
    let (replica, quarantined) = tokio::task::spawn_blocking(move || Replica::load(crdt, limits, &stored))
        .await
        .map_err(|e| JoinError::Unavailable(format!("load task failed: {e}")))?;
    if !quarantined.is_empty() {
        for item in &quarantined {
            tracing::warn!(doc = %doc, item = ?item.item, reason = %item.reason, "quarantining a stored item that breaks the document");
            shared.metrics.count_quarantined(match item.item {
                StoredItem::Update { .. } => ItemKind::Update,
                StoredItem::Snapshot { .. } => ItemKind::Snapshot,
            });
        }
        // Before serving: compaction would otherwise fold the log past these items.
        shared
            .storage
            .quarantine(key, &quarantined, now_ms())
            .await
            .map_err(|e| JoinError::Unavailable(format!("quarantining failed: {e}")))?;
    }
    Ok((key, replica))
}

/// Answers every command still queued after the room stopped taking new ones.
async fn refuse_remaining(rx: &mut mpsc::Receiver<RoomCommand>, err: JoinError) {
    rx.close();
    while let Some(command) = rx.recv().await {
        match command {
            RoomCommand::Join { reply, .. } => {
                let _ = reply.send(Err(err.clone()));
            }
            RoomCommand::Project { reply, .. } => {
                let _ = reply.send(Err(err.clone()));
            }
            RoomCommand::Write { reply, .. } => {
                let refused = match err.clone() {
                    JoinError::RoomClosed => WriteRefused::RoomClosed,
                    other => WriteRefused::Unavailable(other.to_string()),
                };
                let _ = reply.send(Err(refused));
            }
            RoomCommand::State { reply } => {
                let _ = reply.send(Err(err.clone()));
            }
            // Dropped unanswered: the caller asks the next room (nothing was done).
            RoomCommand::Checkpoint { .. } | RoomCommand::Restore { .. } => {}
            RoomCommand::Input { .. } | RoomCommand::Leave { .. } => {}
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
    /// Whom each joined peer's updates are attributed to, and its connection. Kept beside `peers`
    /// and removed with it, by [`Room::remove_peer`].
    writers: HashMap<PeerId, Writer>,
    /// Versions: when to checkpoint, the checkpoint running.
    history: History,
    /// The last sequence number the log holds, for checkpoints waiting on it.
    durable: tokio::sync::watch::Sender<u64>,
    /// Appends handed to storage, oldest first, each with the last sequence number it carries.
    commits: VecDeque<(u64, Receipt)>,
    /// The snapshot being verified and written, if any.
    compaction: Option<(Snapshot, JoinHandle<Result<(), CompactionError>>)>,
    compacted_upto: u64,
    /// Input the relay did not take because it stopped serving part-way through it (a rebuild
    /// began); handed to the rebuilt relay.
    untaken: Vec<(PeerId, Inbound)>,
    /// Projections asked for, answered once no append is outstanding (so that a reader sees only
    /// what is durable).
    reads: Vec<(DocKind, oneshot::Sender<Result<Projection, JoinError>>)>,
    /// Full states asked for, answered like `reads`.
    states: Vec<oneshot::Sender<Result<Vec<u8>, JoinError>>>,
    /// Restores asked for, made once what was written before them is a version.
    restores: Vec<(StoredVersion, Arc<str>, VersionReply)>,
    /// The relay's own writes (REST), each answered once the log holds its sequence number.
    writes: Vec<(u64, oneshot::Sender<Result<(), WriteRefused>>)>,
    /// Whom each of those writes' log entries is attributed to, by sequence number, until the
    /// append is handed to storage.
    local_writers: HashMap<u64, Writer>,
}

/// Where a named version or a restore is answered.
type VersionReply = oneshot::Sender<Result<Version, String>>;

/// Whom a peer's (or a REST write's) log rows are attributed to, and the connection they came by.
#[derive(Clone)]
struct Writer {
    user: Option<Arc<str>>,
    client: Arc<str>,
}

impl Writer {
    fn rest(user: Arc<str>) -> Self {
        Self { user: Some(user), client: Arc::from("rest") }
    }
}

/// Why a compaction did not replace the log.
#[derive(Debug, thiserror::Error)]
enum CompactionError {
    /// The snapshot did not load back as the replica; it was kept aside.
    #[error("the snapshot does not load back as the replica: {0}")]
    Unverified(String),
    /// Storing failed; the log is untouched.
    #[error(transparent)]
    Storage(#[from] StorageError),
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
            let (wake, checkpointing) = (self.history.wake_at(), self.history.is_running());
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break Exit::Shutdown,
                (upto, result) = next_commit(&mut self.commits), if !self.commits.is_empty() => {
                    self.committed(upto, result);
                }
                result = join_compaction(&mut self.compaction), if self.compaction.is_some() => {
                    self.finish_compaction(result);
                }
                (requests, result) = self.history.join(), if checkpointing => {
                    self.finish_checkpoint(requests, result);
                }
                () = sleep_until_some(wake), if wake.is_some() => {}
                command = rx.recv() => {
                    let Some(command) = command else { break Exit::Shutdown };
                    self.handle(command);
                    for _ in 1..COMMANDS_PER_TURN {
                        // A relay that stopped serving takes no more input; it waits in the inbox.
                        if self.replica.relay().health() != Health::Serving {
                            break;
                        }
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
                        self.remove_peer(peer);
                        self.replica.relay_mut().handle_leave(peer);
                    }
                }
            }
            self.dispatch().await;
            if self.replica.relay().health() == Health::Rebuild {
                self.rebuild().await;
            }
            if self.replica.relay().is_poisoned() {
                break Exit::Poisoned;
            }
            self.maybe_checkpoint();
            // A restore made there has events to carry out now, not at the next wake-up.
            self.dispatch().await;
            self.maybe_compact();
            self.answer_writes();
            self.answer_reads();
            if !self.peers.is_empty() {
                idle_since = Instant::now();
            }
        };
        self.stop(exit, rx).await;
    }

    fn handle(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::Join { peer, crdt, identity, link, reply } => {
                let found = self.replica.crdt();
                if crdt != found {
                    let err = StorageError::WrongCrdt { name: self.doc.to_string(), expected: crdt, found };
                    let _ = reply.send(Err(JoinError::WrongCrdt(err)));
                } else if reply.send(Ok(())).is_ok() {
                    if self.replica.handle_join(peer, identity.access, &link).is_ok() {
                        let client = Arc::from(format!("{}/{}", link.dialect().name(), peer.0));
                        self.writers.insert(peer, Writer { user: identity.author, client });
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
            RoomCommand::Input { peer, input } => self.handle_input(peer, input),
            RoomCommand::Leave { peer } => {
                self.remove_peer(peer);
                self.replica.relay_mut().handle_leave(peer);
            }
            RoomCommand::Project { kind, reply } => self.reads.push((kind, reply)),
            RoomCommand::Write { changes, author, reply } => self.write(&changes, author, reply),
            RoomCommand::State { reply } => self.states.push(reply),
            RoomCommand::Checkpoint { name, by, reply } => self.history.ask(Request {
                kind: VersionKind::Named,
                name: Some(name),
                by: Some(by),
                restored_from: None,
                after_seq: self.replica.relay().last_seq(),
                reply,
            }),
            RoomCommand::Restore { version, by, reply } => self.restores.push((version, by, reply)),
        }
    }

    /// Restores a version: the relay writes, as its own update attributed to `by`, what takes the
    /// document back there; the version that restore makes answers the caller once it is durable.
    /// Called with the state before it checkpointed (see [`Room::maybe_checkpoint`]), so the restore
    /// can itself be undone by restoring the version before it.
    fn restore(
        &mut self,
        version: StoredVersion,
        by: Arc<str>,
        reply: oneshot::Sender<Result<Version, String>>,
    ) {
        let last = self.replica.relay().last_seq();
        match self.replica.restore(&version.state) {
            Ok((Ok(()), seq)) => {
                if seq > last {
                    self.local_writers.insert(seq, Writer::rest(by.clone()));
                }
                let label = version.version.name.clone().unwrap_or_else(|| version.version.id.clone());
                self.history.ask(Request {
                    kind: VersionKind::Restore,
                    name: Some(format!("Restored {label}")),
                    by: Some(by),
                    restored_from: Some(version.version.id),
                    after_seq: seq,
                    reply,
                });
            }
            Ok((Err(failure), _)) => {
                tracing::warn!(doc = %self.doc, error = %failure, "a restore failed");
                let _ = reply.send(Err(failure.to_string()));
            }
            Err(failure) => {
                tracing::warn!(doc = %self.doc, error = %failure, "a restore failed");
                let _ = reply.send(Err(failure.to_string()));
            }
        }
    }

    /// Starts a checkpoint when one is due; makes the restores asked for once what was written
    /// before them is a version. The checkpoint's task waits until the log holds what it captured.
    fn maybe_checkpoint(&mut self) {
        if self.replica.relay().health() != Health::Serving {
            return;
        }
        if !self.restores.is_empty() {
            if self.history.has_session() {
                if self.history.is_running() {
                    return;
                }
                self.capture();
            }
            for (version, by, reply) in std::mem::take(&mut self.restores) {
                self.restore(version, by, reply);
            }
        }
        // A restore that changed nothing appends nothing: its version is due right away.
        if self.history.due(Instant::now(), self.replica.relay().last_seq()) {
            self.capture();
        }
    }

    /// Captures the replica for a checkpoint and starts recording it.
    fn capture(&mut self) {
        let last = self.replica.relay().last_seq();
        match self.replica.capture() {
            Ok((version, state)) => {
                let captured = Captured { version, state, upto: last, durable: self.durable.subscribe() };
                self.history.start(captured, self.key, self.replica.crdt(), self.shared.storage.clone());
            }
            Err(failure) => {
                tracing::error!(doc = %self.doc, error = %failure, "the document could not be captured for a version");
                self.replica.relay_mut().handle_failure(&format!("the document does not encode: {failure}"));
            }
        }
    }

    fn finish_checkpoint(&mut self, requests: Vec<Request>, result: Result<(u64, Option<Version>), String>) {
        if let Err(err) = &result {
            tracing::warn!(doc = %self.doc, error = %err, "a checkpoint failed; the log stays unattributed");
        }
        self.history.finished(requests, result);
    }

    /// Makes a REST write: the relay applies it to its replica and logs it like a peer's update;
    /// the caller is answered once it is durable ([`Room::answer_writes`]).
    fn write(
        &mut self,
        changes: &[Change],
        author: Arc<str>,
        reply: oneshot::Sender<Result<(), WriteRefused>>,
    ) {
        let last = self.replica.relay().last_seq();
        match self.replica.write(changes) {
            Ok((Ok(()), seq)) => {
                if seq > last {
                    self.local_writers.insert(seq, Writer::rest(author));
                }
                self.writes.push((seq, reply));
            }
            Ok((Err(refused), _)) => {
                let _ = reply.send(Err(WriteRefused::Layout(refused)));
            }
            Err(WriteFailure::TooLarge(detail)) => {
                let _ = reply.send(Err(WriteRefused::TooLarge(detail)));
            }
            Err(failure @ (WriteFailure::NotServing | WriteFailure::Failed(_))) => {
                tracing::warn!(doc = %self.doc, error = %failure, "a REST write failed");
                let _ = reply.send(Err(WriteRefused::Unavailable(failure.to_string())));
            }
        }
    }

    /// Answers the writes whose updates the log now holds.
    fn answer_writes(&mut self) {
        let durable = self.replica.relay().durable_seq();
        let (done, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.writes).into_iter().partition(|(seq, _)| *seq <= durable);
        self.writes = waiting;
        for (_, reply) in done {
            let _ = reply.send(Ok(()));
        }
    }

    /// Answers the projections asked for, when nothing appended is still on its way to disk.
    fn answer_reads(&mut self) {
        if !self.commits.is_empty() {
            return;
        }
        for (kind, reply) in std::mem::take(&mut self.reads) {
            let projected =
                self.replica.project(kind).map_err(|failure| JoinError::Unavailable(failure.to_string()));
            let _ = reply.send(projected);
        }
        for reply in std::mem::take(&mut self.states) {
            let state = self
                .replica
                .capture()
                .map(|(_, state)| state)
                .map_err(|failure| JoinError::Unavailable(failure.to_string()));
            let _ = reply.send(state);
        }
    }

    fn handle_input(&mut self, peer: PeerId, input: Inbound) {
        match self.replica.handle_input(peer, input) {
            Ok(None) => {}
            Ok(Some(untaken)) => self.untaken.push((peer, untaken)),
            Err(_) => {
                if let Some(link) = self.remove_peer(peer) {
                    link.close(CloseCode::MalformedMessage);
                    self.replica.relay_mut().handle_leave(peer);
                }
            }
        }
    }

    /// An append request finished.
    fn committed(&mut self, upto: u64, result: Result<(), StorageError>) {
        match result {
            Ok(()) => {
                self.replica.relay_mut().handle_durable(upto);
                self.durable.send_replace(upto);
            }
            Err(err) => {
                tracing::error!(doc = %self.doc, error = %err, "append failed; closing the document");
                self.replica.relay_mut().handle_failure(&format!("the log could not be written: {err}"));
            }
        }
    }

    /// Replaces a relay that asked for a rebuild (a refused write touched its replica) with one
    /// loaded from storage, which takes its peers over: everything appended is made durable and
    /// released first, so the log holds all the old relay acknowledged and nothing it refused.
    async fn rebuild(&mut self) {
        self.shared.metrics.room_rebuilds.inc();
        tracing::info!(doc = %self.doc, "rebuilding the document from the log after a refused write");
        while !self.commits.is_empty() {
            let (upto, result) = next_commit(&mut self.commits).await;
            self.committed(upto, result);
            self.dispatch().await;
        }
        if self.compaction.is_some() {
            let result = join_compaction(&mut self.compaction).await;
            self.finish_compaction(result);
        }
        if self.replica.relay().is_poisoned() {
            return;
        }
        let crdt = self.replica.crdt();
        match load(&self.doc, crdt, &self.shared).await {
            Ok((_, fresh)) => {
                let old = std::mem::replace(&mut self.replica, fresh);
                self.replica.adopt(old);
                for (peer, input) in std::mem::take(&mut self.untaken) {
                    if self.peers.contains_key(&peer) {
                        self.handle_input(peer, input);
                    }
                }
                self.dispatch().await;
            }
            Err(err) => {
                tracing::error!(doc = %self.doc, error = %err, "the document could not be reloaded");
                self.replica
                    .relay_mut()
                    .handle_failure(&format!("the document could not be reloaded: {err}"));
                self.dispatch().await;
            }
        }
    }

    /// Carries out the relay's events: frames to outboxes, appends to storage, closes.
    async fn dispatch(&mut self) {
        let mut appends = Vec::new();
        loop {
            while let Some(event) = self.replica.relay_mut().poll_event() {
                match event {
                    Event::Send { peer, frame } => self.deliver(peer, frame),
                    Event::Broadcast { frame, except } => {
                        let recipients: Vec<PeerId> =
                            self.peers.keys().copied().filter(|p| !except.contains(p)).collect();
                        for peer in recipients {
                            self.deliver(peer, frame.clone());
                        }
                    }
                    Event::Append { seq, update, peer } => {
                        let writer = match peer {
                            PeerId::LOCAL => self.local_writers.remove(&seq),
                            _ => self.writers.get(&peer).cloned(),
                        };
                        let (user_id, client) = match writer {
                            Some(w) => (w.user.map(|u| u.to_string()), Some(w.client)),
                            None => (None, None),
                        };
                        appends.push(NewUpdate { seq, bytes: update, user_id, client, at_ms: now_ms() });
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
                        if let Some(link) = self.remove_peer(peer) {
                            tracing::info!(doc = %self.doc, %peer, code = code.code(), %detail, "closing peer");
                            link.close_with(code, &detail);
                        }
                    }
                }
            }
            if appends.is_empty() {
                return;
            }
            self.history.edited(Instant::now(), appends.len());
            let batch = std::mem::take(&mut appends);
            let upto = batch.last().map_or(0, |u| u.seq);
            match self.shared.storage.append(self.key, batch).await {
                Ok(receipt) => {
                    self.commits.push_back((upto, receipt));
                    return;
                }
                // The failure closes every peer; loop once more to carry out those closes.
                Err(err) => {
                    self.replica.relay_mut().handle_failure(&format!("the log could not be written: {err}"))
                }
            }
        }
    }

    /// Forgets a peer: its link and its author.
    fn remove_peer(&mut self, peer: PeerId) -> Option<PeerLink> {
        self.writers.remove(&peer);
        self.peers.remove(&peer)
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
        let Some(link) = self.remove_peer(peer) else { return };
        if why == Undeliverable::Full {
            tracing::info!(doc = %self.doc, %peer, "peer outbox full; disconnecting slow consumer");
            link.close(CloseCode::SlowConsumer);
        }
        self.replica.relay_mut().handle_leave(peer);
    }

    /// Compacts when the log is long enough, once a checkpoint attributed what compaction would
    /// delete (storage never deletes unattributed rows; this makes them few).
    fn maybe_compact(&mut self) {
        let relay = self.replica.relay();
        let due = relay.log_len() >= self.shared.config.compact_after_updates;
        if !due || self.compaction.is_some() || relay.health() != Health::Serving {
            return;
        }
        if self.history.attributed_upto() <= self.compacted_upto && self.history.has_session() {
            self.history.force();
            return;
        }
        self.start_compaction();
    }

    /// Snapshots the replica, then in the background verifies the snapshot (loading it back, off
    /// the async workers) and only then writes it. Every append the snapshot covers has already
    /// been queued, and the writer keeps queue order, so it replaces exactly those entries. A
    /// snapshot that does not verify is kept aside in the quarantine, and the log stays.
    fn start_compaction(&mut self) {
        let Some(snapshot) = self.replica.relay_mut().snapshot() else { return };
        if snapshot.upto <= self.compacted_upto {
            return;
        }
        let storage = self.shared.storage.clone();
        let key = self.key;
        let checked = snapshot.clone();
        let task = tokio::spawn(async move {
            let (upto, state) = (checked.upto, checked.state.clone());
            let verified = tokio::task::spawn_blocking(move || checked.verify())
                .await
                .unwrap_or_else(|e| Err(CrdtFailure::new("verify snapshot", format!("task failed: {e}"))));
            match verified {
                Ok(()) => Ok(storage.compact(key, upto, state, now_ms()).await?),
                Err(failure) => {
                    let reason = failure.to_string();
                    if let Err(err) =
                        storage.set_aside_snapshot(key, upto, state, reason.clone(), now_ms()).await
                    {
                        tracing::error!(error = %err, "could not keep the unverified snapshot aside");
                    }
                    Err(CompactionError::Unverified(reason))
                }
            }
        });
        self.compaction = Some((snapshot, task));
    }

    fn finish_compaction(&mut self, result: (Snapshot, Result<(), CompactionError>)) {
        match result {
            (snapshot, Ok(())) => {
                tracing::debug!(doc = %self.doc, upto = snapshot.upto, bytes = snapshot.state.len(), "compacted");
                self.compacted_upto = snapshot.upto;
                self.replica.relay_mut().handle_compacted(&snapshot);
            }
            (_, Err(CompactionError::Unverified(reason))) => {
                // The replica no longer encodes what it holds: stop the room; loading the document
                // again quarantines what breaks it. The log is untouched.
                self.shared.metrics.snapshot_verification_failures.inc();
                tracing::error!(doc = %self.doc, %reason, "snapshot did not verify; kept aside, log kept");
                self.replica
                    .relay_mut()
                    .handle_failure(&format!("the document's snapshot does not load: {reason}"));
            }
            // The log is untouched when storing fails; nothing is lost, it is retried later.
            (_, Err(CompactionError::Storage(err))) => {
                tracing::warn!(doc = %self.doc, error = %err, "compaction failed")
            }
        }
    }

    async fn stop(&mut self, exit: Exit, mut rx: mpsc::Receiver<RoomCommand>) {
        if matches!(exit, Exit::Poisoned) {
            // The relay closed its peers with the reason already; count and log it once here.
            self.shared.metrics.room_failures.inc();
            tracing::error!(doc = %self.doc, "room stopped: the document could not go on; it reloads on the next join");
        }
        self.writers.clear();
        for (_, link) in self.peers.drain() {
            link.close(match exit {
                Exit::Poisoned => CloseCode::InternalError,
                Exit::Idle | Exit::Shutdown => CloseCode::GoingAway,
            });
        }
        while !self.commits.is_empty() {
            let (upto, result) = next_commit(&mut self.commits).await;
            if result.is_ok() {
                self.replica.relay_mut().handle_durable(upto);
            }
        }
        // Writes now durable are answered; the others' replies drop (the caller is told to repeat).
        self.answer_writes();
        self.writes.clear();
        if self.compaction.is_some() {
            let result = join_compaction(&mut self.compaction).await;
            self.finish_compaction(result);
        }
        // What was written since the last version becomes one before the room goes (a poisoned
        // room's checkpoint may wait for appends that failed: it is dropped; the log stays).
        if matches!(exit, Exit::Poisoned) {
            self.history.abort();
        }
        if self.history.is_running() {
            let (requests, result) = self.history.join().await;
            self.finish_checkpoint(requests, result);
        }
        if !matches!(exit, Exit::Poisoned) {
            self.history.force();
            self.maybe_checkpoint();
            if self.history.is_running() {
                let (requests, result) = self.history.join().await;
                self.finish_checkpoint(requests, result);
            }
        }
        self.history.abandon("the document closed before the version was recorded; ask again");
        for (_, _, reply) in self.restores.drain(..) {
            let _ = reply.send(Err("the document closed before the restore was made; ask again".into()));
        }
        if matches!(exit, Exit::Idle) && self.replica.relay().log_len() > 0 {
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

/// Sleeps until `at` (forever when `None`; the caller guards the branch).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
    compaction: &mut Option<(Snapshot, JoinHandle<Result<(), CompactionError>>)>,
) -> (Snapshot, Result<(), CompactionError>) {
    let Some((_, task)) = compaction.as_mut() else {
        return std::future::pending().await;
    };
    let result = task
        .await
        .unwrap_or_else(|e| Err(StorageError::Database(format!("compaction task failed: {e}")).into()));
    let Some((snapshot, _)) = compaction.take() else {
        return std::future::pending().await;
    };
    (snapshot, result)
}
