//! Behaviour of the Automerge relay state machine, one rule per test, driven directly through its
//! `handle_*` inputs and `poll_event` outputs, with `automerge` documents and sync states playing the
//! automerge-repo peers.

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ChangeHash, ROOT, ReadDoc};
use bytes::Bytes;
use weft_sync_core::automerge::codec::{DocSync, Ephemeral, Message};
use weft_sync_core::automerge::{DocumentId, Relay, Route};
use weft_sync_core::relay::RelayLimits;
use weft_sync_core::{Access, CloseCode, DocumentRelay, Event, Health, PeerId, StoredItem};

const A: PeerId = PeerId(1);
const B: PeerId = PeerId(2);
const RELAY_ID: &str = "weft-test";

fn document() -> DocumentId {
    DocumentId::from_binary(&[3; 16])
}

fn route(peer: PeerId) -> Route {
    Route { local: RELAY_ID.into(), remote: client_id(peer), document: document() }
}

fn client_id(peer: PeerId) -> String {
    format!("client-{}", peer.0)
}

fn events(relay: &mut Relay) -> Vec<Event> {
    std::iter::from_fn(|| relay.poll_event()).collect()
}

/// An automerge-repo peer reduced to what the relay sees: a document and a sync state.
struct Client {
    peer: PeerId,
    doc: Automerge,
    state: sync::State,
}

impl Client {
    fn new(peer: PeerId) -> Self {
        let doc = Automerge::new().with_actor(ActorId::from(peer.0.to_be_bytes().as_slice()));
        Self { peer, doc, state: sync::State::new() }
    }

    fn put(&mut self, key: &str, value: &str) -> ChangeHash {
        let mut tx = self.doc.transaction();
        tx.put(ROOT, key, value).unwrap();
        tx.commit().0.unwrap()
    }

    fn wrap(&self, data: Vec<u8>) -> DocSync {
        DocSync {
            sender_id: client_id(self.peer),
            target_id: RELAY_ID.into(),
            document_id: document(),
            data: Bytes::from(data),
        }
    }

    /// The client's next sync message, if it has one.
    fn sync(&mut self) -> Option<Message> {
        let message = self.doc.generate_sync_message(&mut self.state)?;
        Some(Message::Sync(self.wrap(message.encode())))
    }

    fn request(&mut self) -> Message {
        let message = self.doc.generate_sync_message(&mut self.state).unwrap();
        Message::Request(self.wrap(message.encode()))
    }

