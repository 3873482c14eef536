//! Version history on both CRDTs (`yjs::history`, `automerge::history`, `history`): the state at
//! a version, restore as a forward update that keeps unchanged text's identity and merges concurrent edits,
//! attribution and blame after interleaved edits by three users, and projection diffs.

use weft_sync_core::DocKind;
use weft_sync_core::domain::Projection;
use weft_sync_core::history::{self, Author, Authorship, TextOp};
use weft_sync_core::yjs::history as yh;
use yrs::types::Attrs;
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Array, Doc, GetString, IndexedSequence, Map, MapPrelim, ReadTxn, Text, Transact, Update, WriteTxn,
    XmlFragment, XmlTextPrelim,
};

fn sync(from: &Doc, to: &Doc) {
    let sv = to.transact().state_vector();
    let update = from.transact().encode_state_as_update_v1(&sv);
    to.transact_mut().apply_update(Update::decode_v1(&update).unwrap()).unwrap();
}

fn apply(doc: &Doc, update: &[u8]) {
    doc.transact_mut().apply_update(Update::decode_v1(update).unwrap()).unwrap();
}

fn text(doc: &Doc) -> String {
    let txn = doc.transact();
    txn.get_text("content").map(|t| t.get_string(&txn)).unwrap_or_default()
}

/// The relay's replica keeps history; the editors are ordinary (garbage-collecting) documents.
fn relay() -> Doc {
    yh::keeping_history(99)
}

#[test]
fn the_state_at_a_version_is_the_content_then() {
    let relay = relay();
    let editor = Doc::with_client_id(1);
    let t = editor.get_or_insert_text("content");
    t.insert(&mut editor.transact_mut(), 0, "hello world");
    sync(&editor, &relay);
    let v1 = yh::capture(&relay.transact());
    t.remove_range(&mut editor.transact_mut(), 6, 5);
    t.insert(&mut editor.transact_mut(), 6, "there");
    sync(&editor, &relay);
    assert_eq!(text(&relay), "hello there");

    let version = yh::decode_version(&v1).unwrap();
    let state = yh::state_at(&relay.transact(), &version).unwrap();
    assert_eq!(text(&yh::load(&state).unwrap()), "hello world");
    assert!(yh::is_version_of(&relay.transact(), &version));
    assert!(!yh::is_version_of(&Doc::new().transact(), &version), "a version of another document");
}

#[test]
fn every_version_of_a_long_editing_session_reads_back() {
    // Seeded random typing and deleting by two clients, a version every few updates: versions end
    // inside items yrs merged or split (yrs 0.28's own encoding of such a state does not decode;
    // found on the standard editing trace).
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let relay = relay();
    let editors = [Doc::with_client_id(1), Doc::with_client_id(2)];
    let mut versions = Vec::new();
    for step in 0..1500 {
        let editor = &editors[rng.random_range(0..2)];
        sync(&relay, editor);
        let t = editor.get_or_insert_text("content");
        let len = t.len(&editor.transact());
        if len > 0 && rng.random_bool(0.3) {
            let at = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - at).min(5));
            t.remove_range(&mut editor.transact_mut(), at, n);
        } else {
            let at = rng.random_range(0..=len);
            t.insert(&mut editor.transact_mut(), at, ["a", "bc", "def "][rng.random_range(0..3)]);
        }
        sync(editor, &relay);
        if step % 7 == 0 {
            versions.push((yh::decode_version(&yh::capture(&relay.transact())).unwrap(), text(&relay)));
        }
    }
    for (version, expected) in &versions {
        let state = yh::state_at(&relay.transact(), version).unwrap();
        assert_eq!(&text(&yh::load(&state).unwrap()), expected);
    }
}

