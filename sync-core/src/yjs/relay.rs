//! The relay-side sync state machine for one Yjs document shared by many peers.
//!
//! The relay owns the document replica and the awareness table. It never touches a socket or a disk:
//! the shell (the server's room actor) feeds it peer messages and storage acknowledgements through
//! `handle_*` calls and carries out the [`Event`]s it hands back from [`Relay::poll_event`].
//!
//! Durability protocol: an incoming update is validated by applying it to the replica, given the next
//! log sequence number and handed out as [`Event::Append`]. Only when the shell reports it durable
//! ([`Relay::handle_durable`]) is it broadcast to every peer, its sender included — that echo is what
//! tells a y-websocket client its edit is safe. A sync step 2 that answers a peer's step 1 is likewise
//! held back until everything it contains is durable, so no peer ever sees state the log could lose.
//!
//! Out-of-order updates: a client may send an incremental update before its sync step 2 delivers the
//! state that update builds on (y-websocket does, for an edit made right after reconnecting). Such an
//! update is logged and echoed to its sender like any other, but it is *deferred*: not integrated into
//! the replica and not broadcast until the replica holds its predecessors, which the sender's step 2
//! supplies. Integrating it early would leave pending structs in yrs 0.28, whose skip handling can
//! then integrate a repeated item twice (see `sync-core/tests/simulation.rs`).
//!
//! What it deliberately does not do: decide *when* to compact (it only produces snapshots on request),
//! authenticate, or rate-limit. Those are shell policies.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

use super::awareness::{self, AwarenessEntry, AwarenessStates};
use super::codec::Message;
use crate::relay::{Access, Event, LoadError, LogAccounting, Snapshot};
use crate::{CloseCode, PeerId};

/// Deferred updates a document may hold before the oldest is integrated regardless of its gap.
const MAX_DEFERRED: usize = 256;

/// The limits every relay shares; re-exported here, where they were first defined.
pub use crate::relay::RelayLimits;

#[derive(Debug, Default)]
struct PeerState {
    access: Access,
    /// Awareness client ids this peer has announced; their states are removed when it leaves.
    awareness_clients: Vec<u64>,
    /// `Some(seq)` once the peer's sync step 1 was answered with a step 2 covering the log up to
    /// `seq`. Document updates are broadcast only to peers whose step 2 does not already contain
    /// them: an update that overtook the state it builds on would leave the receiver with pending
    /// structs, and yrs 0.28 can integrate an item twice when a later update repeats a pending one.
    covered_upto: Option<u64>,
}

/// A write that was accepted and waits for the log to hold everything up to `seq`.
#[derive(Debug)]
struct Accepted {
    seq: u64,
    sender: PeerId,
    delivery: Delivery,
}

/// What happens once an accepted write is durable (its sender is acknowledged in every case).
#[derive(Debug)]
enum Delivery {
    /// Broadcast the update to every covered peer and echo it to the sender.
    Broadcast(Bytes),
    /// A deferred update: echo it to the sender only; the others get its content from the sender's
    /// step 2 that fills the gap.
    EchoOnly(Bytes),
    /// An empty update: nothing to send, but it is acknowledged in order with the sender's others.
    AckOnly,
}

/// Updates released by one [`Relay::handle_durable`] call that go to the same peers, gathered into
/// one broadcast, and the acknowledgements that follow it.
///
/// Several updates become one frame carrying their merge (`yrs::merge_updates_v1`): one frame and
/// one write per peer instead of one per update, and a burst released by a slow commit cannot
/// overflow a healthy peer's outbox. The sender's echo is then the merged update, which contains
/// its own; [`super::YjsClient`] counts an update acknowledged when a released update contains it.
#[derive(Default)]
struct Release {
    updates: Vec<Bytes>,
    /// Peers that must not receive these updates (their step 2 already holds them, or they have not
    /// asked for the document yet).
    except: Vec<PeerId>,
    /// Senders to acknowledge once the broadcast is queued, one entry per update.
    acknowledged: Vec<PeerId>,
}

