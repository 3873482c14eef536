//! Seeded simulation of one relay, several clients and a storage queue, all in memory.
//!
//! Every step the seed picks one action: a client edits, a frame crosses the network in either
//! direction, storage commits part of its queue, a client disconnects or reconnects, the relay takes a
//! snapshot, or the relay crashes and is rebuilt from what storage had committed. Invariants checked:
//! - at a crash, every client that believes it is fully acknowledged holds nothing the log lacks;
//! - at the end, after everyone reconnects and the network drains, all replicas (and a relay rebuilt
//!   from the log) are identical, and no client's edit was lost.
//!
//! A failing run prints its seed; rerun one with `WEFT_SIM_SEED=<seed> cargo test -p weft-sync-core
//! --test simulation`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weft_sync_core::PeerId;
use weft_sync_core::yjs::client::REMOTE_ORIGIN;
use weft_sync_core::yjs::codec::decode_frame;
use weft_sync_core::yjs::{Relay, RelayLimits, YjsClient};
use weft_sync_core::{Access, DocumentRelay, Event, Snapshot};
use yrs::updates::decoder::Decode;
use yrs::{Array, Doc, GetString, Origin, ReadTxn, StateVector, Text, Transact, TransactionMut, Update};

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

struct SimClient {
    client: YjsClient,
    peer: Option<PeerId>,
    to_relay: VecDeque<Bytes>,
    from_relay: VecDeque<Bytes>,
    local: Arc<Mutex<Vec<Bytes>>>,
    edits: u32,
}

struct Sim {
    rng: StdRng,
    relay: Relay,
    queue: VecDeque<StorageCmd>,
    store: Store,
    clients: Vec<SimClient>,
    next_peer: u64,
    tokens: BTreeSet<String>,
    seed: u64,
}

impl Sim {
    fn new(seed: u64, clients: usize) -> Self {
        let clients = (0..clients)
            .map(|i| {
                let doc = Doc::with_client_id(100 + i as u64);
                let local = Arc::new(Mutex::new(Vec::new()));
                let sink = local.clone();
                let remote = Origin::from(REMOTE_ORIGIN);
                doc.observe_update_v1("sim", move |txn: &TransactionMut, event| {
                    if txn.origin() != Some(&remote) {
                        sink.lock().unwrap().push(Bytes::from(event.update.clone()));
                    }
                })
                .expect("no transaction is open");
                SimClient {
                    client: YjsClient::new(doc),
                    peer: None,
                    to_relay: VecDeque::new(),
                    from_relay: VecDeque::new(),
                    local,
                    edits: 0,
                }
            })
            .collect();
        Self {
            rng: StdRng::seed_from_u64(seed),
            relay: Relay::new(RelayLimits::default()),
            queue: VecDeque::new(),
            store: Store::default(),
            clients,
            next_peer: 0,
            tokens: BTreeSet::new(),
            seed,
        }
    }

    fn step(&mut self) {
        let i = self.rng.random_range(0..self.clients.len());
        match self.rng.random_range(0..100) {
            0..20 => self.edit(i),
            20..45 => self.deliver_to_relay(i),
            45..75 => self.deliver_to_client(i),
            75..88 => self.commit(),
            88..92 => self.disconnect(i),
            92..97 => self.connect(i),
            97..99 => self.compact(),
            _ => self.crash(),
        }
    }

    fn edit(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.edits += 1;
        let token = format!("c{i}:{}", c.edits);
        {
            let doc = c.client.doc();
            let text = doc.get_or_insert_text("t");
            let array = doc.get_or_insert_array("tokens");
            let mut txn = doc.transact_mut();
            let len = text.len(&txn);
            let at = self.rng.random_range(0..=len);
            if len > 0 && self.rng.random_bool(0.2) {
                text.remove_range(&mut txn, at.min(len - 1), 1);
            } else {
                text.insert(&mut txn, at, &format!("{i}"));
            }
            array.push_back(&mut txn, token.as_str());
        }
        self.tokens.insert(token);
        let updates: Vec<Bytes> = c.local.lock().unwrap().drain(..).collect();
        for update in updates {
            c.client.handle_local_update(update);
        }
        Self::pump_client(c);
    }

    fn pump_client(c: &mut SimClient) {
        while let Some(frame) = c.client.poll_transmit() {
            if c.peer.is_some() {
                c.to_relay.push_back(frame);
            }
        }
    }

    fn deliver_to_relay(&mut self, i: usize) {
        let Some(peer) = self.clients[i].peer else { return };
        let Some(frame) = self.clients[i].to_relay.pop_front() else {
            return;
        };
        for message in decode_frame(&frame).expect("clients send valid frames") {
            self.relay.handle_message(peer, message);
        }
        self.drain_relay();
    }

    fn deliver_to_client(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let Some(frame) = c.from_relay.pop_front() else {
            return;
        };
        c.client.handle_frame(&frame).expect("relay sends valid frames");
        Self::pump_client(c);
    }

