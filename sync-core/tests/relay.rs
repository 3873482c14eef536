//! Behaviour of the Yjs relay state machine, one rule per test, driven directly through its
//! `handle_*` inputs and `poll_event` outputs.

use bytes::Bytes;
use weft_sync_core::yjs::awareness::{self, AwarenessEntry};
use weft_sync_core::yjs::codec::decode_frame;
use weft_sync_core::yjs::{Message, Relay, RelayLimits};
use weft_sync_core::{Access, DocumentRelay, Event, StoredItem};
use weft_sync_core::{CloseCode, PeerId};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Array, Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

const A: PeerId = PeerId(1);
const B: PeerId = PeerId(2);

fn events(relay: &mut Relay) -> Vec<Event> {
    std::iter::from_fn(|| relay.poll_event()).collect()
}

fn message(frame: &Bytes) -> Message {
    let mut messages = decode_frame(frame).unwrap();
    assert_eq!(messages.len(), 1);
    messages.remove(0)
}

/// A fresh client doc with `text` typed into root text "t"; returns the v1 update.
fn typed(client_id: u64, text: &str) -> Bytes {
    let doc = Doc::with_client_id(client_id);
    let t = doc.get_or_insert_text("t");
    t.insert(&mut doc.transact_mut(), 0, text);
    Bytes::from(doc.transact().encode_state_as_update_v1(&StateVector::default()))
}

fn text_of(doc: &Doc) -> String {
    let t = doc.get_or_insert_text("t");
    t.get_string(&doc.transact())
}

/// Joins `peer` and answers its step 1 with an empty state vector; discards the events.
fn join_synced(relay: &mut Relay, peer: PeerId) {
    relay.handle_join(peer, Access::ReadWrite);
    relay.handle_message(peer, Message::SyncStep1(Bytes::from_static(&[0])));
    events(relay);
}

#[test]
fn join_greets_with_state_vector_then_live_awareness() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    let entry = AwarenessEntry { client_id: 9, clock: 1, state: Bytes::from_static(b"{\"u\":1}") };
    relay.handle_message(A, Message::Awareness(awareness::encode_update([entry.clone()].iter())));
    events(&mut relay);

    relay.handle_join(B, Access::ReadWrite);
    let greeting = events(&mut relay);
    assert_eq!(greeting.len(), 2);
    let Event::Send { peer: B, frame } = &greeting[0] else { panic!("{greeting:?}") };
    assert!(matches!(message(frame), Message::SyncStep1(_)));
    let Event::Send { peer: B, frame } = &greeting[1] else { panic!("{greeting:?}") };
    let Message::Awareness(payload) = message(frame) else { panic!("not awareness") };
    assert_eq!(awareness::decode_update(&payload).unwrap(), vec![entry]);
}

#[test]
fn updates_are_echoed_to_everyone_only_after_they_are_durable() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    let update = typed(1, "hi");
    relay.handle_message(A, Message::Update(update.clone()));
    let out = events(&mut relay);
    assert_eq!(
        out,
        vec![Event::Append { seq: 1, update: update.clone(), peer: A }],
        "nothing echoed before durable"
    );

    relay.handle_durable(1);
    let out = events(&mut relay);
    assert_eq!(out.len(), 2);
    let Event::Broadcast { frame, except } = &out[0] else { panic!("{out:?}") };
    assert!(except.is_empty(), "the sender gets its echo too");
    assert_eq!(message(frame), Message::Update(update));
    assert_eq!(out[1], Event::Acknowledge { peer: A });
}

#[test]
fn updates_released_together_go_out_as_one_merged_frame() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    let (from_a, from_b) = (typed(1, "one "), typed(2, "two"));
    relay.handle_message(A, Message::Update(from_a.clone()));
    relay.handle_message(B, Message::Update(from_b.clone()));
    events(&mut relay);

    // One commit made both durable: each peer gets one frame holding both, then both senders are
    // acknowledged in order.
    relay.handle_durable(2);
    let out = events(&mut relay);
    assert_eq!(out.len(), 3, "{out:?}");
    let Event::Broadcast { frame, except } = &out[0] else { panic!("{out:?}") };
    assert!(except.is_empty());
    let Message::Update(merged) = message(frame) else { panic!("not an update") };
    assert_eq!(&out[1..], [Event::Acknowledge { peer: A }, Event::Acknowledge { peer: B }]);
    let doc = Doc::new();
    doc.transact_mut().apply_update(Update::decode_v1(&merged).unwrap()).unwrap();
    let text = text_of(&doc);
    assert!(text.contains("one ") && text.contains("two") && text.len() == 7, "{text:?}");
}

