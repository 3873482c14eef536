//! Crafted Yjs updates against the relay: the frames that bricked documents on 7ea3ca8 (issue #14,
//! `tests/crafted/frame_a.bin`, `frame_b.bin`), an update that integrates only in part, and stored
//! state that old builds wrote from such frames. Each is refused or quarantined, and nothing else
//! is lost.

use bytes::Bytes;
use weft_sync_core::yjs::codec::decode_frame;
use weft_sync_core::yjs::{Message, Relay, RelayLimits};
use weft_sync_core::{Access, CloseCode, DocumentRelay, Event, Health, PeerId, StoredItem};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

const A: PeerId = PeerId(1);
const B: PeerId = PeerId(2);
const C: PeerId = PeerId(3);

const FRAME_A: &[u8] = include_bytes!("crafted/frame_a.bin");
const FRAME_B: &[u8] = include_bytes!("crafted/frame_b.bin");
/// The snapshot 7ea3ca8 (a release build) wrote after FRAME_B: it does not load.
const SNAPSHOT_AFTER_B: &[u8] = include_bytes!("crafted/snapshot_after_frame_b.bin");

fn events(relay: &mut Relay) -> Vec<Event> {
    std::iter::from_fn(|| relay.poll_event()).collect()
}

fn join_synced(relay: &mut Relay, peer: PeerId) {
    relay.handle_join(peer, Access::ReadWrite);
    relay.handle_message(peer, Message::SyncStep1(Bytes::from_static(&[0])));
    events(relay);
}

fn text_of(doc: &Doc) -> String {
    doc.get_or_insert_text("t").get_string(&doc.transact())
}

/// An editor on client `client` of root text "t": each call appends and returns the update.
struct Editor(Doc);

impl Editor {
    fn new(client: u64) -> Self {
        Self(Doc::with_client_id(client))
    }

    fn append(&self, text: &str) -> Bytes {
        let t = self.0.get_or_insert_text("t");
        let before = self.0.transact().state_vector();
        let end = t.get_string(&self.0.transact()).len() as u32;
        t.insert(&mut self.0.transact_mut(), end, text);
        Bytes::from(self.0.transact().encode_state_as_update_v1(&before))
    }
}

/// Bytes written as hex (the updates fuzzing found, as the regressions print them).
fn hex(s: &str) -> Bytes {
    Bytes::from(
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect::<Vec<u8>>(),
    )
}

/// Feeds `frame` from `peer`, reports every append durable, and returns the events.
fn send(relay: &mut Relay, peer: PeerId, frame: &[u8]) -> Vec<Event> {
    for message in decode_frame(&Bytes::copy_from_slice(frame)).unwrap() {
        relay.handle_message(peer, message);
    }
    let mut out = events(relay);
    let appended: Vec<u64> = out
        .iter()
        .filter_map(|e| if let Event::Append { seq, .. } = e { Some(*seq) } else { None })
        .collect();
    for seq in appended {
        relay.handle_durable(seq);
    }
    out.extend(events(relay));
    out
}

fn closes(out: &[Event]) -> Vec<(PeerId, CloseCode, String)> {
    out.iter()
        .filter_map(|e| match e {
            Event::Close { peer, code, detail } => Some((*peer, *code, detail.clone())),
            _ => None,
        })
        .collect()
}

/// The full-state step 2 a new peer with an empty state vector gets; it must load.
fn join_and_load(relay: &mut Relay, peer: PeerId) -> Doc {
    relay.handle_join(peer, Access::ReadWrite);
    relay.handle_message(peer, Message::SyncStep1(Bytes::from_static(&[0])));
    let step2 = events(relay)
        .into_iter()
        .find_map(|e| match e {
            Event::Send { peer: to, frame } if to == peer => match decode_frame(&frame).unwrap().remove(0) {
                Message::SyncStep2(update) => Some(update),
                _ => None,
            },
            _ => None,
        })
        .expect("a step 2 for the joiner");
    let doc = Doc::new();
    doc.transact_mut().apply_update(Update::decode_v1(&step2).expect("the state decodes")).unwrap();
    doc
}

