//! The rich-text layout: a document written the way Tiptap / y-prosemirror store it (a
//! `Y.XmlFragment` of ProseMirror nodes with marks as text attributes) projects to blocks, plain
//! text and Markdown; plain `Y.Text` and Automerge text read as paragraphs; unknown elements are
//! read for their text and reported; and two replicas editing concurrently render identically.

use std::collections::HashMap;
use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT};
use proptest::prelude::*;
use weft_sync_core::domain::document::{self, BlockKind};
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Doc, ReadTxn, StateVector, Text, Transact, Update, Xml, XmlElementPrelim, XmlFragment, XmlTextPrelim,
};

fn attrs(pairs: &[(&str, Any)]) -> HashMap<Arc<str>, Any> {
    pairs.iter().map(|(k, v)| (Arc::from(*k), v.clone())).collect()
}

/// The document a Tiptap editor would store for the sample below.
fn tiptap() -> Doc {
    let doc = Doc::with_client_id(1);
    let root = doc.get_or_insert_xml_fragment("default");
    let mut txn = doc.transact_mut();
    let mut at = 0;
    let mut next = || {
        at += 1;
        at - 1
    };
    let heading = root.insert(&mut txn, next(), XmlElementPrelim::empty("heading"));
    heading.insert_attribute(&mut txn, "level", "2");
    heading.insert(&mut txn, 0, XmlTextPrelim::new("Launch plan"));

    let p = root.insert(&mut txn, next(), XmlElementPrelim::empty("paragraph"));
    let t = p.insert(&mut txn, 0, XmlTextPrelim::new(""));
    t.insert(&mut txn, 0, "Ship ");
    t.insert_with_attributes(&mut txn, 5, "now", attrs(&[("bold", Any::Bool(true))]));
    // Plain text after a styled run, as an editor inserts it: with the style explicitly off.
    t.insert_with_attributes(&mut txn, 8, ", see ", attrs(&[]));
    let link =
        Any::Map(Arc::new([("href".to_owned(), Any::from("https://example.com"))].into_iter().collect()));
    t.insert_with_attributes(&mut txn, 14, "the doc", attrs(&[("link", link)]));
    t.insert_with_attributes(&mut txn, 21, " * not a list", attrs(&[]));

    let list = root.insert(&mut txn, next(), XmlElementPrelim::empty("bulletList"));
    for (i, item) in ["tests", "docs"].iter().enumerate() {
        let li = list.insert(&mut txn, i as u32, XmlElementPrelim::empty("listItem"));
        let para = li.insert(&mut txn, 0, XmlElementPrelim::empty("paragraph"));
        para.insert(&mut txn, 0, XmlTextPrelim::new(*item));
    }
    let ordered = root.insert(&mut txn, next(), XmlElementPrelim::empty("orderedList"));
    for (i, item) in ["first", "second"].iter().enumerate() {
        let li = ordered.insert(&mut txn, i as u32, XmlElementPrelim::empty("listItem"));
        let para = li.insert(&mut txn, 0, XmlElementPrelim::empty("paragraph"));
        para.insert(&mut txn, 0, XmlTextPrelim::new(*item));
    }
    let quote = root.insert(&mut txn, next(), XmlElementPrelim::empty("blockquote"));
    let qp = quote.insert(&mut txn, 0, XmlElementPrelim::empty("paragraph"));
    qp.insert(&mut txn, 0, XmlTextPrelim::new("Measure twice"));
    let code = root.insert(&mut txn, next(), XmlElementPrelim::empty("codeBlock"));
    code.insert(&mut txn, 0, XmlTextPrelim::new("cargo test"));
    root.insert(&mut txn, next(), XmlElementPrelim::empty("horizontalRule"));
    let callout = root.insert(&mut txn, next(), XmlElementPrelim::empty("callout"));
    callout.insert(&mut txn, 0, XmlTextPrelim::new("Heads up"));
    drop(txn);
    doc
}