#[test]
fn a_document_that_collects_garbage_has_no_past_states() {
    let doc = Doc::with_client_id(3);
    doc.get_or_insert_text("content").insert(&mut doc.transact_mut(), 0, "x");
    let version = yh::decode_version(&yh::capture(&doc.transact())).unwrap();
    let err = yh::state_at(&doc.transact(), &version).unwrap_err();
    assert!(err.detail.contains("does not keep history"), "{err}");
}

#[test]
fn restore_is_a_forward_update_that_keeps_unchanged_text_and_merges_offline_edits() {
    let relay = relay();
    let alice = Doc::with_client_id(1);
    let t = alice.get_or_insert_text("content");
    t.insert(&mut alice.transact_mut(), 0, "The quick fox");
    sync(&alice, &relay);
    let v1 = yh::decode_version(&yh::capture(&relay.transact())).unwrap();

    // Bob edits after the version; Carol, offline, has everything so far and keeps typing.
    let bob = Doc::with_client_id(2);
    sync(&relay, &bob);
    let bt = bob.get_or_insert_text("content");
    bt.remove_range(&mut bob.transact_mut(), 4, 6); // "The fox"
    bt.insert(&mut bob.transact_mut(), 7, " jumps"); // "The fox jumps"
    sync(&bob, &relay);
    let carol = Doc::with_client_id(3);
    sync(&relay, &carol);
    let ct = carol.get_or_insert_text("content");
    // An anchor into text that the restore leaves alone ("The").
    let anchor = ct.sticky_index(&carol.transact(), 2, yrs::Assoc::After).unwrap();
    ct.insert(&mut carol.transact_mut(), 0, ">> ");

    let restore = yh::revert(&relay.transact(), &v1, 99).unwrap();
    assert!(!restore.is_empty());
    apply(&relay, &restore);
    assert_eq!(text(&relay), "The quick fox");

    // Everyone converges; Carol's concurrent edit survives; her anchor still points into "The".
    sync(&relay, &carol);
    sync(&carol, &relay);
    sync(&relay, &bob);
    assert_eq!(text(&relay), ">> The quick fox");
    assert_eq!(text(&carol), text(&relay));
    assert_eq!(text(&bob), text(&relay));
    let offset = anchor.get_offset(&carol.transact()).unwrap();
    assert_eq!(offset.index, 5, "the anchor moved with its text, not reset");

    // Nothing left to restore: the same version again is empty.
    let v_now = yh::decode_version(&yh::capture(&relay.transact())).unwrap();
    assert!(yh::revert(&relay.transact(), &v_now, 99).unwrap().is_empty());
}

#[test]
fn a_restore_can_be_restored_away_and_again() {
    let relay = relay();
    let editor = Doc::with_client_id(1);
    let t = editor.get_or_insert_text("content");
    t.insert(&mut editor.transact_mut(), 0, "abc");
    sync(&editor, &relay);
    let v1 = yh::decode_version(&yh::capture(&relay.transact())).unwrap();
    t.remove_range(&mut editor.transact_mut(), 1, 1);
    sync(&editor, &relay);
    let v2 = yh::decode_version(&yh::capture(&relay.transact())).unwrap();
    assert_eq!(text(&relay), "ac");

    for (version, expected) in [(&v1, "abc"), (&v2, "ac"), (&v1, "abc"), (&v2, "ac")] {
        let restore = yh::revert(&relay.transact(), version, 99).unwrap();
        apply(&relay, &restore);
        assert_eq!(text(&relay), expected);
        sync(&relay, &editor);
        assert_eq!(text(&editor), expected);
    }
}

