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
//! half-changed: the relay is then *poisoned* — every peer is closed and the shell reloads the
//! document from the log, which never saw the failed message.
//!
//! Ephemeral messages are relayed to the document's other peers (never stored), once per
//! `(senderId, sessionId, count)`: peers forward each other's ephemeral messages, so without the
//! de-duplication they would circle forever.
//!
//! What it deliberately does not do: the join/peer handshake and routing by document id (the
//! connection's job), remote-heads gossip, or deciding when to compact.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

// `::automerge` is the crate; `crate::automerge` is this module's parent.
use ::automerge::sync::{self, SyncDoc};
use ::automerge::{Automerge, ChangeHash, LoadOptions, OnPartialLoad, VerificationMode};
use bytes::Bytes;

use super::codec::{DocSync, DocUnavailable, DocumentId, Ephemeral, ErrorMessage, Message};
use crate::relay::{Access, Event, LoadError, LogAccounting, RelayLimits, Snapshot};
use crate::{CloseCode, PeerId};

/// `(senderId, sessionId)` pairs whose latest ephemeral count the relay remembers.
const MAX_EPHEMERAL_SESSIONS: usize = 4096;

/// Bloom filters in a sync message's `have` that the relay will look at. Automerge sends one.
const MAX_HAVES: usize = 8;

/// Probes per hash, and bits per entry, a bloom filter may ask for. Automerge uses 7 and 10; the
/// decoder accepts any `u32`, and the relay's work per change grows with them.
const MAX_BLOOM_PROBES: u64 = 64;
const MAX_BLOOM_BITS_PER_ENTRY: u64 = 64;

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
    /// Boxed: an `Automerge` is a few KiB even when empty, and relays move (into rooms, enums).
    doc: Box<Automerge>,
    limits: RelayLimits,
    peers: BTreeMap<PeerId, PeerState>,
    /// Sequence number of the last log entry the document contains.
    last_seq: u64,
    /// Sequence number of the last log entry the shell reported durable.
    durable_seq: u64,
    /// Frames waiting until the log holds everything up to the sequence number they were made at.
    held: VecDeque<(u64, PeerId, Bytes)>,
    /// Snapshot plus log tail sizes, for the document limit and the compaction trigger.
    log: LogAccounting,
    ephemeral: EphemeralSeen,
    events: VecDeque<Event>,
    poisoned: bool,
}

impl Relay {
    /// An empty document with no log.
    pub fn new(limits: RelayLimits) -> Self {
        Self {
            doc: Box::default(),
            limits,
            peers: BTreeMap::new(),
            last_seq: 0,
            durable_seq: 0,
            held: VecDeque::new(),
            log: LogAccounting::default(),
            ephemeral: EphemeralSeen::default(),
            events: VecDeque::new(),
            poisoned: false,
        }
    }

    /// Rebuilds the document from a stored snapshot (a saved document covering the log up to its
    /// `upto`) and the log entries after it, in sequence order. Entries at or below `upto` are
    /// skipped.
    ///
    /// # Errors
    /// [`LoadError`] when stored bytes do not load; the caller must not serve the document.
    pub fn load<'a>(
        limits: RelayLimits,
        snapshot: Option<(u64, &[u8])>,
        log: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Result<Self, LoadError> {
        let mut relay = Self::new(limits);
        if let Some((upto, state)) = snapshot {
            relay.doc = Box::new(load_saved(state).map_err(LoadError::Snapshot)?);
            relay.last_seq = upto;
            relay.log = LogAccounting::with_snapshot(state.len() as u64);
        }
        for (seq, entry) in log {
            if seq <= relay.last_seq {
                continue;
            }
            apply_entry(&mut relay.doc, entry).map_err(|detail| LoadError::Update { seq, detail })?;
            relay.last_seq = seq;
            relay.log.record_append(entry.len());
        }
        relay.durable_seq = relay.last_seq;
        Ok(relay)
    }

