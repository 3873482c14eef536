//! Live documents: the registry that maps document names to room actors, and joining one.
//!
//! A room is spawned on first join and loads its document from storage; it unloads itself after it
//! has had no peers for `idle_unload`. Joins race with unloading safely: a room that is going away
//! answers queued joins with `RoomClosed`, and the joiner retries against a fresh room, which loads
//! everything the old one flushed.

mod history;
mod peer;
mod replica;
mod room;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weft_sync_core::relay::Access;
use weft_sync_core::yjs::RelayLimits;
use weft_sync_core::{CloseCode, DocId, DocKind, PeerId};

use crate::metrics::Metrics;
use crate::storage::versions::{StoredVersion, Version};
use crate::storage::{Crdt, Storage, StorageError};
pub use history::{HistoryConfig, attribute};
pub use peer::{Closer, Dialect, PeerLink, Undeliverable, link};
pub use replica::Inbound;
use room::{RoomCommand, RoomHandle};
use weft_sync_core::domain::Projection;
use weft_sync_core::domain::write::Change;

/// Tuning for live documents.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// Limits on document content.
    pub limits: RelayLimits,
    /// How long a room with no peers stays loaded.
    pub idle_unload: Duration,
    /// Log entries after which a room folds its log into a snapshot.
    pub compact_after_updates: u64,
    /// Frames a peer's outbox holds before the peer counts as slow and is disconnected.
    pub peer_outbox: usize,
    /// Commands a room's inbox holds before senders wait.
    pub room_inbox: usize,
    /// When rooms make versions.
    pub history: HistoryConfig,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            limits: RelayLimits::default(),
            idle_unload: Duration::from_secs(30),
            compact_after_updates: 1000,
            peer_outbox: 1024,
            room_inbox: 1024,
            history: HistoryConfig::default(),
        }
    }
}

/// Why joining a document failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JoinError {
    /// The document exists with another CRDT.
    #[error(transparent)]
    WrongCrdt(StorageError),
    /// Storage failed, or the stored document does not load.
    #[error("document could not be loaded: {0}")]
    Unavailable(String),
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The room was unloading; retried internally, never returned by [`Rooms::join`].
    #[error("room closed")]
    RoomClosed,
}

/// Why a write through a room ([`Rooms::write`]) was not made. Nothing of it was stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteRefused {
    /// The document's content does not have the layout the write expects (a client wrote something
    /// else there, or an anchor lies outside the text).
    #[error(transparent)]
    Layout(#[from] weft_sync_core::domain::write::WriteError),
    /// The write would grow the document past its limit.
    #[error("{0}")]
    TooLarge(String),
    /// The document cannot take writes right now (storage, a reload, shutdown), or its room
    /// stopped before the write was durable (it may then have been applied: writes set fields, so
    /// repeating one is harmless).
    #[error("{0}")]
    Unavailable(String),
    /// The room was unloading and never took the write; retried internally, never returned by
    /// [`Rooms::write`].
    #[error("room closed")]
    RoomClosed,
}

/// What asking a room came to.
enum Asked<T> {
    Answer(T),
    /// The room took the command and stopped before answering.
    Unanswered,
    /// Rooms kept stopping.
    Unavailable(String),
    ShuttingDown,
}

/// An answer that says the room was unloading and never took the command (ask the next one).
trait Closed {
    fn room_closed(&self) -> bool;
}

impl<T> Closed for Result<T, JoinError> {
    fn room_closed(&self) -> bool {
        matches!(self, Err(JoinError::RoomClosed))
    }
}

impl Closed for Result<(), WriteRefused> {
    fn room_closed(&self) -> bool {
        matches!(self, Err(WriteRefused::RoomClosed))
    }
}

impl Closed for Result<Version, String> {
    fn room_closed(&self) -> bool {
        false
    }
}

fn read_answer<T>(asked: Asked<Result<T, JoinError>>) -> Result<T, JoinError> {
    match asked {
        Asked::Answer(result) => result,
        Asked::Unanswered => Err(JoinError::Unavailable("the document's room stopped".into())),
        Asked::Unavailable(why) => Err(JoinError::Unavailable(why)),
        Asked::ShuttingDown => Err(JoinError::ShuttingDown),
    }
}

fn version_answer(asked: Asked<Result<Version, String>>) -> Result<Version, String> {
    match asked {
        Asked::Answer(result) => result,
        Asked::Unanswered => Err("the document stopped before the version was recorded; ask again".into()),
        Asked::Unavailable(why) => Err(why),
        Asked::ShuttingDown => Err("the server is shutting down".into()),
    }
}

