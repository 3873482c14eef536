//! The whiteboard layout on both CRDTs: shapes written the way a JavaScript client would
//! (`docs/schemas.md`) project to the same shapes and connectors from Yjs and from Automerge, in
//! stacking order; unknown types and bad fields are skipped and reported; connectors to deleted
//! shapes lose that end; the SVG export draws every shape, escapes text, and parses as XML; and
//! concurrent moves, recolours and new shapes on two replicas project identically once merged.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};
use proptest::prelude::*;
use weft_sync_core::domain::whiteboard::{self, ShapeKind, Whiteboard};
use yrs::updates::decoder::Decode;
use yrs::{Array, ArrayPrelim, Doc, Map, MapPrelim, ReadTxn, StateVector, Transact, Update};

/// A shape as a client adds it: its type, numeric fields, string fields, points.
struct Add<'a> {
    id: &'a str,
    kind: &'a str,
    numbers: &'a [(&'a str, f64)],
    strings: &'a [(&'a str, &'a str)],
    points: &'a [f64],
}

fn yjs_add(doc: &Doc, a: &Add) {
    let shapes = doc.get_or_insert_map("shapes");
    let mut txn = doc.transact_mut();
    let m = shapes.insert(&mut txn, a.id, MapPrelim::default());
    m.insert(&mut txn, "type", a.kind);
    for (k, v) in a.numbers {
        m.insert(&mut txn, *k, *v);
    }
    for (k, v) in a.strings {
        m.insert(&mut txn, *k, *v);
    }
    if !a.points.is_empty() {
        let p = m.insert(&mut txn, "points", ArrayPrelim::default());
        for n in a.points {
            p.push_back(&mut txn, *n);
        }
    }
}

fn automerge_add(doc: &mut AutoCommit, a: &Add) {
    let shapes = match doc.get(ROOT, "shapes").unwrap() {
        Some((_, id)) => id,
        None => doc.put_object(ROOT, "shapes", ObjType::Map).unwrap(),
    };
    let m = doc.put_object(&shapes, a.id, ObjType::Map).unwrap();
    doc.put(&m, "type", a.kind).unwrap();
    for (k, v) in a.numbers {
        doc.put(&m, *k, *v).unwrap();
    }
    for (k, v) in a.strings {
        doc.put(&m, *k, *v).unwrap();
    }
    if !a.points.is_empty() {
        let p = doc.put_object(&m, "points", ObjType::List).unwrap();
        for (i, n) in a.points.iter().enumerate() {
            doc.insert(&p, i, *n).unwrap();
        }
    }
}

const SHAPES: &[Add] = &[
    Add {
        id: "box",
        kind: "rectangle",
        numbers: &[("x", 0.0), ("y", 0.0), ("width", 100.0), ("height", 50.0), ("z", 1.0)],
        strings: &[("fill", "#eeeeee"), ("text", "Plan <A & B>")],
        points: &[],
    },
    Add {
        id: "oval",
        kind: "ellipse",
        numbers: &[("x", 200.0), ("y", 0.0), ("width", 80.0), ("height", 40.0), ("z", 2.0)],
        strings: &[],
        points: &[],
    },
    Add {
        id: "link",
        kind: "arrow",
        numbers: &[("x", 100.0), ("y", 25.0), ("z", 0.0)],
        strings: &[("from", "box"), ("to", "oval")],
        points: &[0.0, 0.0, 100.0, -5.0],
    },
    Add {
        id: "note",
        kind: "sticky",
        numbers: &[
            ("x", 0.0),
            ("y", 100.0),
            ("width", 60.0),
            ("height", 60.0),
            ("z", 3.0),
            ("rotation", 5.0),
        ],
        strings: &[("text", "ship it")],
        points: &[],
    },
    Add {
        id: "ink",
        kind: "path",
        numbers: &[("x", 10.0), ("y", 200.0), ("z", 3.0)],
        strings: &[("stroke", "red")],
        points: &[0.0, 0.0, 5.0, 5.0, 10.0, 0.0],
    },
];

fn both() -> (Whiteboard, Whiteboard) {
    let y = Doc::with_client_id(1);
    let mut a = AutoCommit::new();
    for s in SHAPES {
        yjs_add(&y, s);
        automerge_add(&mut a, s);
    }
    (whiteboard::from_yjs(&y.transact()), whiteboard::from_automerge(a.document()))
}

