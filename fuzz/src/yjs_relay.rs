//! The Yjs relay target: three peers, honest (real yrs documents that edit and sync) and hostile
//! (raw, replayed and corrupted frames), drive one [`Relay`] through joins, leaves, durability
//! reports, compaction, crashes and rebuilds, with a storage shell that behaves like the room's;
//! the relay also makes REST writes of its own (`Relay::write` with the domain's changes).
//!
//! Asserted, after every step: the relay is never poisoned (that would mean a write got past the
//! rules and broke the replica); the replica encodes its full state and a diff for every state
//! vector seen so far, and those load; every snapshot verifies and loads back; a reload from what
//! the relay logged never quarantines anything and holds the same items and deletions.

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use weft_sync_core::yjs::codec::{self, Message};
use weft_sync_core::yjs::{Relay, RelayLimits, YjsReplica};
use weft_sync_core::{Access, DocumentRelay, Event, Health, PeerId, StoredItem};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Array, Doc, Map, ReadTxn, StateVector, Text, Transact, Update};

use crate::{ascii, quiet_contained_panics};

const PEERS: usize = 3;
/// Steps one input may take; keeps every run short.
const MAX_STEPS: usize = 64;
/// Rounds of relay output and peer replies per step before the network counts as settled.
const MAX_ROUNDS: usize = 16;

/// Runs one input. See the module documentation.
pub fn run(data: &[u8]) {
    quiet_contained_panics();
    let mut u = Unstructured::new(data);
    let mut sim = Sim::new();
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        if sim.step(&mut u).is_err() {
            break;
        }
    }
    sim.finish();
}

struct Peer {
    doc: Doc,
    client: u64,
    joined: Option<PeerId>,
    /// Updates this peer sent that its own document does not hold (forged, corrupted or
    /// recorded): the relay echoes a deferred update to its sender as sent, and the peer must not
    /// take that echo for the relay's state. See `docs/fuzzing.md` (the sender's own echo).
    forged: Vec<Bytes>,
}

#[derive(Default)]
struct Store {
    snapshot: Option<(u64, Bytes)>,
    log: Vec<(u64, Bytes)>,
}

struct Sim {
    relay: Relay,
    store: Store,
    /// Appends handed out and not yet durable.
    pending: Vec<(u64, Bytes)>,
    peers: Vec<Peer>,
    next_peer: u64,
    /// The relay's last sequence number when the document was last checked; the (costly) check
    /// runs again only once the document changed.
    checked: Option<u64>,
    /// Honest updates seen, to replay or corrupt.
    honest: Vec<Bytes>,
    /// State vectors the relay has been asked to diff against, to check again later.
    svs: Vec<StateVector>,
}

impl Sim {
    fn new() -> Self {
        let peers = (0..PEERS as u64)
            .map(|i| Peer {
                doc: Doc::with_client_id(i + 1),
                client: i + 1,
                joined: None,
                forged: Vec::new(),
            })
            .collect();
        Self {
            relay: Relay::new(RelayLimits::default()),
            store: Store::default(),
            pending: Vec::new(),
            peers,
            next_peer: 1,
            checked: None,
            honest: Vec::new(),
            svs: vec![StateVector::default()],
        }
    }

    fn step(&mut self, u: &mut Unstructured) -> Result<()> {
        let k = u.choose_index(PEERS)?;
        match u.int_in_range(0..=12u8)? {
            0 => self.join(k, u.ratio(1, 8)?),
            12 => {
                let changes = crate::rest_write(u)?;
                let _ = self.relay.write(|txn| weft_sync_core::domain::write::apply_yjs(txn, &changes));
            }
            1 => self.leave(k),
            2 | 3 => match self.edit(k, u)? {
                Some(update) => {
                    self.honest.push(update.clone());
                    self.send(k, Message::Update(update));
                }
                None => self.reset_peer(k),
            },
            4 => {
                let payload = Bytes::from(u.arbitrary::<Vec<u8>>()?);
                let message = match u.int_in_range(0..=4u8)? {
                    0 => Message::SyncStep1(payload),
                    1 => Message::SyncStep2(payload),
                    2 => Message::Update(payload),
                    3 => Message::Awareness(payload),
                    _ => Message::QueryAwareness,
                };
                self.send_forged(k, message);
            }
            5 if !self.honest.is_empty() => {
                let original = u.choose(&self.honest)?.clone();
                let corrupted = corrupt(u, &original)?;
                self.send_forged(k, Message::Update(corrupted));
            }
            6 if !self.honest.is_empty() => {
                let replayed = u.choose(&self.honest)?.clone();
                self.send(k, Message::SyncStep2(replayed));
            }
            6 | 11 => {
                // An update a real y-websocket or Hocuspocus client sent, recorded.
                let updates = recorded_updates();
                let update = Bytes::from_static(u.choose(&updates)?);
                self.honest.push(update.clone());
                self.send_forged(
                    k,
                    if u.arbitrary()? { Message::Update(update) } else { Message::SyncStep2(update) },
                );
            }
            7 => self.commit(),
            8 => self.compact(),
            9 => self.crash(),
            _ => {
                // A peer asks again for what it lacks (a step 1 with its own state vector).
                let sv = self.peers[k].doc.transact().state_vector();
                self.svs.push(sv.clone());
                self.checked = None;
                self.send(k, Message::SyncStep1(Bytes::from(sv.encode_v1())));
            }
        }
        self.settle();
        self.check();
        Ok(())
    }