#[test]
fn restore_reverts_maps_and_arrays_of_a_board() {
    let relay = relay();
    let editor = Doc::with_client_id(1);
    let tasks = editor.get_or_insert_map("tasks");
    {
        let mut txn = editor.transact_mut();
        let one = tasks.insert(
            &mut txn,
            "t1",
            MapPrelim::from([("title", Any::from("Ship")), ("status", Any::from("todo"))]),
        );
        one.insert(&mut txn, "order", 1.0);
        tasks.insert(&mut txn, "t2", MapPrelim::from([("title", Any::from("Test"))]));
        let columns = txn.get_or_insert_array("columns");
        columns.push_back(&mut txn, MapPrelim::from([("id", Any::from("c1")), ("name", Any::from("Todo"))]));
    }
    sync(&editor, &relay);
    let before = Projection::of_yjs(&relay, DocKind::Board);
    let v1 = yh::decode_version(&yh::capture(&relay.transact())).unwrap();
    {
        let mut txn = editor.transact_mut();
        let Some(yrs::Out::YMap(one)) = tasks.get(&txn, "t1") else { panic!() };
        one.insert(&mut txn, "status", "done");
        one.insert(&mut txn, "title", "Shipped");
        tasks.remove(&mut txn, "t2");
        tasks.insert(&mut txn, "t3", MapPrelim::from([("title", Any::from("New"))]));
        let columns = txn.get_or_insert_array("columns");
        columns.push_back(&mut txn, MapPrelim::from([("id", Any::from("c2")), ("name", Any::from("Done"))]));
    }
    sync(&editor, &relay);
    let after = Projection::of_yjs(&relay, DocKind::Board);
    let diff = history::diff(&before, &after);
    let changes: Vec<(&str, &str, &str)> =
        diff.items.iter().map(|c| (c.kind, c.id.as_str(), c.change)).collect();
    assert_eq!(
        changes,
        vec![
            ("column", "c2", "added"),
            ("task", "t1", "changed"),
            ("task", "t2", "removed"),
            ("task", "t3", "added")
        ]
    );
    assert_eq!((diff.summary.items_added, diff.summary.items_removed, diff.summary.items_changed), (2, 1, 1));

    let restore = yh::revert(&relay.transact(), &v1, 99).unwrap();
    apply(&relay, &restore);
    assert_eq!(Projection::of_yjs(&relay, DocKind::Board), before);
    sync(&relay, &editor);
    assert_eq!(Projection::of_yjs(&editor, DocKind::Board), before);
}

#[test]
fn restore_brings_back_formatted_rich_text() {
    let relay = relay();
    let editor = Doc::with_client_id(1);
    let fragment = editor.get_or_insert_xml_fragment("default");
    {
        let mut txn = editor.transact_mut();
        let p = fragment.push_back(&mut txn, yrs::XmlElementPrelim::empty("paragraph"));
        let t = p.push_back(&mut txn, XmlTextPrelim::new("plain "));
        let bold = Attrs::from([("bold".into(), Any::Bool(true))]);
        t.insert_with_attributes(&mut txn, 6, "bold", bold);
    }
    sync(&editor, &relay);
    let before = Projection::of_yjs(&relay, DocKind::Document);
    let v1 = yh::decode_version(&yh::capture(&relay.transact())).unwrap();
    {
        let mut txn = editor.transact_mut();
        let Some(yrs::XmlOut::Element(p)) = fragment.get(&txn, 0) else { panic!() };
        let Some(yrs::XmlOut::Text(t)) = p.get(&txn, 0) else { panic!() };
        t.remove_range(&mut txn, 5, 5); // "plain"
        fragment.push_back(&mut txn, yrs::XmlElementPrelim::empty("paragraph"));
    }
    sync(&editor, &relay);
    assert_ne!(Projection::of_yjs(&relay, DocKind::Document), before);
    let restore = yh::revert(&relay.transact(), &v1, 99).unwrap();
    apply(&relay, &restore);
    assert_eq!(Projection::of_yjs(&relay, DocKind::Document), before, "the bold span is back, bold");
}

