//! The relay's own writes (what REST routes do) on both CRDTs: each kind's changes
//! (`weft_sync_core::domain::*`), applied by `Relay::write` as one transaction, project as
//! written on Yjs and Automerge alike; they are logged from `PeerId::LOCAL`, reach joined peers
//! only once durable, rebuild identically from the log, merge with a concurrent client's edits
//! (text edited in place keeps the client's characters), and a write that cannot be made writes
//! nothing.

use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT};
use bytes::Bytes;
use weft_sync_core::automerge::{DocumentId, Route};
use weft_sync_core::domain::board::{self, Priority, TaskChange};
use weft_sync_core::domain::channel::{self, NewMessage};
use weft_sync_core::domain::document::{self, NewComment};
use weft_sync_core::domain::whiteboard::{self, ShapeChange, ShapeKind};
use weft_sync_core::domain::write::{self, Change, WriteError};
use weft_sync_core::yjs::Message;
use weft_sync_core::yjs::codec::decode_frame;
use weft_sync_core::{Access, DocumentRelay, Event, PeerId, RelayLimits, automerge as am, yjs};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Text, Transact, Update, WriteTxn};

const P: PeerId = PeerId(1);

/// One document on both CRDTs, written alike.
struct Both {
    y: yjs::Relay,
    a: am::Relay,
    /// What each relay logged: `(seq, entry)`.
    y_log: Vec<(u64, Bytes)>,
    a_log: Vec<(u64, Bytes)>,
}

impl Both {
    fn new() -> Self {
        let limits = RelayLimits::default();
        Self { y: yjs::Relay::new(limits), a: am::Relay::new(limits), y_log: Vec::new(), a_log: Vec::new() }
    }

    /// Writes `changes` to both, makes them durable, and returns what each returned.
    fn write(&mut self, changes: &[Change]) -> Result<(), WriteError> {
        let (y, y_seq) = self.y.write(|txn| write::apply_yjs(txn, changes)).unwrap();
        let (a, a_seq) = self.a.write(|tx| write::apply_automerge(tx, changes)).unwrap();
        assert_eq!(y.is_ok(), a.is_ok(), "both CRDTs agree: {y:?} {a:?}");
        self.settle(y_seq, a_seq);
        y
    }

    fn settle(&mut self, y_seq: u64, a_seq: u64) {
        for event in std::iter::from_fn(|| self.y.poll_event()).collect::<Vec<_>>() {
            if let Event::Append { seq, update, peer } = event {
                assert_eq!(peer, PeerId::LOCAL);
                self.y_log.push((seq, update));
            }
        }
        for event in std::iter::from_fn(|| self.a.poll_event()).collect::<Vec<_>>() {
            if let Event::Append { seq, update, peer } = event {
                assert_eq!(peer, PeerId::LOCAL);
                self.a_log.push((seq, update));
            }
        }
        self.y.handle_durable(y_seq);
        self.a.handle_durable(a_seq);
    }

    fn project<T: PartialEq + std::fmt::Debug>(
        &self,
        yjs: impl FnOnce(&yrs::Transaction<'_>) -> T,
        automerge: impl FnOnce(&automerge::Automerge) -> T,
    ) -> T {
        let y = self.y.read(|doc| yjs(&doc.transact())).unwrap();
        let a = self.a.read(automerge).unwrap();
        assert_eq!(y, a, "Yjs and Automerge project alike");
        y
    }

    /// Both documents rebuilt from what they logged project as the live ones.
    fn reload_matches<T: PartialEq + std::fmt::Debug>(
        &self,
        yjs: impl Fn(&yrs::Transaction<'_>) -> T,
        automerge: impl Fn(&automerge::Automerge) -> T,
    ) {
        let limits = RelayLimits::default();
        let y = yjs::Relay::load(limits, None, self.y_log.iter().map(|(s, b)| (*s, b.as_ref())));
        let a = am::Relay::load(limits, None, self.a_log.iter().map(|(s, b)| (*s, b.as_ref())));
        assert!(y.quarantined.is_empty() && a.quarantined.is_empty());
        let live = (self.y.read(|d| yjs(&d.transact())).unwrap(), self.a.read(&automerge).unwrap());
        let loaded = (y.relay.read(|d| yjs(&d.transact())).unwrap(), a.relay.read(&automerge).unwrap());
        assert_eq!(live, loaded);
    }
}

fn message<'a>(
    id: &'a str,
    author: &'a str,
    body: &'a str,
    at: i64,
    parent: Option<&'a str>,
) -> NewMessage<'a> {
    NewMessage { id, author, body, at, parent, attachments: &[] }
}