impl Release {
    fn flush(&mut self, events: &mut VecDeque<Event>) {
        let except = std::mem::take(&mut self.except);
        match self.updates.len() {
            0 => {}
            1 => {
                let frame = Message::Update(self.updates.remove(0)).encode();
                events.push_back(Event::Broadcast { frame, except });
            }
            _ => {
                let updates = std::mem::take(&mut self.updates);
                // The updates are integrated already, so merging cannot fail; if yrs disagrees,
                // they go out one by one as before.
                match catch_unwind(|| yrs::merge_updates_v1(updates.iter().map(Bytes::as_ref))) {
                    Ok(Ok(merged)) => {
                        let frame = Message::Update(Bytes::from(merged)).encode();
                        events.push_back(Event::Broadcast { frame, except });
                    }
                    _ => {
                        for update in updates {
                            let frame = Message::Update(update).encode();
                            events.push_back(Event::Broadcast { frame, except: except.clone() });
                        }
                    }
                }
            }
        }
        self.updates.clear();
        events.extend(self.acknowledged.drain(..).map(|peer| Event::Acknowledge { peer }));
    }
}

/// The state machine. See the module documentation.
pub struct Relay {
    doc: Doc,
    limits: RelayLimits,
    awareness: AwarenessStates,
    peers: BTreeMap<PeerId, PeerState>,
    /// Sequence number of the last update applied to `doc`.
    last_seq: u64,
    /// Sequence number of the last update the shell reported durable.
    durable_seq: u64,
    /// Accepted updates waiting to become durable.
    awaiting_durability: VecDeque<Accepted>,
    /// Logged updates not yet integrated because the replica lacks state they build on, oldest first.
    deferred: VecDeque<(u64, Update)>,
    /// Step 2 replies waiting until the log holds everything they contain.
    held: VecDeque<(u64, PeerId, Bytes)>,
    /// The step 2 frame answering an empty state vector, valid while `last_seq` is unchanged: joiners
    /// arriving together share one encoding.
    full_state: Option<(u64, Bytes)>,
    /// Snapshot plus log tail sizes, for the document limit and the compaction trigger.
    log: LogAccounting,
    events: VecDeque<Event>,
    poisoned: bool,
}

impl Relay {
    /// An empty document with no log.
    pub fn new(limits: RelayLimits) -> Self {
        Self {
            doc: Doc::new(),
            limits,
            awareness: AwarenessStates::default(),
            peers: BTreeMap::new(),
            last_seq: 0,
            durable_seq: 0,
            awaiting_durability: VecDeque::new(),
            deferred: VecDeque::new(),
            held: VecDeque::new(),
            full_state: None,
            log: LogAccounting::default(),
            events: VecDeque::new(),
            poisoned: false,
        }
    }

    /// Rebuilds the replica from a stored snapshot (covering the log up to its `upto`) and the log
    /// entries after it, in sequence order. Entries at or below the snapshot's `upto` are skipped.
    ///
    /// # Errors
    /// [`LoadError`] when stored bytes do not decode or apply; the caller must not serve the document.
    pub fn load<'a>(
        limits: RelayLimits,
        snapshot: Option<(u64, &[u8])>,
        log: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Result<Self, LoadError> {
        let mut relay = Self::new(limits);
        if let Some((upto, state)) = snapshot {
            // A snapshot is a whole state, never something to defer.
            let decoded = decode_guarded(state).map_err(LoadError::Snapshot)?;
            apply_update_guarded(&relay.doc, decoded).map_err(LoadError::Snapshot)?;
            relay.last_seq = upto;
            relay.log = LogAccounting::with_snapshot(state.len() as u64);
        }
        for (seq, update) in log {
            if seq <= relay.last_seq {
                continue;
            }
            let decoded = decode_guarded(update).map_err(|detail| LoadError::Update { seq, detail })?;
            relay.integrate(seq, decoded).map_err(|detail| LoadError::Update { seq, detail })?;
            relay.last_seq = seq;
            relay.log.record_append(update.len());
        }
        relay.durable_seq = relay.last_seq;
        Ok(relay)
    }

    /// A peer connected with `access`: greet it with the relay's state vector and the live
    /// awareness states.
    pub fn handle_join(&mut self, peer: PeerId, access: Access) {
        if self.poisoned {
            self.close(peer, CloseCode::InternalError, "document is being reloaded".into());
            return;
        }
        self.peers.insert(peer, PeerState { access, ..PeerState::default() });
        let sv = self.doc.transact().state_vector().encode_v1();
        self.events.push_back(Event::Send { peer, frame: Message::SyncStep1(sv.into()).encode() });
        if !self.awareness.is_empty() {
            let entries = self.awareness.live_entries();
            let frame = Message::Awareness(awareness::encode_update(entries.iter())).encode();
            self.events.push_back(Event::Send { peer, frame });
        }
    }