#[test]
fn blame_names_each_member_after_interleaved_edits() {
    let relay = relay();
    let users = ["u-ann", "u-ben", "u-cat"];
    let docs: Vec<Doc> = (1..=3).map(Doc::with_client_id).collect();
    let mut runs = Vec::new();
    // Each user in turn types a word at a place in the shared text; every update is attributed.
    let edits: [(usize, u32, &str); 6] = [
        (0, 0, "alpha "),
        (1, 6, "beta "),
        (2, 0, "gamma "),
        (0, 17, "delta"),
        (1, 12, "eps "),
        (2, 26, "!"),
    ];
    for (at, (who, at_index, word)) in (1_000..).zip(edits) {
        let doc = &docs[who];
        sync(&relay, doc);
        let t = doc.get_or_insert_text("content");
        let before = doc.transact().state_vector();
        t.insert(&mut doc.transact_mut(), at_index, word);
        let update = doc.transact().encode_state_as_update_v1(&before);
        apply(&relay, &update);
        for run in yh::insertions(&update).unwrap() {
            runs.push((run, Author { user: Some(users[who].to_owned()), at }));
        }
    }
    let current = text(&relay);
    assert_eq!(current, "gamma alpha eps beta delta!");
    let authorship = Authorship::new(runs);
    let written = yh::written(&relay.transact()).unwrap();
    let spans = history::blame(&current, &written, &authorship);
    let named: Vec<(&str, &str)> = spans
        .iter()
        .map(|s| (s.text.as_str(), s.author.as_ref().unwrap().user.as_deref().unwrap()))
        .collect();
    assert_eq!(
        named,
        // Ben's two words are two edits (two times): two spans.
        vec![
            ("gamma ", "u-cat"),
            ("alpha ", "u-ann"),
            ("eps ", "u-ben"),
            ("beta ", "u-ben"),
            ("delta", "u-ann"),
            ("!", "u-cat")
        ]
    );
    assert_eq!(spans.last().unwrap().end, current.chars().count());
}

#[test]
fn blame_of_a_tiptap_document_aligns_with_its_plain_text() {
    let relay = relay();
    let doc = Doc::with_client_id(5);
    let fragment = doc.get_or_insert_xml_fragment("default");
    let before = doc.transact().state_vector();
    {
        let mut txn = doc.transact_mut();
        for line in ["first", "second"] {
            let p = fragment.push_back(&mut txn, yrs::XmlElementPrelim::empty("paragraph"));
            p.push_back(&mut txn, XmlTextPrelim::new(line));
        }
    }
    let update = doc.transact().encode_state_as_update_v1(&before);
    apply(&relay, &update);
    let runs = yh::insertions(&update).unwrap();
    let authorship =
        Authorship::new(runs.into_iter().map(|r| (r, Author { user: Some("u-x".into()), at: 7 })));
    let Projection::Document(projected) = Projection::of_yjs(&relay, DocKind::Document) else { panic!() };
    let plain = projected.to_text();
    assert_eq!(plain, "first\nsecond");
    let spans = history::blame(&plain, &yh::written(&relay.transact()).unwrap(), &authorship);
    let shape: Vec<(&str, bool)> = spans.iter().map(|s| (s.text.as_str(), s.author.is_some())).collect();
    assert_eq!(shape, vec![("first", true), ("\n", false), ("second", true)]);
}

#[test]
fn a_text_diff_marks_what_was_added_and_removed() {
    let doc = |s: &str| {
        let d = Doc::with_client_id(1);
        d.get_or_insert_text("content").insert(&mut d.transact_mut(), 0, s);
        Projection::of_yjs(&d, DocKind::Document)
    };
    let diff = history::diff(&doc("one two\nthree"), &doc("one 2\nthree\nfour"));
    assert_eq!(
        diff.text,
        vec![
            TextOp::Equal("one ".into()),
            TextOp::Delete("two".into()),
            TextOp::Insert("2".into()),
            TextOp::Equal("\nthree".into()),
            TextOp::Insert("\nfour".into()),
        ]
    );
    assert_eq!((diff.summary.chars_added, diff.summary.chars_removed), (6, 3));
}

mod automerge_history {
    //! The same on Automerge documents (`automerge::history`): versions are heads.

