//! The task board layout on both CRDTs: a board written the way a JavaScript client would (the
//! layout in `docs/schemas.md`) projects to the same typed tasks from Yjs and from Automerge;
//! malformed fields and entries are skipped and reported, never fatal; and concurrent edits from
//! two replicas (random moves, field edits and new tasks, merged both ways) project identically
//! on both sides, with every task exactly once.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};
use proptest::prelude::*;
use weft_sync_core::domain::board::{self, Board, Priority};
use yrs::updates::decoder::Decode;
use yrs::{
    Array, ArrayPrelim, Doc, Map, MapPrelim, ReadTxn, StateVector, Text, TextPrelim, Transact, Update,
};

/// One task's fields, as a client writes them.
struct NewTask<'a> {
    id: &'a str,
    title: &'a str,
    description: &'a str,
    column: &'a str,
    priority: &'a str,
    assignees: &'a [&'a str],
    due: Option<&'a str>,
    order: f64,
}

fn yjs_board(client: u64, columns: &[(&str, &str)], tasks: &[NewTask]) -> Doc {
    let doc = Doc::with_client_id(client);
    let array = doc.get_or_insert_array("columns");
    let map = doc.get_or_insert_map("tasks");
    let mut txn = doc.transact_mut();
    for (id, name) in columns {
        let column = array.push_back(&mut txn, MapPrelim::default());
        column.insert(&mut txn, "id", *id);
        column.insert(&mut txn, "name", *name);
    }
    for t in tasks {
        let fields = map.insert(&mut txn, t.id, MapPrelim::default());
        fields.insert(&mut txn, "title", t.title);
        let description = fields.insert(&mut txn, "description", TextPrelim::new(""));
        description.push(&mut txn, t.description);
        fields.insert(&mut txn, "column", t.column);
        fields.insert(&mut txn, "priority", t.priority);
        let assignees = fields.insert(&mut txn, "assignees", ArrayPrelim::default());
        for a in t.assignees {
            assignees.push_back(&mut txn, *a);
        }
        if let Some(due) = t.due {
            fields.insert(&mut txn, "due", due);
        }
        fields.insert(&mut txn, "order", t.order);
        fields.insert(&mut txn, "archived", false);
        fields.insert(&mut txn, "createdBy", "u-ada");
        fields.insert(&mut txn, "createdAt", 1_700_000_000_000i64);
    }
    drop(txn);
    doc
}

fn automerge_board(columns: &[(&str, &str)], tasks: &[NewTask]) -> AutoCommit {
    let mut doc = AutoCommit::new();
    let list = doc.put_object(ROOT, "columns", ObjType::List).unwrap();
    for (index, (id, name)) in columns.iter().enumerate() {
        let column = doc.insert_object(&list, index, ObjType::Map).unwrap();
        doc.put(&column, "id", *id).unwrap();
        doc.put(&column, "name", *name).unwrap();
    }
    let map = doc.put_object(ROOT, "tasks", ObjType::Map).unwrap();
    for t in tasks {
        let fields = doc.put_object(&map, t.id, ObjType::Map).unwrap();
        doc.put(&fields, "title", t.title).unwrap();
        let description = doc.put_object(&fields, "description", ObjType::Text).unwrap();
        doc.splice_text(&description, 0, 0, t.description).unwrap();
        doc.put(&fields, "column", t.column).unwrap();
        doc.put(&fields, "priority", t.priority).unwrap();
        let assignees = doc.put_object(&fields, "assignees", ObjType::List).unwrap();
        for (i, a) in t.assignees.iter().enumerate() {
            doc.insert(&assignees, i, *a).unwrap();
        }
        if let Some(due) = t.due {
            doc.put(&fields, "due", due).unwrap();
        }
        doc.put(&fields, "order", t.order).unwrap();
        doc.put(&fields, "archived", false).unwrap();
        doc.put(&fields, "createdBy", "u-ada").unwrap();
        doc.put(&fields, "createdAt", 1_700_000_000_000i64).unwrap();
    }
    doc
}

