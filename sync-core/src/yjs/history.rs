//! Version history of a Yjs document: a version is a yrs snapshot (state vector and delete set),
//! the content at a version is rebuilt from the current state, and a restore is the update that
//! undoes everything written since.
//!
//! All of it needs a document that keeps deleted content (`skip_gc`): with garbage collection a
//! deleted item's content is dropped, and neither the state at an earlier snapshot nor the text a
//! restore brings back can be rebuilt. See `docs/history.md`.

use yrs::undo::{Options as UndoOptions, StackItem, UndoManager};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{Doc, ID, IdSet, Options, Out, ReadTxn, Snapshot, StateVector, Transact, Update, WriteTxn};

use super::scan;
use crate::contain::{CrdtFailure, contain, contain_infallible};
use crate::history::{Run, Written};

/// A document that keeps deleted content, as history needs (the relay's replica is made so).
pub fn keeping_history(client_id: u64) -> Doc {
    Doc::with_options(Options {
        skip_gc: true,
        ..Options::with_client_id(yrs::block::ClientID::new(client_id))
    })
}

/// The version `txn`'s document is at now: its snapshot, encoded (v1).
pub fn capture<T: ReadTxn>(txn: &T) -> Vec<u8> {
    txn.snapshot().encode_v1()
}

/// The root a copy is split through (see [`state_at`]); never in a stored document.
const SPLIT_ROOT: &str = "\u{0}weft-split";

/// The version `doc` is at and its full state (v1): what a checkpoint records and summarizes.
pub fn capture_doc(doc: &Doc) -> (Vec<u8>, Vec<u8>) {
    let txn = doc.transact();
    (capture(&txn), txn.encode_state_as_update_v1(&StateVector::default()))
}

/// Takes the document of `txn` back to `version` within `txn` (see [`revert`]), writing as the
/// document's own client.
///
/// # Errors
/// [`CrdtFailure`] when the version is not one of this document, or yrs fails.
pub fn restore(txn: &mut yrs::TransactionMut<'_>, version: &Snapshot) -> Result<(), CrdtFailure> {
    if !is_version_of(txn, version) {
        return Err(CrdtFailure::new("restore", "the version is not one of this document"));
    }
    let client = txn.doc().client_id().get();
    let update = revert(txn, version, client)?;
    if update.is_empty() {
        return Ok(());
    }
    let decoded = contain("decode restore", || Update::decode_v1(&update))?;
    contain("apply restore", || txn.apply_update(decoded))
}

/// Decodes a version [`capture`] made.
///
/// # Errors
/// [`CrdtFailure`] when the bytes are not a snapshot.
pub fn decode_version(version: &[u8]) -> Result<Snapshot, CrdtFailure> {
    contain("decode version", || Snapshot::decode_v1(version))
}

/// The document as it was at `version`, as one update (v1) that a fresh document loads.
///
/// # Errors
/// [`CrdtFailure`] when the document does not keep deleted content or yrs fails.
pub fn state_at<T: ReadTxn>(txn: &T, version: &Snapshot) -> Result<Vec<u8>, CrdtFailure> {
    // Only a document that kept deleted content has its past states (an empty snapshot costs
    // nothing to encode, and yrs refuses it the same way).
    let kept = contain_infallible("check history", || {
        !matches!(
            txn.encode_state_from_snapshot(&Snapshot::default(), &mut EncoderV1::new()),
            Err(yrs::error::Error::Gc)
        )
    })?;
    if !kept {
        return Err(CrdtFailure::new(
            "encode state at version",
            "the document does not keep history (it collects garbage)",
        ));
    }
    // yrs 0.28 encodes the last item of a client wrongly when the version ends inside it (the
    // state does not decode); on a copy split at the version's clocks, every item ends there.
    let state =
        contain_infallible("encode state", || txn.encode_state_as_update_v1(&StateVector::default()))?;
    let copy = load(&state)?;
    let mut txn = copy.transact_mut();
    contain_infallible("split at version", || {
        // `diff_range` splits the document's items at the snapshot's clocks (for every client);
        // the text it diffs is a scratch root of the copy.
        let scratch = txn.get_or_insert_text(SPLIT_ROOT);
        yrs::Text::diff_range(&scratch, &mut txn, Some(version), None, |c| c);
    })?;
    contain("encode state at version", || {
        let mut encoder = EncoderV1::new();
        match txn.encode_state_from_snapshot(version, &mut encoder) {
            Ok(()) => Ok(encoder.to_vec()),
            Err(yrs::error::Error::Gc) => {
                Err("the document does not keep history (it collects garbage)".to_owned())
            }
            Err(other) => Err(other.to_string()),
        }
    })
}