#[test]
fn updates_released_one_commit_at_a_time_go_out_unchanged() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    let (first, second) = (typed(1, "a"), typed(2, "b"));
    relay.handle_message(A, Message::Update(first.clone()));
    relay.handle_message(A, Message::Update(second.clone()));
    events(&mut relay);
    relay.handle_durable(1);
    relay.handle_durable(2);
    let frames: Vec<Message> = events(&mut relay)
        .iter()
        .filter_map(|e| match e {
            Event::Broadcast { frame, .. } => Some(message(frame)),
            _ => None,
        })
        .collect();
    assert_eq!(frames, vec![Message::Update(first), Message::Update(second)]);
}

#[test]
fn read_only_peers_are_refused_and_nothing_is_stored() {
    let mut relay = Relay::new(RelayLimits::default());
    relay.handle_join(A, Access::ReadOnly);
    relay.handle_message(A, Message::SyncStep1(Bytes::from_static(&[0])));
    events(&mut relay);
    relay.handle_message(A, Message::SyncStep2(Bytes::from_static(&[0, 0])));
    assert_eq!(events(&mut relay), vec![Event::Acknowledge { peer: A }], "an empty handshake is no write");
    relay.handle_message(A, Message::Update(typed(1, "nope")));
    assert_eq!(events(&mut relay), vec![Event::Refused { peer: A }]);
    assert_eq!(relay.last_seq(), 0);
}

#[test]
fn a_read_only_handshake_that_brings_nothing_new_is_acknowledged() {
    // A read-only client that already holds the document (with deletions) reconnects: its step 2
    // carries no new items but its whole delete set. Refusing it would leave a Hocuspocus
    // provider counting one unsynced change forever.
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, B);
    let client = Doc::with_client_id(5);
    let t = client.get_or_insert_text("t");
    t.insert(&mut client.transact_mut(), 0, "hello brave world");
    t.remove_range(&mut client.transact_mut(), 5, 6);
    let full = client.transact().encode_state_as_update_v1(&StateVector::default());
    relay.handle_message(B, Message::Update(full.into()));
    relay.handle_durable(1);
    events(&mut relay);

    relay.handle_join(A, Access::ReadOnly);
    relay.handle_message(A, Message::SyncStep1(Bytes::from_static(&[0])));
    events(&mut relay);
    let relay_sv = relay.read(|doc| doc.transact().state_vector()).unwrap();
    let handshake = client.transact().encode_state_as_update_v1(&relay_sv);
    assert_ne!(handshake, [0, 0], "the handshake carries the delete set");
    relay.handle_message(A, Message::SyncStep2(handshake.into()));
    assert_eq!(events(&mut relay), vec![Event::Acknowledge { peer: A }]);

    // A further deletion is new, and refused.
    t.remove_range(&mut client.transact_mut(), 0, 1);
    let handshake = client.transact().encode_state_as_update_v1(&relay_sv);
    relay.handle_message(A, Message::SyncStep2(handshake.into()));
    assert_eq!(events(&mut relay), vec![Event::Refused { peer: A }]);
    assert_eq!(relay.last_seq(), 1);
}

#[test]
fn an_empty_update_is_acknowledged_after_the_writes_before_it() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    relay.handle_message(A, Message::SyncStep2(Bytes::from_static(&[0, 0])));
    assert_eq!(events(&mut relay), vec![Event::Acknowledge { peer: A }], "nothing pending: at once");

    relay.handle_message(A, Message::Update(typed(1, "x")));
    relay.handle_message(A, Message::SyncStep2(Bytes::from_static(&[0, 0])));
    let out = events(&mut relay);
    assert!(matches!(out.as_slice(), [Event::Append { seq: 1, .. }]), "{out:?}");
    relay.handle_durable(1);
    let acks = events(&mut relay).into_iter().filter(|e| matches!(e, Event::Acknowledge { .. })).count();
    assert_eq!(acks, 2, "both writes acknowledged once the first is durable");
}