#[test]
fn messages_are_posted_edited_reacted_to_and_deleted_alike_on_both_crdts() {
    let mut doc = Both::new();
    let files = ["file-1".to_owned()];
    let first =
        NewMessage { attachments: &files, ..message("m1", "u-ada", "Launch Friday? <@u-bob>", 1000, None) };
    doc.write(&channel::post(&first)).unwrap();
    doc.write(&channel::post(&message("m2", "u-bob", "Yes", 2000, Some("m1")))).unwrap();
    doc.write(&channel::react("m1", "👍", "u-bob", true)).unwrap();
    doc.write(&channel::react("m1", "👍", "u-cy", true)).unwrap();
    doc.write(&channel::react("m1", "👍", "u-cy", false)).unwrap();
    doc.write(&channel::edit("m1", "Launch Monday? <@u-bob>", 3000)).unwrap();
    doc.write(&channel::delete("m2")).unwrap();

    let c = doc.project(|t| channel::from_yjs(t), channel::from_automerge);
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    let m1 = c.messages.iter().find(|m| m.id == "m1").unwrap();
    assert_eq!(m1.body, "Launch Monday? <@u-bob>");
    assert_eq!((m1.edited_at, m1.mentions.as_slice()), (Some(3000), &["u-bob".to_owned()][..]));
    assert_eq!(m1.attachments, files);
    assert_eq!(m1.reactions.len(), 1);
    assert_eq!(
        (m1.reactions[0].emoji.as_str(), m1.reactions[0].users.as_slice()),
        ("👍", &["u-bob".to_owned()][..])
    );
    let m2 = c.messages.iter().find(|m| m.id == "m2").unwrap();
    assert!(m2.deleted && m2.body.is_empty(), "{m2:?}");
    assert_eq!(m2.parent.as_deref(), Some("m1"));
    doc.reload_matches(|t| channel::from_yjs(t), channel::from_automerge);
}

#[test]
fn tasks_are_created_moved_assigned_and_archived_alike_on_both_crdts() {
    let mut doc = Both::new();
    let fields = TaskChange {
        title: Some("Write the launch post".into()),
        description: Some("Draft, then review".into()),
        column: Some("todo".into()),
        priority: Some(Priority::High),
        assignees: Some(vec!["u-ada".into()]),
        labels: Some(vec!["launch".into()]),
        due: Some(Some("2026-12-24".into())),
        order: Some(1.0),
        archived: None,
    };
    fields.check().unwrap();
    doc.write(&board::add_column("todo", "To do")).unwrap();
    doc.write(&board::add_column("doing", "Doing")).unwrap();
    doc.write(&board::create_task("t1", &fields, "u-ada", 5000)).unwrap();
    let moved = TaskChange {
        column: Some("doing".into()),
        order: Some(0.5),
        assignees: Some(vec!["u-ada".into(), "u-bob".into()]),
        description: Some("Draft, then review with Bob".into()),
        due: Some(None),
        ..TaskChange::default()
    };
    doc.write(&moved.changes("t1")).unwrap();
    doc.write(&TaskChange { archived: Some(true), ..TaskChange::default() }.changes("t1")).unwrap();

    let b = doc.project(|t| board::from_yjs(t), board::from_automerge);
    assert!(b.skipped.is_empty(), "{:?}", b.skipped);
    assert_eq!(b.columns.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["todo", "doing"]);
    let t = &b.tasks[0];
    assert_eq!(
        (t.title.as_str(), t.column.as_deref(), t.order),
        ("Write the launch post", Some("doing"), 0.5)
    );
    assert_eq!((t.priority, t.due.as_deref(), t.archived), (Priority::High, None, true));
    assert_eq!(t.assignees, ["u-ada", "u-bob"]);
    assert_eq!(t.description, "Draft, then review with Bob");
    assert_eq!((t.created_by.as_deref(), t.created_at), (Some("u-ada"), Some(5000)));
    doc.reload_matches(|t| board::from_yjs(t), board::from_automerge);

    let bad = TaskChange { due: Some(Some("Friday".into())), ..TaskChange::default() };
    assert!(bad.check().unwrap_err().contains("due"));
}

