//! The channel layout on both CRDTs: messages written the way a JavaScript client would
//! (`docs/schemas.md`) project to the same messages, threads, reactions and mentions from Yjs and
//! from Automerge; pages run newest first with a cursor; deleted messages stay as tombstones;
//! malformed entries are skipped and reported; and concurrent posts, edits, reactions and
//! deletions from two replicas project identically once merged.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};
use proptest::prelude::*;
use weft_sync_core::domain::channel::{self, Channel, Cursor, Reaction};
use yrs::updates::decoder::Decode;
use yrs::{Doc, Map, MapPrelim, ReadTxn, StateVector, Text, TextPrelim, Transact, Update};

/// A message as a client posts it.
struct Post<'a> {
    id: &'a str,
    author: &'a str,
    body: &'a str,
    at: i64,
    parent: Option<&'a str>,
}

fn yjs_post(doc: &Doc, p: &Post) {
    let messages = doc.get_or_insert_map("messages");
    let mut txn = doc.transact_mut();
    let m = messages.insert(&mut txn, p.id, MapPrelim::default());
    m.insert(&mut txn, "author", p.author);
    let body = m.insert(&mut txn, "body", TextPrelim::new(""));
    body.push(&mut txn, p.body);
    m.insert(&mut txn, "at", p.at);
    if let Some(parent) = p.parent {
        m.insert(&mut txn, "parent", parent);
    }
    m.insert(&mut txn, "reactions", MapPrelim::default());
}

fn yjs_react(doc: &Doc, id: &str, emoji: &str, user: &str, on: bool) {
    let messages = doc.get_or_insert_map("messages");
    let mut txn = doc.transact_mut();
    let Some(yrs::Out::YMap(m)) = messages.get(&txn, id) else { return };
    let Some(yrs::Out::YMap(reactions)) = m.get(&txn, "reactions") else { return };
    let users = match reactions.get(&txn, emoji) {
        Some(yrs::Out::YMap(users)) => users,
        _ => reactions.insert(&mut txn, emoji, MapPrelim::default()),
    };
    if on {
        users.insert(&mut txn, user, true);
    } else {
        users.remove(&mut txn, user);
    }
}

fn automerge_post(doc: &mut AutoCommit, p: &Post) {
    let messages = match doc.get(ROOT, "messages").unwrap() {
        Some((_, id)) => id,
        None => doc.put_object(ROOT, "messages", ObjType::Map).unwrap(),
    };
    let m = doc.put_object(&messages, p.id, ObjType::Map).unwrap();
    doc.put(&m, "author", p.author).unwrap();
    let body = doc.put_object(&m, "body", ObjType::Text).unwrap();
    doc.splice_text(&body, 0, 0, p.body).unwrap();
    doc.put(&m, "at", p.at).unwrap();
    if let Some(parent) = p.parent {
        doc.put(&m, "parent", parent).unwrap();
    }
    doc.put_object(&m, "reactions", ObjType::Map).unwrap();
}

fn automerge_react(doc: &mut AutoCommit, id: &str, emoji: &str, user: &str, on: bool) {
    let Some((_, messages)) = doc.get(ROOT, "messages").unwrap() else { return };
    let Some((_, m)) = doc.get(&messages, id).unwrap() else { return };
    let Some((_, reactions)) = doc.get(&m, "reactions").unwrap() else { return };
    let users = match doc.get(&reactions, emoji).unwrap() {
        Some((_, users)) => users,
        None => doc.put_object(&reactions, emoji, ObjType::Map).unwrap(),
    };
    if on {
        doc.put(&users, user, true).unwrap();
    } else {
        doc.delete(&users, user).unwrap();
    }
}

const POSTS: &[Post] = &[
    Post { id: "m1", author: "u-ada", body: "Launch on Friday? <@u-bob>", at: 1_000, parent: None },
    Post { id: "m2", author: "u-bob", body: "Yes", at: 2_000, parent: Some("m1") },
    Post { id: "m3", author: "u-cy", body: "Coffee?", at: 3_000, parent: None },
    Post { id: "m4", author: "u-ada", body: "<@u-cy> later", at: 3_000, parent: None },
    Post { id: "m5", author: "u-cy", body: "ok <@u-ada>", at: 4_000, parent: Some("m1") },
];

fn yjs_channel() -> Doc {
    let doc = Doc::with_client_id(1);
    let meta = doc.get_or_insert_map("channel");
    meta.insert(&mut doc.transact_mut(), "topic", "launch");
    for p in POSTS {
        yjs_post(&doc, p);
    }
    yjs_react(&doc, "m1", "👍", "u-cy", true);
    yjs_react(&doc, "m1", "👍", "u-bob", true);
    yjs_react(&doc, "m1", "🎉", "u-bob", true);
    yjs_react(&doc, "m1", "🎉", "u-bob", false);
    doc
}

