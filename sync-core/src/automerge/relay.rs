//! The relay-side state machine for one Automerge document shared by many automerge-repo peers.
//!
//! The relay owns the document (`automerge::Automerge`) and one `automerge::sync::State` per peer,
//! and acts as automerge-repo's "storage peer": it syncs with every peer that talks about the
//! document, answers a `request` for a document it does not have with `doc-unavailable`, and takes
//! the document from the first peer that *syncs* it. Like [`crate::yjs::Relay`] it never touches a
//! socket or a disk; the shell feeds it `handle_*` calls and carries out the [`Event`]s from
//! [`Relay::poll_event`].
//!
//! Durability protocol. A sync message's changes are validated by applying them to the document.
//! The changes that became part of the document (found by comparing heads before and after, so that
//! changes the document had queued for missing dependencies count once they apply) are handed out
//! as one [`Event::Append`]: the raw change chunks, or — when the document was empty — its whole
//! saved form, which is smaller and replays identically. A log entry therefore always replays with
//! `load_incremental` onto the state the entries before it left. Sync messages *to* peers are
//! generated lazily (when the shell polls for events, once per batch of inputs), and each is held
//! back until the log holds everything the document contained when it was generated. The reply
//! that shows a peer heads containing its change is its acknowledgement, and it never precedes
//! durability; neither does any message that carries the change to another peer.
//!
//! Bad input: a sync message that does not decode, or whose bloom filter parameters would make the
//! relay do unbounded work, is refused with an `error` message and close code 4422 before the
//! document sees it. A message that fails (or panics) while applying may have left the document
//! half-changed: its sender is refused the same way, nothing of it is logged, and the relay asks for
//! a [`Health::Rebuild`] — the shell reloads the document from the log, which never saw the
//! message, and the new relay adopts the other peers, which stay connected. A document that fails
//! to save (for a log entry or a snapshot) poisons the relay: every peer is closed with 1011.
//!
//! Ephemeral messages are relayed to the document's other peers (never stored), once per
//! `(senderId, sessionId, count)`: peers forward each other's ephemeral messages, so without the
//! de-duplication they would circle forever.
//!
//! What it deliberately does not do: the join/peer handshake and routing by document id (the
//! connection's job), remote-heads gossip, or deciding when to compact.

use std::collections::{BTreeMap, HashMap, VecDeque};

// `::automerge` is the crate; `crate::automerge` is this module's parent.
use ::automerge::sync;
use bytes::Bytes;

use super::codec::{DocSync, DocUnavailable, DocumentId, Ephemeral, ErrorMessage, Message};
use super::replica::{self, AutomergeReplica};
use crate::contain::CrdtFailure;
use crate::relay::{
    Access, DocumentRelay, Event, Health, Ledger, LoadError, Loaded, LogAccounting, RelayLimits, Replay,
    Snapshot, StateCheck, WriteFailure, recover,
};
use crate::{CloseCode, PeerId};

/// `(senderId, sessionId)` pairs whose latest ephemeral count the relay remembers.
const MAX_EPHEMERAL_SESSIONS: usize = 4096;

/// How the relay addresses the messages it sends one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The relay's own automerge-repo peer id: the `senderId` of everything it sends.
    pub local: String,
    /// The peer's automerge-repo peer id: the `targetId` of everything it is sent.
    pub remote: String,
    /// The document this relay serves.
    pub document: DocumentId,
}

struct PeerState {
    access: Access,
    route: Route,
    sync: sync::State,
    /// A sync message may be due: the peer sent one, or the document changed since the last.
    due: bool,
}

/// The state machine. See the module documentation.
pub struct Relay {
    replica: AutomergeReplica,
    limits: RelayLimits,
    peers: BTreeMap<PeerId, PeerState>,
    ledger: Ledger,
    ephemeral: EphemeralSeen,
}

impl Relay {
    /// An empty document with no log.
    pub fn new(limits: RelayLimits) -> Self {
        Self {
            replica: AutomergeReplica::default(),
            limits,
            peers: BTreeMap::new(),
            ledger: Ledger::default(),
            ephemeral: EphemeralSeen::default(),
        }
    }