#[test]
fn frame_a_is_refused_before_it_is_logged_and_the_document_stays_joinable() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    let editor = Editor::new(7);
    send(&mut relay, B, &Message::Update(editor.append("kept ")).encode());

    let out = send(&mut relay, A, FRAME_A);
    assert!(out.iter().all(|e| !matches!(e, Event::Append { .. })), "nothing is logged: {out:?}");
    let closed = closes(&out);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!((closed[0].0, closed[0].1), (A, CloseCode::InvalidUpdate));
    assert!(closed[0].2.starts_with("invalid update: check update"), "{}", closed[0].2);
    assert_eq!(relay.health(), Health::Serving, "refused before it touched the replica");

    send(&mut relay, B, &Message::Update(editor.append("editing")).encode());
    let joined = join_and_load(&mut relay, C);
    assert_eq!(text_of(&joined), "kept editing");
}

#[test]
fn frame_b_is_refused_and_snapshots_keep_loading() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    let out = send(&mut relay, A, FRAME_B);
    assert_eq!(closes(&out).iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), [(A, CloseCode::InvalidUpdate)]);
    let editor = Editor::new(7);
    let mut log = Vec::new();
    for i in 0..50 {
        let update = editor.append(&format!("{i} "));
        log.push(update.clone());
        send(&mut relay, B, &Message::Update(update).encode());
    }
    let snapshot = relay.snapshot().expect("a snapshot");
    snapshot.verify().expect("the snapshot loads back as the replica");
    let reloaded = Relay::load(RelayLimits::default(), Some((snapshot.upto, &snapshot.state)), []);
    assert!(reloaded.quarantined.is_empty());
    assert_eq!(reloaded.relay.read(text_of).unwrap(), relay.read(text_of).unwrap());
}

#[test]
fn an_update_that_integrates_only_in_part_is_refused_and_the_relay_rebuilds_keeping_the_others() {
    // Client 1 types "a" then "b"; client 2 appends after "b", which the relay never gets.
    let one = Editor::new(1);
    let a = one.append("a");
    let _b = one.append("b");
    let two = Doc::with_client_id(2);
    let both = one.0.transact().encode_state_as_update_v1(&StateVector::default());
    two.transact_mut().apply_update(Update::decode_v1(&both).unwrap()).unwrap();
    let before = two.transact().state_vector();
    two.get_or_insert_text("t").push(&mut two.transact_mut(), "c");
    let partial = Bytes::from(two.transact().encode_state_as_update_v1(&before));

    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    let log: Vec<(u64, Bytes)> = send(&mut relay, B, &Message::Update(a.clone()).encode())
        .into_iter()
        .filter_map(|e| match e {
            Event::Append { seq, update, .. } => Some((seq, update)),
            _ => None,
        })
        .collect();
    let out = send(&mut relay, A, &Message::Update(partial).encode());
    assert!(out.iter().all(|e| !matches!(e, Event::Append { .. })), "nothing is logged: {out:?}");
    let closed = closes(&out);
    assert_eq!(closed.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), [(A, CloseCode::InvalidUpdate)]);
    assert!(closed[0].2.contains("does not have"), "{}", closed[0].2);
    assert_eq!(relay.health(), Health::Rebuild, "the update touched the replica");

    // What the room does: load from the log, hand the peers over. B stays and goes on editing.
    let rebuilt = Relay::load(RelayLimits::default(), None, log.iter().map(|(s, u)| (*s, u.as_ref())));
    assert!(rebuilt.quarantined.is_empty());
    let mut fresh = rebuilt.relay;
    fresh.adopt(relay);
    let mut relay = fresh;
    assert_eq!(relay.peer_count(), 1);
    let more = Editor::new(9).append("more");
    let out = send(&mut relay, B, &Message::Update(more.clone()).encode());
    assert!(out.contains(&Event::Append { seq: 2, update: more, peer: B }), "{out:?}");
    assert!(
        out.iter().any(|e| matches!(e, Event::Broadcast { .. })),
        "B is still a peer and gets its echo: {out:?}"
    );
    let text = relay.read(text_of).unwrap();
    assert!(text.contains('a') && text.contains("more") && !text.contains('c'), "{text}");
}