    fn drain_relay(&mut self) {
        while let Some(event) = self.relay.poll_event() {
            match event {
                Event::Send { peer, frame } => {
                    if let Some(c) = self.clients.iter_mut().find(|c| c.peer == Some(peer)) {
                        c.from_relay.push_back(frame);
                    }
                }
                Event::Broadcast { frame, except } => {
                    let recipients =
                        self.clients.iter_mut().filter(|c| c.peer.is_some_and(|p| !except.contains(&p)));
                    for c in recipients {
                        c.from_relay.push_back(frame.clone());
                    }
                }
                Event::Append { seq, update, .. } => self.queue.push_back(StorageCmd::Append(seq, update)),
                // Clients learn of durability from the echo; acknowledgements are for other dialects.
                Event::Acknowledge { .. } => {}
                Event::Refused { peer } => panic!("seed {}: {peer} has write access", self.seed),
                Event::Close { peer, code, detail } => {
                    panic!("seed {}: relay closed {peer} with {code:?}: {detail}", self.seed)
                }
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
        let Some(peer) = self.clients[i].peer.take() else {
            return;
        };
        self.relay.handle_leave(peer);
        let c = &mut self.clients[i];
        c.client.handle_disconnected();
        c.to_relay.clear();
        c.from_relay.clear();
        self.drain_relay();
    }

    fn connect(&mut self, i: usize) {
        if self.clients[i].peer.is_some() {
            return;
        }
        self.next_peer += 1;
        let peer = PeerId(self.next_peer);
        let c = &mut self.clients[i];
        c.peer = Some(peer);
        c.client.handle_connected().unwrap();
        Self::pump_client(c);
        self.relay.handle_join(peer, Access::ReadWrite);
        self.drain_relay();
    }

    fn crash(&mut self) {
        let durable = self.store.load();
        let durable_sv = durable.read(|doc| doc.transact().state_vector()).unwrap();
        for (i, c) in self.clients.iter().enumerate() {
            if c.client.is_acknowledged() {
                let sv = c.client.doc().transact().state_vector();
                for (client, clock) in sv.iter() {
                    assert!(
                        durable_sv.get(client) >= *clock,
                        "seed {}: client {i} was acknowledged but the log lacks {client}@{clock}",
                        self.seed
                    );
                }
            }
        }
        self.relay = durable;
        self.queue.clear();
        for i in 0..self.clients.len() {
            self.clients[i].peer = None;
            let c = &mut self.clients[i];
            c.client.handle_disconnected();
            c.to_relay.clear();
            c.from_relay.clear();
        }
    }

    fn settle(&mut self) {
        for i in 0..self.clients.len() {
            self.connect(i);
        }
        for _ in 0..10_000 {
            let busy = !self.queue.is_empty()
                || self.clients.iter().any(|c| !c.to_relay.is_empty() || !c.from_relay.is_empty());
            if !busy {
                return;
            }
            for i in 0..self.clients.len() {
                while !self.clients[i].to_relay.is_empty() {
                    self.deliver_to_relay(i);
                }
            }
            self.commit_all();
            for i in 0..self.clients.len() {
                while !self.clients[i].from_relay.is_empty() {
                    self.deliver_to_client(i);
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
        let expected = self.relay.read(state_of).unwrap();
        let reloaded = self.store.load();
        assert_eq!(
            reloaded.read(state_of).unwrap(),
            expected,
            "seed {}: log does not rebuild the relay",
            self.seed
        );
        for (i, c) in self.clients.iter().enumerate() {
            assert_eq!(state_of(c.client.doc()), expected, "seed {}: client {i} diverged", self.seed);
            assert!(
                c.client.is_acknowledged(),
                "seed {}: client {i} not acknowledged after settling",
                self.seed
            );
        }
        let tokens: BTreeSet<String> = reloaded
            .read(|doc| {
                let array = doc.get_or_insert_array("tokens");
                let txn = doc.transact();
                array.iter(&txn).map(|v| v.to_string(&txn)).collect()
            })
            .unwrap();
        assert_eq!(tokens, self.tokens, "seed {}: an edit was lost", self.seed);
    }
}

fn state_of(doc: &Doc) -> (String, usize) {
    let text = doc.get_or_insert_text("t");
    let array = doc.get_or_insert_array("tokens");
    let txn = doc.transact();
    (text.get_string(&txn), array.len(&txn) as usize)
}

fn run(seed: u64) {
    let mut sim = Sim::new(seed, 2 + (seed % 4) as usize);
    for _ in 0..400 {
        sim.step();
    }
    sim.settle();
    sim.check_converged();
}

#[test]
fn peers_converge_and_acknowledged_edits_survive_crashes() {
    if let Ok(seed) = std::env::var("WEFT_SIM_SEED") {
        run(seed.parse().expect("WEFT_SIM_SEED is a number"));
        return;
    }
    let seeds: u64 = std::env::var("WEFT_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    for seed in 0..seeds {
        run(seed);
    }
}

#[test]
fn relay_rebuilt_from_a_snapshot_and_tail_matches_the_original() {
    let mut sim = Sim::new(7, 3);
    for _ in 0..600 {
        sim.step();
    }
    sim.settle();
    sim.compact();
    sim.commit_all();
    assert!(sim.store.snapshot.is_some());
    let update = Update::decode_v1(&sim.store.snapshot.as_ref().unwrap().1).unwrap();
    assert!(update.state_vector() != StateVector::default() || sim.tokens.is_empty());
    sim.check_converged();
}