/// A fresh document holding `update` (a state from [`state_at`] or a full state).
///
/// # Errors
/// [`CrdtFailure`] when the update does not decode or apply.
pub fn load(update: &[u8]) -> Result<Doc, CrdtFailure> {
    let doc = keeping_history(1);
    let decoded = contain("decode state", || Update::decode_v1(update))?;
    contain("apply state", || doc.transact_mut().apply_update(decoded))?;
    Ok(doc)
}

/// The update that takes the document in `txn` back to `version`: what was inserted since is
/// deleted, what was deleted since is written again (as new items, where it stood), and
/// everything else keeps its identity, so concurrent edits and anchors into unchanged text
/// survive. Made on a copy with yrs's undo (a stack item of exactly those insertions and
/// deletions), by `client`; empty when nothing changed since `version`.
///
/// # Errors
/// [`CrdtFailure`] when yrs fails on the copy.
pub fn revert<T: ReadTxn>(txn: &T, version: &Snapshot, client: u64) -> Result<Vec<u8>, CrdtFailure> {
    let now = txn.snapshot();
    let mut inserted = IdSet::new();
    for (&id, &clock) in now.state_map.iter() {
        let then = version.state_map.get(&id);
        if clock > then {
            inserted.insert(ID::new(id, then), clock - then);
        }
    }
    let deleted = now.delete_set.diff(&version.delete_set);
    if inserted.is_empty() && deleted.is_empty() {
        return Ok(Vec::new());
    }
    let state =
        contain_infallible("encode state", || txn.encode_state_as_update_v1(&StateVector::default()))?;
    let copy = keeping_history(client);
    let decoded = contain("decode state", || Update::decode_v1(&state))?;
    contain("apply state", || copy.transact_mut().apply_update(decoded))?;
    contain_infallible("revert to version", || undo(&copy, inserted, deleted))
}

fn undo(copy: &Doc, inserted: IdSet, deleted: IdSet) -> Vec<u8> {
    let item = StackItem::<()>::new(copy.guid(), deleted, inserted);
    // The undo manager's clock only groups edits in time; history reads no clock.
    let options = UndoOptions {
        init_undo_stack: vec![item],
        timestamp: std::sync::Arc::new(|| 0),
        ..UndoOptions::default()
    };
    let mut manager = UndoManager::<()>::with_options(options);
    let roots: Vec<Out> = copy.transact().root_refs().map(|(_, root)| root).collect();
    for root in &roots {
        match root {
            Out::YText(r) => manager.expand_scope(copy, r),
            Out::YArray(r) => manager.expand_scope(copy, r),
            Out::YMap(r) => manager.expand_scope(copy, r),
            Out::YXmlElement(r) => manager.expand_scope(copy, r),
            Out::YXmlFragment(r) => manager.expand_scope(copy, r),
            Out::YXmlText(r) => manager.expand_scope(copy, r),
            Out::UndefinedRef(r) => manager.expand_scope(copy, r),
            _ => {}
        }
    }
    let captured = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = captured.clone();
    copy.observe_update_v1("weft-revert", move |_, event: &yrs::UpdateEvent| {
        sink.lock().expect("not poisoned").push(event.update.clone());
    })
    .expect("a fresh document takes an observer");
    manager.undo_blocking();
    let _ = copy.unobserve_update_v1("weft-revert");
    drop(manager);
    let updates = std::mem::take(&mut *captured.lock().expect("not poisoned"));
    match updates.len() {
        0 => Vec::new(),
        1 => updates.into_iter().next().unwrap_or_default(),
        _ => yrs::merge_updates_v1(updates).expect("updates yrs just encoded merge"),
    }
}

/// The runs of clocks an update inserts, per client: what [`crate::history::Authorship`] attributes to
/// the update's author.
///
/// # Errors
/// [`CrdtFailure`] when the update does not scan.
pub fn insertions(update: &[u8]) -> Result<Vec<Run>, CrdtFailure> {
    let structs = contain("scan update", || scan::update(update))?;
    let mut runs: Vec<Run> = Vec::new();
    for s in &structs {
        let (client, clock, len) = (s.id.client, s.id.clock, s.len);
        let origin = client.get().to_be_bytes().to_vec();
        match runs.last_mut() {
            Some(last) if last.origin == origin && last.end == u64::from(clock) => last.end += u64::from(len),
            _ => runs.push(Run { origin, start: u64::from(clock), end: u64::from(clock) + u64::from(len) }),
        }
    }
    Ok(runs)
}