    /// Applies a frame the relay sent; returns the heads of the sync message it carried, if any.
    fn receive(&mut self, frame: &Bytes) -> Option<Vec<ChangeHash>> {
        match Message::decode(frame).unwrap() {
            Message::Sync(sync) => {
                let message = sync::Message::decode(&sync.data).unwrap();
                let heads = message.heads.clone();
                self.doc.receive_sync_message(&mut self.state, message).unwrap();
                Some(heads)
            }
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<String> {
        let (value, _) = self.doc.get(ROOT, key).unwrap()?;
        value.into_scalar().ok()?.into_string().ok()
    }
}

/// Plays sync messages between the relay and `clients` until nobody has anything to say, reporting
/// every append durable as soon as it appears. Returns the log entries appended.
fn sync_all(relay: &mut Relay, clients: &mut [&mut Client]) -> Vec<(u64, Bytes)> {
    let mut log = Vec::new();
    for _ in 0..100 {
        let mut quiet = true;
        for client in clients.iter_mut() {
            if let Some(message) = client.sync() {
                quiet = false;
                relay.handle_message(client.peer, message);
            }
        }
        for event in events(relay) {
            quiet = false;
            match event {
                Event::Append { seq, update, .. } => {
                    relay.handle_durable(seq);
                    log.push((seq, update));
                }
                Event::Send { peer, frame } => {
                    if let Some(client) = clients.iter_mut().find(|c| c.peer == peer) {
                        client.receive(&frame);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Releases held replies generated after the last append.
        for event in events(relay) {
            quiet = false;
            if let Event::Send { peer, frame } = event
                && let Some(client) = clients.iter_mut().find(|c| c.peer == peer)
            {
                client.receive(&frame);
            }
        }
        if quiet {
            return log;
        }
    }
    panic!("sync did not settle");
}

fn sends_to(events: &[Event], to: PeerId) -> Vec<Bytes> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Send { peer, frame } if *peer == to => Some(frame.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn changes_are_appended_before_the_reply_that_acknowledges_them() {
    let mut relay = Relay::new(RelayLimits::default());
    relay.handle_join(A, Access::ReadWrite, route(A));
    let mut a = Client::new(A);
    // The first exchange only compares heads; changes travel once each side knows the other's.
    sync_all(&mut relay, &mut [&mut a]);
    let hash = a.put("k", "v");
    relay.handle_message(A, a.sync().unwrap());
    let first = events(&mut relay);
    let Some(Event::Append { seq: 1, update, peer: A }) = first.first() else { panic!("{first:?}") };
    assert!(!update.is_empty());
    assert!(sends_to(&first, A).is_empty(), "a reply before the change is durable: {first:?}");

    relay.handle_durable(1);
    let released = events(&mut relay);
    let replies = sends_to(&released, A);
    assert_eq!(replies.len(), 1, "{released:?}");
    let heads = a.receive(&replies[0]).expect("a sync reply");
    assert_eq!(heads, vec![hash], "the reply's heads acknowledge the change");
    assert_eq!(relay.durable_seq(), 1);
}

#[test]
fn other_peers_receive_a_change_only_once_it_is_durable() {
    let mut relay = Relay::new(RelayLimits::default());
    let (mut a, mut b) = (Client::new(A), Client::new(B));
    relay.handle_join(A, Access::ReadWrite, route(A));
    relay.handle_join(B, Access::ReadWrite, route(B));
    a.put("base", "1");
    sync_all(&mut relay, &mut [&mut a, &mut b]);
    assert_eq!(b.get("base").as_deref(), Some("1"));

    a.put("k", "v");
    relay.handle_message(A, a.sync().unwrap());
    let pending = events(&mut relay);
    let Some(Event::Append { seq, .. }) = pending.first() else { panic!("{pending:?}") };
    assert!(sends_to(&pending, B).is_empty(), "B got the change before it was durable");
    relay.handle_durable(*seq);
    for frame in sends_to(&events(&mut relay), B) {
        b.receive(&frame);
    }
    assert_eq!(b.get("k").as_deref(), Some("v"));
}

#[test]
fn a_request_for_an_empty_document_is_answered_unavailable_and_stores_nothing() {
    let mut relay = Relay::new(RelayLimits::default());
    relay.handle_join(A, Access::ReadWrite, route(A));
    let mut a = Client::new(A);
    relay.handle_message(A, a.request());
    let answer = events(&mut relay);
    assert_eq!(answer.len(), 1, "{answer:?}");
    let Event::Send { peer: A, frame } = &answer[0] else { panic!("{answer:?}") };
    let Message::DocUnavailable(unavailable) = Message::decode(frame).unwrap() else { panic!("{frame:?}") };
    assert_eq!(
        (unavailable.sender_id.as_str(), unavailable.target_id, unavailable.document_id),
        (RELAY_ID, client_id(A), document())
    );
    assert_eq!(relay.last_seq(), 0);
}

#[test]
fn a_request_for_a_stored_document_is_answered_with_the_document() {
    let mut writer = Client::new(B);
    writer.put("k", "stored");
    let entry = writer.doc.save();
    let mut relay = Relay::load(RelayLimits::default(), None, [(1, entry.as_slice())]).relay;
    relay.handle_join(A, Access::ReadWrite, route(A));
    let mut a = Client::new(A);
    relay.handle_message(A, a.request());
    let replies = sends_to(&events(&mut relay), A);
    assert_eq!(replies.len(), 1);
    a.receive(&replies[0]).expect("a sync message, not doc-unavailable");
    sync_all(&mut relay, &mut [&mut a]);
    assert_eq!(a.get("k").as_deref(), Some("stored"));
}

#[test]
fn a_peer_told_unavailable_gets_the_document_when_another_peer_brings_it() {
    let mut relay = Relay::new(RelayLimits::default());
    let (mut a, mut b) = (Client::new(A), Client::new(B));
    relay.handle_join(A, Access::ReadWrite, route(A));
    relay.handle_join(B, Access::ReadWrite, route(B));
    relay.handle_message(A, a.request());
    events(&mut relay);
    b.put("k", "from b");
    sync_all(&mut relay, &mut [&mut a, &mut b]);
    assert_eq!(a.get("k").as_deref(), Some("from b"));
}

#[test]
fn a_sync_message_that_does_not_decode_closes_the_peer_with_an_error() {
    let mut relay = Relay::new(RelayLimits::default());
    relay.handle_join(A, Access::ReadWrite, route(A));
    relay.handle_join(B, Access::ReadWrite, route(B));
    let a = Client::new(A);
    relay.handle_message(A, Message::Sync(a.wrap(vec![0x42, 0xff, 0xff])));
    let out = events(&mut relay);
    let [Event::Send { peer: A, frame }, Event::Close { peer: A, code: CloseCode::InvalidUpdate, .. }] =
        out.as_slice()
    else {
        panic!("{out:?}")
    };
    let Message::Error(error) = Message::decode(frame).unwrap() else { panic!("an error message") };
    assert!(error.message.contains("decode sync message"), "{}", error.message);
    assert!(!relay.is_poisoned() && relay.peer_count() == 1, "only the sender is affected");
}

/// A sync message whose only `have` bloom filter asks for `probes` probes per hash.
fn sync_with_bloom_probes(probes: u32) -> Vec<u8> {
    let mut bloom = vec![1, 10];
    let mut n = probes;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            bloom.push(byte);
            break;
        }
        bloom.push(byte | 0x80);
    }
    bloom.extend([0, 0]);
    // type, heads [], need [], have [{ last_sync: [], bloom }], changes []
    let mut message = vec![0x42, 0, 0, 1, 0, bloom.len() as u8];
    message.extend(bloom);
    message.push(0);
    message
}

#[test]
fn a_bloom_filter_asking_for_billions_of_probes_is_refused_before_it_costs_anything() {
    assert!(sync::Message::decode(&sync_with_bloom_probes(u32::MAX)).is_ok(), "automerge accepts it");
    let mut relay = Relay::new(RelayLimits::default());
    relay.handle_join(A, Access::ReadWrite, route(A));
    let a = Client::new(A);
    relay.handle_message(A, Message::Sync(a.wrap(sync_with_bloom_probes(u32::MAX))));
    let out = events(&mut relay);
    assert!(matches!(out.last(), Some(Event::Close { code: CloseCode::InvalidUpdate, .. })), "{out:?}");
}

#[test]
fn a_change_that_fails_to_apply_refuses_its_sender_and_the_rebuilt_relay_keeps_the_others() {
    let mut relay = Relay::new(RelayLimits::default());
    let (mut a, mut b) = (Client::new(A), Client::new(B));
    relay.handle_join(A, Access::ReadWrite, route(A));
    relay.handle_join(B, Access::ReadWrite, route(B));
    a.put("k", "1");
    let log = sync_all(&mut relay, &mut [&mut a, &mut b]);
    let appended = relay.last_seq();

    // Another document with A's actor makes a different change with the same sequence number: a
    // change that decodes but that no document holding A's first change can apply.
    let mut forger = Client::new(A);
    forger.put("k", "forged");
    let forged = forger.doc.get_changes(&[]).pop().unwrap();
    let message = sync::Message {
        heads: forger.doc.get_heads(),
        need: vec![],
        have: vec![],
        changes: vec![forged.raw_bytes().to_vec()].into(),
        flags: None,
        version: sync::MessageVersion::V1,
    };
    relay.handle_message(B, Message::Sync(b.wrap(message.encode())));
    let out = events(&mut relay);
    assert_eq!(relay.health(), Health::Rebuild, "{out:?}");
    assert_eq!(relay.last_seq(), appended, "the failed change was not logged");
    assert!(out.iter().all(|e| !matches!(e, Event::Append { .. })));
    let closes: Vec<(PeerId, CloseCode)> = out
        .iter()
        .filter_map(|e| match e {
            Event::Close { peer, code, .. } => Some((*peer, *code)),
            _ => None,
        })
        .collect();
    assert_eq!(closes, vec![(B, CloseCode::InvalidUpdate)], "only the sender is closed");

    // The shell reloads from the log; the new relay takes A over and A goes on editing.
    let mut rebuilt = Relay::load(RelayLimits::default(), None, log.iter().map(|(s, b)| (*s, b.as_ref())));
    assert!(rebuilt.quarantined.is_empty());
    rebuilt.relay.adopt(relay);
    let mut relay = rebuilt.relay;
    assert_eq!(relay.peer_count(), 1);
    a.put("k", "2");
    sync_all(&mut relay, &mut [&mut a]);
    assert_eq!(relay.read(|doc| doc.get_heads()).unwrap(), a.doc.get_heads());
}

#[test]
fn ephemeral_messages_reach_the_other_peers_once_and_are_never_stored() {
    let mut relay = Relay::new(RelayLimits::default());
    relay.handle_join(A, Access::ReadWrite, route(A));
    relay.handle_join(B, Access::ReadWrite, route(B));
    let presence = |count| {
        Message::Ephemeral(Ephemeral {
            sender_id: client_id(A),
            target_id: RELAY_ID.into(),
            document_id: document(),
            session_id: "session-a".into(),
            count,
            data: Bytes::from_static(b"\xa1\x64user\x61a"),
        })
    };
    relay.handle_message(A, presence(1));
    let out = events(&mut relay);
    assert_eq!(out.len(), 1, "{out:?}");
    let Event::Send { peer: B, frame } = &out[0] else { panic!("{out:?}") };
    let Message::Ephemeral(relayed) = Message::decode(frame).unwrap() else { panic!("ephemeral") };
    assert_eq!((relayed.sender_id, relayed.target_id, relayed.count), (client_id(A), client_id(B), 1));

    // B's repo forwards what it received to its other peers, Weft included: dropped.
    relay.handle_message(B, presence(1));
    relay.handle_message(A, presence(1));
    assert!(events(&mut relay).is_empty());
    relay.handle_message(A, presence(2));
    assert_eq!(sends_to(&events(&mut relay), B).len(), 1);
    assert_eq!(relay.last_seq(), 0);
}

#[test]
fn a_read_only_peer_may_sync_but_its_changes_are_refused() {
    let mut relay = Relay::new(RelayLimits::default());
    let (mut a, mut b) = (Client::new(A), Client::new(B));
    relay.handle_join(A, Access::ReadWrite, route(A));
    relay.handle_join(B, Access::ReadOnly, route(B));
    a.put("k", "v");
    sync_all(&mut relay, &mut [&mut a, &mut b]);
    assert_eq!(b.get("k").as_deref(), Some("v"), "a reader receives the document");

    b.put("k", "overwritten");
    relay.handle_message(B, b.sync().unwrap());
    let out = events(&mut relay);
    assert!(matches!(out.last(), Some(Event::Refused { peer: B })), "{out:?}");
    assert!(out.iter().all(|e| !matches!(e, Event::Append { .. })));
}

#[test]
fn changes_that_would_outgrow_the_document_limit_close_the_sender_with_4414() {
    let mut relay = Relay::new(RelayLimits { max_document_bytes: 200 });
    relay.handle_join(A, Access::ReadWrite, route(A));
    let mut a = Client::new(A);
    sync_all(&mut relay, &mut [&mut a]);
    // Text that does not compress: automerge deflates large columns.
    let mut x = 1u32;
    let noise: String = (0..2000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            char::from(b'a' + (x >> 16) as u8 % 26)
        })
        .collect();
    a.put("big", &noise);
    relay.handle_message(A, a.sync().unwrap());
    let out = events(&mut relay);
    assert!(
        matches!(out.last(), Some(Event::Close { peer: A, code: CloseCode::DocumentTooLarge, .. })),
        "{out:?}"
    );
    assert_eq!(relay.last_seq(), 0);
}

#[test]
fn a_storage_failure_closes_every_peer_and_drops_held_replies() {
    let mut relay = Relay::new(RelayLimits::default());
    relay.handle_join(A, Access::ReadWrite, route(A));
    relay.handle_join(B, Access::ReadWrite, route(B));
    let mut a = Client::new(A);
    a.put("k", "v");
    relay.handle_message(A, a.sync().unwrap());
    events(&mut relay);
    relay.handle_failure("disk full");
    let out = events(&mut relay);
    assert!(relay.is_poisoned());
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out.iter().all(|e| matches!(e, Event::Close { code: CloseCode::InternalError, .. })));
    relay.handle_durable(1);
    assert!(events(&mut relay).is_empty(), "a held reply escaped after the failure");
}

#[test]
fn a_peer_that_leaves_loses_its_held_replies() {
    let mut relay = Relay::new(RelayLimits::default());
    relay.handle_join(A, Access::ReadWrite, route(A));
    let mut a = Client::new(A);
    a.put("k", "v");
    relay.handle_message(A, a.sync().unwrap());
    events(&mut relay);
    relay.handle_leave(A);
    relay.handle_durable(1);
    assert!(events(&mut relay).is_empty());
}

#[test]
fn snapshot_plus_log_tail_replays_the_document_exactly() {
    let mut relay = Relay::new(RelayLimits::default());
    let mut a = Client::new(A);
    relay.handle_join(A, Access::ReadWrite, route(A));
    let mut log = Vec::new();
    let mut snapshot = None;
    for round in 0..6 {
        a.put(&format!("k{round}"), "v");
        relay.handle_message(A, a.sync().unwrap());
        for event in events(&mut relay) {
            if let Event::Append { seq, update, .. } = event {
                log.push((seq, update));
                relay.handle_durable(seq);
            }
        }
        sync_all(&mut relay, &mut [&mut a]);
        if round == 2 {
            let taken = relay.snapshot().expect("a snapshot");
            relay.handle_compacted(&taken);
            snapshot = Some(taken);
        }
    }
    let snapshot = snapshot.unwrap();
    assert_eq!(relay.log_len() as usize, log.iter().filter(|(seq, _)| *seq > snapshot.upto).count());
    let tail = log.iter().filter(|(seq, _)| *seq > snapshot.upto).map(|(seq, b)| (*seq, b.as_ref()));
    let reloaded =
        Relay::load(RelayLimits::default(), Some((snapshot.upto, snapshot.state.as_ref())), tail).relay;
    let heads = |relay: &Relay| relay.read(|doc| doc.get_heads()).unwrap();
    assert_eq!(heads(&reloaded), heads(&relay));
    assert_eq!(reloaded.last_seq(), relay.last_seq());
    // The whole log alone replays to the same document too.
    let all = Relay::load(RelayLimits::default(), None, log.iter().map(|(s, b)| (*s, b.as_ref()))).relay;
    assert_eq!(heads(&all), heads(&relay));
}

#[test]
fn stored_bytes_that_do_not_load_are_a_load_error() {
    let bad_snapshot = Relay::load(RelayLimits::default(), Some((1, &[1, 2, 3][..])), []);
    assert_eq!(
        bad_snapshot.quarantined.iter().map(|q| q.item).collect::<Vec<_>>(),
        [StoredItem::Snapshot { upto: 1 }]
    );
    let bad_entry = Relay::load(RelayLimits::default(), None, [(1, &[0x85, 0x6f, 0x4a, 0x83, 9, 9][..])]);
    assert_eq!(
        bad_entry.quarantined.iter().map(|q| q.item).collect::<Vec<_>>(),
        [StoredItem::Update { seq: 1 }]
    );
}