#[test]
fn loading_quarantines_what_old_builds_stored_and_serves_the_rest() {
    let editor = Editor::new(5);
    let first = editor.append("one ");
    let second = editor.append("two");
    // On 7ea3ca8 FRAME_A's update was logged between them.
    let Message::SyncStep2(frame_a) = decode_frame(&Bytes::from_static(FRAME_A)).unwrap().remove(0) else {
        panic!("FRAME_A is a sync step 2")
    };
    let log = [(1, first.as_ref()), (2, frame_a.as_ref()), (3, second.as_ref())];
    let loaded = Relay::load(RelayLimits::default(), None, log);
    assert_eq!(
        loaded.quarantined.iter().map(|q| q.item).collect::<Vec<_>>(),
        [StoredItem::Update { seq: 2 }]
    );
    assert!(loaded.quarantined[0].reason.contains("update does not load"), "{:?}", loaded.quarantined);
    let mut relay = loaded.relay;
    assert_eq!(relay.read(text_of).unwrap(), "one two");
    assert_eq!(relay.last_seq(), 3);
    assert_eq!(text_of(&join_and_load(&mut relay, A)), "one two");

    // The snapshot 7ea3ca8 wrote after FRAME_B does not load: it is set aside, the tail is served.
    let third = Editor::new(6).append("after");
    let loaded = Relay::load(RelayLimits::default(), Some((2, SNAPSHOT_AFTER_B)), [(3, third.as_ref())]);
    assert_eq!(
        loaded.quarantined.iter().map(|q| q.item).collect::<Vec<_>>(),
        [StoredItem::Snapshot { upto: 2 }]
    );
    assert_eq!(loaded.relay.read(text_of).unwrap(), "after");
}

#[test]
fn a_forged_update_that_contradicts_known_clocks_is_refused_but_an_honest_resend_is_not() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    // Found by fuzzing (fuzz/regressions/yjs_relay/snapshot-differs-after-update): client 1 pushes
    // three array items, then a GC block over clocks 1..9, then text at clocks 4..10, which the
    // replica already holds as that GC block. yrs integrated the tail, and the document's
    // encoding then loaded with other deletions than the replica had.
    for update in [
        "0101010008010161017800",
        "01010101880100017800",
        "01010102880101017900",
        "01010101000801010008010161017800",
    ] {
        let out = send(&mut relay, B, &Message::Update(hex(update)).encode());
        assert!(closes(&out).is_empty(), "{out:?}");
    }
    let out = send(&mut relay, A, &Message::Update(hex("010101040401017407616a76686c6b6700")).encode());
    let closed = closes(&out);
    assert_eq!(closed.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), [(A, CloseCode::InvalidUpdate)]);
    assert!(closed[0].2.contains("contradicts"), "{}", closed[0].2);
    assert_eq!(relay.health(), Health::Rebuild);

    // A client re-sending its whole state overlaps everything the relay has, and is fine.
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    let editor = Editor::new(4);
    send(&mut relay, A, &Message::Update(editor.append("one ")).encode());
    editor.append("two");
    let whole = Bytes::from(editor.0.transact().encode_state_as_update_v1(&StateVector::default()));
    let out = send(&mut relay, A, &Message::Update(whole).encode());
    assert!(closes(&out).is_empty() && relay.health() == Health::Serving, "{out:?}");
    assert_eq!(relay.read(text_of).unwrap(), "one two");
}