/// The visible text of the document's text (the fragment `default` or `prosemirror`, else the
/// text `content`, as [`crate::domain::document`] reads them), in document order, as runs that
/// each one item wrote: what blame attributes. Read on a copy (finding items splits them).
///
/// # Errors
/// [`CrdtFailure`] when yrs fails.
pub fn written<T: ReadTxn>(txn: &T) -> Result<Vec<Written>, CrdtFailure> {
    let state =
        contain_infallible("encode state", || txn.encode_state_as_update_v1(&StateVector::default()))?;
    let copy = load(&state)?;
    contain_infallible("read written text", || {
        let mut out = Vec::new();
        let mut txn = copy.transact_mut();
        let now = txn.snapshot();
        let texts = text_branches(&txn);
        for text in texts {
            for chunk in text.diff_range(&mut txn, Some(&now), Some(&Snapshot::default()), |c| c) {
                let (yrs::Out::Any(yrs::Any::String(s)), Some(change)) = (&chunk.insert, chunk.ychange)
                else {
                    continue;
                };
                out.push(Written {
                    text: s.to_string(),
                    origin: change.id.client.get().to_be_bytes().to_vec(),
                    start: u64::from(change.id.clock),
                    utf16: true,
                });
            }
        }
        out
    })
}

/// A text-like branch: what [`written`] reads runs from.
enum TextBranch {
    Text(yrs::TextRef),
    Xml(yrs::XmlTextRef),
}

impl TextBranch {
    fn diff_range(
        &self,
        txn: &mut yrs::TransactionMut<'_>,
        hi: Option<&Snapshot>,
        lo: Option<&Snapshot>,
        f: fn(yrs::types::text::YChange) -> yrs::types::text::YChange,
    ) -> Vec<yrs::types::text::Diff<yrs::types::text::YChange>> {
        use yrs::Text;
        match self {
            TextBranch::Text(t) => t.diff_range(txn, hi, lo, f),
            TextBranch::Xml(t) => t.diff_range(txn, hi, lo, f),
        }
    }
}

fn text_branches<T: ReadTxn>(txn: &T) -> Vec<TextBranch> {
    use yrs::XmlFragment;
    for name in ["default", "prosemirror"] {
        if let Some(fragment) = txn.get_xml_fragment(name)
            && fragment.len(txn) > 0
        {
            let mut out = Vec::new();
            for node in fragment.successors(txn) {
                if let yrs::XmlOut::Text(text) = node {
                    out.push(TextBranch::Xml(text));
                }
            }
            return out;
        }
    }
    txn.get_text("content").map(TextBranch::Text).into_iter().collect()
}

/// Whether `version` is a version of this document: everything it names exists here.
pub fn is_version_of<T: ReadTxn>(txn: &T, version: &Snapshot) -> bool {
    let sv = txn.state_vector();
    version.state_map.iter().all(|(client, clock)| sv.get(client) >= *clock)
}

/// A full state (or the state at `version`, when given) read through `kind`'s projection.
///
/// # Errors
/// [`CrdtFailure`] when the state or version does not load.
pub fn project_at(
    full_state: &[u8],
    version: Option<&[u8]>,
    kind: crate::DocKind,
) -> Result<crate::domain::Projection, CrdtFailure> {
    let doc = load(full_state)?;
    let doc = match version {
        None => doc,
        Some(version) => {
            let version = decode_version(version)?;
            let state = state_at(&doc.transact(), &version)?;
            load(&state)?
        }
    };
    contain_infallible("project", || crate::domain::Projection::of_yjs(&doc, kind))
}

/// Blame of the document's text (a full state), from `authorship`.
///
/// # Errors
/// [`CrdtFailure`] when the state does not load.
pub fn blame(
    full_state: &[u8],
    authorship: &crate::history::Authorship,
) -> Result<Vec<crate::history::BlameSpan>, CrdtFailure> {
    let doc = load(full_state)?;
    let txn = doc.transact();
    let text = contain_infallible("project", || crate::domain::document::from_yjs(&txn).to_text())?;
    let written = written(&txn)?;
    Ok(crate::history::blame(&text, &written, authorship))
}
