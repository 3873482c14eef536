//! Version history of an Automerge document, from its own change history: a version is a set of
//! heads, the content at a version is the document forked at those heads, and a restore is the
//! change that makes the current document equal to that fork — objects that still exist keep
//! their identity (so do concurrent edits into them), text is updated by a diff. Who wrote what
//! comes from the changes each logged entry added. `docs/history.md` is the design.

use automerge::transaction::{Transactable, Transaction};
use automerge::{Automerge, ChangeHash, ObjId, ObjType, Prop, ReadDoc, ScalarValue, Value};

use crate::contain::{CrdtFailure, contain, contain_infallible};
use crate::history::{Run, Written};

/// The version a document is at now: its heads, encoded (32 bytes each, sorted).
pub fn capture(doc: &Automerge) -> Vec<u8> {
    let mut heads = doc.get_heads();
    heads.sort();
    heads.iter().flat_map(|h| h.0).collect()
}

/// Decodes a version [`capture`] made.
///
/// # Errors
/// [`CrdtFailure`] when the bytes are not a list of change hashes.
pub fn decode_version(version: &[u8]) -> Result<Vec<ChangeHash>, CrdtFailure> {
    if !version.len().is_multiple_of(32) {
        return Err(CrdtFailure::new("decode version", "not a list of 32-byte change hashes"));
    }
    version
        .chunks(32)
        .map(|chunk| {
            ChangeHash::try_from(chunk).map_err(|e| CrdtFailure::new("decode version", e.to_string()))
        })
        .collect()
}

/// Whether every head of `version` is a change of `doc`.
pub fn is_version_of(doc: &Automerge, version: &[ChangeHash]) -> bool {
    version.iter().all(|hash| doc.get_change_by_hash(hash).is_some())
}

/// The document as it was at `version`.
///
/// # Errors
/// [`CrdtFailure`] when a head is unknown or automerge fails.
pub fn state_at(doc: &Automerge, version: &[ChangeHash]) -> Result<Automerge, CrdtFailure> {
    contain("fork at version", || doc.fork_at(version))
}

/// Writes, in `tx` (a transaction on the current document), what makes it equal to `target` (the
/// document at a version, from [`state_at`]).
///
/// # Errors
/// [`CrdtFailure`] when automerge fails.
pub fn revert(tx: &mut Transaction<'_>, target: &Automerge) -> Result<(), CrdtFailure> {
    contain("revert to version", || converge_map(tx, &automerge::ROOT, target, &automerge::ROOT))
}

fn converge_map(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    target: &Automerge,
    from: &ObjId,
) -> Result<(), automerge::AutomergeError> {
    let wanted: Vec<String> = target.keys(from).collect();
    let present: Vec<String> = tx.keys(obj).collect();
    for key in present.iter().filter(|k| !wanted.contains(k)) {
        tx.delete(obj, key.as_str())?;
    }
    for key in &wanted {
        let Some((value, id)) = target.get(from, key.as_str())? else { continue };
        let current = tx.get(obj, key.as_str())?.map(|(v, id)| (v.into_owned(), id));
        converge_value(tx, obj, Prop::Map(key.clone()), current, target, value, id)?;
    }
    Ok(())
}