#[test]
fn peers_are_sent_what_the_replica_gained_never_a_second_version_of_known_clocks() {
    // Found by fuzzing (fuzz/regressions/yjs_relay/second-version-of-known-clocks-forwarded): a forged update claims client
    // 1's next clocks as garbage-collected; the real client 1 then sends items for them. The relay
    // keeps the first version; forwarding the second made a peer hold both, and its yrs crashed.
    let mut relay = Relay::new(RelayLimits::default());
    for peer in [A, B, C] {
        join_synced(&mut relay, peer);
    }
    send(&mut relay, B, &Message::Update(hex("0101010008010161017800")).encode());
    let forged = hex("0101010100080008010161017800"); // client 1, clocks 1..9: GC
    send(&mut relay, A, &Message::Update(forged).encode());
    let real = hex("01010101880100017900"); // client 1, clock 1: an item
    let out = send(&mut relay, B, &Message::Update(real.clone()).encode());
    assert!(
        out.contains(&Event::Append { seq: 3, update: real.clone(), peer: B }),
        "logged as sent: {out:?}"
    );
    for event in &out {
        match event {
            Event::Broadcast { frame, .. } => panic!("nothing new to broadcast, got {frame:?}"),
            Event::Send { peer, frame } if *peer != B => panic!("{peer:?} was sent {frame:?}"),
            _ => {}
        }
    }
    assert!(
        out.contains(&Event::Send { peer: B, frame: Message::Update(real).encode() }),
        "the sender gets its echo: {out:?}"
    );
}

/// Found by fuzzing (`fuzz/regressions/yjs_relay/forger-applies-the-echo-of-its-deferred-update`):
/// a yrs 0.28 document that holds `DEFERRED` as pending structs and then receives `OTHER_VERSION`
/// (other content for the same clock) reads freed memory. The relay never holds pending structs:
/// it defers the update, echoes it only to its sender, and integrates what it can once the gap is
/// filled, so the same two updates leave it serving, with nothing pending and a state that loads.
#[test]
fn a_deferred_update_then_other_content_for_its_clock_leaves_the_relay_nothing_pending() {
    const DEFERRED: &str = "010103052801016d026b33017affa20a22322f050100";
    const OTHER_VERSION: &str =
        "0105030008010161017804010174016b840301046b6b6b6b2801016d026b33017affa20a22322f0501c403010302017800";
    let unhex = |s: &str| -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    };
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    let deferred = send(&mut relay, A, &Message::Update(Bytes::from(unhex(DEFERRED))).encode());
    assert!(
        deferred.iter().all(|e| !matches!(e, Event::Broadcast { .. } | Event::Send { peer: B, .. })),
        "a deferred update goes back to its sender only: {deferred:?}"
    );
    send(&mut relay, B, &Message::Update(Bytes::from(unhex(OTHER_VERSION))).encode());
    assert_eq!(relay.health(), Health::Serving);
    assert!(!relay.read(|doc| doc.transact().has_missing_updates()).unwrap(), "nothing pending");

    let expected = Doc::new();
    expected.transact_mut().apply_update(Update::decode_v1(&unhex(OTHER_VERSION)).unwrap()).unwrap();
    let joined = join_and_load(&mut relay, C);
    assert_eq!(
        joined.transact().state_vector(),
        expected.transact().state_vector(),
        "the clock both claim holds the content the relay integrated first"
    );
}