#[test]
fn shapes_are_added_changed_and_removed_alike_on_both_crdts() {
    let mut doc = Both::new();
    let bx = ShapeChange {
        kind: Some(ShapeKind::Rectangle),
        x: Some(0.0),
        y: Some(0.0),
        width: Some(120.0),
        height: Some(60.0),
        text: Some("Plan".into()),
        z: Some(1.0),
        ..ShapeChange::default()
    };
    doc.write(&bx.changes("box-1")).unwrap();
    let arrow = ShapeChange {
        kind: Some(ShapeKind::Arrow),
        x: Some(120.0),
        y: Some(30.0),
        points: Some(vec![0.0, 0.0, 80.0, 0.0]),
        from: Some(Some("box-1".into())),
        ..ShapeChange::default()
    };
    doc.write(&arrow.changes("arrow-1")).unwrap();
    doc.write(
        &ShapeChange { x: Some(40.0), fill: Some("#eee".into()), ..ShapeChange::default() }.changes("box-1"),
    )
    .unwrap();
    doc.write(&whiteboard::delete_shape("nothing-there")).unwrap();
    let w = doc.project(|t| whiteboard::from_yjs(t), whiteboard::from_automerge);
    assert_eq!(w.shapes.len(), 2);
    let b = w.shapes.iter().find(|s| s.id == "box-1").unwrap();
    assert_eq!((b.x, b.fill.as_deref(), b.text.as_str()), (40.0, Some("#eee"), "Plan"));
    let a = w.shapes.iter().find(|s| s.id == "arrow-1").unwrap();
    assert_eq!((a.from.as_deref(), a.points.as_slice()), (Some("box-1"), &[(0.0, 0.0), (80.0, 0.0)][..]));

    doc.write(&ShapeChange { from: Some(None), ..ShapeChange::default() }.changes("arrow-1")).unwrap();
    doc.write(&whiteboard::delete_shape("box-1")).unwrap();
    let w = doc.project(|t| whiteboard::from_yjs(t), whiteboard::from_automerge);
    assert_eq!((w.shapes.len(), w.shapes[0].from.as_deref()), (1, None));
    doc.reload_matches(|t| whiteboard::from_yjs(t), whiteboard::from_automerge);

    assert!(ShapeChange { width: Some(-1.0), ..ShapeChange::default() }.check().is_err());
    assert!(ShapeChange { points: Some(vec![1.0]), ..ShapeChange::default() }.check().is_err());
}

#[test]
fn comments_are_anchored_replied_to_and_resolved_alike_on_both_crdts() {
    let mut doc = Both::new();
    let text = "Hello brave new world";
    let (_, y_seq) = doc
        .y
        .write(|txn| {
            let content = txn.get_or_insert_text("content");
            content.insert(txn, 0, text);
        })
        .unwrap();
    let (_, a_seq) = doc
        .a
        .write(|tx| {
            let content = tx.put_object(ROOT, "content", ObjType::Text)?;
            tx.splice_text(&content, 0, 0, text)
        })
        .unwrap();
    doc.settle(y_seq, a_seq);
    let comment = NewComment {
        id: "c1",
        author: "u-ada",
        body: "Too dramatic? <@u-bob>",
        at: 10,
        parent: None,
        anchor: Some((6, 15)),
    };
    doc.write(&document::add_comment(&comment)).unwrap();
    let reply =
        NewComment { id: "c2", author: "u-bob", body: "Keep it", at: 20, parent: Some("c1"), anchor: None };
    doc.write(&document::add_comment(&reply)).unwrap();
    doc.write(&document::resolve_comment("c1", true)).unwrap();
    // Text typed before and inside the anchored range moves the quote with it.
    let (_, y_seq) = doc
        .y
        .write(|txn| {
            let t = txn.get_or_insert_text("content");
            t.insert(txn, 12, "very ");
            t.insert(txn, 0, "Oh! ");
        })
        .unwrap();
    let (_, a_seq) = doc
        .a
        .write(|tx| {
            let Some((_, content)) = automerge::ReadDoc::get(tx, ROOT, "content")? else { unreachable!() };
            tx.splice_text(&content, 12, 0, "very ")?;
            tx.splice_text(&content, 0, 0, "Oh! ")
        })
        .unwrap();
    doc.settle(y_seq, a_seq);
    let d = doc.project(|t| document::from_yjs(t), document::from_automerge);
    let (c1, c2) = (&d.comments[0], &d.comments[1]);
    assert_eq!((c1.quote.as_deref(), c1.resolved), (Some("brave very new"), true));
    assert_eq!((c2.parent.as_deref(), c2.quote.as_deref()), (Some("c1"), None));
    doc.reload_matches(|t| document::from_yjs(t), document::from_automerge);

    let past = NewComment { id: "c3", anchor: Some((6, 500)), ..comment };
    assert!(matches!(doc.write(&document::add_comment(&past)), Err(WriteError::PastTheEnd { .. })));
    let mut plain = Both::new();
    assert_eq!(plain.write(&document::add_comment(&comment)), Err(WriteError::NoText));
}

#[test]
fn a_write_that_cannot_be_made_writes_nothing() {
    let mut doc = Both::new();
    // A client wrote `messages` entry m1 as a string, not a map.
    doc.write(&[Change::set(&["messages", "m1"], "oops")]).unwrap();
    let (y_before, a_before) = (doc.y.last_seq(), doc.a.last_seq());
    let err = doc.write(&channel::react("m1", "👍", "u-ada", true)).unwrap_err();
    assert_eq!(err, WriteError::NotAMap("messages/m1".into()));
    assert_eq!((doc.y.last_seq(), doc.a.last_seq()), (y_before, a_before), "nothing logged");
    assert_eq!(doc.write(&[Change::set(&["messages"], "x")]), Err(WriteError::ShortPath));
}