    /// A peer joined with `access`; everything it is sent is addressed by `route`. Nothing is sent
    /// yet: an automerge-repo peer speaks first (it joins because it sent a message about the
    /// document).
    pub fn handle_join(&mut self, peer: PeerId, access: Access, route: Route) {
        if self.poisoned {
            self.events.push_back(Event::Close {
                peer,
                code: CloseCode::InternalError,
                detail: "document is being reloaded".into(),
            });
            return;
        }
        self.peers.insert(peer, PeerState { access, route, sync: sync::State::new(), due: false });
    }

    /// A decoded message arrived from `peer`. Messages from unknown (already closed) peers, and
    /// connection-level messages (join, peer, error, remote-heads gossip), are ignored.
    pub fn handle_message(&mut self, peer: PeerId, message: Message) {
        if self.poisoned || !self.peers.contains_key(&peer) {
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

    /// `peer` disconnected: forget it, its sync state and the frames held for it.
    pub fn handle_leave(&mut self, peer: PeerId) {
        if self.peers.remove(&peer).is_some() {
            self.held.retain(|(_, p, _)| *p != peer);
        }
    }

    /// The log holds every entry up to `upto`: release the frames that waited for it.
    pub fn handle_durable(&mut self, upto: u64) {
        self.durable_seq = self.durable_seq.max(upto);
        while let Some((needs, _, _)) = self.held.front() {
            if *needs > self.durable_seq {
                break;
            }
            let Some((_, peer, frame)) = self.held.pop_front() else { break };
            self.events.push_back(Event::Send { peer, frame });
        }
    }

    /// The log could not be written. The document now holds changes the log may not; close every
    /// peer (they resync on reconnect) and refuse further work until the shell reloads it.
    pub fn handle_storage_failure(&mut self, detail: &str) {
        self.poison(None, detail);
    }

    /// The next thing the shell must do, if any. Sync messages that became due since the last poll
    /// are generated here, so a batch of inputs produces at most one message per peer.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            self.generate_due();
        }
        self.events.pop_front()
    }

    /// A saved document covering the whole log so far.
    ///
    /// The shell must persist it only after the appends up to `upto` it has already been handed, in
    /// order, so that the snapshot replaces exactly the log prefix it contains.
    pub fn snapshot(&self) -> Snapshot {
        self.log.snapshot(self.last_seq, Bytes::from(self.doc.save()))
    }

    /// `snapshot` is stored and replaced the log prefix it covers.
    pub fn handle_compacted(&mut self, snapshot: &Snapshot) {
        self.log.compacted(snapshot);
    }

    /// Sequence number of the last log entry the document contains.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Sequence number of the last log entry reported durable.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Log entries after the last snapshot.
    pub fn log_len(&self) -> u64 {
        self.log.log_len()
    }

    /// Stored size of the document: snapshot plus log tail.
    pub fn stored_bytes(&self) -> u64 {
        self.log.stored_bytes()
    }