const COLUMNS: &[(&str, &str)] = &[("todo", "To do"), ("doing", "Doing"), ("done", "Done")];

fn sample() -> Vec<NewTask<'static>> {
    vec![
        NewTask {
            id: "t2",
            title: "Ship",
            description: "v1",
            column: "done",
            priority: "urgent",
            assignees: &[],
            due: None,
            order: 1.0,
        },
        NewTask {
            id: "t1",
            title: "Write tests",
            description: "all of them",
            column: "todo",
            priority: "high",
            assignees: &["u-ada", "u-bob"],
            due: Some("2026-12-01"),
            order: 2.0,
        },
        NewTask {
            id: "t0",
            title: "Plan",
            description: "",
            column: "todo",
            priority: "low",
            assignees: &["u-bob"],
            due: Some("2026-12-24"),
            order: 1.0,
        },
    ]
}

fn yjs_projection(doc: &Doc) -> Board {
    board::from_yjs(&doc.transact())
}

#[test]
fn a_board_reads_the_same_from_yjs_and_from_automerge() {
    let y = yjs_projection(&yjs_board(1, COLUMNS, &sample()));
    let a = board::from_automerge(automerge_board(COLUMNS, &sample()).document());
    assert_eq!(y, a);
    assert!(y.skipped.is_empty(), "{:?}", y.skipped);
    assert_eq!(y.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["To do", "Doing", "Done"]);
    // Column order, then `order`, then id.
    assert_eq!(y.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["t0", "t1", "t2"]);
    let t1 = &y.tasks[1];
    assert_eq!(
        (t1.title.as_str(), t1.description.as_str(), t1.priority),
        ("Write tests", "all of them", Priority::High)
    );
    assert_eq!(t1.assignees, ["u-ada", "u-bob"]);
    assert_eq!((t1.created_by.as_deref(), t1.created_at), (Some("u-ada"), Some(1_700_000_000_000)));
    // Overdue is derived from the caller's today.
    assert!(t1.is_overdue("2026-12-07") && !t1.is_overdue("2026-12-01"));
    assert!(!y.tasks[0].is_overdue("2026-12-07") && !y.tasks[2].is_overdue("2030-01-01"));
}

#[test]
fn malformed_fields_and_entries_are_skipped_and_reported() {
    let doc = yjs_board(1, COLUMNS, &sample());
    {
        let tasks = doc.get_or_insert_map("tasks");
        let columns = doc.get_or_insert_array("columns");
        let mut txn = doc.transact_mut();
        tasks.insert(&mut txn, "broken", "not a map");
        let odd = tasks.insert(&mut txn, "odd", MapPrelim::default());
        odd.insert(&mut txn, "title", 42);
        odd.insert(&mut txn, "priority", "critical");
        odd.insert(&mut txn, "due", "tomorrow");
        odd.insert(&mut txn, "order", "first");
        odd.insert(&mut txn, "column", "nowhere");
        let assignees = odd.insert(&mut txn, "assignees", ArrayPrelim::default());
        assignees.push_back(&mut txn, "u-ada");
        assignees.push_back(&mut txn, 7);
        columns.push_back(&mut txn, "not a column");
        let twin = columns.push_back(&mut txn, MapPrelim::default());
        twin.insert(&mut txn, "id", "todo");
    }
    let b = yjs_projection(&doc);
    let paths: Vec<&str> = b.skipped.iter().map(|s| s.path.as_str()).collect();
    for expected in [
        "tasks/broken",
        "tasks/odd/title",
        "tasks/odd/priority",
        "tasks/odd/due",
        "tasks/odd/order",
        "tasks/odd/assignees",
        "tasks/odd/column",
        "columns/3",
        "columns/todo",
    ] {
        assert!(paths.contains(&expected), "{expected} in {paths:?}");
    }
    // The rest still reads: the three good tasks, and what could be read of the odd one.
    assert_eq!(b.tasks.len(), 4);
    let odd = b.tasks.iter().find(|t| t.id == "odd").unwrap();
    assert_eq!(
        (odd.priority, odd.column.as_deref(), odd.assignees.as_slice()),
        (Priority::Medium, None, &["u-ada".to_owned()][..])
    );
    assert_eq!(b.columns.len(), 3);

    // The same kinds of damage on Automerge.
    let mut am = automerge_board(COLUMNS, &sample());
    let tasks = am.get(ROOT, "tasks").unwrap().unwrap().1;
    am.put(&tasks, "broken", 5).unwrap();
    let odd = am.put_object(&tasks, "odd", ObjType::Map).unwrap();
    am.put(&odd, "archived", "yes").unwrap();
    am.put(&odd, "createdAt", 1.5).unwrap();
    let b = board::from_automerge(am.document());
    let paths: Vec<&str> = b.skipped.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["tasks/broken", "tasks/odd/archived", "tasks/odd/createdAt"]);
    assert_eq!(b.tasks.len(), 4);
}