    fn join(&mut self, k: usize, read_only: bool) {
        if self.peers[k].joined.is_some() {
            return;
        }
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        self.peers[k].joined = Some(id);
        let access = if read_only { Access::ReadOnly } else { Access::ReadWrite };
        self.relay.handle_join(id, access);
        let sv = self.peers[k].doc.transact().state_vector().encode_v1();
        self.send(k, Message::SyncStep1(Bytes::from(sv)));
    }

    fn leave(&mut self, k: usize) {
        if let Some(id) = self.peers[k].joined.take() {
            self.relay.handle_leave(id);
        }
    }

    /// One honest edit on peer `k`'s document; returns its update, or `None` when yrs panicked on
    /// the peer's own document (then the peer starts over, as a real client must).
    ///
    /// That happens on content a hostile peer may legally write: Yjs does not tie a root name to a
    /// type, so a forged update can put array content (`ContentAny`) into the root the honest
    /// editors read as text, and yrs's `Text::remove_range` then panics on it (Yjs in JavaScript
    /// skips it). The relay cannot refuse such content without knowing the layout of the document;
    /// see `docs/fuzzing.md` (type confusion).
    fn edit(&mut self, k: usize, u: &mut Unstructured) -> Result<Option<Bytes>> {
        let doc = self.peers[k].doc.clone();
        let text = doc.get_or_insert_text("t");
        let map = doc.get_or_insert_map("m");
        let array = doc.get_or_insert_array("a");
        let edited = peer_write(&doc, |txn| -> Result<Bytes> {
            match u.int_in_range(0..=3u8)? {
                0 => {
                    let len = text.len(txn);
                    let at = u.int_in_range(0..=len)?;
                    let s = ascii(u, 8)?;
                    text.insert(txn, at, if s.is_empty() { "x" } else { &s });
                }
                1 => {
                    let len = text.len(txn);
                    if len > 0 {
                        let at = u.int_in_range(0..=len - 1)?;
                        let n = u.int_in_range(1..=len - at)?;
                        text.remove_range(txn, at, n);
                    }
                }
                2 => {
                    let key = format!("k{}", u.int_in_range(0..=3u8)?);
                    map.insert(txn, key, u.arbitrary::<i64>()?);
                }
                _ => {
                    let len = array.len(txn);
                    let at = u.int_in_range(0..=len)?;
                    array.insert(txn, at, u.arbitrary::<bool>()?);
                }
            }
            Ok(Bytes::from(txn.encode_update_v1()))
        });
        edited.transpose()
    }

    /// Sends what an honest peer did not write. Yjs does not tie a client id to a connection: an
    /// update may claim clocks of an honest peer's client that the relay does not have (the peer
    /// has not sent them yet, or they were lost unacknowledged in a crash, or the peer has not
    /// written them yet). If the relay takes the forged version, that peer's own document forks
    /// from everyone's, and edits placed by the two versions can break yrs on the peer's side: a
    /// real client in that state must start over, and so does the peer here. See
    /// `docs/fuzzing.md` (client-id squatting).
    fn send_forged(&mut self, k: usize, message: Message) {
        let claimed = match &message {
            Message::SyncStep2(update) | Message::Update(update) => Update::decode_v1(update).ok(),
            _ => None,
        };
        let relay = self.relay.read(|doc| doc.transact().state_vector()).unwrap_or_default();
        if let Message::SyncStep2(update) | Message::Update(update) = &message {
            self.peers[k].forged.push(update.clone());
        }
        self.send(k, message);
        let Some(claimed) = claimed else { return };
        let insertions = claimed.insertions(true);
        let forked: Vec<usize> = (0..PEERS)
            .filter(|&j| {
                let client = yrs::block::ClientID::new(self.peers[j].client);
                let before = relay.get(&client);
                insertions.iter().any(|(c, ranges)| *c == client && ranges.iter().any(|r| r.end > before))
            })
            .collect();
        for j in forked {
            self.reset_peer(j);
        }
    }

    fn send(&mut self, k: usize, message: Message) {
        if let Some(id) = self.peers[k].joined {
            self.relay.handle_message(id, message);
        }
    }