#[test]
fn a_tiptap_document_reads_as_blocks_text_and_markdown() {
    let d = document::from_yjs(&tiptap().transact());
    let kinds: Vec<BlockKind> = d.blocks.iter().map(|b| b.kind).collect();
    assert_eq!(
        kinds,
        [
            BlockKind::Heading(2),
            BlockKind::Paragraph,
            BlockKind::Bullet,
            BlockKind::Bullet,
            BlockKind::Numbered,
            BlockKind::Numbered,
            BlockKind::Quote,
            BlockKind::Code,
            BlockKind::Rule,
            BlockKind::Paragraph,
        ]
    );
    assert_eq!(
        d.to_text(),
        "Launch plan\nShip now, see the doc * not a list\ntests\ndocs\nfirst\nsecond\nMeasure twice\ncargo test\n\nHeads up"
    );
    assert_eq!(
        d.to_markdown(),
        "## Launch plan\n\nShip **now**, see [the doc](<https://example.com>) \\* not a list\n\n- tests\n- docs\n\n\
         1. first\n2. second\n\n> Measure twice\n\n```\ncargo test\n```\n\n---\n\nHeads up"
    );
    assert_eq!(d.skipped.len(), 1, "{:?}", d.skipped);
    assert!(d.skipped[0].reason.contains("callout"));
}

#[test]
fn plain_text_documents_read_as_paragraphs_on_both_crdts() {
    let y = Doc::new();
    y.get_or_insert_text("content").push(&mut y.transact_mut(), "one\ntwo # three");
    let from_yjs = document::from_yjs(&y.transact());
    let mut am = AutoCommit::new();
    let text = am.put_object(ROOT, "content", ObjType::Text).unwrap();
    am.splice_text(&text, 0, 0, "one\ntwo # three").unwrap();
    let from_automerge = document::from_automerge(am.document());
    assert_eq!(from_yjs, from_automerge);
    assert_eq!(from_yjs.to_markdown(), "one\n\ntwo \\# three");
    assert_eq!(document::from_yjs(&Doc::new().transact()).blocks.len(), 0);
    assert_eq!(document::from_automerge(AutoCommit::new().document()).to_text(), "");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_typing_renders_identically(
        left in proptest::collection::vec((any::<u8>(), "[a-z *#]{1,4}"), 0..10),
        right in proptest::collection::vec((any::<u8>(), "[a-z *#]{1,4}"), 0..10),
    ) {
        let a = tiptap();
        let b = Doc::with_client_id(2);
        let start = a.transact().encode_state_as_update_v1(&StateVector::default());
        b.transact_mut().apply_update(Update::decode_v1(&start).unwrap()).unwrap();
        for (doc, edits) in [(&a, &left), (&b, &right)] {
            let root = doc.get_or_insert_xml_fragment("default");
            for (at, s) in edits {
                let mut txn = doc.transact_mut();
                let Some(yrs::XmlOut::Element(p)) = root.get(&txn, 1) else { continue };
                let Some(yrs::XmlOut::Text(t)) = p.get(&txn, 0) else { continue };
                let len = t.len(&txn);
                t.insert(&mut txn, u32::from(*at) % (len + 1), s);
            }
        }
        let to_b = a.transact().encode_state_as_update_v1(&b.transact().state_vector());
        let to_a = b.transact().encode_state_as_update_v1(&a.transact().state_vector());
        b.transact_mut().apply_update(Update::decode_v1(&to_b).unwrap()).unwrap();
        a.transact_mut().apply_update(Update::decode_v1(&to_a).unwrap()).unwrap();
        let (da, db) = (document::from_yjs(&a.transact()), document::from_yjs(&b.transact()));
        prop_assert_eq!(da.to_markdown(), db.to_markdown());
        prop_assert_eq!(da, db);
    }
}