    /// Rebuilds the document from a stored snapshot (a saved document covering the log up to its
    /// `upto`) and the log entries after it, in sequence order; entries at or below `upto` are
    /// skipped. Whatever breaks the document is left out and reported in [`Loaded::quarantined`].
    pub fn load<'a>(
        limits: RelayLimits,
        snapshot: Option<(u64, &'a [u8])>,
        log: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Loaded<Self> {
        let log: Vec<(u64, &[u8])> = log.into_iter().collect();
        recover(limits, snapshot, &log)
    }

    /// Takes over the peers of `old`, a relay of the same document that asked for a
    /// [`Health::Rebuild`], once everything it appended is durable and `self` was loaded from the
    /// log. Each peer keeps its route, access and sync state, and is due a sync message (the
    /// document it is synced with now lacks only the refused message's changes, which nobody was
    /// sent).
    pub fn adopt(&mut self, old: Relay) {
        self.peers = old.peers;
        for state in self.peers.values_mut() {
            state.due = true;
        }
        self.ephemeral = old.ephemeral;
    }

    /// A peer joined with `access`; everything it is sent is addressed by `route`. Nothing is sent
    /// yet: an automerge-repo peer speaks first (it joins because it sent a message about the
    /// document).
    pub fn handle_join(&mut self, peer: PeerId, access: Access, route: Route) {
        if self.ledger.health != Health::Serving {
            self.ledger.events.push_back(Event::Close {
                peer,
                code: CloseCode::InternalError,
                detail: "document is being reloaded".into(),
            });
            return;
        }
        self.peers.insert(peer, PeerState { access, route, sync: sync::State::new(), due: false });
    }

    /// A decoded message arrived from `peer`. Messages from unknown (already closed) peers, and
    /// connection-level messages (join, peer, error, remote-heads gossip), are ignored, and so is
    /// everything while the relay is not [`Health::Serving`] (the shell stops feeding input then).
    pub fn handle_message(&mut self, peer: PeerId, message: Message) {
        if self.ledger.health != Health::Serving || !self.peers.contains_key(&peer) {
            return;
        }
        match message {
            Message::Sync(sync) => self.receive_sync(peer, sync, false),
            Message::Request(sync) => self.receive_sync(peer, sync, true),
            Message::Ephemeral(ephemeral) => self.relay_ephemeral(peer, ephemeral),
            // The peer does not have the document. It stays a peer: if the document appears, it is
            // sent, as automerge-repo's own storage peers do.
            Message::DocUnavailable(_) => {}
            Message::Join(_)
            | Message::Peer(_)
            | Message::Error(_)
            | Message::RemoteSubscriptionChange(_)
            | Message::RemoteHeadsChanged(_) => {}
        }
    }

    /// The relay's own write (a REST route's): `edit` runs on the document in one transaction (rolled
    /// back when it returns an error), and the changes it made are logged as an [`Event::Append`]
    /// from [`PeerId::LOCAL`] and synced to every peer once durable, like a peer's. Returns what
    /// `edit` returned and the sequence number that must be durable before the write is
    /// acknowledged (the last one so far when it changed nothing).
    ///
    /// # Errors
    /// [`WriteFailure`] when the relay is not serving, or the write failed or grew the document past
    /// its limit; in the last two cases nothing was logged and the relay asks for a
    /// [`Health::Rebuild`].
    pub fn write<T, E>(
        &mut self,
        edit: impl FnOnce(&mut ::automerge::transaction::Transaction<'_>) -> Result<T, E>,
    ) -> Result<(Result<T, E>, u64), WriteFailure> {
        if self.ledger.health != Health::Serving {
            return Err(WriteFailure::NotServing);
        }
        let rebuild = |relay: &mut Self, failure: WriteFailure| {
            relay.ledger.health = Health::Rebuild;
            Err(failure)
        };
        let before = match self.replica.heads() {
            Ok(heads) => heads,
            Err(failure) => return rebuild(self, failure.into()),
        };
        let out = match self.replica.edit(edit) {
            Ok(out) => out,
            Err(failure) => return rebuild(self, failure.into()),
        };
        let entry = match self.replica.heads() {
            Ok(after) if after == before => return Ok((out, self.ledger.last_seq)),
            Ok(_) => match self.replica.save_after(&before) {
                Ok(entry) => entry,
                Err(failure) => return rebuild(self, failure.into()),
            },
            Err(failure) => return rebuild(self, failure.into()),
        };
        let grown = self.stored_bytes() + entry.len() as u64;
        if grown > self.limits.max_document_bytes {
            let detail = format!(
                "the write would grow the document to {grown} bytes (limit {})",
                self.limits.max_document_bytes
            );
            return rebuild(self, WriteFailure::TooLarge(detail));
        }
        self.ledger.last_seq += 1;
        self.ledger.log.record_append(entry.len());
        let seq = self.ledger.last_seq;
        self.ledger.events.push_back(Event::Append { seq, update: Bytes::from(entry), peer: PeerId::LOCAL });
        for state in self.peers.values_mut() {
            state.due = true;
        }
        Ok((out, seq))
    }

    /// Reads the document, contained (projections, tests).
    ///
    /// # Errors
    /// [`CrdtFailure`] when `read` panics.
    pub fn read<T>(&self, read: impl FnOnce(&::automerge::Automerge) -> T) -> Result<T, CrdtFailure> {
        self.replica.read(read)
    }

    fn receive_sync(&mut self, peer: PeerId, sync: DocSync, is_request: bool) {
        let message = match replica::decode_sync(&sync.data) {
            Ok(message) => message,
            Err(failure) => return self.reject(peer, CloseCode::InvalidUpdate, failure.to_string()),
        };
        let carried: usize = message.changes.iter().map(<[u8]>::len).sum();
        if carried > 0 {
            if let Some(state) = self.peers.get(&peer)
                && state.access == Access::ReadOnly
            {
                let frame =
                    error_frame(&state.route, CloseCode::Forbidden, "read-only access: changes are refused");
                self.ledger.events.push_back(Event::Send { peer, frame });
                self.ledger.events.push_back(Event::Refused { peer });
                return;
            }
            let grown = self.stored_bytes() + carried as u64;
            if grown > self.limits.max_document_bytes {
                let detail = format!(
                    "changes of {carried} bytes would grow the document to {grown} bytes (limit {})",
                    self.limits.max_document_bytes
                );
                return self.reject(peer, CloseCode::DocumentTooLarge, detail);
            }
        }
        let before = match self.replica.heads() {
            Ok(heads) => heads,
            Err(failure) => return self.poison(&failure.to_string()),
        };
        let Some(state) = self.peers.get_mut(&peer) else { return };
        // A failure part-way can leave the document with some of the changes: none of them reaches
        // the log, the sender is refused, and the document is rebuilt from the log.
        if let Err(failure) = self.replica.receive_sync(&mut state.sync, message) {
            self.ledger.health = Health::Rebuild;
            return self.reject(peer, CloseCode::InvalidUpdate, failure.to_string());
        }
        let after = match self.replica.heads() {
            Ok(heads) => heads,
            Err(failure) => return self.poison(&failure.to_string()),
        };
        if after != before {
            // An empty document's save is its compressed whole (a sync message may carry it
            // compressed too); otherwise, the change chunks that are new.
            let entry = match self.replica.save_after(&before) {
                Ok(entry) => entry,
                Err(failure) => return self.poison(&failure.to_string()),
            };
            self.ledger.last_seq += 1;
            self.ledger.log.record_append(entry.len());
            let seq = self.ledger.last_seq;
            self.ledger.events.push_back(Event::Append { seq, update: Bytes::from(entry), peer });
            for state in self.peers.values_mut() {
                state.due = true;
            }
        }
        if is_request && after.is_empty() {
            // Nothing to give. The answer reveals no document state, so it needs no durability.
            if let Some(state) = self.peers.get(&peer) {
                let frame = Message::DocUnavailable(DocUnavailable {
                    sender_id: state.route.local.clone(),
                    target_id: state.route.remote.clone(),
                    document_id: state.route.document.clone(),
                })
                .encode();
                self.ledger.events.push_back(Event::Send { peer, frame });
            }
        } else if let Some(state) = self.peers.get_mut(&peer) {
            state.due = true;
        }
    }

    /// Generates a sync message for every peer that may be due one, holding each until the log
    /// holds what the document contains now.
    fn generate_due(&mut self) {
        if self.ledger.health != Health::Serving {
            return;
        }
        let mut broken = Vec::new();
        for (&peer, state) in self.peers.iter_mut().filter(|(_, state)| state.due) {
            state.due = false;
            // Generating only reads the document; a failure (a peer's `have` naming changes nobody
            // has) leaves the document intact, and only this peer's sync state is in doubt.
            let data = match self.replica.generate_sync(&mut state.sync) {
                Ok(Some(message)) => match replica::encode_sync(message) {
                    Ok(data) => data,
                    Err(_) => {
                        broken.push(peer);
                        continue;
                    }
                },
                Ok(None) => continue,
                Err(_) => {
                    broken.push(peer);
                    continue;
                }
            };
            let frame = Message::Sync(DocSync {
                sender_id: state.route.local.clone(),
                target_id: state.route.remote.clone(),
                document_id: state.route.document.clone(),
                data: Bytes::from(data),
            })
            .encode();
            self.ledger.send_when_durable(peer, frame);
        }
        for peer in broken {
            self.reject(peer, CloseCode::InvalidUpdate, "the peer's sync state cannot be answered".into());
        }
    }

    fn relay_ephemeral(&mut self, from: PeerId, message: Ephemeral) {
        if !self.ephemeral.is_new(&message.sender_id, &message.session_id, message.count) {
            return;
        }
        for (&peer, state) in &self.peers {
            // Neither back to the connection it came from nor to the peer that created it.
            if peer == from || state.route.remote == message.sender_id {
                continue;
            }
            let frame =
                Message::Ephemeral(Ephemeral { target_id: state.route.remote.clone(), ..message.clone() })
                    .encode();
            self.ledger.events.push_back(Event::Send { peer, frame });
        }
    }

    /// Tells `peer` why with an `error` message, then closes it (on an automerge-repo socket a
    /// permanent code ends only this document's peer; the socket goes on).
    fn reject(&mut self, peer: PeerId, code: CloseCode, detail: String) {
        if let Some(state) = self.peers.get(&peer) {
            let frame = error_frame(&state.route, code, &detail);
            self.ledger.events.push_back(Event::Send { peer, frame });
        }
        self.handle_leave(peer);
        self.ledger.events.push_back(Event::Close { peer, code, detail });
    }

    fn poison(&mut self, detail: &str) {
        let peers = std::mem::take(&mut self.peers);
        self.ledger.poison(peers.into_keys(), detail);
    }
}

impl DocumentRelay for Relay {
    fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// `peer` disconnected: forget it, its sync state and the frames held for it.
    fn handle_leave(&mut self, peer: PeerId) {
        if self.peers.remove(&peer).is_some() {
            self.ledger.forget_peer(peer);
        }
    }

    /// The log holds every entry up to `upto`: release the frames that waited for it.
    fn handle_durable(&mut self, upto: u64) {
        self.ledger.release_held(upto);
    }

    fn handle_failure(&mut self, detail: &str) {
        self.poison(detail);
    }

    /// Sync messages that became due since the last poll are generated here, so a batch of inputs
    /// produces at most one message per peer.
    fn poll_event(&mut self) -> Option<Event> {
        if self.ledger.events.is_empty() {
            self.generate_due();
        }
        self.ledger.events.pop_front()
    }

    /// A saved document covering the whole log so far.
    fn snapshot(&mut self) -> Option<Snapshot> {
        if self.ledger.health != Health::Serving {
            return None;
        }
        match self.replica.save().and_then(|state| Ok((state, self.replica.heads()?))) {
            Ok((state, heads)) => Some(self.ledger.snapshot(
                self.ledger.last_seq,
                Bytes::from(state),
                StateCheck::Automerge(heads),
            )),
            Err(failure) => {
                self.poison(&failure.to_string());
                None
            }
        }
    }

    fn peer_count(&self) -> usize {
        self.peers.len()
    }

    fn handle_compacted(&mut self, snapshot: &Snapshot) {
        self.ledger.log.compacted(snapshot);
    }
}

impl Replay for Relay {
    fn replay<'a>(
        limits: RelayLimits,
        snapshot: Option<(u64, &'a [u8])>,
        log: impl Iterator<Item = (u64, &'a [u8])>,
    ) -> Result<Self, LoadError> {
        let mut relay = Self::new(limits);
        if let Some((upto, state)) = snapshot {
            relay.replica = AutomergeReplica::load(state).map_err(|f| LoadError::Snapshot(f.to_string()))?;
            relay.ledger.last_seq = upto;
            relay.ledger.log = LogAccounting::with_snapshot(state.len() as u64);
        }
        for (seq, entry) in log {
            if seq <= relay.ledger.last_seq {
                continue;
            }
            relay.replica.apply_entry(entry).map_err(|f| LoadError::Update { seq, detail: f.to_string() })?;
            relay.ledger.last_seq = seq;
            relay.ledger.log.record_append(entry.len());
        }
        relay.ledger.durable_seq = relay.ledger.last_seq;
        Ok(relay)
    }

    fn verify(&mut self) -> Result<(), CrdtFailure> {
        self.replica.verify()
    }
}

/// An `error` message telling the peer why the relay stops serving it this document, in the form
/// `"<close code> <name>: document <id>: <detail>"`.
/// The `error` message that tells the peer on `route` why its document was ended (`code`, its
/// reason and `detail`, naming the document).
pub fn error_frame(route: &Route, code: CloseCode, detail: &str) -> Bytes {
    Message::Error(ErrorMessage {
        sender_id: Some(route.local.clone()),
        target_id: Some(route.remote.clone()),
        message: format!("{} {}: document {}: {detail}", code.code(), code.reason(), route.document),
    })
    .encode()
}

/// The latest ephemeral count seen per `(senderId, sessionId)`, bounded: the oldest session is
/// forgotten first (a replay of its old messages would then be relayed once more, which peers
/// de-duplicate themselves).
#[derive(Default)]
struct EphemeralSeen {
    latest: HashMap<(String, String), u64>,
    order: VecDeque<(String, String)>,
}

impl EphemeralSeen {
    /// Records `count` and says whether it is newer than anything seen for the session.
    fn is_new(&mut self, sender: &str, session: &str, count: u64) -> bool {
        let key = (sender.to_owned(), session.to_owned());
        match self.latest.get_mut(&key) {
            Some(latest) if *latest >= count => false,
            Some(latest) => {
                *latest = count;
                true
            }
            None => {
                if self.order.len() >= MAX_EPHEMERAL_SESSIONS
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.latest.remove(&oldest);
                }
                self.order.push_back(key.clone());
                self.latest.insert(key, count);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_sessions_keep_the_highest_count_and_stay_bounded() {
        let mut seen = EphemeralSeen::default();
        assert!(seen.is_new("a", "s", 1));
        assert!(!seen.is_new("a", "s", 1));
        assert!(seen.is_new("a", "s", 3));
        assert!(!seen.is_new("a", "s", 2));
        assert!(seen.is_new("a", "t", 1));
        assert!(seen.is_new("b", "s", 1));
        for n in 0..MAX_EPHEMERAL_SESSIONS * 2 {
            seen.is_new("c", &n.to_string(), 1);
        }
        assert_eq!(seen.latest.len(), MAX_EPHEMERAL_SESSIONS);
        assert_eq!(seen.order.len(), MAX_EPHEMERAL_SESSIONS);
    }
}