impl JoinError {
    /// The close code a WebSocket connection gets for this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::WrongCrdt(_) => CloseCode::WrongCrdt,
            Self::ShuttingDown => CloseCode::GoingAway,
            Self::Unavailable(_) | Self::RoomClosed => CloseCode::InternalError,
        }
    }
}

/// The registry of live rooms. Cheap to clone.
#[derive(Clone)]
pub struct Rooms {
    inner: Arc<Shared>,
}

/// What every room actor shares with the registry.
struct Shared {
    live: Mutex<HashMap<DocId, RoomHandle>>,
    storage: Storage,
    config: RoomConfig,
    metrics: Metrics,
    next_peer: AtomicU64,
    next_generation: AtomicU64,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Shared {
    /// Removes `doc`'s entry if it still belongs to the room of `generation`.
    fn forget(&self, doc: &DocId, generation: u64) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.get(doc).is_some_and(|h| h.generation == generation) {
            live.remove(doc);
        }
    }
}

/// Who a peer is, as its room needs to know: what it may do, and whom its writes are attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Read-write or read-only.
    pub access: Access,
    /// The user its updates are attributed to in the log (`updates.user_id`), when known.
    pub author: Option<Arc<str>>,
}

/// A peer's membership in a room: how its connection sends messages in, and leaves.
pub struct Membership {
    peer: PeerId,
    room: mpsc::Sender<RoomCommand>,
}

/// The room is gone (it failed or the server is stopping).
#[derive(Debug)]
pub struct RoomGone;

impl Membership {
    /// This peer's id.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Hands decoded input to the room, waiting while its inbox is full.
    ///
    /// # Errors
    /// [`RoomGone`] when the room has stopped.
    pub async fn send(&self, input: Inbound) -> Result<(), RoomGone> {
        self.room.send(RoomCommand::Input { peer: self.peer, input }).await.map_err(|_| RoomGone)
    }

    /// Leaves the room (its awareness states are removed for the others).
    pub async fn leave(self) {
        let _ = self.room.send(RoomCommand::Leave { peer: self.peer }).await;
    }
}