#[test]
fn an_item_between_collected_content_and_a_live_key_is_refused_and_the_next_honest_edit_reloads() {
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    // Found by fuzzing (fuzz/regressions/yjs_relay/tail-between-collected-content-and-a-live-key):
    // client 1 pushes `true` into array "a" and sets m["k0"] (clocks 0 and 1), then a GC block
    // over clocks 1..10 (the replica keeps clock 1 and collects 2..9).
    for update in ["010201000801016101782801016d026b30017dd50200", "01010101000801010008010161017800"] {
        let out = send(&mut relay, B, &Message::Update(hex(update)).encode());
        assert!(closes(&out).is_empty(), "{out:?}");
    }
    // Then one deleted item over clocks 0..97 whose right origin is m["k0"]: yrs keeps clocks
    // 0..9 and links the rest after collected clock 8, so it would sit under "k0" with no left
    // neighbour. The next concurrent write of "k0" then landed differently in the replica and in
    // a document loaded from its state, and a reload quarantined that honest write.
    let out = send(&mut relay, B, &Message::Update(hex("0101010051010161017800")).encode());
    let closed = closes(&out);
    assert_eq!(closed.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), [(B, CloseCode::InvalidUpdate)]);
    assert!(closed[0].2.contains("between collected content and a live type"), "{}", closed[0].2);
    let logged: Vec<(u64, Bytes)> = out
        .iter()
        .filter_map(|e| {
            if let Event::Append { seq, update, .. } = e { Some((*seq, update.clone())) } else { None }
        })
        .collect();
    assert!(logged.is_empty(), "the refused update is not logged: {logged:?}");

    // The honest write of m["k0"] by client 4, on the relay loaded from its log, and again.
    let log = ["010201000801016101782801016d026b30017dd50200", "01010101000801010008010161017800"].map(hex);
    let loaded = Relay::load(
        RelayLimits::default(),
        None,
        log.iter().enumerate().map(|(i, u)| (i as u64 + 1, &u[..])),
    );
    assert!(loaded.quarantined.is_empty(), "{:?}", loaded.quarantined);
    let mut relay = loaded.relay;
    join_synced(&mut relay, C);
    let honest = hex("010104002801016d026b30017d0000");
    let out = send(&mut relay, C, &Message::Update(honest.clone()).encode());
    assert!(closes(&out).is_empty(), "{out:?}");
    let value = |doc: &Doc| {
        yrs::Map::get(&doc.get_or_insert_map("m"), &doc.transact(), "k0")
            .map(|v| v.to_string(&doc.transact()))
    };
    assert_eq!(relay.read(value).unwrap().as_deref(), Some("0"), "client 4 wins the key");
    let all: Vec<Bytes> = log.iter().cloned().chain([honest]).collect();
    let reloaded = Relay::load(
        RelayLimits::default(),
        None,
        all.iter().enumerate().map(|(i, u)| (i as u64 + 1, &u[..])),
    );
    assert!(reloaded.quarantined.is_empty(), "{:?}", reloaded.quarantined);
    assert_eq!(reloaded.relay.read(value).unwrap().as_deref(), Some("0"));
}

#[test]
fn an_offline_edit_inside_a_type_deleted_meanwhile_is_accepted() {
    use yrs::{Array, TextPrelim};
    // Client 5 puts a nested text "abc" into array "a"; client 6 has a copy.
    let author = Doc::with_client_id(5);
    author.get_or_insert_array("a").push_back(&mut author.transact_mut(), TextPrelim::new("abc"));
    let first = Bytes::from(author.transact().encode_state_as_update_v1(&StateVector::default()));
    let offline = Doc::with_client_id(6);
    offline.transact_mut().apply_update(Update::decode_v1(&first).unwrap()).unwrap();
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    assert!(closes(&send(&mut relay, A, &Message::Update(first).encode())).is_empty());
    // Client 5 deletes the nested text: the relay collects its characters.
    let before = author.transact().state_vector();
    author.get_or_insert_array("a").remove(&mut author.transact_mut(), 0);
    let delete = Bytes::from(author.transact().encode_state_as_update_v1(&before));
    assert!(closes(&send(&mut relay, A, &Message::Update(delete).encode())).is_empty());
    // Client 6, offline meanwhile, typed between "a" and "b" of that text, then sends its whole
    // state (overlapping what the relay has): both neighbours are collected, and that is fine.
    let array = offline.get_or_insert_array("a");
    let text = array.get(&offline.transact(), 0).unwrap().cast::<yrs::TextRef>().unwrap();
    let before = offline.transact().state_vector();
    text.insert(&mut offline.transact_mut(), 1, "X");
    let typed = Bytes::from(offline.transact().encode_state_as_update_v1(&before));
    let whole = Bytes::from(offline.transact().encode_state_as_update_v1(&StateVector::default()));
    for update in [typed, whole] {
        let out = send(&mut relay, B, &Message::Update(update).encode());
        assert!(closes(&out).is_empty() && relay.health() == Health::Serving, "{out:?}");
    }
    assert_eq!(relay.read(|doc| doc.get_or_insert_array("a").len(&doc.transact())).unwrap(), 0);
}