#[test]
fn comments_stay_anchored_to_their_text_through_concurrent_edits() {
    use automerge::ReadDoc;
    use yrs::updates::encoder::Encode;
    use yrs::{Assoc, IndexedSequence, Map, MapPrelim};
    // Yjs: a comment on "brave new", anchored by relative positions as `Y.encodeRelativePosition`
    // bytes; another replica types inside and before the anchored text meanwhile.
    let a = Doc::with_client_id(1);
    let text = a.get_or_insert_text("content");
    text.push(&mut a.transact_mut(), "Hello brave new world");
    let b = Doc::with_client_id(2);
    let start = a.transact().encode_state_as_update_v1(&StateVector::default());
    b.transact_mut().apply_update(Update::decode_v1(&start).unwrap()).unwrap();
    {
        let comments = a.get_or_insert_map("comments");
        let mut txn = a.transact_mut();
        let bytes = |index: u32, assoc| -> Any {
            let sticky = text.sticky_index(&txn, index, assoc).unwrap();
            Any::Array(sticky.encode_v1().into_iter().map(|b| Any::from(f64::from(b))).collect())
        };
        let (from, to) = (bytes(6, Assoc::After), bytes(15, Assoc::Before));
        let c = comments.insert(&mut txn, "c1", MapPrelim::default());
        c.insert(&mut txn, "author", "u-ada");
        c.insert(&mut txn, "body", "Too dramatic? <@u-bob>");
        c.insert(&mut txn, "at", 10);
        c.insert(&mut txn, "anchorStart", from);
        c.insert(&mut txn, "anchorEnd", to);
        let r = comments.insert(&mut txn, "c2", MapPrelim::default());
        r.insert(&mut txn, "author", "u-bob");
        r.insert(&mut txn, "body", "Keep it");
        r.insert(&mut txn, "at", 20);
        r.insert(&mut txn, "parent", "c1");
        c.insert(&mut txn, "resolved", true);
    }
    {
        let other = b.get_or_insert_text("content");
        let mut txn = b.transact_mut();
        other.insert(&mut txn, 0, "Oh! ");
        other.insert(&mut txn, 16, "very ");
    }
    let to_b = a.transact().encode_state_as_update_v1(&b.transact().state_vector());
    let to_a = b.transact().encode_state_as_update_v1(&a.transact().state_vector());
    b.transact_mut().apply_update(Update::decode_v1(&to_b).unwrap()).unwrap();
    a.transact_mut().apply_update(Update::decode_v1(&to_a).unwrap()).unwrap();
    let (da, db) = (document::from_yjs(&a.transact()), document::from_yjs(&b.transact()));
    assert_eq!(da, db);
    assert_eq!(da.to_text(), "Oh! Hello brave very new world");
    let c1 = &da.comments[0];
    assert_eq!(
        (c1.quote.as_deref(), c1.resolved, c1.mentions.as_slice()),
        (Some("brave very new"), true, &["u-bob".to_owned()][..])
    );
    assert_eq!((da.comments[1].parent.as_deref(), da.comments[1].quote.as_deref()), (Some("c1"), None));

    // Automerge: the same with cursors (`A.getCursor`).
    let mut x = AutoCommit::new();
    let content = x.put_object(ROOT, "content", ObjType::Text).unwrap();
    x.splice_text(&content, 0, 0, "Hello brave new world").unwrap();
    let (from, to) = (x.get_cursor(&content, 6, None).unwrap(), x.get_cursor(&content, 15, None).unwrap());
    let comments = x.put_object(ROOT, "comments", ObjType::Map).unwrap();
    let c = x.put_object(&comments, "c1", ObjType::Map).unwrap();
    x.put(&c, "body", "Too dramatic?").unwrap();
    x.put(&c, "anchorStart", from.to_string()).unwrap();
    x.put(&c, "anchorEnd", to.to_string()).unwrap();
    let mut y = x.fork();
    y.splice_text(&content, 0, 0, "Oh! ").unwrap();
    x.merge(&mut y).unwrap();
    assert_eq!(x.text(&content).unwrap(), "Oh! Hello brave new world");
    let d = document::from_automerge(x.document());
    assert_eq!(d.comments[0].quote.as_deref(), Some("brave new"));
}

#[test]
fn mentions_are_read_from_tiptap_mention_nodes_and_from_the_text() {
    // Tiptap's Mention extension writes an inline `mention` atom with `id` and `label`.
    let doc = Doc::with_client_id(9);
    let root = doc.get_or_insert_xml_fragment("default");
    {
        let mut txn = doc.transact_mut();
        let p = root.insert(&mut txn, 0, XmlElementPrelim::empty("paragraph"));
        p.insert(&mut txn, 0, XmlTextPrelim::new("Ask "));
        let mention = p.insert(&mut txn, 1, XmlElementPrelim::empty("mention"));
        mention.insert_attribute(&mut txn, "id", "u-bob");
        mention.insert_attribute(&mut txn, "label", "Bob");
        p.insert(&mut txn, 2, XmlTextPrelim::new(" and <@u-cy>, then <@u-bob> again"));
    }
    let d = document::from_yjs(&doc.transact());
    assert_eq!(d.to_text(), "Ask @Bob and <@u-cy>, then <@u-bob> again");
    assert_eq!(d.mentions, ["u-bob", "u-cy"]);

    let mut am = AutoCommit::new();
    let content = am.put_object(ROOT, "content", ObjType::Text).unwrap();
    am.splice_text(&content, 0, 0, "Hi <@u-ada>").unwrap();
    assert_eq!(document::from_automerge(am.document()).mentions, ["u-ada"]);
}