#[test]
fn step2_reply_waits_until_the_state_it_contains_is_durable() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    relay.handle_message(A, Message::Update(typed(1, "pending")));
    events(&mut relay);

    relay.handle_join(B, Access::ReadWrite);
    events(&mut relay);
    relay.handle_message(B, Message::SyncStep1(Bytes::from_static(&[0])));
    assert!(events(&mut relay).is_empty(), "step 2 held back");

    relay.handle_durable(1);
    let out = events(&mut relay);
    let step2 = out.iter().find_map(|e| match e {
        Event::Send { peer: B, frame } => Some(message(frame)),
        _ => None,
    });
    let Some(Message::SyncStep2(state)) = step2 else { panic!("{out:?}") };
    let doc = Doc::new();
    doc.transact_mut().apply_update(Update::decode_v1(&state).unwrap()).unwrap();
    assert_eq!(text_of(&doc), "pending");
    let broadcast_to_b =
        out.iter().any(|e| matches!(e, Event::Broadcast { except, .. } if !except.contains(&B)));
    assert!(!broadcast_to_b, "B's step 2 already holds the update; it must not also arrive ahead of it");
}

#[test]
fn joiners_with_empty_state_share_one_state_encoding() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    relay.handle_message(A, Message::Update(typed(1, "shared")));
    relay.handle_durable(1);
    events(&mut relay);
    let mut frames = Vec::new();
    for peer in [PeerId(10), PeerId(11), PeerId(12)] {
        relay.handle_join(peer, Access::ReadWrite);
        relay.handle_message(peer, Message::SyncStep1(Bytes::from_static(&[0])));
        for event in events(&mut relay) {
            if let Event::Send { frame, .. } = event
                && matches!(message(&frame), Message::SyncStep2(_))
            {
                frames.push(frame);
            }
        }
    }
    assert_eq!(frames.len(), 3);
    assert!(frames.iter().all(|f| f.as_ptr() == frames[0].as_ptr()), "one encoding, shared");
}

#[test]
fn a_leaving_peer_s_awareness_is_removed_for_the_others() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    let entry = AwarenessEntry { client_id: 77, clock: 3, state: Bytes::from_static(b"{}") };
    relay.handle_message(A, Message::Awareness(awareness::encode_update([entry].iter())));
    events(&mut relay);

    relay.handle_leave(A);
    let out = events(&mut relay);
    let [Event::Broadcast { frame, .. }] = out.as_slice() else { panic!("{out:?}") };
    let Message::Awareness(payload) = message(frame) else { panic!("not awareness") };
    let removal = awareness::decode_update(&payload).unwrap();
    assert_eq!(removal.len(), 1);
    assert_eq!((removal[0].client_id, removal[0].clock, removal[0].is_removal()), (77, 4, true));
}

fn closed_with(relay: &mut Relay) -> Vec<(PeerId, CloseCode)> {
    events(relay)
        .into_iter()
        .filter_map(|e| match e {
            Event::Close { peer, code, .. } => Some((peer, code)),
            Event::Append { .. } => panic!("nothing may be appended"),
            _ => None,
        })
        .collect()
}

#[test]
fn a_step2_that_is_not_an_update_closes_the_sender_and_appends_nothing() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    relay.handle_message(A, Message::SyncStep2(Bytes::from_static(&[5, 0xff, 0xff, 0xff])));
    assert_eq!(closed_with(&mut relay), vec![(A, CloseCode::InvalidUpdate)]);
    assert_eq!(relay.peer_count(), 1, "the other peer is unaffected");
    assert_eq!(relay.last_seq(), 0);
    assert!(!relay.is_poisoned());
}

#[test]
fn an_invalid_state_vector_closes_the_sender() {
    let mut relay = Relay::new(RelayLimits::default());
    relay.handle_join(A, Access::ReadWrite);
    events(&mut relay);
    relay.handle_message(A, Message::SyncStep1(Bytes::from_static(&[3, 1])));
    assert_eq!(closed_with(&mut relay), vec![(A, CloseCode::InvalidUpdate)]);
}

#[test]
fn awareness_states_that_are_not_json_close_the_sender() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    let entry = AwarenessEntry { client_id: 1, clock: 1, state: Bytes::from_static(b"{oops") };
    relay.handle_message(A, Message::Awareness(awareness::encode_update([entry].iter())));
    assert_eq!(closed_with(&mut relay), vec![(A, CloseCode::MalformedMessage)]);
}