#[test]
fn a_whiteboard_reads_the_same_from_yjs_and_from_automerge() {
    let (y, a) = both();
    assert_eq!(y, a);
    assert!(y.skipped.is_empty(), "{:?}", y.skipped);
    let order: Vec<&str> = y.shapes.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(order, ["link", "box", "oval", "ink", "note"], "by z, then id");
    let link = &y.shapes[0];
    assert_eq!(
        (link.kind, link.from.as_deref(), link.to.as_deref()),
        (ShapeKind::Arrow, Some("box"), Some("oval"))
    );
    assert_eq!(link.points, [(0.0, 0.0), (100.0, -5.0)]);
    assert_eq!(y.connectors().count(), 1);
}

#[test]
fn the_svg_export_draws_every_shape_and_escapes_text() {
    let (board, _) = both();
    let svg = board.to_svg();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"-10 -10 "), "{svg}");
    for id in ["box", "oval", "link", "note", "ink"] {
        assert!(svg.contains(&format!("data-id=\"{id}\"")), "{id} drawn");
    }
    assert!(svg.contains("Plan &lt;A &amp; B&gt;") && !svg.contains("<A & B>"));
    assert!(svg.contains("marker-end=\"url(#arrow)\"") && svg.contains("rotate(5 30 130)"));
    // Balanced tags: every element opened is closed (a light well-formedness check).
    let (tags, ends, empty) =
        (svg.matches('<').count(), svg.matches("</").count(), svg.matches("/>").count());
    assert_eq!(tags, empty + 2 * ends, "{svg}");
    assert_eq!(Whiteboard::default().to_svg().matches("<svg").count(), 1);
}

#[test]
fn bad_shapes_are_skipped_and_dangling_connectors_lose_their_end() {
    let doc = Doc::with_client_id(1);
    for s in SHAPES {
        yjs_add(&doc, s);
    }
    yjs_add(&doc, &Add { id: "star", kind: "star", numbers: &[], strings: &[], points: &[] });
    yjs_add(
        &doc,
        &Add {
            id: "odd",
            kind: "line",
            numbers: &[("x", 1.0)],
            strings: &[("to", "gone"), ("y", "high")],
            points: &[1.0, 2.0, 3.0],
        },
    );
    {
        let shapes = doc.get_or_insert_map("shapes");
        let mut txn = doc.transact_mut();
        shapes.insert(&mut txn, "scalar", 3);
        shapes.remove(&mut txn, "oval");
    }
    let b = whiteboard::from_yjs(&doc.transact());
    let paths: Vec<&str> = b.skipped.iter().map(|s| s.path.as_str()).collect();
    for expected in [
        "shapes/star/type",
        "shapes/odd/y",
        "shapes/odd/points",
        "shapes/odd/to",
        "shapes/scalar",
        "shapes/link/to",
    ] {
        assert!(paths.contains(&expected), "{expected} in {paths:?}");
    }
    let link = b.shapes.iter().find(|s| s.id == "link").unwrap();
    assert_eq!((link.from.as_deref(), link.to.as_deref()), (Some("box"), None));
    let odd = b.shapes.iter().find(|s| s.id == "odd").unwrap();
    assert_eq!(odd.points, [(1.0, 2.0)]);
    assert_eq!(b.connectors().count(), 0);
    assert!(b.shapes.iter().all(|s| s.id != "star"));
}

#[derive(Debug, Clone)]
enum Change {
    Add(u8, u8),
    Move { id: u8, x: i16, y: i16 },
    Recolour { id: u8, colour: u8 },
    Raise { id: u8, z: i8 },
    Remove(u8),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (any::<u8>(), any::<u8>()).prop_map(|(id, k)| Change::Add(id % 6, k % 7)),
        (any::<u8>(), any::<i16>(), any::<i16>()).prop_map(|(id, x, y)| Change::Move { id: id % 6, x, y }),
        (any::<u8>(), any::<u8>()).prop_map(|(id, c)| Change::Recolour { id: id % 6, colour: c % 4 }),
        (any::<u8>(), any::<i8>()).prop_map(|(id, z)| Change::Raise { id: id % 6, z }),
        any::<u8>().prop_map(|id| Change::Remove(id % 6)),
    ]
}

const COLOURS: [&str; 4] = ["red", "green", "blue", "#000"];

