//! The Automerge relay target: three automerge-repo peers, honest (real `automerge` documents with
//! sync states that edit and sync) and hostile (raw, replayed and corrupted sync messages,
//! ephemeral messages), drive one [`Relay`] through joins, leaves, durability reports,
//! compaction, crashes and rebuilds, with a storage shell that behaves like the room's; the relay
//! also makes REST writes of its own (`Relay::write` with the domain's changes).
//!
//! Asserted, after every step: the relay is never poisoned; its snapshot verifies (saves, loads
//! back strictly with the same heads); a reload from what it logged never quarantines anything and
//! has the live document's heads.

use arbitrary::{Result, Unstructured};
use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT, ReadDoc};
use bytes::Bytes;
use weft_sync_core::automerge::codec::{DocSync, Ephemeral, Message};
use weft_sync_core::automerge::{DocumentId, Relay, Route};
use weft_sync_core::{Access, DocumentRelay, Event, Health, PeerId, RelayLimits};

use crate::yjs_relay::corrupt;
use crate::{ascii, quiet_contained_panics};

const PEERS: usize = 3;
const MAX_STEPS: usize = 48;
const MAX_ROUNDS: usize = 16;
const RELAY_ID: &str = "weft-fuzz";

/// Runs one input. See the module documentation.
pub fn run(data: &[u8]) {
    quiet_contained_panics();
    let mut u = Unstructured::new(data);
    let mut sim = Sim::new();
    for _ in 0..MAX_STEPS {
        if u.is_empty() || sim.step(&mut u).is_err() {
            break;
        }
    }
    sim.finish();
}

fn document() -> DocumentId {
    DocumentId::from_binary(&[7; 16])
}

struct Peer {
    doc: Automerge,
    sync: sync::State,
    name: String,
    joined: Option<PeerId>,
    generation: u8,
}

impl Peer {
    fn new(i: usize, generation: u8) -> Self {
        let actor = ActorId::from([i as u8 + 1, generation].as_slice());
        Self {
            doc: Automerge::new().with_actor(actor),
            sync: sync::State::new(),
            name: format!("peer-{i}"),
            joined: None,
            generation,
        }
    }

    fn wrap(&self, data: Bytes) -> DocSync {
        DocSync { sender_id: self.name.clone(), target_id: RELAY_ID.into(), document_id: document(), data }
    }
}

#[derive(Default)]
struct Store {
    snapshot: Option<(u64, Bytes)>,
    log: Vec<(u64, Bytes)>,
}

struct Sim {
    relay: Relay,
    store: Store,
    pending: Vec<(u64, Bytes)>,
    peers: Vec<Peer>,
    next_peer: u64,
    /// The relay's last sequence number when the document was last checked; the (costly) check
    /// runs again only once the document changed.
    checked: Option<u64>,
    honest: Vec<Bytes>,
}

impl Sim {
    fn new() -> Self {
        Self {
            relay: Relay::new(RelayLimits::default()),
            store: Store::default(),
            pending: Vec::new(),
            peers: (0..PEERS).map(|i| Peer::new(i, 0)).collect(),
            next_peer: 1,
            checked: None,
            honest: Vec::new(),
        }
    }

