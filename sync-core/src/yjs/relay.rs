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
//! Bad input: every update passes the rules of [`super::replica`] — canonical before it touches the
//! replica, integrated completely after — and one that fails is refused before anything is logged:
//! its sender is closed with 4422 and the reason, every other peer stays. When the failure was
//! found only after the update touched the replica, the relay asks for a [`Health::Rebuild`]: the
//! shell reloads the document from the log (which never saw the update) and the new relay adopts
//! the peers. A replica that fails to encode its state (on a join, for a snapshot) poisons the
//! relay: every peer is closed with 1011 and the shell reloads the document, quarantining what
//! breaks it (see [`crate::relay::recover`]).
//!
//! What it deliberately does not do: decide *when* to compact (it only produces snapshots on request),
//! authenticate, or rate-limit. Those are shell policies.

use std::collections::{BTreeMap, VecDeque};

use super::replica::Decoded;
use bytes::Bytes;

use super::awareness::{self, AwarenessEntry, AwarenessStates};
use super::codec::Message;
use super::replica::{self, Applied, YjsReplica};
use crate::contain::CrdtFailure;
use crate::relay::{
    Access, DocumentRelay, Event, Health, Ledger, LoadError, Loaded, LogAccounting, Replay, Snapshot,
    StateCheck, WriteFailure, recover,
};
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
    /// An update that re-sent clocks the replica had: its sender gets it back as its echo, the
    /// other covered peers get what the replica gained from it (if anything).
    Rewritten { echo: Bytes, gained: Option<Bytes> },
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
                match replica::merge(updates.iter().map(Bytes::as_ref)) {
                    Ok(merged) => {
                        let frame = Message::Update(Bytes::from(merged)).encode();
                        events.push_back(Event::Broadcast { frame, except });
                    }
                    Err(_) => {
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
    replica: YjsReplica,
    limits: RelayLimits,
    awareness: AwarenessStates,
    peers: BTreeMap<PeerId, PeerState>,
    ledger: Ledger,
    /// Accepted updates waiting to become durable.
    awaiting_durability: VecDeque<Accepted>,
    /// Logged updates not yet integrated because the replica lacks state they build on, oldest first.
    deferred: VecDeque<(u64, Decoded)>,
    /// The step 2 frame answering an empty state vector, valid while `last_seq` is unchanged: joiners
    /// arriving together share one encoding.
    full_state: Option<(u64, Bytes)>,
}

/// A deferred or new update that failed to integrate, and where it sits in the log.
struct IntegrationFailure {
    seq: u64,
    failure: CrdtFailure,
    /// What became of the new update, when it was an older deferred one that failed.
    new: Option<Integrated>,
}

/// What became of an update handed to [`Relay::integrate`].
enum Integrated {
    /// Held back until the replica has what it builds on.
    Deferred,
    /// Integrated; what the replica gained.
    Applied(Applied),
}

impl Relay {
    /// An empty document with no log.
    pub fn new(limits: RelayLimits) -> Self {
        Self {
            replica: YjsReplica::new(),
            limits,
            awareness: AwarenessStates::default(),
            peers: BTreeMap::new(),
            ledger: Ledger::default(),
            awaiting_durability: VecDeque::new(),
            deferred: VecDeque::new(),
            full_state: None,
        }
    }

    /// Rebuilds the replica from a stored snapshot (covering the log up to its `upto`) and the log
    /// entries after it, in sequence order; entries at or below the snapshot's `upto` are skipped.
    /// Whatever breaks the document — an item that does not load, or one after which the replica no
    /// longer encodes — is left out and reported in [`Loaded::quarantined`]; the rest is served.
    /// The full state this verified is kept for the first joiner.
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
    /// log. Peers keep their access, their awareness states and what their step 2 covered (every
    /// update up to the old relay's last sequence number has been released to them).
    pub fn adopt(&mut self, old: Relay) {
        self.peers = old.peers;
        self.awareness = old.awareness;
    }

    /// A peer connected with `access`: greet it with the relay's state vector and the live
    /// awareness states.
    pub fn handle_join(&mut self, peer: PeerId, access: Access) {
        if self.ledger.health != Health::Serving {
            let detail = "document is being reloaded".to_owned();
            self.ledger.events.push_back(Event::Close { peer, code: CloseCode::InternalError, detail });
            return;
        }
        let sv = match self.replica.encode_state_vector() {
            Ok(sv) => sv,
            Err(failure) => {
                self.peers.insert(peer, PeerState { access, ..PeerState::default() });
                return self.poison(&failure.to_string());
            }
        };
        self.peers.insert(peer, PeerState { access, ..PeerState::default() });
        self.ledger.events.push_back(Event::Send { peer, frame: Message::SyncStep1(sv.into()).encode() });
        if !self.awareness.is_empty() {
            let entries = self.awareness.live_entries();
            let frame = Message::Awareness(awareness::encode_update(entries.iter())).encode();
            self.ledger.events.push_back(Event::Send { peer, frame });
        }
    }

    /// A decoded message arrived from `peer`. Messages from unknown (already closed) peers are
    /// ignored, and so is everything while the relay is not [`Health::Serving`] (the shell stops
    /// feeding input then).
    pub fn handle_message(&mut self, peer: PeerId, message: Message) {
        if self.ledger.health != Health::Serving || !self.peers.contains_key(&peer) {
            return;
        }
        match message {
            Message::SyncStep1(sv) => self.answer_step1(peer, &sv),
            Message::SyncStep2(update) | Message::Update(update) => self.accept_update(peer, update),
            Message::Awareness(payload) => self.relay_awareness(peer, &payload),
            Message::QueryAwareness => {
                let entries = self.awareness.live_entries();
                let frame = Message::Awareness(awareness::encode_update(entries.iter())).encode();
                self.ledger.events.push_back(Event::Send { peer, frame });
            }
            // Clients have no business denying the relay anything; y-websocket never sends this.
            Message::PermissionDenied(_) => {}
        }
    }

    /// The relay's own write (a REST route's): `edit` runs on the replica in one transaction, and
    /// what it changed is handled like a peer's update — logged as an [`Event::Append`] from
    /// [`PeerId::LOCAL`], then broadcast to every peer once durable. Returns what `edit` returned
    /// and the sequence number that must be durable before the write is acknowledged (the last
    /// one so far when it changed nothing).
    ///
    /// # Errors
    /// [`WriteFailure`] when the relay is not serving, or the write failed or grew the document past
    /// its limit; in the last two cases the replica held part of it, nothing was logged, and the
    /// relay asks for a [`Health::Rebuild`].
    pub fn write<T>(
        &mut self,
        edit: impl FnOnce(&mut yrs::TransactionMut<'_>) -> T,
    ) -> Result<(T, u64), WriteFailure> {
        if self.ledger.health != Health::Serving {
            return Err(WriteFailure::NotServing);
        }
        let (out, update) = match self.replica.edit(edit) {
            Ok(done) => done,
            Err(failure) => {
                self.ledger.health = Health::Rebuild;
                return Err(WriteFailure::Failed(failure));
            }
        };
        if is_empty_update(&update) {
            return Ok((out, self.ledger.last_seq));
        }
        let grown = self.stored_bytes() + update.len() as u64;
        if grown > self.limits.max_document_bytes {
            self.ledger.health = Health::Rebuild;
            return Err(WriteFailure::TooLarge(format!(
                "the write would grow the document to {grown} bytes (limit {})",
                self.limits.max_document_bytes
            )));
        }
        let update = Bytes::from(update);
        let seq = self.ledger.last_seq + 1;
        self.ledger.last_seq = seq;
        self.ledger.log.record_append(update.len());
        self.ledger.events.push_back(Event::Append { seq, update: update.clone(), peer: PeerId::LOCAL });
        self.accepted(Accepted { seq, sender: PeerId::LOCAL, delivery: Delivery::Broadcast(update) });
        Ok((out, seq))
    }

    /// Reads the replica, contained (projections, tests). `read` must not mutate the document.
    ///
    /// # Errors
    /// [`CrdtFailure`] when `read` panics.
    pub fn read<T>(&self, read: impl FnOnce(&yrs::Doc) -> T) -> Result<T, CrdtFailure> {
        self.replica.read(read)
    }

    fn answer_step1(&mut self, peer: PeerId, sv: &[u8]) {
        let frame = if sv == [0] {
            match self.full_state_frame() {
                Ok(frame) => frame,
                Err(failure) => return self.poison(&failure.to_string()),
            }
        } else {
            let sv = match YjsReplica::decode_state_vector(sv) {
                Ok(sv) => sv,
                Err(failure) => {
                    let detail = format!("sync step 1 carries an invalid state vector: {failure}");
                    return self.close(peer, CloseCode::InvalidUpdate, detail);
                }
            };
            // A full state answers any state vector; it stands in when a crafted one trips yrs.
            match self.replica.encode_diff(&sv) {
                Ok(diff) => Message::SyncStep2(diff.into()).encode(),
                Err(_) => match self.full_state_frame() {
                    Ok(frame) => frame,
                    Err(failure) => return self.poison(&failure.to_string()),
                },
            }
        };
        if let Some(state) = self.peers.get_mut(&peer) {
            state.covered_upto = Some(self.ledger.last_seq);
        }
        self.ledger.send_when_durable(peer, frame);
    }

    fn full_state_frame(&mut self) -> Result<Bytes, CrdtFailure> {
        if let Some((seq, frame)) = &self.full_state
            && *seq == self.ledger.last_seq
        {
            return Ok(frame.clone());
        }
        let state = self.replica.encode_state()?;
        let frame = Message::SyncStep2(state.into()).encode();
        self.full_state = Some((self.ledger.last_seq, frame.clone()));
        Ok(frame)
    }

    fn accept_update(&mut self, peer: PeerId, update: Bytes) {
        // An empty update (a read-only client's handshake step 2, typically) changes nothing.
        if is_empty_update(&update) {
            let seq = self.ledger.last_seq;
            self.accepted(Accepted { seq, sender: peer, delivery: Delivery::AckOnly });
            return;
        }
        let decoded = match YjsReplica::decode(&update) {
            Ok(decoded) => decoded,
            Err(failure) => {
                return self.close(peer, CloseCode::InvalidUpdate, format!("invalid update: {failure}"));
            }
        };
        if self.peers.get(&peer).is_some_and(|state| state.access == Access::ReadOnly) {
            // A read-only client's handshake step 2 carries its whole delete set even when it has
            // nothing new; acknowledging what the replica already holds keeps that client's count
            // of unsynced changes (Hocuspocus) from sticking above zero.
            match self.replica.contains(&decoded) {
                Ok(true) => {
                    let seq = self.ledger.last_seq;
                    self.accepted(Accepted { seq, sender: peer, delivery: Delivery::AckOnly });
                }
                Ok(false) => self.ledger.events.push_back(Event::Refused { peer }),
                Err(failure) => self.poison(&failure.to_string()),
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
        let seq = self.ledger.last_seq + 1;
        let integrated = match self.integrate(seq, decoded) {
            Ok(integrated) => integrated,
            Err(IntegrationFailure { seq: failed, failure, .. }) if failed == seq => {
                // The update touched the replica and never reaches the log; the document is rebuilt
                // from the log, and the other peers stay.
                self.ledger.health = Health::Rebuild;
                return self.close(peer, CloseCode::InvalidUpdate, format!("invalid update: {failure}"));
            }
            Err(IntegrationFailure { new, .. }) => {
                // A deferred update, logged earlier, broke the replica once its gap filled; this
                // update is logged as usual. Replaying the log repeats the failure, and the
                // rebuild quarantines the deferred update.
                self.ledger.health = Health::Rebuild;
                new.unwrap_or(Integrated::Deferred)
            }
        };
        self.ledger.last_seq = seq;
        self.ledger.log.record_append(update.len());
        let delivery = match integrated {
            Integrated::Deferred => Delivery::EchoOnly(Message::Update(update.clone()).encode()),
            Integrated::Applied(Applied::AsSent) => Delivery::Broadcast(update.clone()),
            Integrated::Applied(Applied::Gained(gained)) => Delivery::Rewritten {
                echo: Message::Update(update.clone()).encode(),
                gained: (!is_empty_update(&gained)).then(|| Bytes::from(gained)),
            },
        };
        self.ledger.events.push_back(Event::Append { seq, update, peer });
        self.accepted(Accepted { seq, sender: peer, delivery });
    }

    /// Queues an accepted write for release once the log holds it (at once if it already does).
    fn accepted(&mut self, accepted: Accepted) {
        let ready = accepted.seq <= self.ledger.durable_seq && self.awaiting_durability.is_empty();
        self.awaiting_durability.push_back(accepted);
        if ready {
            self.handle_durable(self.ledger.durable_seq);
        }
    }

    /// Integrates `update` (log position `seq`) if the replica holds what it builds on, otherwise
    /// defers it; then integrates every deferred update that has become ready. Returns whether
    /// `update` was deferred, or which update failed to integrate (the replica is then suspect).
    fn integrate(&mut self, seq: u64, update: Decoded) -> Result<Integrated, IntegrationFailure> {
        let fail = |seq, new: Option<Integrated>| move |failure| IntegrationFailure { seq, failure, new };
        if !self.replica.builds_on(&update).map_err(fail(seq, None))? {
            self.deferred.push_back((seq, update));
            if self.deferred.len() > MAX_DEFERRED {
                // A gap this old will not be filled by a well-behaved client. Integrate the oldest
                // anyway so that compaction can move past it (if it cannot integrate completely,
                // it is quarantined); the choice depends only on log order, so a reload repeats it.
                if let Some((oldest_seq, oldest)) = self.deferred.pop_front() {
                    let new = (oldest_seq != seq).then_some(Integrated::Deferred);
                    if let Err(failure) = self.replica.apply(oldest, None) {
                        return Err(fail(oldest_seq, new)(failure));
                    }
                }
            }
            // Peers get a deferred update's content from the step 2 that fills its gap.
            return Ok(Integrated::Deferred);
        }
        let applied = self.replica.apply(update, None).map_err(fail(seq, None))?;
        loop {
            let mut ready = None;
            for (index, (deferred_seq, deferred)) in self.deferred.iter().enumerate() {
                match self.replica.builds_on(deferred) {
                    Ok(true) => {
                        ready = Some(index);
                        break;
                    }
                    Ok(false) => {}
                    Err(failure) => {
                        return Err(fail(*deferred_seq, Some(Integrated::Applied(applied)))(failure));
                    }
                }
            }
            let Some((deferred_seq, update)) = ready.and_then(|index| self.deferred.remove(index)) else {
                break;
            };
            if let Err(failure) = self.replica.apply(update, None) {
                return Err(fail(deferred_seq, Some(Integrated::Applied(applied)))(failure));
            }
        }
        Ok(Integrated::Applied(applied))
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
            self.ledger.events.push_back(Event::Broadcast { frame, except: Vec::new() });
        }
    }

    fn close(&mut self, peer: PeerId, code: CloseCode, detail: String) {
        self.handle_leave(peer);
        self.ledger.events.push_back(Event::Close { peer, code, detail });
    }

    fn poison(&mut self, detail: &str) {
        self.awaiting_durability.clear();
        self.full_state = None;
        let peers = std::mem::take(&mut self.peers);
        self.ledger.poison(peers.into_keys(), detail);
    }
}

impl DocumentRelay for Relay {
    fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// `peer` disconnected: forget it and broadcast the removal of its awareness states.
    fn handle_leave(&mut self, peer: PeerId) {
        let Some(state) = self.peers.remove(&peer) else {
            return;
        };
        self.ledger.forget_peer(peer);
        let removals: Vec<AwarenessEntry> =
            state.awareness_clients.iter().filter_map(|&client| self.awareness.remove(client)).collect();
        if !removals.is_empty() && !self.peers.is_empty() {
            let frame = Message::Awareness(awareness::encode_update(removals.iter())).encode();
            self.ledger.events.push_back(Event::Broadcast { frame, except: Vec::new() });
        }
    }

    /// The log holds every entry up to `upto`: echo those updates and release held step 2 replies.
    ///
    /// Consecutive updates released together that go to the same peers are merged into one update
    /// frame (see [`Release`]): a group commit that covered many updates costs each peer one frame.
    fn handle_durable(&mut self, upto: u64) {
        let durable = self.ledger.durable_seq.max(upto);
        let mut release = Release::default();
        while let Some(accepted) = self.awaiting_durability.front() {
            if accepted.seq > durable {
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
                        release.flush(&mut self.ledger.events);
                        release.except = except;
                    }
                    release.updates.push(update);
                }
                Delivery::EchoOnly(frame) if sender_joined => {
                    release.flush(&mut self.ledger.events);
                    self.ledger.events.push_back(Event::Send { peer: sender, frame });
                }
                Delivery::Rewritten { echo, gained } => {
                    release.flush(&mut self.ledger.events);
                    if sender_joined {
                        self.ledger.events.push_back(Event::Send { peer: sender, frame: echo });
                    }
                    if let Some(gained) = gained {
                        let except: Vec<PeerId> = self
                            .peers
                            .iter()
                            .filter(|(peer, state)| {
                                **peer == sender || state.covered_upto.is_none_or(|upto| upto >= seq)
                            })
                            .map(|(peer, _)| *peer)
                            .collect();
                        let frame = Message::Update(gained).encode();
                        self.ledger.events.push_back(Event::Broadcast { frame, except });
                    }
                }
                Delivery::Broadcast(_) | Delivery::EchoOnly(_) | Delivery::AckOnly => {}
            }
            if sender_joined {
                release.acknowledged.push(sender);
            }
        }
        release.flush(&mut self.ledger.events);
        self.ledger.release_held(durable);
    }

    fn handle_failure(&mut self, detail: &str) {
        self.poison(detail);
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.ledger.events.pop_front()
    }

    /// A full-state snapshot covering the log up to `upto`: every update, except that it stops
    /// before the oldest deferred update, which must stay in the log until it is integrated.
    fn snapshot(&mut self) -> Option<Snapshot> {
        if self.ledger.health != Health::Serving {
            return None;
        }
        let taken = self.replica.encode_state().and_then(|state| Ok((state, self.replica.state_check()?)));
        let (state, check) = match taken {
            Ok(taken) => taken,
            Err(failure) => {
                self.poison(&failure.to_string());
                return None;
            }
        };
        let upto = self.deferred.front().map_or(self.ledger.last_seq, |(seq, _)| seq - 1);
        Some(self.ledger.snapshot(upto, state.into(), StateCheck::Yjs(check)))
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
            // A snapshot is a whole state, never something to defer.
            let decoded = YjsReplica::decode(state).map_err(|f| LoadError::Snapshot(f.to_string()))?;
            relay.replica.apply(decoded, None).map_err(|f| LoadError::Snapshot(f.to_string()))?;
            relay.ledger.last_seq = upto;
            relay.ledger.log = LogAccounting::with_snapshot(state.len() as u64);
        }
        for (seq, update) in log {
            if seq <= relay.ledger.last_seq {
                continue;
            }
            let decoded =
                YjsReplica::decode(update).map_err(|f| LoadError::Update { seq, detail: f.to_string() })?;
            relay.integrate(seq, decoded).map_err(|IntegrationFailure { seq, failure, .. }| {
                LoadError::Update { seq, detail: failure.to_string() }
            })?;
            relay.ledger.last_seq = seq;
            relay.ledger.log.record_append(update.len());
        }
        relay.ledger.durable_seq = relay.ledger.last_seq;
        Ok(relay)
    }

    fn verify(&mut self) -> Result<(), CrdtFailure> {
        let state = self.replica.verify()?;
        self.full_state = Some((self.ledger.last_seq, Message::SyncStep2(state.into()).encode()));
        Ok(())
    }
}

/// Whether `update` is the encoding of an update with no structs and an empty delete set.
fn is_empty_update(update: &[u8]) -> bool {
    update == [0, 0]
}