fn automerge_channel() -> AutoCommit {
    let mut doc = AutoCommit::new();
    let meta = doc.put_object(ROOT, "channel", ObjType::Map).unwrap();
    doc.put(&meta, "topic", "launch").unwrap();
    for p in POSTS {
        automerge_post(&mut doc, p);
    }
    automerge_react(&mut doc, "m1", "👍", "u-cy", true);
    automerge_react(&mut doc, "m1", "👍", "u-bob", true);
    automerge_react(&mut doc, "m1", "🎉", "u-bob", true);
    automerge_react(&mut doc, "m1", "🎉", "u-bob", false);
    doc
}

fn ids<'a>(messages: impl IntoIterator<Item = &'a channel::Message>) -> Vec<&'a str> {
    messages.into_iter().map(|m| m.id.as_str()).collect()
}

#[test]
fn a_channel_reads_the_same_from_yjs_and_from_automerge() {
    let y = channel::from_yjs(&yjs_channel().transact());
    let a = channel::from_automerge(automerge_channel().document());
    assert_eq!(y, a);
    assert!(y.skipped.is_empty(), "{:?}", y.skipped);
    assert_eq!(y.topic, "launch");
    assert_eq!(ids(&y.messages), ["m1", "m2", "m3", "m4", "m5"], "oldest first, ties by id");
    let m1 = &y.messages[0];
    assert_eq!(m1.mentions, ["u-bob"]);
    assert_eq!(m1.replies, 2);
    assert_eq!(m1.reactions, [Reaction { emoji: "👍".into(), users: vec!["u-bob".into(), "u-cy".into()] }]);
    assert_eq!(ids(y.thread("m1")), ["m2", "m5"]);

    // Pages of the channel itself: newest first, thread replies left to their thread.
    let (first, next) = y.page(None, 2);
    assert_eq!(ids(first), ["m4", "m3"]);
    let next = next.expect("another page");
    assert_eq!(next, Cursor { at: 3_000, id: "m3".into() });
    let (second, last) = y.page(Some(&next), 2);
    assert_eq!((ids(second), last), (vec!["m1"], None));
}

#[test]
fn a_deleted_message_is_a_tombstone_and_its_thread_stays() {
    let doc = yjs_channel();
    {
        let messages = doc.get_or_insert_map("messages");
        let mut txn = doc.transact_mut();
        let Some(yrs::Out::YMap(m1)) = messages.get(&txn, "m1") else { panic!() };
        m1.insert(&mut txn, "deleted", true);
    }
    let c = channel::from_yjs(&doc.transact());
    let m1 = &c.messages[0];
    assert!(m1.deleted && m1.body.is_empty() && m1.mentions.is_empty());
    assert_eq!(ids(c.thread("m1")), ["m2", "m5"]);
}

#[test]
fn malformed_messages_are_skipped_and_reported() {
    let doc = yjs_channel();
    {
        let messages = doc.get_or_insert_map("messages");
        let mut txn = doc.transact_mut();
        messages.insert(&mut txn, "junk", 12);
        let odd = messages.insert(&mut txn, "odd", MapPrelim::default());
        odd.insert(&mut txn, "at", "noon");
        odd.insert(&mut txn, "parent", "gone");
        odd.insert(&mut txn, "reactions", "many");
        odd.insert(&mut txn, "body", "still <@u-ada>");
    }
    let c = channel::from_yjs(&doc.transact());
    let paths: Vec<&str> = c.skipped.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths.len(), 4, "{paths:?}");
    for expected in ["messages/junk", "messages/odd/at", "messages/odd/reactions", "messages/odd/parent"] {
        assert!(paths.contains(&expected), "{expected} in {paths:?}");
    }
    let odd = c.messages.iter().find(|m| m.id == "odd").unwrap();
    assert_eq!(
        (odd.at, odd.parent.as_deref(), odd.mentions.as_slice()),
        (0, None, &["u-ada".to_owned()][..])
    );
    assert_eq!(c.messages.len(), 6);
    assert_eq!(channel::from_yjs(&Doc::new().transact()), Channel::default());
    assert_eq!(channel::from_automerge(AutoCommit::new().document()), Channel::default());
}

/// One random edit of a replica.
#[derive(Debug, Clone)]
enum Change {
    Post { id: u8, at: u16, parent: Option<u8> },
    Revise { id: u8, text: u8 },
    React { id: u8, emoji: u8, user: u8, on: bool },
    Delete(u8),
}

fn edit() -> impl Strategy<Value = Change> {
    prop_oneof![
        (any::<u8>(), any::<u16>(), proptest::option::of(any::<u8>()))
            .prop_map(|(id, at, parent)| Change::Post { id: id % 8, at, parent: parent.map(|p| p % 8) }),
        (any::<u8>(), any::<u8>()).prop_map(|(id, text)| Change::Revise { id: id % 8, text }),
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(id, e, u, on)| Change::React {
            id: id % 8,
            emoji: e % 3,
            user: u % 3,
            on
        }),
        any::<u8>().prop_map(|id| Change::Delete(id % 8)),
    ]
}

const EMOJI: [&str; 3] = ["👍", "🎉", "eyes"];

