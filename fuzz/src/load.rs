//! The storage load path: a stored snapshot and log entries — honest ones written by real
//! documents, arbitrary bytes, and corrupted honest ones — loaded by either CRDT's relay.
//!
//! Asserted: loading never panics; it quarantines only items it was given; what it serves
//! verifies (its snapshot loads back); and loading again without the quarantined items
//! quarantines nothing more and gives the same document.

use arbitrary::{Result, Unstructured};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};
use bytes::Bytes;
use weft_sync_core::relay::{Loaded, Quarantined, StoredItem};
use weft_sync_core::{DocumentRelay, RelayLimits, automerge as am, yjs};
use yrs::{Doc, ReadTxn, StateVector, Text, Transact};

use crate::yjs_relay::corrupt;
use crate::{ascii, quiet_contained_panics};

const MAX_ENTRIES: usize = 12;

/// Runs one input. See the module documentation.
pub fn run(data: &[u8]) {
    quiet_contained_panics();
    let mut u = Unstructured::new(data);
    let _ = if u.arbitrary::<bool>().unwrap_or(false) { automerge_case(&mut u) } else { yjs_case(&mut u) };
}

/// What to do with one honest item.
fn pick(u: &mut Unstructured, honest: Bytes) -> Result<Bytes> {
    Ok(match u.int_in_range(0..=5u8)? {
        0 => Bytes::from(u.arbitrary::<Vec<u8>>()?),
        1 => corrupt(u, &honest)?,
        _ => honest,
    })
}

fn yjs_case(u: &mut Unstructured) -> Result<()> {
    let doc = Doc::with_client_id(1);
    let text = doc.get_or_insert_text("t");
    let mut log = Vec::new();
    let mut snapshot = None;
    for seq in 1..=u.int_in_range(0..=MAX_ENTRIES as u64)? {
        let before = doc.transact().state_vector();
        let s = ascii(u, 6)?;
        let len = text.len(&doc.transact());
        let at = u.int_in_range(0..=len)?;
        text.insert(&mut doc.transact_mut(), at, if s.is_empty() { "y" } else { &s });
        let update = Bytes::from(doc.transact().encode_state_as_update_v1(&before));
        log.push((seq, pick(u, update)?));
        if snapshot.is_none() && u.ratio(1, 6)? {
            let state = Bytes::from(doc.transact().encode_state_as_update_v1(&StateVector::default()));
            snapshot = Some((seq, pick(u, state)?));
            log.clear();
        }
    }
    check(
        &snapshot,
        &log,
        |s, l| yjs::Relay::load(RelayLimits::default(), s, l),
        |r: &yjs::Relay| r.read(|doc| doc.transact().snapshot()).expect("the loaded document reads"),
    );
    Ok(())
}

fn automerge_case(u: &mut Unstructured) -> Result<()> {
    let mut doc = AutoCommit::new();
    let mut log = Vec::new();
    let mut snapshot = None;
    let mut heads = Vec::new();
    for seq in 1..=u.int_in_range(0..=MAX_ENTRIES as u64)? {
        let key = format!("k{}", u.int_in_range(0..=3u8)?);
        let _ = doc.put(ROOT, key, u.arbitrary::<i64>()?);
        let entry = if heads.is_empty() { doc.save() } else { doc.save_after(&heads) };
        heads = doc.get_heads();
        log.push((seq, pick(u, Bytes::from(entry))?));
        if snapshot.is_none() && u.ratio(1, 6)? {
            snapshot = Some((seq, pick(u, Bytes::from(doc.save()))?));
            log.clear();
        }
    }
    check(
        &snapshot,
        &log,
        |s, l| am::Relay::load(RelayLimits::default(), s, l),
        |r: &am::Relay| r.read(|doc| doc.get_heads()).expect("the loaded document reads"),
    );
    Ok(())
}

fn check<R: DocumentRelay, S: PartialEq + std::fmt::Debug>(
    snapshot: &Option<(u64, Bytes)>,
    log: &[(u64, Bytes)],
    run: impl for<'a> Fn(Option<(u64, &'a [u8])>, Vec<(u64, &'a [u8])>) -> Loaded<R>,
    state: impl Fn(&R) -> S,
) {
    let stored_snapshot = snapshot.as_ref().map(|(upto, bytes)| (*upto, bytes.as_ref()));
    let entries: Vec<(u64, &[u8])> = log.iter().map(|(seq, bytes)| (*seq, bytes.as_ref())).collect();
    let mut first = run(stored_snapshot, entries.clone());
    for Quarantined { item, .. } in &first.quarantined {
        let given = match item {
            StoredItem::Snapshot { upto } => snapshot.as_ref().is_some_and(|(u, _)| u == upto),
            StoredItem::Update { seq } => log.iter().any(|(s, _)| s == seq),
        };
        assert!(given, "quarantined an item it was not given: {item:?}");
    }
    let served = first.relay.snapshot().expect("the loaded document saves");
    served.verify().expect("what a load serves verifies");

    let kept_snapshot = stored_snapshot
        .filter(|_| !first.quarantined.iter().any(|q| matches!(q.item, StoredItem::Snapshot { .. })));
    let kept: Vec<(u64, &[u8])> = entries
        .into_iter()
        .filter(|(seq, _)| !first.quarantined.iter().any(|q| q.item == StoredItem::Update { seq: *seq }))
        .collect();
    let second = run(kept_snapshot, kept);
    assert!(second.quarantined.is_empty(), "a second load quarantines more: {:?}", second.quarantined);
    assert_eq!(state(&first.relay), state(&second.relay), "loading what remains gives the same document");
}