impl Rooms {
    /// An empty registry. Rooms run on `tracker`, count what goes wrong in `metrics`, and stop
    /// when `shutdown` is cancelled.
    pub fn new(
        storage: Storage,
        config: RoomConfig,
        metrics: Metrics,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                live: Mutex::new(HashMap::new()),
                storage,
                config,
                metrics,
                next_peer: AtomicU64::new(1),
                next_generation: AtomicU64::new(1),
                tracker,
                shutdown,
            }),
        }
    }

    /// Joins `doc` as a `crdt` document as `identity`, loading (or creating) it if needed. Frames
    /// for the peer go to `link` from now on; its updates are logged with `identity`'s author.
    ///
    /// # Errors
    /// [`JoinError`] when the document cannot be served, including [`JoinError::WrongCrdt`] when it
    /// exists with another CRDT.
    pub async fn join(
        &self,
        doc: &DocId,
        crdt: Crdt,
        identity: Identity,
        link: PeerLink,
    ) -> Result<Membership, JoinError> {
        let peer = PeerId(self.inner.next_peer.fetch_add(1, Ordering::Relaxed));
        loop {
            if self.inner.shutdown.is_cancelled() {
                return Err(JoinError::ShuttingDown);
            }
            let handle = self.room_for(doc, crdt);
            let (reply, joined) = oneshot::channel();
            let command =
                RoomCommand::Join { peer, crdt, identity: identity.clone(), link: link.clone(), reply };
            if handle.tx.send(command).await.is_err() {
                self.inner.forget(doc, handle.generation);
                continue;
            }
            match joined.await {
                Ok(Ok(())) => {
                    return Ok(Membership { peer, room: handle.tx });
                }
                Ok(Err(JoinError::RoomClosed)) | Err(_) => {
                    self.inner.forget(doc, handle.generation);
                    tokio::task::yield_now().await;
                }
                Ok(Err(err)) => return Err(err),
            }
        }
    }

    /// `doc`'s content through `kind`'s projection, loading the document if it is not live, once
    /// everything its room holds is durable.
    ///
    /// # Errors
    /// [`JoinError`] when the document cannot be served (another CRDT, storage, shutdown), or
    /// [`JoinError::Unavailable`] when the CRDT library failed reading it.
    pub async fn project(&self, doc: &DocId, crdt: Crdt, kind: DocKind) -> Result<Projection, JoinError> {
        let asked = self.ask(doc, crdt, true, |reply| RoomCommand::Project { kind, reply }).await;
        read_answer(asked)
    }

    /// `doc`'s full state (a Yjs update or a saved Automerge document), once everything its room
    /// holds is durable: what versions are read and compared from.
    ///
    /// # Errors
    /// As [`Rooms::project`].
    pub async fn state(&self, doc: &DocId, crdt: Crdt) -> Result<Vec<u8>, JoinError> {
        read_answer(self.ask(doc, crdt, true, |reply| RoomCommand::State { reply }).await)
    }

    /// Writes `changes` to `doc` as the relay's own CRDT update, attributed to `author`, loading
    /// the document if it is not live. Returns once the update is durable; connected peers get it
    /// as they get any other.
    ///
    /// # Errors
    /// [`WriteRefused`] saying why nothing was written.
    pub async fn write(
        &self,
        doc: &DocId,
        crdt: Crdt,
        changes: Vec<Change>,
        author: Arc<str>,
    ) -> Result<(), WriteRefused> {
        let asked = self
            .ask(doc, crdt, false, |reply| RoomCommand::Write {
                changes: changes.clone(),
                author: author.clone(),
                reply,
            })
            .await;
        match asked {
            Asked::Answer(Err(WriteRefused::RoomClosed)) => {
                Err(WriteRefused::Unavailable("the document's room kept stopping".into()))
            }
            Asked::Answer(result) => result,
            Asked::Unanswered => Err(WriteRefused::Unavailable(
                "the document stopped before the write was durable; repeat it".into(),
            )),
            Asked::Unavailable(why) => Err(WriteRefused::Unavailable(why)),
            Asked::ShuttingDown => Err(WriteRefused::Unavailable("the server is shutting down".into())),
        }
    }

    /// Records a named version of `doc` holding everything written so far, made by `by`.
    ///
    /// # Errors
    /// A description of why no version was recorded (storage, shutdown, a room that stopped).
    pub async fn checkpoint(
        &self,
        doc: &DocId,
        crdt: Crdt,
        name: String,
        by: Arc<str>,
    ) -> Result<Version, String> {
        let asked = self
            .ask(doc, crdt, true, |reply| RoomCommand::Checkpoint {
                name: name.clone(),
                by: by.clone(),
                reply,
            })
            .await;
        version_answer(asked)
    }

    /// Restores `version` of `doc` as `by`: the relay writes, as an ordinary update attributed to
    /// `by`, what takes the document back there. Returns the version the restore made, once durable.
    ///
    /// # Errors
    /// A description of why nothing was restored, or why the restore's version was not recorded.
    pub async fn restore(
        &self,
        doc: &DocId,
        crdt: Crdt,
        version: StoredVersion,
        by: Arc<str>,
    ) -> Result<Version, String> {
        let asked = self
            .ask(doc, crdt, false, |reply| RoomCommand::Restore {
                version: version.clone(),
                by: by.clone(),
                reply,
            })
            .await;
        version_answer(asked)
    }

    /// Sends the command `make` builds to `doc`'s room, loading the document if it is not live. A
    /// room that is gone, or unloading, before it takes the command is replaced, a few times; one
    /// that took it and stopped before answering is asked again only when `again` (reads).
    async fn ask<T>(
        &self,
        doc: &DocId,
        crdt: Crdt,
        again: bool,
        make: impl Fn(oneshot::Sender<T>) -> RoomCommand,
    ) -> Asked<T>
    where
        T: Closed,
    {
        for _ in 0..8 {
            if self.inner.shutdown.is_cancelled() {
                return Asked::ShuttingDown;
            }
            let handle = self.room_for(doc, crdt);
            let (reply, answered) = oneshot::channel();
            if handle.tx.send(make(reply)).await.is_err() {
                self.inner.forget(doc, handle.generation);
                continue;
            }
            match answered.await {
                Ok(answer) if answer.room_closed() => {}
                Ok(answer) => return Asked::Answer(answer),
                Err(_) if !again => return Asked::Unanswered,
                Err(_) => {}
            }
            self.inner.forget(doc, handle.generation);
            tokio::task::yield_now().await;
        }
        Asked::Unavailable("the document's room kept stopping".into())
    }

    /// Number of loaded rooms.
    pub fn live_count(&self) -> usize {
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn room_for(&self, doc: &DocId, crdt: Crdt) -> RoomHandle {
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = live.get(doc)
            && !handle.tx.is_closed()
        {
            return handle.clone();
        }
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let handle = room::spawn(doc.clone(), crdt, generation, self.inner.clone());
        live.insert(doc.clone(), handle.clone());
        handle
    }
}