    /// Carries out the relay's events and the honest peers' replies until the network is quiet.
    fn settle(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let mut replies = Vec::new();
            while let Some(event) = self.relay.poll_event() {
                match event {
                    Event::Append { seq, update, .. } => self.pending.push((seq, update)),
                    Event::Send { peer, frame } => self.deliver(peer, &frame, &mut replies),
                    Event::Broadcast { frame, except } => {
                        let joined: Vec<PeerId> = self
                            .peers
                            .iter()
                            .filter_map(|p| p.joined)
                            .filter(|p| !except.contains(p))
                            .collect();
                        for peer in joined {
                            self.deliver(peer, &frame, &mut replies);
                        }
                    }
                    Event::Close { peer, .. } => self.disconnected(peer),
                    // The room closes a read-only y-websocket peer that wrote.
                    Event::Refused { peer } => {
                        self.relay.handle_leave(peer);
                        self.disconnected(peer);
                    }
                    Event::Acknowledge { .. } => {}
                }
            }
            self.recover();
            if replies.is_empty() {
                return;
            }
            for (peer, message) in replies {
                if self.peers.iter().any(|p| p.joined == Some(peer)) {
                    self.relay.handle_message(peer, message);
                }
            }
        }
    }

    /// An honest peer receives a relay frame, which must decode and apply.
    fn deliver(&mut self, peer: PeerId, frame: &Bytes, replies: &mut Vec<(PeerId, Message)>) {
        let Some(k) = self.peers.iter().position(|p| p.joined == Some(peer)) else { return };
        let messages = codec::decode_frame(frame).expect("the relay sends frames that decode");
        for message in messages {
            match message {
                Message::SyncStep1(sv) => {
                    let sv = StateVector::decode_v1(&sv).expect("the relay sends valid state vectors");
                    let diff = self.peers[k].doc.transact().encode_state_as_update_v1(&sv);
                    replies.push((peer, Message::SyncStep2(Bytes::from(diff))));
                }
                Message::Update(update) if self.peers[k].forged.contains(&update) => {
                    // The echo of what this peer forged, not the relay's state: a client that
                    // applies it holds content the relay may later fill with other content for
                    // the same clocks, and yrs 0.28 then reads freed memory (found by fuzzing).
                }
                Message::SyncStep2(update) | Message::Update(update) => {
                    let decoded = Update::decode_v1(&update).expect("the relay sends updates that decode");
                    let applied = peer_write(&self.peers[k].doc, |txn| txn.apply_update(decoded));
                    if !matches!(applied, Some(Ok(()))) {
                        // yrs on the peer's side failed on what the relay sent: start that peer over.
                        self.reset_peer(k);
                        return;
                    }
                }
                Message::Awareness(_) | Message::QueryAwareness | Message::PermissionDenied(_) => {}
            }
        }
    }

    fn disconnected(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.iter_mut().find(|p| p.joined == Some(peer)) {
            p.joined = None;
        }
    }

    fn reset_peer(&mut self, k: usize) {
        if let Some(id) = self.peers[k].joined.take() {
            self.relay.handle_leave(id);
        }
        self.peers[k].client += PEERS as u64;
        self.peers[k].doc = Doc::with_client_id(self.peers[k].client);
        self.peers[k].forged.clear();
    }

    /// What the room does when the relay stops serving.
    fn recover(&mut self) {
        match self.relay.health() {
            Health::Serving => {}
            Health::Poisoned => panic!("the relay was poisoned: a write broke the replica"),
            Health::Rebuild => {
                self.checked = None;
                self.commit();
                let mut fresh = self.rebuilt();
                let old = std::mem::replace(&mut self.relay, Relay::new(RelayLimits::default()));
                fresh.adopt(old);
                self.relay = fresh;
            }
        }
    }

    /// Every append handed out becomes durable.
    fn commit(&mut self) {
        let Some(&(upto, _)) = self.pending.last() else { return };
        self.store.log.append(&mut self.pending);
        self.relay.handle_durable(upto);
    }

    fn compact(&mut self) {
        self.commit();
        let Some(snapshot) = self.relay.snapshot() else { return };
        snapshot.verify().expect("a snapshot loads back as the replica it came from");
        self.store.log.retain(|(seq, _)| *seq > snapshot.upto);
        self.relay.handle_compacted(&snapshot);
        self.store.snapshot = Some((snapshot.upto, snapshot.state));
    }

    /// The process dies: appends not yet durable are lost (nobody was acknowledged for them), and
    /// every peer reconnects to a relay loaded from the store.
    fn crash(&mut self) {
        self.checked = None;
        self.pending.clear();
        self.relay = self.reload();
        for p in &mut self.peers {
            p.joined = None;
        }
    }

    /// The relay loaded again after a refused write touched the replica. A deferred update that was
    /// logged (and acknowledged) while its predecessors were missing, and that then failed to
    /// integrate completely, is the one thing such a reload may quarantine; the store drops it,
    /// as the room's quarantine does.
    fn rebuilt(&mut self) -> Relay {
        let snapshot = self.store.snapshot.as_ref().map(|(upto, state)| (*upto, state.as_ref()));
        let log = self.store.log.iter().map(|(seq, update)| (*seq, update.as_ref()));
        let loaded = Relay::load(RelayLimits::default(), snapshot, log);
        for quarantined in &loaded.quarantined {
            let StoredItem::Update { seq } = quarantined.item else {
                panic!("a rebuild quarantined a snapshot: {quarantined:?}")
            };
            self.store.log.retain(|(s, _)| *s != seq);
        }
        loaded.relay
    }

    fn reload(&self) -> Relay {
        let snapshot = self.store.snapshot.as_ref().map(|(upto, state)| (*upto, state.as_ref()));
        let log = self.store.log.iter().map(|(seq, update)| (*seq, update.as_ref()));
        let loaded = Relay::load(RelayLimits::default(), snapshot, log);
        assert!(loaded.quarantined.is_empty(), "what the relay logged reloads: {:?}", loaded.quarantined);
        loaded.relay
    }

    /// The rule every accepted update keeps: the full state and every diff encode, and load.
    fn check(&mut self) {
        if self.relay.health() != Health::Serving || self.checked == Some(self.relay.last_seq()) {
            return;
        }
        self.checked = Some(self.relay.last_seq());
        let svs = &self.svs;
        let encoded = self
            .relay
            .read(|doc| {
                let txn = doc.transact();
                let full = txn.encode_state_as_update_v1(&StateVector::default());
                let diffs: Vec<Vec<u8>> = svs.iter().map(|sv| txn.encode_state_as_update_v1(sv)).collect();
                (full, diffs)
            })
            .expect("the replica encodes its state and its diffs");
        // A stored snapshot must pass the same rules on reload that every update passed.
        let full = YjsReplica::decode(&encoded.0).expect("the full state is a canonical update");
        YjsReplica::new().apply(full, None).expect("the full state applies completely");
        for diff in &encoded.1 {
            YjsReplica::decode(diff).expect("a diff is a canonical update");
        }
    }

    fn finish(&mut self) {
        if self.relay.health() != Health::Serving {
            return;
        }
        for _ in 0..MAX_ROUNDS {
            self.commit();
            self.settle();
            if self.pending.is_empty() || self.relay.health() != Health::Serving {
                break;
            }
        }
        self.commit();
        if self.relay.health() != Health::Serving {
            return;
        }
        let live = self.relay.read(|doc| doc.transact().snapshot()).expect("the replica reads");
        let reloaded = self.reload().read(|doc| doc.transact().snapshot()).expect("the reload reads");
        assert!(live == reloaded, "the log rebuilds the live document");
    }
}