/// Makes the value at `prop` of `obj` equal to `value` (id `id` in `target`).
fn converge_value(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    prop: Prop,
    current: Option<(Value<'_>, ObjId)>,
    target: &Automerge,
    value: Value<'_>,
    id: ObjId,
) -> Result<(), automerge::AutomergeError> {
    match (value, current) {
        (Value::Object(kind), Some((Value::Object(now), same))) if now == kind && same == id => {
            converge_object(tx, &same, target, &id, kind)
        }
        (Value::Object(kind), _) => {
            let made = tx.put_object(obj, prop, kind)?;
            copy_object(tx, &made, target, &id, kind)
        }
        (Value::Scalar(wanted), Some((Value::Scalar(now), _))) if *now == *wanted => Ok(()),
        (Value::Scalar(wanted), Some((Value::Scalar(now), _))) => match (now.as_ref(), wanted.as_ref()) {
            (ScalarValue::Counter(a), ScalarValue::Counter(b)) => {
                tx.increment(obj, prop, i64::from(b) - i64::from(a))
            }
            _ => tx.put(obj, prop, wanted.into_owned()),
        },
        (Value::Scalar(wanted), _) => tx.put(obj, prop, wanted.into_owned()),
    }
}

fn converge_object(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    target: &Automerge,
    from: &ObjId,
    kind: ObjType,
) -> Result<(), automerge::AutomergeError> {
    match kind {
        ObjType::Map | ObjType::Table => converge_map(tx, obj, target, from),
        ObjType::Text => tx.update_text(obj, target.text(from)?),
        ObjType::List => converge_list(tx, obj, target, from),
    }
}

/// A list: elements that are in both (by id) stay and converge; the others are deleted or
/// inserted where the version had them.
fn converge_list(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    target: &Automerge,
    from: &ObjId,
) -> Result<(), automerge::AutomergeError> {
    let wanted: Vec<ObjId> = target.list_range(from, ..).map(|item| item.id()).collect();
    let present: Vec<ObjId> = tx.list_range(obj, ..).map(|item| item.id()).collect();
    for (index, id) in present.iter().enumerate().rev() {
        if !wanted.contains(id) {
            tx.delete(obj, index)?;
        }
    }
    for (index, id) in wanted.iter().enumerate() {
        let Some((value, _)) = target.get(from, index)? else { continue };
        let current = tx.get(obj, index)?.map(|(v, id)| (v.into_owned(), id));
        match current {
            Some((now, same)) if same == *id => {
                converge_value(tx, obj, Prop::Seq(index), Some((now, same)), target, value, id.clone())?;
            }
            _ => match value {
                Value::Object(kind) => {
                    let made = tx.insert_object(obj, index, kind)?;
                    copy_object(tx, &made, target, id, kind)?;
                }
                Value::Scalar(s) => tx.insert(obj, index, s.into_owned())?,
            },
        }
    }
    Ok(())
}

/// Writes `target`'s object `from` into the new, empty object `made`.
fn copy_object(
    tx: &mut Transaction<'_>,
    made: &ObjId,
    target: &Automerge,
    from: &ObjId,
    kind: ObjType,
) -> Result<(), automerge::AutomergeError> {
    match kind {
        ObjType::Map | ObjType::Table => {
            for key in target.keys(from) {
                let Some((value, id)) = target.get(from, key.as_str())? else { continue };
                match value {
                    Value::Object(inner) => {
                        let child = tx.put_object(made, key.as_str(), inner)?;
                        copy_object(tx, &child, target, &id, inner)?;
                    }
                    Value::Scalar(s) => tx.put(made, key.as_str(), s.into_owned())?,
                }
            }
            Ok(())
        }
        ObjType::Text => tx.splice_text(made, 0, 0, &target.text(from)?),
        ObjType::List => {
            for index in 0..target.length(from) {
                let Some((value, id)) = target.get(from, index)? else { continue };
                match value {
                    Value::Object(inner) => {
                        let child = tx.insert_object(made, index, inner)?;
                        copy_object(tx, &child, target, &id, inner)?;
                    }
                    Value::Scalar(s) => tx.insert(made, index, s.into_owned())?,
                }
            }
            Ok(())
        }
    }
}

/// Applies a logged entry to `doc` (the document as the entries before it left it) and returns
/// the operations it added, per change: what [`crate::history::Authorship`] attributes to the
/// entry's author.
///
/// # Errors
/// [`CrdtFailure`] when the entry does not load.
pub fn insertions(doc: &mut Automerge, entry: &[u8]) -> Result<Vec<Run>, CrdtFailure> {
    let before = doc.get_heads();
    contain("load entry", || doc.load_incremental(entry))?;
    contain_infallible("read changes", || {
        doc.get_changes(&before)
            .iter()
            .map(|change| {
                let start = change.start_op().get();
                Run { origin: change.actor_id().to_bytes().to_vec(), start, end: start + change.len() as u64 }
            })
            .collect()
    })
}

/// The visible text of the document's `content` text, character runs by operation id in order:
/// what blame attributes.
///
/// # Errors
/// [`CrdtFailure`] when automerge fails.
pub fn written(doc: &Automerge) -> Result<Vec<Written>, CrdtFailure> {
    contain_infallible("read written text", || {
        let mut out: Vec<Written> = Vec::new();
        let Ok(Some((Value::Object(ObjType::Text), text))) = doc.get(&automerge::ROOT, "content") else {
            return out;
        };
        for item in doc.list_range(&text, ..) {
            let ObjId::Id(counter, actor, _) = item.id() else { continue };
            let Value::Scalar(s) = item.value.into_value() else { continue };
            let ScalarValue::Str(c) = s.as_ref() else { continue };
            let origin = actor.to_bytes().to_vec();
            match out.last_mut() {
                Some(last)
                    if last.origin == origin && last.start + last.text.chars().count() as u64 == counter =>
                {
                    last.text.push_str(c);
                }
                _ => out.push(Written { text: c.to_string(), origin, start: counter, utf16: false }),
            }
        }
        out
    })
}

/// A saved document (or its state at `version`, when given) read through `kind`'s projection.
///
/// # Errors
/// [`CrdtFailure`] when the document or version does not load.
pub fn project_at(
    saved: &[u8],
    version: Option<&[u8]>,
    kind: crate::DocKind,
) -> Result<crate::domain::Projection, CrdtFailure> {
    let doc = contain("load document", || Automerge::load(saved))?;
    let doc = match version {
        None => doc,
        Some(version) => state_at(&doc, &decode_version(version)?)?,
    };
    contain_infallible("project", || crate::domain::Projection::of_automerge(&doc, kind))
}

/// The runs each of `entries` added, in order: the entries logged after `base` (a version of the
/// saved document; `None` when they start from the empty document).
///
/// # Errors
/// [`CrdtFailure`] when the document, the version or an entry does not load.
pub fn attribute<'a>(
    saved: &[u8],
    base: Option<&[u8]>,
    entries: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Vec<Run>>, CrdtFailure> {
    let mut doc = match base {
        None => Automerge::new(),
        Some(version) => {
            let full = contain("load document", || Automerge::load(saved))?;
            state_at(&full, &decode_version(version)?)?
        }
    };
    entries.into_iter().map(|entry| insertions(&mut doc, entry)).collect()
}

/// Blame of the document's `content` text (a saved document), from `authorship`.
///
/// # Errors
/// [`CrdtFailure`] when the document does not load.
pub fn blame(
    saved: &[u8],
    authorship: &crate::history::Authorship,
) -> Result<Vec<crate::history::BlameSpan>, CrdtFailure> {
    let doc = contain("load document", || Automerge::load(saved))?;
    let text = contain_infallible("project", || crate::domain::document::from_automerge(&doc).to_text())?;
    Ok(crate::history::blame(&text, &written(&doc)?, authorship))
}
