//! Seeded simulation of the Automerge relay, several automerge-repo-like peers (an `Automerge`
//! document and a `sync::State` each, speaking the relay's CBOR frames) and a storage queue, all in
//! memory.
//!
//! Every step the seed picks one action: a peer edits, a frame crosses the network in either
//! direction, a peer sends a presence (ephemeral) message, storage commits part of its queue, a
//! peer disconnects or reconnects, the relay takes a snapshot, or the relay crashes and is rebuilt
//! from what storage had committed. Some peers start with the document, others empty (they ask
//! with `request` and may be told `doc-unavailable`). Invariants checked:
//! - at a crash, every head the relay ever showed a peer is in the durable log (acknowledged
//!   changes are never lost);
//! - ephemeral messages reach other peers at most once per `(sender, session, count)`, never their
//!   creator, and never touch the log;
//! - at the end, after everyone reconnects and the network drains, all documents (and a relay
//!   rebuilt from the log) have the same heads and every edit is there.
//!
//! A failing run prints its seed; rerun one with `WEFT_SIM_SEED=<seed> cargo test -p weft-sync-core
//! --test automerge_simulation`.

use std::collections::{BTreeSet, VecDeque};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ChangeHash, ObjType, ROOT, ReadDoc};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weft_sync_core::automerge::codec::{DocSync, Ephemeral, Message};
use weft_sync_core::automerge::{DocumentId, Relay, Route};
use weft_sync_core::relay::RelayLimits;
use weft_sync_core::{Access, DocumentRelay, Event, PeerId, Snapshot};

const RELAY_ID: &str = "weft-sim";

fn document() -> DocumentId {
    DocumentId::from_binary(b"simulated-doc-16")
}

enum StorageCmd {
    Append(u64, Bytes),
    Compact(Snapshot),
}

#[derive(Default)]
struct Store {
    snapshot: Option<(u64, Bytes)>,
    log: Vec<(u64, Bytes)>,
}

impl Store {
    fn load(&self) -> Relay {
        let log = self.log.iter().map(|(seq, bytes)| (*seq, bytes.as_ref()));
        let loaded =
            Relay::load(RelayLimits::default(), self.snapshot.as_ref().map(|(s, b)| (*s, b.as_ref())), log);
        assert!(loaded.quarantined.is_empty(), "stored state loads: {:?}", loaded.quarantined);
        loaded.relay
    }
}

struct SimPeer {
    name: String,
    doc: Automerge,
    sync: sync::State,
    connection: Option<PeerId>,
    to_relay: VecDeque<Bytes>,
    from_relay: VecDeque<Bytes>,
    edits: u32,
    /// Heads the relay has shown this peer since the last crash.
    shown: BTreeSet<ChangeHash>,
    ephemeral_sent: u64,
    /// `(sender, count)` of every ephemeral message received.
    ephemeral_seen: BTreeSet<(String, u64)>,
}

impl SimPeer {
    fn wrap(&self, data: Vec<u8>) -> DocSync {
        DocSync {
            sender_id: self.name.clone(),
            target_id: RELAY_ID.into(),
            document_id: document(),
            data: Bytes::from(data),
        }
    }

    /// Queues the peer's next sync message, if it has one: a `request` while it has nothing (as a
    /// repo does for a document it is looking for), `sync` otherwise.
    fn pump(&mut self) {
        if self.connection.is_none() {
            return;
        }
        if let Some(message) = self.doc.generate_sync_message(&mut self.sync) {
            let wrapped = self.wrap(message.encode());
            let message = if self.doc.get_heads().is_empty() {
                Message::Request(wrapped)
            } else {
                Message::Sync(wrapped)
            };
            self.to_relay.push_back(message.encode());
        }
    }
}

struct Sim {
    rng: StdRng,
    relay: Relay,
    queue: VecDeque<StorageCmd>,
    store: Store,
    peers: Vec<SimPeer>,
    next_connection: u64,
    tokens: BTreeSet<String>,
    seed: u64,
}

impl Sim {
    fn new(seed: u64, peers: usize) -> Self {
        // The document every "seeded" peer starts from: a text and a map created once, so that
        // concurrent peers never race to create them.
        let mut origin = Automerge::new().with_actor(ActorId::from(b"origin".as_slice()));
        let mut tx = origin.transaction();
        tx.put_object(ROOT, "text", ObjType::Text).unwrap();
        tx.put_object(ROOT, "tokens", ObjType::Map).unwrap();
        tx.commit();
        let saved = origin.save();
        let peers = (0..peers)
            .map(|i| {
                let actor = ActorId::from(format!("peer-{i}").as_bytes());
                // Peer 0 always starts with the document; the others half the time.
                let doc = if i == 0 || (seed >> i) & 1 == 1 {
                    Automerge::load(&saved).unwrap().with_actor(actor)
                } else {
                    Automerge::new().with_actor(actor)
                };
                SimPeer {
                    name: format!("peer-{i}"),
                    doc,
                    sync: sync::State::new(),
                    connection: None,
                    to_relay: VecDeque::new(),
                    from_relay: VecDeque::new(),
                    edits: 0,
                    shown: BTreeSet::new(),
                    ephemeral_sent: 0,
                    ephemeral_seen: BTreeSet::new(),
                }
            })
            .collect();
        Self {
            rng: StdRng::seed_from_u64(seed),
            relay: Relay::new(RelayLimits::default()),
            queue: VecDeque::new(),
            store: Store::default(),
            peers,
            next_connection: 0,
            tokens: BTreeSet::new(),
            seed,
        }
    }