    use automerge::transaction::Transactable;
    use automerge::{ActorId, Automerge, ObjType, ROOT, ReadDoc};
    use weft_sync_core::DocKind;
    use weft_sync_core::automerge::history as ah;
    use weft_sync_core::domain::Projection;
    use weft_sync_core::history::{self, Author, Authorship};

    fn peer(n: u8) -> Automerge {
        Automerge::new().with_actor(ActorId::from([n; 16].as_slice()))
    }

    fn content(doc: &Automerge) -> String {
        match doc.get(ROOT, "content").unwrap() {
            Some((_, id)) => doc.text(&id).unwrap(),
            None => String::new(),
        }
    }

    fn merge(from: &Automerge, to: &mut Automerge) {
        to.merge(&mut from.clone()).unwrap();
    }

    fn write(doc: &mut Automerge, edit: impl FnOnce(&mut automerge::transaction::Transaction<'_>)) {
        let mut tx = doc.transaction();
        edit(&mut tx);
        tx.commit();
    }

    /// The relay's restore: a transaction on its document that makes it equal to the version.
    fn restore(relay: &mut Automerge, version: &[u8]) {
        let heads = ah::decode_version(version).unwrap();
        assert!(ah::is_version_of(relay, &heads));
        let target = ah::state_at(relay, &heads).unwrap();
        let mut tx = relay.transaction();
        ah::revert(&mut tx, &target).unwrap();
        tx.commit();
    }

    #[test]
    fn the_state_at_a_version_is_the_content_then_and_restore_merges() {
        let mut alice = peer(1);
        write(&mut alice, |tx| {
            let text = tx.put_object(ROOT, "content", ObjType::Text).unwrap();
            tx.splice_text(&text, 0, 0, "The quick fox").unwrap();
        });
        let mut relay = peer(9);
        merge(&alice, &mut relay);
        let v1 = ah::capture(&relay);

        let mut bob = peer(2);
        merge(&relay, &mut bob);
        write(&mut bob, |tx| {
            let (_, text) = tx.get(ROOT, "content").unwrap().unwrap();
            tx.splice_text(&text, 4, 6, "").unwrap();
            tx.splice_text(&text, 7, 0, " jumps").unwrap();
        });
        merge(&bob, &mut relay);
        assert_eq!(content(&relay), "The fox jumps");
        let heads = ah::decode_version(&v1).unwrap();
        assert_eq!(content(&ah::state_at(&relay, &heads).unwrap()), "The quick fox");

        // Carol, offline with everything so far, types and holds a cursor into "The".
        let mut carol = peer(3);
        merge(&relay, &mut carol);
        let (_, ctext) = carol.get(ROOT, "content").unwrap().unwrap();
        let cursor = carol.get_cursor(&ctext, 2, None).unwrap();
        write(&mut carol, |tx| tx.splice_text(&ctext, 0, 0, ">> ").unwrap());

        restore(&mut relay, &v1);
        assert_eq!(content(&relay), "The quick fox");
        merge(&carol, &mut relay);
        merge(&relay, &mut carol);
        assert_eq!(content(&relay), ">> The quick fox");
        assert_eq!(content(&carol), content(&relay));
        assert_eq!(carol.get_cursor_position(&ctext, &cursor, None).unwrap(), 5, "the cursor kept its text");

        // The restore is a version too; restoring away from it and back again converges.
        let v2 = ah::capture(&relay);
        let back = ah::capture(&ah::state_at(&relay, &heads).unwrap());
        restore(&mut relay, &back);
        assert_eq!(content(&relay), "The quick fox");
        restore(&mut relay, &v2);
        assert_eq!(content(&relay), ">> The quick fox");
    }

    #[test]
    fn restore_reverts_a_board() {
        let mut editor = peer(1);
        write(&mut editor, |tx| {
            let tasks = tx.put_object(ROOT, "tasks", ObjType::Map).unwrap();
            for (id, title) in [("t1", "Ship"), ("t2", "Test")] {
                let task = tx.put_object(&tasks, id, ObjType::Map).unwrap();
                tx.put(&task, "title", title).unwrap();
                tx.put(&task, "status", "todo").unwrap();
            }
            let columns = tx.put_object(ROOT, "columns", ObjType::List).unwrap();
            let column = tx.insert_object(&columns, 0, ObjType::Map).unwrap();
            tx.put(&column, "id", "c1").unwrap();
            tx.put(&column, "name", "Todo").unwrap();
        });
        let mut relay = peer(9);
        merge(&editor, &mut relay);
        let before = Projection::of_automerge(&relay, DocKind::Board);
        let v1 = ah::capture(&relay);
        write(&mut editor, |tx| {
            let (_, tasks) = tx.get(ROOT, "tasks").unwrap().unwrap();
            let (_, t1) = tx.get(&tasks, "t1").unwrap().unwrap();
            tx.put(&t1, "title", "Shipped").unwrap();
            tx.delete(&tasks, "t2").unwrap();
            let t3 = tx.put_object(&tasks, "t3", ObjType::Map).unwrap();
            tx.put(&t3, "title", "New").unwrap();
            let (_, columns) = tx.get(ROOT, "columns").unwrap().unwrap();
            let column = tx.insert_object(&columns, 0, ObjType::Map).unwrap();
            tx.put(&column, "id", "c0").unwrap();
        });
        merge(&editor, &mut relay);
        let after = Projection::of_automerge(&relay, DocKind::Board);
        let diff = history::diff(&before, &after);
        assert_eq!(
            (diff.summary.items_added, diff.summary.items_removed, diff.summary.items_changed),
            (2, 1, 1)
        );
        restore(&mut relay, &v1);
        assert_eq!(Projection::of_automerge(&relay, DocKind::Board), before);
        merge(&relay, &mut editor);
        assert_eq!(Projection::of_automerge(&editor, DocKind::Board), before);
    }

    #[test]
    fn blame_names_each_member_after_interleaved_edits() {
        let users = ["u-ann", "u-ben", "u-cat"];
        let mut peers: Vec<Automerge> = (1..=3).map(peer).collect();
        let mut relay = peer(9);
        let mut base = Automerge::new();
        let mut runs = Vec::new();
        let edits: [(usize, usize, &str); 4] =
            [(0, 0, "alpha "), (1, 6, "beta "), (2, 0, "gamma "), (0, 17, "delta")];
        for (n, (who, at, word)) in edits.into_iter().enumerate() {
            let doc = &mut peers[who];
            merge(&relay, doc);
            let heads = relay.get_heads();
            write(doc, |tx| {
                let text = match tx.get(ROOT, "content").unwrap() {
                    Some((_, id)) => id,
                    None => tx.put_object(ROOT, "content", ObjType::Text).unwrap(),
                };
                tx.splice_text(&text, at, 0, word).unwrap();
            });
            // What the relay logs for this member: the changes its sync message added.
            let entry = doc.save_after(&heads);
            relay.load_incremental(&entry).unwrap();
            for run in ah::insertions(&mut base, &entry).unwrap() {
                runs.push((run, Author { user: Some(users[who].into()), at: n as i64 }));
            }
        }
        let text = content(&relay);
        assert_eq!(text, "gamma alpha beta delta");
        let spans = history::blame(&text, &ah::written(&relay).unwrap(), &Authorship::new(runs));
        let named: Vec<(&str, &str)> = spans
            .iter()
            .map(|s| (s.text.as_str(), s.author.as_ref().unwrap().user.as_deref().unwrap()))
            .collect();
        assert_eq!(
            named,
            vec![("gamma ", "u-cat"), ("alpha ", "u-ann"), ("beta ", "u-ben"), ("delta", "u-ann")]
        );
    }
}