#[test]
fn a_write_reaches_joined_peers_only_once_durable() {
    // Yjs: a synced y-websocket peer gets the update as a broadcast after the commit.
    let mut relay = yjs::Relay::new(RelayLimits::default());
    relay.handle_join(P, Access::ReadWrite);
    relay.handle_message(P, Message::SyncStep1(Bytes::from_static(&[0])));
    relay.handle_durable(0);
    std::iter::from_fn(|| relay.poll_event()).for_each(drop);
    let changes = channel::post(&message("m1", "u-ada", "hello", 1, None));
    let (done, seq) = relay.write(|txn| write::apply_yjs(txn, &changes)).unwrap();
    done.unwrap();
    let before: Vec<Event> = std::iter::from_fn(|| relay.poll_event()).collect();
    assert!(before.iter().all(|e| matches!(e, Event::Append { peer: PeerId::LOCAL, .. })), "{before:?}");
    relay.handle_durable(seq);
    let update = std::iter::from_fn(|| relay.poll_event())
        .find_map(|e| match e {
            Event::Broadcast { frame, except } if except.is_empty() => {
                match decode_frame(&frame).unwrap().remove(0) {
                    Message::Update(update) => Some(update),
                    _ => None,
                }
            }
            _ => None,
        })
        .expect("the write is broadcast");
    let peer = Doc::new();
    peer.transact_mut().apply_update(Update::decode_v1(&update).unwrap()).unwrap();
    let c = channel::from_yjs(&peer.transact());
    assert_eq!(c.messages[0].body, "hello");
    assert!(peer.transact().encode_state_as_update_v1(&StateVector::default()).len() > 2);

    // Automerge: a joined automerge-repo peer is sent a sync message, held until durable.
    let mut relay = am::Relay::new(RelayLimits::default());
    let route = Route {
        local: "weft-test".into(),
        remote: "client-1".into(),
        document: DocumentId::from_binary(&[3; 16]),
    };
    relay.handle_join(P, Access::ReadWrite, route);
    let (done, seq) = relay.write(|tx| write::apply_automerge(tx, &changes)).unwrap();
    done.unwrap();
    let before: Vec<Event> = std::iter::from_fn(|| relay.poll_event()).collect();
    assert!(before.iter().all(|e| !matches!(e, Event::Send { .. })), "{before:?}");
    relay.handle_durable(seq);
    let after: Vec<Event> = std::iter::from_fn(|| relay.poll_event()).collect();
    assert!(after.iter().any(|e| matches!(e, Event::Send { peer: P, .. })), "{after:?}");
}

#[test]
fn a_rest_edit_of_a_body_merges_with_a_clients_concurrent_typing() {
    // The relay and a client start from the same message; the client appends, the relay
    // replaces a word; both survive (the body is edited in place, not replaced).
    let mut relay = yjs::Relay::new(RelayLimits::default());
    relay.handle_join(P, Access::ReadWrite);
    relay.handle_message(P, Message::SyncStep1(Bytes::from_static(&[0])));
    let changes = channel::post(&message("m1", "u-ada", "launch on friday", 1, None));
    let (_, seq) = relay.write(|txn| write::apply_yjs(txn, &changes)).unwrap();
    relay.handle_durable(seq);
    let state = relay.read(|d| d.transact().encode_state_as_update_v1(&StateVector::default())).unwrap();
    let client = Doc::with_client_id(77);
    client.transact_mut().apply_update(Update::decode_v1(&state).unwrap()).unwrap();
    let before = client.transact().state_vector();
    {
        let messages = client.get_or_insert_map("messages");
        let mut txn = client.transact_mut();
        let Some(yrs::Out::YMap(m)) = yrs::Map::get(&messages, &txn, "m1") else { panic!("m1") };
        let Some(yrs::Out::YText(body)) = yrs::Map::get(&m, &txn, "body") else { panic!("body") };
        body.push(&mut txn, " evening");
    }
    let typed = client.transact().encode_state_as_update_v1(&before);
    let (_, seq) =
        relay.write(|txn| write::apply_yjs(txn, &channel::edit("m1", "launch on monday", 2))).unwrap();
    relay.handle_durable(seq);
    relay.handle_message(P, Message::Update(Bytes::from(typed)));
    relay.handle_durable(relay.last_seq());
    let c = relay.read(|d| channel::from_yjs(&d.transact())).unwrap();
    assert_eq!(c.messages[0].body, "launch on monday evening");
}