    fn step(&mut self) {
        let i = self.rng.random_range(0..self.peers.len());
        match self.rng.random_range(0..100) {
            0..18 => self.edit(i),
            18..43 => self.deliver_to_relay(i),
            43..70 => self.deliver_to_peer(i),
            70..73 => self.presence(i),
            73..86 => self.commit(),
            86..90 => self.disconnect(i),
            90..96 => self.connect(i),
            96..99 => self.compact(),
            _ => self.crash(),
        }
    }

    /// Edits only once the peer has the document's objects (a peer that started empty waits).
    fn edit(&mut self, i: usize) {
        let seed = self.seed;
        let p = &mut self.peers[i];
        let (Some((_, text)), Some((_, tokens))) =
            (p.doc.get(ROOT, "text").unwrap(), p.doc.get(ROOT, "tokens").unwrap())
        else {
            return;
        };
        p.edits += 1;
        let token = format!("{}:{}", p.name, p.edits);
        let len = p.doc.length(&text);
        let at = self.rng.random_range(0..=len);
        let delete = len > 0 && self.rng.random_bool(0.2);
        let mut tx = p.doc.transaction();
        if delete {
            tx.splice_text(&text, at.min(len - 1), 1, "").unwrap();
        } else {
            tx.splice_text(&text, at, 0, &i.to_string()).unwrap();
        }
        tx.put(&tokens, token.as_str(), true).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        tx.commit();
        self.tokens.insert(token);
        p.pump();
    }

    fn presence(&mut self, i: usize) {
        let p = &mut self.peers[i];
        if p.connection.is_none() {
            return;
        }
        p.ephemeral_sent += 1;
        let message = Message::Ephemeral(Ephemeral {
            sender_id: p.name.clone(),
            target_id: RELAY_ID.into(),
            document_id: document(),
            session_id: format!("{}-session", p.name),
            count: p.ephemeral_sent,
            data: Bytes::from_static(b"\xa1\x66cursor\x01"),
        });
        p.to_relay.push_back(message.encode());
    }

    fn deliver_to_relay(&mut self, i: usize) {
        let Some(connection) = self.peers[i].connection else { return };
        let Some(frame) = self.peers[i].to_relay.pop_front() else { return };
        let message = Message::decode(&frame).expect("peers send valid frames");
        self.relay.handle_message(connection, message);
        self.drain_relay();
    }

    fn deliver_to_peer(&mut self, i: usize) {
        let seed = self.seed;
        let p = &mut self.peers[i];
        let Some(frame) = p.from_relay.pop_front() else { return };
        match Message::decode(&frame).expect("the relay sends valid frames") {
            Message::Sync(sync) => {
                let message = sync::Message::decode(&sync.data).expect("the relay sends valid sync messages");
                p.shown.extend(message.heads.iter().copied());
                p.doc.receive_sync_message(&mut p.sync, message).unwrap_or_else(|e| {
                    panic!("seed {seed}: peer {i} cannot apply the relay's message: {e}")
                });
                p.pump();
            }
            // The repo marks the document unavailable and waits; the relay sends it if it appears.
            Message::DocUnavailable(_) => {}
            Message::Ephemeral(ephemeral) => {
                assert_ne!(
                    ephemeral.sender_id, p.name,
                    "seed {seed}: peer {i} got its own ephemeral message"
                );
                assert_eq!(ephemeral.target_id, p.name, "seed {seed}: misaddressed ephemeral message");
                let fresh = p.ephemeral_seen.insert((ephemeral.sender_id.clone(), ephemeral.count));
                assert!(fresh, "seed {seed}: peer {i} got {ephemeral:?} twice");
            }
            other => panic!("seed {seed}: unexpected {other:?}"),
        }
    }

    fn drain_relay(&mut self) {
        while let Some(event) = self.relay.poll_event() {
            match event {
                Event::Send { peer, frame } => {
                    if let Some(p) = self.peers.iter_mut().find(|p| p.connection == Some(peer)) {
                        p.from_relay.push_back(frame);
                    }
                }
                Event::Append { seq, update, .. } => self.queue.push_back(StorageCmd::Append(seq, update)),
                other => panic!("seed {}: unexpected relay event {other:?}", self.seed),
            }
        }
    }

    fn commit(&mut self) {
        let n = self.rng.random_range(0..=self.queue.len());
        self.commit_first(n);
    }

