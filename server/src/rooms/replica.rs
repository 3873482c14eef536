//! `Replica`: the closed set of CRDT relays a room can hold, and `Inbound`, the closed set of inputs
//! connections hand a room. The room calls the same operations whatever the CRDT; this module maps
//! them onto the right sans-IO relay.

use weft_sync_core::relay::{Access, Event, Snapshot};
use weft_sync_core::yjs::{self, RelayLimits};
use weft_sync_core::{LoadError, PeerId, automerge};

use super::peer::{Dialect, PeerLink};
use crate::storage::{Crdt, StoredDoc};

/// A live document's relay.
pub enum Replica {
    /// A Yjs document (y-websocket and Hocuspocus peers).
    Yjs(yjs::Relay),
    /// An Automerge document (automerge-repo peers).
    Automerge(automerge::Relay),
}

/// What a connection hands a room.
#[derive(Debug)]
pub enum Inbound {
    /// Decoded y-protocols messages (from y-websocket or Hocuspocus peers).
    Yjs(Vec<yjs::Message>),
    /// A Hocuspocus stateless message, relayed to the document's other Hocuspocus peers.
    Stateless(String),
    /// A decoded automerge-repo message about the room's document.
    Automerge(automerge::Message),
}

/// An input that does not fit the document's CRDT.
#[derive(Debug)]
pub struct WrongInput;

impl Replica {
    /// Rebuilds a replica of `crdt` from storage (CPU work: call it off the async workers).
    ///
    /// # Errors
    /// [`LoadError`] when stored bytes do not load.
    pub fn load(crdt: Crdt, limits: RelayLimits, stored: &StoredDoc) -> Result<Self, LoadError> {
        let snapshot = stored.snapshot.as_ref().map(|(upto, bytes)| (*upto, bytes.as_ref()));
        let log = stored.log.iter().map(|(seq, bytes)| (*seq, bytes.as_ref()));
        match crdt {
            Crdt::Yjs => Ok(Self::Yjs(yjs::Relay::load(limits, snapshot, log)?)),
            Crdt::Automerge => Ok(Self::Automerge(automerge::Relay::load(limits, snapshot, log)?)),
        }
    }

    /// The CRDT this replica speaks.
    pub fn crdt(&self) -> Crdt {
        match self {
            Self::Yjs(_) => Crdt::Yjs,
            Self::Automerge(_) => Crdt::Automerge,
        }
    }

    /// A peer joined with `access`, connected through `link`.
    ///
    /// # Errors
    /// [`WrongInput`] when the link's dialect cannot speak this CRDT (the room closes that peer).
    pub fn handle_join(&mut self, peer: PeerId, access: Access, link: &PeerLink) -> Result<(), WrongInput> {
        match (self, link.dialect()) {
            (Self::Yjs(relay), Dialect::YWebsocket | Dialect::Hocuspocus { .. }) => {
                relay.handle_join(peer, access);
                Ok(())
            }
            (Self::Automerge(relay), Dialect::AutomergeRepo { route }) => {
                relay.handle_join(peer, access, route.clone());
                Ok(())
            }
            (Self::Yjs(_), Dialect::AutomergeRepo { .. })
            | (Self::Automerge(_), Dialect::YWebsocket | Dialect::Hocuspocus { .. }) => Err(WrongInput),
        }
    }

    /// Input arrived from `peer`.
    ///
    /// # Errors
    /// [`WrongInput`] when the input belongs to another CRDT (the room closes that peer).
    pub fn handle_input(&mut self, peer: PeerId, input: Inbound) -> Result<(), WrongInput> {
        match (self, input) {
            (Self::Yjs(relay), Inbound::Yjs(messages)) => {
                for message in messages {
                    relay.handle_message(peer, message);
                }
                Ok(())
            }
            (Self::Automerge(relay), Inbound::Automerge(message)) => {
                relay.handle_message(peer, message);
                Ok(())
            }
            // Stateless messages are the room's business, never a replica's.
            (_, Inbound::Stateless(_))
            | (Self::Yjs(_), Inbound::Automerge(_))
            | (Self::Automerge(_), Inbound::Yjs(_)) => Err(WrongInput),
        }
    }

    /// `peer` left.
    pub fn handle_leave(&mut self, peer: PeerId) {
        match self {
            Self::Yjs(relay) => relay.handle_leave(peer),
            Self::Automerge(relay) => relay.handle_leave(peer),
        }
    }

    /// The log holds every entry up to `upto`.
    pub fn handle_durable(&mut self, upto: u64) {
        match self {
            Self::Yjs(relay) => relay.handle_durable(upto),
            Self::Automerge(relay) => relay.handle_durable(upto),
        }
    }

    /// The log could not be written.
    pub fn handle_storage_failure(&mut self, detail: &str) {
        match self {
            Self::Yjs(relay) => relay.handle_storage_failure(detail),
            Self::Automerge(relay) => relay.handle_storage_failure(detail),
        }
    }

    /// The next event to carry out.
    pub fn poll_event(&mut self) -> Option<Event> {
        match self {
            Self::Yjs(relay) => relay.poll_event(),
            Self::Automerge(relay) => relay.poll_event(),
        }
    }

    /// A snapshot for compaction.
    pub fn snapshot(&self) -> Snapshot {
        match self {
            Self::Yjs(relay) => relay.snapshot(),
            Self::Automerge(relay) => relay.snapshot(),
        }
    }

    /// `snapshot` replaced its log prefix in storage.
    pub fn handle_compacted(&mut self, snapshot: &Snapshot) {
        match self {
            Self::Yjs(relay) => relay.handle_compacted(snapshot),
            Self::Automerge(relay) => relay.handle_compacted(snapshot),
        }
    }

    /// Log entries after the last snapshot.
    pub fn log_len(&self) -> u64 {
        match self {
            Self::Yjs(relay) => relay.log_len(),
            Self::Automerge(relay) => relay.log_len(),
        }
    }

    /// Whether the replica must be discarded and reloaded.
    pub fn is_poisoned(&self) -> bool {
        match self {
            Self::Yjs(relay) => relay.is_poisoned(),
            Self::Automerge(relay) => relay.is_poisoned(),
        }
    }
}