    /// A decoded message arrived from `peer`. Messages from unknown (already closed) peers are ignored.
    pub fn handle_message(&mut self, peer: PeerId, message: Message) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        match message {
            Message::SyncStep1(sv) => self.answer_step1(peer, &sv),
            Message::SyncStep2(update) | Message::Update(update) => self.accept_update(peer, update),
            Message::Awareness(payload) => self.relay_awareness(peer, &payload),
            Message::QueryAwareness => {
                let entries = self.awareness.live_entries();
                let frame = Message::Awareness(awareness::encode_update(entries.iter())).encode();
                self.events.push_back(Event::Send { peer, frame });
            }
            // Clients have no business denying the relay anything; y-websocket never sends this.
            Message::PermissionDenied(_) => {}
        }
    }

    /// `peer` disconnected: forget it and broadcast the removal of its awareness states.
    pub fn handle_leave(&mut self, peer: PeerId) {
        let Some(state) = self.peers.remove(&peer) else {
            return;
        };
        self.held.retain(|(_, p, _)| *p != peer);
        let removals: Vec<AwarenessEntry> =
            state.awareness_clients.iter().filter_map(|&client| self.awareness.remove(client)).collect();
        if !removals.is_empty() && !self.peers.is_empty() {
            let frame = Message::Awareness(awareness::encode_update(removals.iter())).encode();
            self.events.push_back(Event::Broadcast { frame, except: Vec::new() });
        }
    }

    /// The log holds every entry up to `upto`: echo those updates and release held step 2 replies.
    ///
    /// Consecutive updates released together that go to the same peers are merged into one update
    /// frame (see [`Release`]): a group commit that covered many updates costs each peer one frame.
    pub fn handle_durable(&mut self, upto: u64) {
        self.durable_seq = self.durable_seq.max(upto);
        let mut release = Release::default();
        while let Some(accepted) = self.awaiting_durability.front() {
            if accepted.seq > self.durable_seq {
                break;
            }
            let Some(Accepted { seq, sender, delivery }) = self.awaiting_durability.pop_front() else {
                break;
            };
            let sender_joined = self.peers.contains_key(&sender);
            match delivery {
                Delivery::Broadcast(update) if !self.peers.is_empty() => {
                    // The sender always gets its echo: that is its acknowledgement, and it built
                    // the update on state it already has.
                    let except: Vec<PeerId> = self
                        .peers
                        .iter()
                        .filter(|(peer, state)| {
                            **peer != sender && state.covered_upto.is_none_or(|upto| upto >= seq)
                        })
                        .map(|(peer, _)| *peer)
                        .collect();
                    if release.except != except {
                        release.flush(&mut self.events);
                        release.except = except;
                    }
                    release.updates.push(update);
                }
                Delivery::EchoOnly(frame) if sender_joined => {
                    release.flush(&mut self.events);
                    self.events.push_back(Event::Send { peer: sender, frame });
                }
                Delivery::Broadcast(_) | Delivery::EchoOnly(_) | Delivery::AckOnly => {}
            }
            if sender_joined {
                release.acknowledged.push(sender);
            }
        }
        release.flush(&mut self.events);
        while let Some((needs, _, _)) = self.held.front() {
            if *needs > self.durable_seq {
                break;
            }
            let Some((_, peer, frame)) = self.held.pop_front() else {
                break;
            };
            self.events.push_back(Event::Send { peer, frame });
        }
    }

    /// The log could not be written. The replica now holds updates the log may not; close every peer
    /// (they resync on reconnect) and refuse further work until the shell reloads the document.
    pub fn handle_storage_failure(&mut self, detail: &str) {
        self.poison(None, detail);
    }

    /// The next thing the shell must do, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A full-state snapshot covering the log up to `upto`: every update, except that it stops
    /// before the oldest deferred update, which must stay in the log until it is integrated.
    ///
    /// The shell must persist it only after the appends up to `upto` it has already been handed, in
    /// order, so that the snapshot replaces exactly the log prefix it contains.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.doc.transact().encode_state_as_update_v1(&StateVector::default());
        let upto = self.deferred.front().map_or(self.last_seq, |(seq, _)| seq - 1);
        self.log.snapshot(upto, state.into())
    }

    /// `snapshot` is stored and replaced the log prefix it covers.
    pub fn handle_compacted(&mut self, snapshot: &Snapshot) {
        self.log.compacted(snapshot);
    }

    /// Sequence number of the last applied update.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Sequence number of the last update reported durable.
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

    /// Whether a failed write or an update that broke the replica means the document must be reloaded.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The replica (read-only use: encoding, projections, tests).
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    fn answer_step1(&mut self, peer: PeerId, sv: &[u8]) {
        let frame = if sv == [0] {
            self.full_state_frame()
        } else {
            let Ok(sv) = StateVector::decode_v1(sv) else {
                self.close(
                    peer,
                    CloseCode::InvalidUpdate,
                    "sync step 1 carries an invalid state vector".into(),
                );
                return;
            };
            let diff = self.doc.transact().encode_state_as_update_v1(&sv);
            Message::SyncStep2(diff.into()).encode()
        };
        if let Some(state) = self.peers.get_mut(&peer) {
            state.covered_upto = Some(self.last_seq);
        }
        if self.durable_seq >= self.last_seq {
            self.events.push_back(Event::Send { peer, frame });
        } else {
            self.held.push_back((self.last_seq, peer, frame));
        }
    }

    fn full_state_frame(&mut self) -> Bytes {
        if let Some((seq, frame)) = &self.full_state
            && *seq == self.last_seq
        {
            return frame.clone();
        }
        let state = self.doc.transact().encode_state_as_update_v1(&StateVector::default());
        let frame = Message::SyncStep2(state.into()).encode();
        self.full_state = Some((self.last_seq, frame.clone()));
        frame
    }

    fn accept_update(&mut self, peer: PeerId, update: Bytes) {
        // An empty update (a read-only client's handshake step 2, typically) changes nothing.
        if is_empty_update(&update) {
            self.accepted(Accepted { seq: self.last_seq, sender: peer, delivery: Delivery::AckOnly });
            return;
        }
        if self.peers.get(&peer).is_some_and(|state| state.access == Access::ReadOnly) {
            // A read-only client's handshake step 2 carries its whole delete set even when it has
            // nothing new; acknowledging what the replica already holds keeps that client's count
            // of unsynced changes (Hocuspocus) from sticking above zero.
            if self.contains(&update) {
                self.accepted(Accepted { seq: self.last_seq, sender: peer, delivery: Delivery::AckOnly });
            } else {
                self.events.push_back(Event::Refused { peer });
            }
            return;
        }
        let grown = self.stored_bytes() + update.len() as u64;
        if grown > self.limits.max_document_bytes {
            let detail = format!(
                "update of {} bytes would grow the document to {grown} bytes (limit {})",
                update.len(),
                self.limits.max_document_bytes
            );
            self.close(peer, CloseCode::DocumentTooLarge, detail);
            return;
        }
        let decoded = match decode_guarded(&update) {
            Ok(decoded) => decoded,
            Err(detail) => return self.close(peer, CloseCode::InvalidUpdate, detail),
        };
        let seq = self.last_seq + 1;
        // A failed integration can leave the replica half-modified, so any failure here poisons it:
        // the update never reaches the log, and the document is reloaded from the log.
        let deferred = match self.integrate(seq, decoded) {
            Ok(deferred) => deferred,
            Err(detail) => return self.poison(Some(peer), &detail),
        };
        self.last_seq = seq;
        self.log.record_append(update.len());
        let delivery = if deferred {
            Delivery::EchoOnly(Message::Update(update.clone()).encode())
        } else {
            Delivery::Broadcast(update.clone())
        };
        self.events.push_back(Event::Append { seq, update, peer });
        self.accepted(Accepted { seq, sender: peer, delivery });
    }

    /// Whether the replica already holds everything `update` carries: every inserted item and every
    /// deletion. An update that does not decode holds nothing the replica has.
    fn contains(&self, update: &[u8]) -> bool {
        let Ok(update) = decode_guarded(update) else { return false };
        let txn = self.doc.transact();
        let known = txn.state_vector();
        let inserted_known = update
            .insertions(true)
            .iter()
            .all(|(client, ranges)| ranges.iter().all(|range| range.end <= known.get(client)));
        // The replica's delete set costs a walk over every block, so it is built last and only
        // for an update that inserts nothing new (a read-only client's edit almost always does).
        inserted_known
            && (update.delete_set().is_empty()
                || update.delete_set().diff(&txn.snapshot().delete_set).is_empty())
    }

    /// Queues an accepted write for release once the log holds it (at once if it already does).
    fn accepted(&mut self, accepted: Accepted) {
        let ready = accepted.seq <= self.durable_seq && self.awaiting_durability.is_empty();
        self.awaiting_durability.push_back(accepted);
        if ready {
            self.handle_durable(self.durable_seq);
        }
    }

    /// Integrates `update` (log position `seq`) if the replica holds what it builds on, otherwise
    /// defers it; then integrates every deferred update that has become ready. Returns whether
    /// `update` was deferred.
    fn integrate(&mut self, seq: u64, update: Update) -> Result<bool, String> {
        if !builds_on(&update, &self.doc.transact().state_vector()) {
            self.deferred.push_back((seq, update));
            if self.deferred.len() > MAX_DEFERRED {
                // A gap this old will not be filled by a well-behaved client. Integrate the oldest
                // anyway (yrs keeps it pending) so that compaction can move past it; the choice
                // depends only on log order, so a reload repeats it exactly.
                if let Some((_, oldest)) = self.deferred.pop_front() {
                    apply_update_guarded(&self.doc, oldest)?;
                }
            }
            return Ok(self.deferred.iter().any(|(s, _)| *s == seq));
        }
        apply_update_guarded(&self.doc, update)?;
        loop {
            let sv = self.doc.transact().state_vector();
            let Some(ready) = self.deferred.iter().position(|(_, u)| builds_on(u, &sv)) else {
                break;
            };
            let Some((_, update)) = self.deferred.remove(ready) else {
                break;
            };
            apply_update_guarded(&self.doc, update)?;
        }
        Ok(false)
    }

    fn relay_awareness(&mut self, peer: PeerId, payload: &Bytes) {
        let entries = match awareness::decode_update(payload) {
            Ok(entries) => entries,
            Err(err) => return self.close(peer, CloseCode::MalformedMessage, format!("awareness: {err}")),
        };
        let mut changed = false;
        for entry in &entries {
            changed |= self.awareness.apply(entry);
            if let Some(state) = self.peers.get_mut(&peer)
                && !state.awareness_clients.contains(&entry.client_id)
            {
                state.awareness_clients.push(entry.client_id);
            }
        }
        if changed {
            let frame = Message::Awareness(payload.clone()).encode();
            self.events.push_back(Event::Broadcast { frame, except: Vec::new() });
        }
    }

    fn close(&mut self, peer: PeerId, code: CloseCode, detail: String) {
        self.handle_leave(peer);
        self.events.push_back(Event::Close { peer, code, detail });
    }

    fn poison(&mut self, culprit: Option<PeerId>, detail: &str) {
        self.poisoned = true;
        self.awaiting_durability.clear();
        self.held.clear();
        self.full_state = None;
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        self.peers.clear();
        for peer in peers {
            let code =
                if Some(peer) == culprit { CloseCode::InvalidUpdate } else { CloseCode::InternalError };
            self.events.push_back(Event::Close { peer, code, detail: detail.to_owned() });
        }
    }
}