    /// Storage commits the first `n` queued commands, in order.
    fn commit_first(&mut self, n: usize) {
        let mut durable = None;
        for cmd in self.queue.drain(..n) {
            match cmd {
                StorageCmd::Append(seq, update) => {
                    self.store.log.push((seq, update));
                    durable = Some(seq);
                }
                StorageCmd::Compact(snapshot) => {
                    self.store.log.retain(|(seq, _)| *seq > snapshot.upto);
                    self.store.snapshot = Some((snapshot.upto, snapshot.state.clone()));
                    self.relay.handle_compacted(&snapshot);
                }
            }
        }
        if let Some(seq) = durable {
            self.relay.handle_durable(seq);
            self.drain_relay();
        }
    }

    fn compact(&mut self) {
        self.queue.push_back(StorageCmd::Compact(self.relay.snapshot().expect("a snapshot")));
    }

    fn disconnect(&mut self, i: usize) {
        let Some(connection) = self.peers[i].connection.take() else { return };
        self.relay.handle_leave(connection);
        let p = &mut self.peers[i];
        p.to_relay.clear();
        p.from_relay.clear();
        // What automerge-repo does on reconnecting to the same server: keep only what the encoded
        // sync state keeps (the shared heads).
        p.sync = sync::State::decode(&p.sync.encode()).expect("sync states round-trip");
        self.drain_relay();
    }

    fn connect(&mut self, i: usize) {
        if self.peers[i].connection.is_some() {
            return;
        }
        self.next_connection += 1;
        let connection = PeerId(self.next_connection);
        let route =
            Route { local: RELAY_ID.into(), remote: self.peers[i].name.clone(), document: document() };
        self.relay.handle_join(connection, Access::ReadWrite, route);
        let p = &mut self.peers[i];
        p.connection = Some(connection);
        p.pump();
        self.drain_relay();
    }

    fn crash(&mut self) {
        let durable = self.store.load();
        for (i, p) in self.peers.iter_mut().enumerate() {
            for head in &p.shown {
                assert!(
                    durable.read(|doc| doc.get_change_meta_by_hash(head).is_some()).unwrap(),
                    "seed {}: peer {i} was shown head {head} but the log lacks it",
                    self.seed
                );
            }
            p.shown.clear();
            p.connection = None;
            p.to_relay.clear();
            p.from_relay.clear();
            // A restarted server has a new peer id: the repo starts a fresh sync state for it.
            p.sync = sync::State::new();
        }
        self.relay = durable;
        self.queue.clear();
    }

    fn settle(&mut self) {
        for i in 0..self.peers.len() {
            self.connect(i);
        }
        for _ in 0..10_000 {
            let busy = !self.queue.is_empty()
                || self.peers.iter().any(|p| !p.to_relay.is_empty() || !p.from_relay.is_empty());
            if !busy {
                return;
            }
            for i in 0..self.peers.len() {
                while !self.peers[i].to_relay.is_empty() {
                    self.deliver_to_relay(i);
                }
            }
            self.commit_all();
            for i in 0..self.peers.len() {
                while !self.peers[i].from_relay.is_empty() {
                    self.deliver_to_peer(i);
                }
            }
        }
        panic!("seed {}: network did not drain", self.seed);
    }

    fn commit_all(&mut self) {
        while !self.queue.is_empty() {
            self.commit_first(self.queue.len());
        }
    }

    fn check_converged(&self) {
        let heads = self.relay.read(|doc| doc.get_heads()).unwrap();
        let reloaded = self.store.load();
        assert_eq!(
            reloaded.read(|doc| doc.get_heads()).unwrap(),
            heads,
            "seed {}: the log does not rebuild the relay",
            self.seed
        );
        for (i, p) in self.peers.iter().enumerate() {
            assert_eq!(p.doc.get_heads(), heads, "seed {}: peer {i} diverged", self.seed);
        }
        let tokens: BTreeSet<String> = reloaded
            .read(|doc| match doc.get(ROOT, "tokens").unwrap() {
                Some((_, tokens)) => doc.keys(&tokens).collect(),
                None => BTreeSet::new(),
            })
            .unwrap();
        assert_eq!(tokens, self.tokens, "seed {}: an edit was lost", self.seed);
    }
}

fn run(seed: u64) {
    let mut sim = Sim::new(seed, 2 + (seed % 3) as usize);
    for _ in 0..300 {
        sim.step();
    }
    sim.settle();
    sim.check_converged();
}

#[test]
fn peers_converge_and_acknowledged_changes_survive_crashes() {
    if let Ok(seed) = std::env::var("WEFT_SIM_SEED") {
        run(seed.parse().expect("WEFT_SIM_SEED is a number"));
        return;
    }
    let seeds: u64 = std::env::var("WEFT_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    for seed in 0..seeds {
        run(seed);
    }
}

#[test]
fn relay_rebuilt_from_a_snapshot_and_tail_matches_the_original() {
    let mut sim = Sim::new(11, 3);
    for _ in 0..500 {
        sim.step();
    }
    sim.settle();
    sim.compact();
    for i in 0..sim.peers.len() {
        sim.edit(i);
    }
    sim.settle();
    assert!(sim.store.snapshot.is_some());
    assert!(!sim.store.log.is_empty(), "edits after the snapshot are in the log tail");
    sim.check_converged();
}