    fn step(&mut self, u: &mut Unstructured) -> Result<()> {
        let k = u.choose_index(PEERS)?;
        match u.int_in_range(0..=12u8)? {
            0 => self.join(k, u.ratio(1, 8)?),
            12 => {
                let changes = crate::rest_write(u)?;
                let _ = self.relay.write(|tx| weft_sync_core::domain::write::apply_automerge(tx, &changes));
            }
            1 => self.leave(k),
            2 | 3 => {
                self.edit(k, u)?;
                self.sync(k, false);
            }
            4 => {
                let data = Bytes::from(u.arbitrary::<Vec<u8>>()?);
                let message = self.peers[k].wrap(data);
                self.send(k, if u.arbitrary()? { Message::Sync(message) } else { Message::Request(message) });
            }
            5 if !self.honest.is_empty() => {
                let original = u.choose(&self.honest)?.clone();
                let corrupted = corrupt(u, &original)?;
                let message = self.peers[k].wrap(corrupted);
                self.send(k, Message::Sync(message));
            }
            6 if !self.honest.is_empty() => {
                let replayed = u.choose(&self.honest)?.clone();
                let message = self.peers[k].wrap(replayed);
                self.send(k, Message::Sync(message));
            }
            6 | 11 => {
                // A sync message a real automerge-repo client sent, recorded.
                let messages = crate::recorded(include_bytes!("../recorded/automerge-sync.bin"));
                let data = Bytes::from_static(u.choose(&messages)?);
                self.honest.push(data.clone());
                let message = self.peers[k].wrap(data);
                self.send(k, Message::Sync(message));
            }
            7 => self.commit(),
            8 => self.compact(),
            9 => self.crash(),
            _ => {
                let ephemeral = Ephemeral {
                    sender_id: self.peers[k].name.clone(),
                    target_id: RELAY_ID.into(),
                    document_id: document(),
                    session_id: u.arbitrary()?,
                    count: u.arbitrary()?,
                    data: Bytes::from(u.arbitrary::<Vec<u8>>()?),
                };
                self.send(k, Message::Ephemeral(ephemeral));
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
        let peer = &mut self.peers[k];
        peer.joined = Some(id);
        // A reconnecting repo starts a fresh sync state for the relay.
        peer.sync = sync::State::new();
        let route = Route { local: RELAY_ID.into(), remote: peer.name.clone(), document: document() };
        let access = if read_only { Access::ReadOnly } else { Access::ReadWrite };
        self.relay.handle_join(id, access, route);
        self.sync(k, true);
    }

    fn leave(&mut self, k: usize) {
        if let Some(id) = self.peers[k].joined.take() {
            self.relay.handle_leave(id);
        }
    }

    fn edit(&mut self, k: usize, u: &mut Unstructured) -> Result<()> {
        let doc = &mut self.peers[k].doc;
        let mut tx = doc.transaction();
        match u.int_in_range(0..=2u8)? {
            0 => {
                let key = format!("k{}", u.int_in_range(0..=3u8)?);
                let _ = tx.put(ROOT, key, u.arbitrary::<i64>()?);
            }
            1 => {
                let text = match tx.get(ROOT, "t") {
                    Ok(Some((_, id))) => id,
                    _ => match tx.put_object(ROOT, "t", ObjType::Text) {
                        Ok(id) => id,
                        Err(_) => return Ok(()),
                    },
                };
                let len = tx.length(&text);
                let at = u.int_in_range(0..=len)?;
                let s = ascii(u, 8)?;
                let _ = tx.splice_text(&text, at, 0, if s.is_empty() { "x" } else { &s });
            }
            _ => {
                let _ = tx.delete(ROOT, format!("k{}", u.int_in_range(0..=3u8)?));
            }
        }
        tx.commit();
        Ok(())
    }

    /// Peer `k` sends its next sync message (as a request when it has nothing yet), if it has one.
    fn sync(&mut self, k: usize, request: bool) {
        let peer = &mut self.peers[k];
        let Some(message) = peer.doc.generate_sync_message(&mut peer.sync) else { return };
        let data = Bytes::from(message.encode());
        self.honest.push(data.clone());
        let wrapped = peer.wrap(data);
        let empty = peer.doc.get_heads().is_empty();
        self.send(k, if request && empty { Message::Request(wrapped) } else { Message::Sync(wrapped) });
    }

    fn send(&mut self, k: usize, message: Message) {
        if let Some(id) = self.peers[k].joined {
            self.relay.handle_message(id, message);
        }
    }

    fn settle(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let mut answer = Vec::new();
            while let Some(event) = self.relay.poll_event() {
                match event {
                    Event::Append { seq, update, .. } => self.pending.push((seq, update)),
                    Event::Send { peer, frame } => {
                        if let Some(k) = self.deliver(peer, &frame) {
                            answer.push(k);
                        }
                    }
                    Event::Close { peer, .. } => self.disconnected(peer),
                    Event::Broadcast { .. } | Event::Acknowledge { .. } | Event::Refused { .. } => {}
                }
            }
            self.recover();
            if answer.is_empty() {
                return;
            }
            for k in answer {
                self.sync(k, false);
            }
        }
    }

    /// An honest peer receives a relay frame, which must decode; returns the peer if it synced.
    fn deliver(&mut self, peer: PeerId, frame: &Bytes) -> Option<usize> {
        let k = self.peers.iter().position(|p| p.joined == Some(peer))?;
        match Message::decode(frame).expect("the relay sends messages that decode") {
            Message::Sync(sync) => {
                let message =
                    sync::Message::decode(&sync.data).expect("the relay sends sync messages that decode");
                let p = &mut self.peers[k];
                let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    p.doc.receive_sync_message(&mut p.sync, message)
                }));
                if !matches!(applied, Ok(Ok(()))) {
                    self.reset_peer(k);
                    return None;
                }
                Some(k)
            }
            _ => None,
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
        let generation = self.peers[k].generation.wrapping_add(1);
        self.peers[k] = Peer::new(k, generation);
    }

    fn recover(&mut self) {
        match self.relay.health() {
            Health::Serving => {}
            Health::Poisoned => panic!("the relay was poisoned: a write broke the document"),
            Health::Rebuild => {
                self.checked = None;
                self.commit();
                let mut fresh = self.reload();
                let old = std::mem::replace(&mut self.relay, Relay::new(RelayLimits::default()));
                fresh.adopt(old);
                self.relay = fresh;
            }
        }
    }

    fn commit(&mut self) {
        let Some(&(upto, _)) = self.pending.last() else { return };
        self.store.log.append(&mut self.pending);
        self.relay.handle_durable(upto);
    }

    fn compact(&mut self) {
        self.commit();
        let Some(snapshot) = self.relay.snapshot() else { return };
        snapshot.verify().expect("a snapshot loads back as the document it came from");
        self.store.log.retain(|(seq, _)| *seq > snapshot.upto);
        self.relay.handle_compacted(&snapshot);
        self.store.snapshot = Some((snapshot.upto, snapshot.state));
    }

    fn crash(&mut self) {
        self.checked = None;
        self.pending.clear();
        self.relay = self.reload();
        for p in &mut self.peers {
            p.joined = None;
        }
    }

    fn reload(&self) -> Relay {
        let snapshot = self.store.snapshot.as_ref().map(|(upto, state)| (*upto, state.as_ref()));
        let log = self.store.log.iter().map(|(seq, entry)| (*seq, entry.as_ref()));
        let loaded = Relay::load(RelayLimits::default(), snapshot, log);
        assert!(loaded.quarantined.is_empty(), "what the relay logged reloads: {:?}", loaded.quarantined);
        loaded.relay
    }

    fn check(&mut self) {
        if self.relay.health() != Health::Serving || self.checked == Some(self.relay.last_seq()) {
            return;
        }
        self.checked = Some(self.relay.last_seq());
        let snapshot = self.relay.snapshot().expect("the document saves");
        snapshot.verify().expect("the saved document loads back with the same heads");
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
        let live = self.relay.read(|doc| doc.get_heads()).expect("the document reads");
        let reloaded = self.reload().read(|doc| doc.get_heads()).expect("the reload reads");
        assert_eq!(live, reloaded, "the log rebuilds the live document");
    }
}
