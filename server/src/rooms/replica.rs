//! `Replica`: the closed set of CRDT relays a room can hold, and `Inbound`, the closed set of inputs
//! connections hand a room. What differs per CRDT (loading, joining, input, adopting peers on a
//! rebuild) is matched here; everything else the room drives through
//! [`DocumentRelay`], the same for both.

use weft_sync_core::domain::Projection;
use weft_sync_core::domain::write::{self, Change, WriteError};
use weft_sync_core::relay::{Access, DocumentRelay, Health, Quarantined, WriteFailure};
use weft_sync_core::yjs::{self, RelayLimits};
use weft_sync_core::{CrdtFailure, DocKind, PeerId, automerge};
use weft_sync_core::{automerge::history as am, yjs::history as yh};

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
    /// Rebuilds a replica of `crdt` from storage (CPU work: call it off the async workers), with
    /// the stored items that broke it, which the caller must quarantine.
    pub fn load(crdt: Crdt, limits: RelayLimits, stored: &StoredDoc) -> (Self, Vec<Quarantined>) {
        let snapshot = stored.snapshot.as_ref().map(|(upto, bytes)| (*upto, bytes.as_ref()));
        let log = stored.log.iter().map(|(seq, bytes)| (*seq, bytes.as_ref()));
        match crdt {
            Crdt::Yjs => {
                let loaded = yjs::Relay::load(limits, snapshot, log);
                (Self::Yjs(loaded.relay), loaded.quarantined)
            }
            Crdt::Automerge => {
                let loaded = automerge::Relay::load(limits, snapshot, log);
                (Self::Automerge(loaded.relay), loaded.quarantined)
            }
        }
    }

    /// The replica's content read as a `kind` document.
    ///
    /// # Errors
    /// [`CrdtFailure`] when the CRDT library fails while reading (contained).
    pub fn project(&self, kind: DocKind) -> Result<Projection, CrdtFailure> {
        match self {
            Self::Yjs(relay) => relay.read(|doc| Projection::of_yjs(doc, kind)),
            Self::Automerge(relay) => relay.read(|doc| Projection::of_automerge(doc, kind)),
        }
    }

    /// Writes `changes` as the relay's own update (see `write` on each relay): all of them or,
    /// when the layout refuses one ([`WriteError`]), none. Returns that outcome and the sequence
    /// number that must be durable before the write is acknowledged.
    ///
    /// # Errors
    /// [`WriteFailure`] when the relay is not serving or the CRDT library failed (the relay then
    /// asks for a rebuild).
    pub fn write(&mut self, changes: &[Change]) -> Result<(Result<(), WriteError>, u64), WriteFailure> {
        match self {
            Self::Yjs(relay) => relay.write(|txn| write::apply_yjs(txn, changes)),
            Self::Automerge(relay) => relay.write(|tx| write::apply_automerge(tx, changes)),
        }
    }

    /// The version the document is at and its full state (see `history::Captured`).
    ///
    /// # Errors
    /// [`CrdtFailure`] when the CRDT library fails (contained).
    pub fn capture(&self) -> Result<(Vec<u8>, Vec<u8>), CrdtFailure> {
        match self {
            Self::Yjs(relay) => relay.read(yh::capture_doc),
            Self::Automerge(relay) => relay.read(|doc| (am::capture(doc), doc.save())),
        }
    }

    /// Writes, as the relay's own update, what takes the document back to `version` (a state
    /// [`Replica::capture`] recorded): see `revert` in each CRDT's history. Returns whether the
    /// version belongs to this document and could be restored, and the sequence number that must
    /// be durable before the restore is acknowledged.
    ///
    /// # Errors
    /// [`WriteFailure`] when the relay is not serving or the CRDT library failed.
    pub fn restore(&mut self, version: &[u8]) -> Result<(Result<(), CrdtFailure>, u64), WriteFailure> {
        match self {
            Self::Yjs(relay) => {
                let version = match yh::decode_version(version) {
                    Ok(version) => version,
                    Err(failure) => return Ok((Err(failure), relay.last_seq())),
                };
                relay.write(|txn| yh::restore(txn, &version))
            }
            Self::Automerge(relay) => {
                let heads = match am::decode_version(version) {
                    Ok(heads) => heads,
                    Err(failure) => return Ok((Err(failure), relay.last_seq())),
                };
                let target = relay.read(|doc| {
                    if am::is_version_of(doc, &heads) {
                        am::state_at(doc, &heads)
                    } else {
                        Err(CrdtFailure::new("restore", "the version is not one of this document"))
                    }
                });
                let target = match target {
                    Ok(Ok(target)) => target,
                    Ok(Err(failure)) | Err(failure) => return Ok((Err(failure), relay.last_seq())),
                };
                relay.write(|tx| am::revert(tx, &target))
            }
        }
    }

    /// The CRDT this replica speaks.
    pub fn crdt(&self) -> Crdt {
        match self {
            Self::Yjs(_) => Crdt::Yjs,
            Self::Automerge(_) => Crdt::Automerge,
        }
    }

    /// The relay, for everything both CRDTs do alike.
    pub fn relay(&self) -> &dyn DocumentRelay {
        match self {
            Self::Yjs(relay) => relay,
            Self::Automerge(relay) => relay,
        }
    }

    /// The relay, for everything both CRDTs do alike.
    pub fn relay_mut(&mut self) -> &mut dyn DocumentRelay {
        match self {
            Self::Yjs(relay) => relay,
            Self::Automerge(relay) => relay,
        }
    }

    /// Takes over the peers of `old`, the replica of the same document that asked for a rebuild
    /// (see `Health::Rebuild`). Replicas of different CRDTs never meet: a document's CRDT is fixed.
    pub fn adopt(&mut self, old: Replica) {
        match (self, old) {
            (Self::Yjs(new), Self::Yjs(old)) => new.adopt(old),
            (Self::Automerge(new), Self::Automerge(old)) => new.adopt(old),
            (Self::Yjs(_), Self::Automerge(_)) | (Self::Automerge(_), Self::Yjs(_)) => {}
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

    /// Input arrived from `peer`. Returns what the relay did not take because it stopped serving
    /// part-way (it asked for a rebuild): the room hands that to the rebuilt relay.
    ///
    /// # Errors
    /// [`WrongInput`] when the input belongs to another CRDT (the room closes that peer).
    pub fn handle_input(&mut self, peer: PeerId, input: Inbound) -> Result<Option<Inbound>, WrongInput> {
        match (self, input) {
            (Self::Yjs(relay), Inbound::Yjs(messages)) => {
                let mut messages = messages.into_iter();
                while let Some(message) = messages.next() {
                    relay.handle_message(peer, message);
                    if relay.health() != Health::Serving {
                        let rest: Vec<yjs::Message> = messages.collect();
                        return Ok((!rest.is_empty()).then_some(Inbound::Yjs(rest)));
                    }
                }
                Ok(None)
            }
            (Self::Automerge(relay), Inbound::Automerge(message)) => {
                relay.handle_message(peer, message);
                Ok(None)
            }
            // Stateless messages are the room's business, never a replica's.
            (_, Inbound::Stateless(_))
            | (Self::Yjs(_), Inbound::Automerge(_))
            | (Self::Automerge(_), Inbound::Yjs(_)) => Err(WrongInput),
        }
    }
}