    /// Number of joined peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether a failed write or a change that broke the document means it must be reloaded.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The document (read-only use: projections, tests).
    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    fn receive_sync(&mut self, peer: PeerId, sync: DocSync, is_request: bool) {
        let message = match decode_sync(&sync.data) {
            Ok(message) => message,
            Err(detail) => return self.reject(peer, CloseCode::InvalidUpdate, detail),
        };
        let carried: usize = message.changes.iter().map(<[u8]>::len).sum();
        if carried > 0 {
            if let Some(state) = self.peers.get(&peer)
                && state.access == Access::ReadOnly
            {
                let frame =
                    error_frame(&state.route, CloseCode::Forbidden, "read-only access: changes are refused");
                self.events.push_back(Event::Send { peer, frame });
                self.events.push_back(Event::Refused { peer });
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
        let Some(state) = self.peers.get_mut(&peer) else { return };
        let before = self.doc.get_heads();
        let doc = &mut self.doc;
        // A failure part-way can leave the document with some of the changes, so any failure
        // poisons it: none of them reaches the log, and the document is reloaded from the log.
        match catch_unwind(AssertUnwindSafe(|| doc.receive_sync_message(&mut state.sync, message))) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return self.poison(Some(peer), &format!("sync message does not apply: {err}")),
            Err(_) => return self.poison(Some(peer), "applying the sync message panicked"),
        }
        if self.doc.get_heads() != before {
            let doc = &self.doc;
            // An empty document's save is its compressed whole (a sync message may carry it
            // compressed too); otherwise, the change chunks that are new.
            let entry = catch_unwind(AssertUnwindSafe(|| {
                if before.is_empty() { doc.save() } else { doc.save_after(&before) }
            }));
            let Ok(entry) = entry else {
                return self.poison(Some(peer), "encoding the new changes panicked");
            };
            self.last_seq += 1;
            self.log.record_append(entry.len());
            self.events.push_back(Event::Append { seq: self.last_seq, update: Bytes::from(entry), peer });
            for state in self.peers.values_mut() {
                state.due = true;
            }
        }
        if is_request && self.doc.get_heads().is_empty() {
            // Nothing to give. The answer reveals no document state, so it needs no durability.
            if let Some(state) = self.peers.get(&peer) {
                let frame = Message::DocUnavailable(DocUnavailable {
                    sender_id: state.route.local.clone(),
                    target_id: state.route.remote.clone(),
                    document_id: state.route.document.clone(),
                })
                .encode();
                self.events.push_back(Event::Send { peer, frame });
            }
        } else if let Some(state) = self.peers.get_mut(&peer) {
            state.due = true;
        }
    }

    /// Generates a sync message for every peer that may be due one, holding each until the log
    /// holds what the document contains now.
    fn generate_due(&mut self) {
        if self.poisoned {
            return;
        }
        let mut broken = Vec::new();
        let ready = self.durable_seq >= self.last_seq;
        for (&peer, state) in self.peers.iter_mut().filter(|(_, state)| state.due) {
            state.due = false;
            let doc = &self.doc;
            // Generating only reads the document; a panic (a peer's `have` naming changes nobody
            // has) leaves the document intact, and only this peer's sync state is in doubt.
            let message = match catch_unwind(AssertUnwindSafe(|| doc.generate_sync_message(&mut state.sync)))
            {
                Ok(Some(message)) => message,
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
                data: Bytes::from(message.encode()),
            })
            .encode();
            if ready {
                self.events.push_back(Event::Send { peer, frame });
            } else {
                self.held.push_back((self.last_seq, peer, frame));
            }
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
            self.events.push_back(Event::Send { peer, frame });
        }
    }

    /// Tells `peer` why with an `error` message, then closes it (on an automerge-repo socket a
    /// permanent code ends only this document's peer; the socket goes on).
    fn reject(&mut self, peer: PeerId, code: CloseCode, detail: String) {
        if let Some(state) = self.peers.get(&peer) {
            let frame = error_frame(&state.route, code, &detail);
            self.events.push_back(Event::Send { peer, frame });
        }
        self.handle_leave(peer);
        self.events.push_back(Event::Close { peer, code, detail });
    }

    fn poison(&mut self, culprit: Option<PeerId>, detail: &str) {
        self.poisoned = true;
        self.held.clear();
        let peers = std::mem::take(&mut self.peers);
        for (peer, state) in peers {
            let code = if Some(peer) == culprit {
                let frame = error_frame(&state.route, CloseCode::InvalidUpdate, detail);
                self.events.push_back(Event::Send { peer, frame });
                CloseCode::InvalidUpdate
            } else {
                CloseCode::InternalError
            };
            self.events.push_back(Event::Close { peer, code, detail: detail.to_owned() });
        }
    }
}