fn apply_yjs(doc: &Doc, client: u64, e: &Change) {
    let messages = doc.get_or_insert_map("messages");
    match e {
        Change::Post { id, at, parent } => {
            // Ids are the poster's: two replicas never write the same message id.
            let id = format!("c{client}-m{id}");
            if messages.get(&doc.transact(), &id).is_none() {
                let parent = parent.map(|p| format!("c{client}-m{p}"));
                let body = format!("hi <@u{at}>");
                let post =
                    Post { id: &id, author: "u", body: &body, at: i64::from(*at), parent: parent.as_deref() };
                yjs_post(doc, &post);
            }
        }
        Change::Revise { id, text } => {
            let mut txn = doc.transact_mut();
            for key in [format!("c1-m{id}"), format!("c2-m{id}")] {
                if let Some(yrs::Out::YMap(m)) = messages.get(&txn, &key)
                    && let Some(yrs::Out::YText(body)) = m.get(&txn, "body")
                {
                    body.push(&mut txn, &format!(" {text}"));
                    m.insert(&mut txn, "editedAt", 10_000 + i64::from(*text));
                }
            }
        }
        Change::React { id, emoji, user, on } => {
            for key in [format!("c1-m{id}"), format!("c2-m{id}")] {
                yjs_react(doc, &key, EMOJI[*emoji as usize], &format!("u{user}"), *on);
            }
        }
        Change::Delete(id) => {
            let mut txn = doc.transact_mut();
            if let Some(yrs::Out::YMap(m)) = messages.get(&txn, &format!("c{client}-m{id}")) {
                m.insert(&mut txn, "deleted", true);
            }
        }
    }
}

fn apply_automerge(doc: &mut AutoCommit, client: u64, e: &Change) {
    let messages = match doc.get(ROOT, "messages").unwrap() {
        Some((_, id)) => id,
        None => doc.put_object(ROOT, "messages", ObjType::Map).unwrap(),
    };
    match e {
        Change::Post { id, at, parent } => {
            let id = format!("c{client}-m{id}");
            if doc.get(&messages, &id).unwrap().is_none() {
                let parent = parent.map(|p| format!("c{client}-m{p}"));
                let body = format!("hi <@u{at}>");
                let post =
                    Post { id: &id, author: "u", body: &body, at: i64::from(*at), parent: parent.as_deref() };
                automerge_post(doc, &post);
            }
        }
        Change::Revise { id, text } => {
            for key in [format!("c1-m{id}"), format!("c2-m{id}")] {
                if let Some((_, m)) = doc.get(&messages, &key).unwrap()
                    && let Some((_, body)) = doc.get(&m, "body").unwrap()
                {
                    let end = doc.length(&body);
                    doc.splice_text(&body, end, 0, &format!(" {text}")).unwrap();
                    doc.put(&m, "editedAt", 10_000 + i64::from(*text)).unwrap();
                }
            }
        }
        Change::React { id, emoji, user, on } => {
            for key in [format!("c1-m{id}"), format!("c2-m{id}")] {
                automerge_react(doc, &key, EMOJI[*emoji as usize], &format!("u{user}"), *on);
            }
        }
        Change::Delete(id) => {
            if let Some((_, m)) = doc.get(&messages, format!("c{client}-m{id}")).unwrap() {
                doc.put(&m, "deleted", true).unwrap();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_edits_project_identically_on_both_replicas(
        shared in proptest::collection::vec(edit(), 0..8),
        left in proptest::collection::vec(edit(), 0..12),
        right in proptest::collection::vec(edit(), 0..12),
    ) {
        let (a, b) = (Doc::with_client_id(1), Doc::with_client_id(2));
        for e in &shared { apply_yjs(&a, 1, e); }
        let start = a.transact().encode_state_as_update_v1(&StateVector::default());
        b.transact_mut().apply_update(Update::decode_v1(&start).unwrap()).unwrap();
        for e in &left { apply_yjs(&a, 1, e); }
        for e in &right { apply_yjs(&b, 2, e); }
        let to_b = a.transact().encode_state_as_update_v1(&b.transact().state_vector());
        let to_a = b.transact().encode_state_as_update_v1(&a.transact().state_vector());
        b.transact_mut().apply_update(Update::decode_v1(&to_b).unwrap()).unwrap();
        a.transact_mut().apply_update(Update::decode_v1(&to_a).unwrap()).unwrap();
        let (pa, pb) = (channel::from_yjs(&a.transact()), channel::from_yjs(&b.transact()));
        prop_assert_eq!(&pa, &pb);

        let mut x = AutoCommit::new();
        for e in &shared { apply_automerge(&mut x, 1, e); }
        let mut y = x.fork();
        for e in &left { apply_automerge(&mut x, 1, e); }
        for e in &right { apply_automerge(&mut y, 2, e); }
        x.merge(&mut y).unwrap();
        y.merge(&mut x).unwrap();
        prop_assert_eq!(channel::from_automerge(x.document()), channel::from_automerge(y.document()));
    }
}