#[test]
fn an_empty_or_foreign_document_is_an_empty_board() {
    assert_eq!(yjs_projection(&Doc::new()), Board::default());
    let other = Doc::new();
    other.get_or_insert_text("tasks").push(&mut other.transact_mut(), "text where a map belongs");
    let b = yjs_projection(&other);
    assert!(b.tasks.is_empty());
    assert_eq!(board::from_automerge(AutoCommit::new().document()), Board::default());
}

/// One random edit a replica makes.
#[derive(Debug, Clone)]
enum Edit {
    Create(u8),
    Move { task: u8, column: u8, order: i8 },
    Retitle { task: u8, title: u8 },
    Assign { task: u8, user: u8 },
    Archive(u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<u8>().prop_map(|t| Edit::Create(t % 6)),
        (any::<u8>(), any::<u8>(), any::<i8>()).prop_map(|(t, c, o)| Edit::Move {
            task: t % 6,
            column: c % 3,
            order: o
        }),
        (any::<u8>(), any::<u8>()).prop_map(|(t, n)| Edit::Retitle { task: t % 6, title: n }),
        (any::<u8>(), any::<u8>()).prop_map(|(t, u)| Edit::Assign { task: t % 6, user: u % 4 }),
        any::<u8>().prop_map(|t| Edit::Archive(t % 6)),
    ]
}

fn apply_yjs(doc: &Doc, edit: &Edit) {
    let tasks = doc.get_or_insert_map("tasks");
    let mut txn = doc.transact_mut();
    let existing = |txn: &yrs::TransactionMut, t: u8| match tasks.get(txn, &format!("t{t}")) {
        Some(yrs::Out::YMap(m)) => Some(m),
        _ => None,
    };
    match edit {
        Edit::Create(t) => {
            if existing(&txn, *t).is_none() {
                let m = tasks.insert(&mut txn, format!("t{t}"), MapPrelim::default());
                m.insert(&mut txn, "title", format!("task {t}"));
                m.insert(&mut txn, "column", "todo");
                m.insert(&mut txn, "assignees", ArrayPrelim::default());
            }
        }
        Edit::Move { task, column, order } => {
            if let Some(m) = existing(&txn, *task) {
                m.insert(&mut txn, "column", COLUMNS[*column as usize].0);
                m.insert(&mut txn, "order", f64::from(*order));
            }
        }
        Edit::Retitle { task, title } => {
            if let Some(m) = existing(&txn, *task) {
                m.insert(&mut txn, "title", format!("title {title}"));
            }
        }
        Edit::Assign { task, user } => {
            if let Some(m) = existing(&txn, *task)
                && let Some(yrs::Out::YArray(a)) = m.get(&txn, "assignees")
            {
                a.push_back(&mut txn, format!("u{user}"));
            }
        }
        Edit::Archive(t) => {
            if let Some(m) = existing(&txn, *t) {
                m.insert(&mut txn, "archived", true);
            }
        }
    }
}