/// Whether `update` is the encoding of an update with no structs and an empty delete set.
fn is_empty_update(update: &[u8]) -> bool {
    update == [0, 0]
}

/// Whether every item and deletion in `update` builds on state covered by `known`: for each client,
/// the update's insertions continue from (or overlap) what is known without a hole, and its deletions
/// refer only to known or included items. Cross-client origins are not visible through yrs's public
/// API; a client that syncs through one relay only builds on content that relay gave it.
fn builds_on(update: &Update, known: &StateVector) -> bool {
    let insertions = update.insertions(true);
    let mut covered: std::collections::HashMap<yrs::block::ClientID, u32> = std::collections::HashMap::new();
    for (client, ranges) in insertions.iter() {
        let mut end = known.get(client);
        for range in ranges.iter() {
            if range.start > end {
                return false;
            }
            end = end.max(range.end);
        }
        covered.insert(*client, end);
    }
    update.delete_set().iter().all(|(client, ranges)| {
        let end = covered.get(client).copied().unwrap_or_else(|| known.get(client));
        ranges.iter().next_back().is_none_or(|last| last.end <= end)
    })
}

/// Decodes a v1 update, turning decoder errors and panics (yrs's decoder can panic on crafted input
/// in debug builds) into a message.
pub(super) fn decode_guarded(update: &[u8]) -> Result<Update, String> {
    match catch_unwind(|| Update::decode_v1(update)) {
        Ok(Ok(decoded)) => Ok(decoded),
        Ok(Err(err)) => Err(format!("update does not decode: {err}")),
        Err(_) => Err("update decoder panicked".into()),
    }
}

/// Applies a decoded update, turning errors and panics into a message. After a failure the replica
/// may be half-modified and must be discarded.
fn apply_update_guarded(doc: &Doc, update: Update) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| doc.transact_mut().apply_update(update))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(format!("update does not apply: {err}")),
        Err(_) => Err("update integration panicked".into()),
    }
}