#[test]
fn a_subdocument_is_refused_with_a_reason_and_the_others_keep_editing() {
    use yrs::Map;
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    let app = Doc::with_client_id(9);
    app.get_or_insert_map("m").insert(&mut app.transact_mut(), "page", Doc::new());
    let update = Bytes::from(app.transact().encode_state_as_update_v1(&StateVector::default()));

    let out = send(&mut relay, A, &Message::Update(update).encode());
    assert!(out.iter().all(|e| !matches!(e, Event::Append { .. })), "nothing is logged: {out:?}");
    let closed = closes(&out);
    assert_eq!((closed.len(), closed[0].0, closed[0].1), (1, A, CloseCode::InvalidUpdate), "{closed:?}");
    assert!(closed[0].2.contains("subdocument"), "{}", closed[0].2);

    let editor = Editor::new(7);
    assert!(closes(&send(&mut relay, B, &Message::Update(editor.append("still here")).encode())).is_empty());
    assert_eq!(text_of(&join_and_load(&mut relay, C)), "still here");
}

#[test]
fn a_map_entry_with_a_right_origin_is_refused_and_a_concurrent_honest_set_still_converges() {
    // Found by fuzzing (`fuzz/regressions/yjs_relay/map-entry-with-a-right-origin`): client 1 sets
    // m.k3 and m.k2 and then m.k2 again; a forged item of client 2 names that value as its right
    // origin; client 3, offline since the first set, sets m.k2 too. Accepting the forged item left
    // the replica with m.k2 = client 1's value, and a document loaded from its state with client 3's.
    let first =
        hex("010301002801016d026b33017a1eaa2faaffffffff2801016d026b32017a0a1e1e1e1e1e1e1e08010161017800");
    let second = hex("01010103a80101017a0101280803e801010101010101");
    let forged = hex("01010200480103017800");
    let offline = hex("01010300a80101017a0101017d78aaaaaa0101010101");
    let mut relay = Relay::new(RelayLimits::default());
    join_synced(&mut relay, A);
    join_synced(&mut relay, B);
    join_synced(&mut relay, C);
    let mut log = Vec::new();
    let mut feed = |relay: &mut Relay, peer, update: &Bytes| {
        let out = send(relay, peer, &Message::Update(update.clone()).encode());
        log.extend(out.iter().filter_map(|e| match e {
            Event::Append { seq, update, .. } => Some((*seq, update.clone())),
            _ => None,
        }));
        closes(&out)
    };
    assert!(feed(&mut relay, A, &first).is_empty());
    assert!(feed(&mut relay, A, &second).is_empty());
    let closed = feed(&mut relay, B, &forged);
    assert_eq!((closed.len(), closed[0].1), (1, CloseCode::InvalidUpdate), "{closed:?}");
    assert!(closed[0].2.contains("map entry with a right origin"), "{}", closed[0].2);
    assert!(feed(&mut relay, C, &offline).is_empty());
    let loaded = Relay::load(RelayLimits::default(), None, log.iter().map(|(s, u)| (*s, u.as_ref())));
    assert!(loaded.quarantined.is_empty(), "{:?}", loaded.quarantined);
    let value = |relay: &Relay| {
        relay
            .read(|doc| {
                let txn = doc.transact();
                yrs::Map::get(&txn.get_map("m").unwrap(), &txn, "k2").map(|v| format!("{v:?}"))
            })
            .unwrap()
    };
    assert_eq!(value(&relay), value(&loaded.relay));
    let (state, snapshot) = relay
        .read(|doc| {
            let txn = doc.transact();
            (txn.encode_state_as_update_v1(&StateVector::default()), txn.snapshot())
        })
        .unwrap();
    let fresh = Doc::new();
    fresh.transact_mut().apply_update(Update::decode_v1(&state).unwrap()).unwrap();
    assert!(fresh.transact().snapshot() == snapshot, "the state loads back as the replica");
}