#[test]
fn an_update_beyond_the_document_limit_closes_the_sender() {
    let mut relay = Relay::new(RelayLimits { max_document_bytes: 64 });
    join_synced(&mut relay, A);
    relay.handle_message(A, Message::Update(typed(1, &"x".repeat(100))));
    assert_eq!(closed_with(&mut relay), vec![(A, CloseCode::DocumentTooLarge)]);
    assert_eq!(relay.last_seq(), 0);
}

#[test]
fn an_update_ahead_of_its_predecessors_is_acknowledged_then_integrated_once_the_gap_fills() {
    // The client edits offline, reconnects, and its next edit reaches the relay before the step 2
    // that carries the earlier ones — what y-websocket does for an edit made right after reconnecting.
    let client = Doc::with_client_id(5);
    let list = client.get_or_insert_array("items");
    let mut incremental = Vec::new();
    for i in 0..4 {
        let before = client.transact().state_vector();
        list.push_back(&mut client.transact_mut(), format!("item {i}"));
        incremental.push(Bytes::from(client.transact().encode_state_as_update_v1(&before)));
    }
    let whole = Bytes::from(client.transact().encode_state_as_update_v1(&StateVector::default()));

    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    relay.handle_message(A, Message::Update(incremental[3].clone()));
    relay.handle_durable(1);
    let out = events(&mut relay);
    assert!(out.contains(&Event::Append { seq: 1, update: incremental[3].clone(), peer: A }));
    assert!(
        out.contains(&Event::Send { peer: A, frame: Message::Update(incremental[3].clone()).encode() }),
        "the sender is acknowledged: {out:?}"
    );
    assert!(!out.iter().any(|e| matches!(e, Event::Broadcast { .. })), "others do not get a gapped update");
    assert_eq!(relay.snapshot().unwrap().upto, 0, "compaction must keep the deferred update in the log");

    relay.handle_message(A, Message::SyncStep2(whole));
    relay.handle_durable(2);
    events(&mut relay);
    let got: Vec<String> = relay
        .read(|doc| {
            let items = doc.get_or_insert_array("items");
            let txn = doc.transact();
            items.iter(&txn).map(|v| v.to_string(&txn)).collect()
        })
        .unwrap();
    assert_eq!(got, ["item 0", "item 1", "item 2", "item 3"], "integrated once, no duplicates");
    let snapshot = relay.snapshot().unwrap();
    assert_eq!(snapshot.upto, 2);

    let reloaded = Relay::load(
        RelayLimits::default(),
        None,
        [(1, incremental[3].as_ref()), (2, snapshot.state.as_ref())],
    )
    .relay;
    assert_eq!(
        reloaded.read(|doc| doc.transact().state_vector().encode_v1()).unwrap(),
        relay.read(|doc| doc.transact().state_vector().encode_v1()).unwrap()
    );
}

#[test]
fn a_storage_failure_closes_every_peer() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    relay.handle_message(A, Message::Update(typed(1, "lost?")));
    events(&mut relay);
    relay.handle_failure("disk full");
    let mut closed = closed_with(&mut relay);
    closed.sort_by_key(|(p, _)| *p);
    assert_eq!(closed, vec![(A, CloseCode::InternalError), (B, CloseCode::InternalError)]);
    assert!(relay.is_poisoned());
}

#[test]
fn load_replays_snapshot_then_tail_and_skips_covered_entries() {
    let first = typed(1, "one ");
    let doc = Doc::with_client_id(1);
    doc.transact_mut().apply_update(Update::decode_v1(&first).unwrap()).unwrap();
    let before = doc.transact().state_vector();
    doc.get_or_insert_text("t").push(&mut doc.transact_mut(), "two");
    let second = doc.transact().encode_state_as_update_v1(&before);
    let relay = Relay::load(
        RelayLimits::default(),
        Some((1, first.as_ref())),
        [(1, first.as_ref()), (2, second.as_slice())],
    );
    let relay = relay.relay;
    assert_eq!(relay.read(text_of).unwrap(), "one two");
    assert_eq!((relay.last_seq(), relay.durable_seq(), relay.log_len()), (2, 2, 1));
    let bad = Relay::load(RelayLimits::default(), None, [(1, &[9u8, 9, 9][..])]);
    assert_eq!(bad.quarantined.iter().map(|q| q.item).collect::<Vec<_>>(), [StoredItem::Update { seq: 1 }]);
}