fn recorded_updates() -> Vec<&'static [u8]> {
    crate::recorded(include_bytes!("../recorded/yjs-updates.bin"))
}

/// A corrupted copy of an honest update: a byte flipped, truncated, or a section repeated.
pub(crate) fn corrupt(u: &mut Unstructured, original: &[u8]) -> Result<Bytes> {
    let mut bytes = original.to_vec();
    if bytes.is_empty() {
        return Ok(Bytes::new());
    }
    match u.int_in_range(0..=3u8)? {
        0 => {
            let at = u.choose_index(bytes.len())?;
            bytes[at] ^= u.int_in_range(1..=255u8)?;
        }
        1 => {
            let at = u.choose_index(bytes.len())?;
            bytes.truncate(at);
        }
        2 => {
            let from = u.choose_index(bytes.len())?;
            let to = u.int_in_range(from..=bytes.len())?;
            let section = bytes[from..to].to_vec();
            let at = u.int_in_range(0..=bytes.len())?;
            bytes.splice(at..at, section);
        }
        _ => {
            let at = u.choose_index(bytes.len())?;
            bytes[at] = u.arbitrary()?;
        }
    }
    Ok(Bytes::from(bytes))
}

/// Runs `edit` in a write transaction on an honest peer's own document, committed when `edit`
/// returns; `None` when yrs panicked. The transaction is then leaked, not dropped: yrs commits in
/// `Drop`, and a second panic in that commit would abort the process past any `catch_unwind`
/// (Weft's replica does the same; see `weft_sync_core::yjs::replica`). The peer's document stays
/// locked, so the caller must start the peer over.
fn peer_write<T>(doc: &Doc, edit: impl FnOnce(&mut yrs::TransactionMut<'_>) -> T) -> Option<T> {
    let mut txn = std::mem::ManuallyDrop::new(doc.transact_mut());
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| edit(&mut txn))).ok()?;
    drop(std::mem::ManuallyDrop::into_inner(txn));
    Some(out)
}