fn apply_yjs(doc: &Doc, client: u64, c: &Change) {
    let shapes = doc.get_or_insert_map("shapes");
    let set = |id: u8, key: &str, value: yrs::Any| {
        let mut txn = doc.transact_mut();
        for owner in [1, 2] {
            if let Some(yrs::Out::YMap(m)) = shapes.get(&txn, &format!("c{owner}-s{id}")) {
                m.insert(&mut txn, key, value.clone());
            }
        }
    };
    match c {
        Change::Add(id, kind) => {
            let id = format!("c{client}-s{id}");
            if shapes.get(&doc.transact(), &id).is_none() {
                let kind = ShapeKind::ALL[*kind as usize].as_str();
                yjs_add(
                    doc,
                    &Add {
                        id: &id,
                        kind,
                        numbers: &[("width", 10.0), ("height", 10.0)],
                        strings: &[],
                        points: &[0.0, 0.0, 1.0, 1.0],
                    },
                );
            }
        }
        Change::Move { id, x, y } => {
            set(*id, "x", f64::from(*x).into());
            set(*id, "y", f64::from(*y).into());
        }
        Change::Recolour { id, colour } => set(*id, "fill", COLOURS[*colour as usize].into()),
        Change::Raise { id, z } => set(*id, "z", f64::from(*z).into()),
        Change::Remove(id) => {
            shapes.remove(&mut doc.transact_mut(), &format!("c{client}-s{id}"));
        }
    }
}

fn apply_automerge(doc: &mut AutoCommit, client: u64, c: &Change) {
    let shapes = match doc.get(ROOT, "shapes").unwrap() {
        Some((_, id)) => id,
        None => doc.put_object(ROOT, "shapes", ObjType::Map).unwrap(),
    };
    let set = |doc: &mut AutoCommit, id: u8, key: &str, value: automerge::ScalarValue| {
        for owner in [1, 2] {
            if let Some((_, m)) = doc.get(&shapes, format!("c{owner}-s{id}")).unwrap() {
                doc.put(&m, key, value.clone()).unwrap();
            }
        }
    };
    match c {
        Change::Add(id, kind) => {
            let id = format!("c{client}-s{id}");
            if doc.get(&shapes, &id).unwrap().is_none() {
                let kind = ShapeKind::ALL[*kind as usize].as_str();
                automerge_add(
                    doc,
                    &Add {
                        id: &id,
                        kind,
                        numbers: &[("width", 10.0), ("height", 10.0)],
                        strings: &[],
                        points: &[0.0, 0.0, 1.0, 1.0],
                    },
                );
            }
        }
        Change::Move { id, x, y } => {
            set(doc, *id, "x", f64::from(*x).into());
            set(doc, *id, "y", f64::from(*y).into());
        }
        Change::Recolour { id, colour } => set(doc, *id, "fill", COLOURS[*colour as usize].into()),
        Change::Raise { id, z } => set(doc, *id, "z", f64::from(*z).into()),
        Change::Remove(id) => {
            let key = format!("c{client}-s{id}");
            if doc.get(&shapes, &key).unwrap().is_some() {
                doc.delete(&shapes, key).unwrap();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_changes_project_identically_on_both_replicas(
        shared in proptest::collection::vec(change(), 0..8),
        left in proptest::collection::vec(change(), 0..12),
        right in proptest::collection::vec(change(), 0..12),
    ) {
        let (a, b) = (Doc::with_client_id(1), Doc::with_client_id(2));
        for c in &shared { apply_yjs(&a, 1, c); }
        let start = a.transact().encode_state_as_update_v1(&StateVector::default());
        b.transact_mut().apply_update(Update::decode_v1(&start).unwrap()).unwrap();
        for c in &left { apply_yjs(&a, 1, c); }
        for c in &right { apply_yjs(&b, 2, c); }
        let to_b = a.transact().encode_state_as_update_v1(&b.transact().state_vector());
        let to_a = b.transact().encode_state_as_update_v1(&a.transact().state_vector());
        b.transact_mut().apply_update(Update::decode_v1(&to_b).unwrap()).unwrap();
        a.transact_mut().apply_update(Update::decode_v1(&to_a).unwrap()).unwrap();
        let (pa, pb) = (whiteboard::from_yjs(&a.transact()), whiteboard::from_yjs(&b.transact()));
        prop_assert_eq!(&pa, &pb);
        prop_assert_eq!(pa.to_svg(), pb.to_svg());

        let mut x = AutoCommit::new();
        for c in &shared { apply_automerge(&mut x, 1, c); }
        let mut y = x.fork();
        for c in &left { apply_automerge(&mut x, 1, c); }
        for c in &right { apply_automerge(&mut y, 2, c); }
        x.merge(&mut y).unwrap();
        y.merge(&mut x).unwrap();
        prop_assert_eq!(whiteboard::from_automerge(x.document()), whiteboard::from_automerge(y.document()));
    }
}