fn apply_automerge(doc: &mut AutoCommit, edit: &Edit) {
    let tasks = match doc.get(ROOT, "tasks").unwrap() {
        Some((_, id)) => id,
        None => doc.put_object(ROOT, "tasks", ObjType::Map).unwrap(),
    };
    let existing = |doc: &AutoCommit, t: u8| doc.get(&tasks, format!("t{t}")).unwrap().map(|(_, id)| id);
    match edit {
        Edit::Create(t) => {
            if existing(doc, *t).is_none() {
                let m = doc.put_object(&tasks, format!("t{t}"), ObjType::Map).unwrap();
                doc.put(&m, "title", format!("task {t}")).unwrap();
                doc.put(&m, "column", "todo").unwrap();
                doc.put_object(&m, "assignees", ObjType::List).unwrap();
            }
        }
        Edit::Move { task, column, order } => {
            if let Some(m) = existing(doc, *task) {
                doc.put(&m, "column", COLUMNS[*column as usize].0).unwrap();
                doc.put(&m, "order", f64::from(*order)).unwrap();
            }
        }
        Edit::Retitle { task, title } => {
            if let Some(m) = existing(doc, *task) {
                doc.put(&m, "title", format!("title {title}")).unwrap();
            }
        }
        Edit::Assign { task, user } => {
            if let Some(m) = existing(doc, *task)
                && let Some((_, a)) = doc.get(&m, "assignees").unwrap()
            {
                let end = doc.length(&a);
                doc.insert(&a, end, format!("u{user}")).unwrap();
            }
        }
        Edit::Archive(t) => {
            if let Some(m) = existing(doc, *t) {
                doc.put(&m, "archived", true).unwrap();
            }
        }
    }
}

fn sync_yjs(a: &Doc, b: &Doc) {
    let to_b = a.transact().encode_state_as_update_v1(&b.transact().state_vector());
    let to_a = b.transact().encode_state_as_update_v1(&a.transact().state_vector());
    b.transact_mut().apply_update(Update::decode_v1(&to_b).unwrap()).unwrap();
    a.transact_mut().apply_update(Update::decode_v1(&to_a).unwrap()).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_edits_project_identically_on_both_replicas(
        shared in proptest::collection::vec(edit(), 0..8),
        left in proptest::collection::vec(edit(), 0..12),
        right in proptest::collection::vec(edit(), 0..12),
    ) {
        // Yjs: a shared start, then each replica edits alone, then they sync both ways.
        let (a, b) = (yjs_board(1, COLUMNS, &[]), Doc::with_client_id(2));
        for e in &shared { apply_yjs(&a, e); }
        let start = a.transact().encode_state_as_update_v1(&StateVector::default());
        b.transact_mut().apply_update(Update::decode_v1(&start).unwrap()).unwrap();
        for e in &left { apply_yjs(&a, e); }
        for e in &right { apply_yjs(&b, e); }
        sync_yjs(&a, &b);
        let (pa, pb) = (yjs_projection(&a), yjs_projection(&b));
        prop_assert_eq!(&pa, &pb);
        let mut ids: Vec<&str> = pa.tasks.iter().map(|t| t.id.as_str()).collect();
        let count = ids.len();
        ids.dedup();
        prop_assert_eq!(ids.len(), count, "every task once");

        // Automerge: the same edits.
        let mut x = automerge_board(COLUMNS, &[]);
        for e in &shared { apply_automerge(&mut x, e); }
        let mut y = x.fork();
        for e in &left { apply_automerge(&mut x, e); }
        for e in &right { apply_automerge(&mut y, e); }
        x.merge(&mut y).unwrap();
        y.merge(&mut x).unwrap();
        let (px, py) = (board::from_automerge(x.document()), board::from_automerge(y.document()));
        prop_assert_eq!(&px, &py);
        prop_assert!(px.skipped.is_empty() && pa.skipped.is_empty());
    }
}