/// An `error` message telling the peer why the relay stops serving it this document, in the form
/// `"<close code> <name>: document <id>: <detail>"`.
fn error_frame(route: &Route, code: CloseCode, detail: &str) -> Bytes {
    Message::Error(ErrorMessage {
        sender_id: Some(route.local.clone()),
        target_id: Some(route.remote.clone()),
        message: format!("{} {}: document {}: {detail}", code.code(), code.reason(), route.document),
    })
    .encode()
}

/// Decodes an Automerge sync message and refuses the ones whose bloom filters would make the relay
/// do unbounded work (automerge 0.12 trusts the filter's parameters).
fn decode_sync(data: &[u8]) -> Result<sync::Message, String> {
    let message = match catch_unwind(|| sync::Message::decode(data)) {
        Ok(Ok(message)) => message,
        Ok(Err(err)) => return Err(format!("sync message does not decode: {err}")),
        Err(_) => return Err("sync message decoder panicked".into()),
    };
    if message.have.len() > MAX_HAVES {
        return Err(format!("sync message has {} bloom filters (limit {MAX_HAVES})", message.have.len()));
    }
    for have in &message.have {
        check_bloom(&have.bloom.to_bytes())?;
    }
    Ok(message)
}

/// Checks the header of an encoded bloom filter: `leb128 entries, leb128 bits per entry,
/// leb128 probes`, then the bits (an empty encoding is the empty filter).
fn check_bloom(encoded: &[u8]) -> Result<(), String> {
    if encoded.is_empty() {
        return Ok(());
    }
    let mut rest = encoded;
    let mut next = || read_leb128(&mut rest).ok_or_else(|| "bloom filter header does not decode".to_owned());
    let (entries, bits_per_entry, probes) = (next()?, next()?, next()?);
    if entries > 0 && !(1..=MAX_BLOOM_BITS_PER_ENTRY).contains(&bits_per_entry) {
        return Err(format!("bloom filter with {bits_per_entry} bits per entry"));
    }
    if !(1..=MAX_BLOOM_PROBES).contains(&probes) {
        return Err(format!("bloom filter with {probes} probes"));
    }
    Ok(())
}

fn read_leb128(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Loads a stored snapshot strictly: every byte must be a valid document.
fn load_saved(state: &[u8]) -> Result<Automerge, String> {
    let options =
        LoadOptions::new().on_partial_load(OnPartialLoad::Error).verification_mode(VerificationMode::Check);
    match catch_unwind(AssertUnwindSafe(|| Automerge::load_with_options(state, options))) {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(err)) => Err(format!("snapshot does not load: {err}")),
        Err(_) => Err("loading the snapshot panicked".into()),
    }
}

/// Replays one log entry (change chunks, or a saved document for an empty one).
fn apply_entry(doc: &mut Automerge, entry: &[u8]) -> Result<(), String> {
    let before: Vec<ChangeHash> = doc.get_heads();
    match catch_unwind(AssertUnwindSafe(|| doc.load_incremental(entry))) {
        Ok(Ok(_)) if entry.is_empty() || doc.get_heads() != before => Ok(()),
        // Every entry the relay writes adds changes; one that adds none was not written by it.
        Ok(Ok(_)) => Err("log entry adds no changes".into()),
        Ok(Err(err)) => Err(format!("log entry does not load: {err}")),
        Err(_) => Err("loading the log entry panicked".into()),
    }
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

    #[test]
    fn bloom_headers_with_absurd_parameters_are_refused() {
        assert!(check_bloom(&[]).is_ok());
        assert!(check_bloom(&[3, 10, 7, 0, 0, 0, 0]).is_ok());
        assert!(check_bloom(&[3, 0, 7]).is_err(), "zero bits per entry divides by zero");
        assert!(check_bloom(&[3, 10, 0x80, 0x80, 0x80, 0x80, 0x08]).is_err(), "2^31 probes");
        assert!(check_bloom(&[3, 10]).is_err(), "truncated header");
    }
}
