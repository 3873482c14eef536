//! Writes to the canonical layouts (`docs/schemas.md`): a write is a list of [`Change`]s, each a
//! path of map keys from the root and a value to set there (or a key to remove), that
//! [`apply_yjs`] and [`apply_automerge`] carry out in one transaction on either CRDT. Each kind's
//! module builds its changes (a message posted, a task moved, a shape added, a comment resolved);
//! the relay applies them to its own replica, so a REST write is an ordinary CRDT update, logged,
//! broadcast and merged like a client's. Pure: no I/O, no clock (times are given).
//!
//! Every layout keeps each field under its own map key, so a write sets only the fields it names
//! and concurrent edits of other fields survive. Collaborative text ([`Value::Text`]) already
//! there is edited in place: only the characters between the common prefix and suffix of the old
//! and new text are replaced, so what did not change keeps its identity (and the comments anchored
//! in it).

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ROOT, ScalarValue, Value as AmValue};
use yrs::updates::encoder::Encode;
use yrs::{
    Any, Array, ArrayPrelim, Assoc, GetString, IndexedSequence, Map, MapPrelim, Out, Text, TextPrelim,
};
use yrs::{OffsetKind, ReadTxn, TextRef, TransactionMut, WriteTxn};

/// A value a [`Change`] sets.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A plain string (ids, names, dates, colours): a string in Yjs; in an Automerge map a text
    /// object, as `@automerge/automerge` writes a JavaScript string there (so apps read a plain
    /// string back; in a list it stays a scalar, as there).
    Str(String),
    /// Collaborative text (`Y.Text`, Automerge text), edited in place when it exists.
    Text(String),
    /// A whole number (times in milliseconds). Yjs stores it as a JavaScript number.
    Int(i64),
    /// A number.
    Num(f64),
    /// A flag.
    Bool(bool),
    /// An array of plain values (`Y.Array`, Automerge list): assignees, labels, points.
    List(Vec<Value>),
    /// A position in the document's plain text (root `content`), in characters, resolved when
    /// applied: Yjs relative-position bytes (`Y.encodeRelativePosition`, as numbers) or an
    /// Automerge cursor. `end` marks the end of a range (it stays before text typed at it).
    Anchor {
        /// Characters before the position.
        index: usize,
        /// Whether it ends a range.
        end: bool,
    },
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Num(n)
    }
}

/// What a change does at its path.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Set the key to the value (maps on the way are created).
    Set(Value),
    /// Remove the key, if present.
    Remove,
    /// Append a map of these fields to the root array the path names (one key: `columns`).
    Push(Vec<(String, Value)>),
}

/// One change: `path` names a root map, then keys into maps below it; the last key is set or
/// removed. ([`Op::Push`] names a root array alone.)
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Root map name, then map keys.
    pub path: Vec<String>,
    /// What happens at the last key.
    pub op: Op,
}

impl Change {
    /// Sets `path` to `value`.
    pub fn set(path: &[&str], value: impl Into<Value>) -> Self {
        Self { path: path.iter().map(|k| (*k).to_owned()).collect(), op: Op::Set(value.into()) }
    }

    /// Removes the last key of `path`.
    pub fn remove(path: &[&str]) -> Self {
        Self { path: path.iter().map(|k| (*k).to_owned()).collect(), op: Op::Remove }
    }

    /// Appends a map of `fields` to root array `array`.
    pub fn push(array: &str, fields: Vec<(&str, Value)>) -> Self {
        let fields = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Self { path: vec![array.to_owned()], op: Op::Push(fields) }
    }
}

/// Why a write cannot be applied. Nothing of it is then written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// A key on the way holds something other than a map (a client wrote another layout).
    #[error("{0} holds something other than a map")]
    NotAMap(String),
    /// A change names fewer than two keys (or a push names more than a root array).
    #[error("a change names a root map and at least one key; a push names one root array")]
    ShortPath,
    /// An anchor asks for plain text the document does not have.
    #[error("the document has no plain text (root `content`) to anchor a comment in")]
    NoText,
    /// An anchor lies past the end of the text.
    #[error("position {index} is past the end of the text ({len} characters)")]
    PastTheEnd {
        /// The position asked for.
        index: usize,
        /// The text's length in characters.
        len: usize,
    },
    /// The CRDT library refused a step.
    #[error("the CRDT library refused the write: {0}")]
    Crdt(String),
}

/// Applies `changes` in `txn`, all or nothing: every path is checked before anything is written.
///
/// # Errors
/// [`WriteError`] when a path or an anchor cannot be written; nothing was then written.
pub fn apply_yjs(txn: &mut TransactionMut<'_>, changes: &[Change]) -> Result<(), WriteError> {
    for change in changes {
        check_yjs(txn, change)?;
    }
    for change in changes {
        if let Op::Push(fields) = &change.op {
            let array = txn.get_or_insert_array(change.path[0].as_str());
            let len = array.len(txn);
            let map = array.insert(txn, len, MapPrelim::default());
            for (key, value) in fields {
                map.insert(txn, key.as_str(), any(value));
            }
            continue;
        }
        let (last, parents) = change.path.split_last().ok_or(WriteError::ShortPath)?;
        let mut map = txn.get_or_insert_map(parents[0].as_str());
        for key in &parents[1..] {
            map = match map.get(txn, key) {
                Some(Out::YMap(inner)) => inner,
                _ => map.insert(txn, key.as_str(), MapPrelim::default()),
            };
        }
        match &change.op {
            Op::Push(_) => {}
            Op::Remove => {
                map.remove(txn, last);
            }
            Op::Set(Value::Text(text)) => match map.get(txn, last) {
                Some(Out::YText(existing)) => splice_yjs(txn, &existing, text),
                _ => {
                    map.insert(txn, last.as_str(), TextPrelim::new(text.as_str()));
                }
            },
            Op::Set(Value::List(items)) => {
                let items: Vec<Any> = items.iter().map(any).collect();
                map.insert(txn, last.as_str(), ArrayPrelim::from(items));
            }
            Op::Set(Value::Anchor { index, end }) => {
                let bytes = yjs_anchor(txn, *index, *end)?;
                map.insert(txn, last.as_str(), bytes);
            }
            Op::Set(value) => {
                map.insert(txn, last.as_str(), any(value));
            }
        }
    }
    Ok(())
}

/// Checks that `change` can be written in `txn`: its path is long enough, every key on the way
/// is a map or absent, and an anchor lies in the text.
fn check_yjs(txn: &TransactionMut<'_>, change: &Change) -> Result<(), WriteError> {
    if let Op::Push(fields) = &change.op {
        return match (change.path.len(), fields.iter().any(|(_, v)| matches!(v, Value::Anchor { .. }))) {
            (1, false) => Ok(()),
            _ => Err(WriteError::ShortPath),
        };
    }
    let (_, parents) =
        change.path.split_last().filter(|(_, p)| !p.is_empty()).ok_or(WriteError::ShortPath)?;
    if let Some(mut map) = txn.get_map(parents[0].as_str()) {
        for (depth, key) in parents.iter().enumerate().skip(1) {
            match map.get(txn, key) {
                None => break,
                Some(Out::YMap(inner)) => map = inner,
                Some(_) => return Err(WriteError::NotAMap(parents[..=depth].join("/"))),
            }
        }
    }
    if let Op::Set(Value::Anchor { index, .. }) = &change.op {
        let text = txn.get_text("content").ok_or(WriteError::NoText)?;
        let len = text.get_string(txn).chars().count();
        if *index > len {
            return Err(WriteError::PastTheEnd { index: *index, len });
        }
    }
    Ok(())
}

fn any(value: &Value) -> Any {
    match value {
        Value::Str(s) | Value::Text(s) => Any::from(s.as_str()),
        Value::Int(n) => Any::from(*n as f64),
        Value::Num(n) => Any::from(*n),
        Value::Bool(b) => Any::Bool(*b),
        Value::List(items) => Any::Array(items.iter().map(any).collect()),
        Value::Anchor { .. } => Any::Null,
    }
}

/// The length of `s` in the units the document counts text in.
fn units(txn: &TransactionMut<'_>, s: &str) -> u32 {
    let count = match txn.doc().offset_kind() {
        OffsetKind::Bytes => s.len(),
        OffsetKind::Utf16 => s.encode_utf16().count(),
    };
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Replaces what differs between `text`'s content and `new`, keeping the common prefix and suffix.
fn splice_yjs(txn: &mut TransactionMut<'_>, text: &TextRef, new: &str) {
    let old = text.get_string(txn);
    let (prefix, removed, inserted) = difference(&old, new);
    let at = units(txn, prefix);
    if !removed.is_empty() {
        let len = units(txn, removed);
        text.remove_range(txn, at, len);
    }
    if !inserted.is_empty() {
        text.insert(txn, at, inserted);
    }
}

/// `old` and `new` as a common prefix, the part of `old` replaced, and what replaces it (split at
/// character boundaries).
fn difference<'a>(old: &'a str, new: &'a str) -> (&'a str, &'a str, &'a str) {
    let prefix: usize =
        old.chars().zip(new.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a.len_utf8()).sum();
    let (old_rest, new_rest) = (&old[prefix..], &new[prefix..]);
    let suffix: usize = old_rest
        .chars()
        .rev()
        .zip(new_rest.chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    (&old[..prefix], &old_rest[..old_rest.len() - suffix], &new_rest[..new_rest.len() - suffix])
}

/// The relative position of character `index` of root text `content`, as `Y.encodeRelativePosition`
/// bytes (numbers).
fn yjs_anchor(txn: &mut TransactionMut<'_>, index: usize, end: bool) -> Result<Any, WriteError> {
    let text = txn.get_text("content").ok_or(WriteError::NoText)?;
    let content = text.get_string(txn);
    let before: String = content.chars().take(index).collect();
    let at = units(txn, &before);
    let assoc = if end { Assoc::Before } else { Assoc::After };
    let sticky = text.sticky_index(txn, at, assoc).ok_or(WriteError::NoText)?;
    Ok(Any::Array(sticky.encode_v1().into_iter().map(|b| Any::from(f64::from(b))).collect()))
}

/// Applies `changes` in an Automerge transaction. On an error the caller's transaction is rolled
/// back (`Automerge::transact` does), so nothing is written.
///
/// # Errors
/// [`WriteError`] when a path or an anchor cannot be written.
pub fn apply_automerge<T: Transactable>(tx: &mut T, changes: &[Change]) -> Result<(), WriteError> {
    let crdt = |e: automerge::AutomergeError| WriteError::Crdt(e.to_string());
    for change in changes {
        if let Op::Push(fields) = &change.op {
            let [array] = change.path.as_slice() else { return Err(WriteError::ShortPath) };
            let list = match tx.get(ROOT, array.as_str()).map_err(crdt)? {
                Some((AmValue::Object(ObjType::List), list)) => list,
                None => tx.put_object(ROOT, array.as_str(), ObjType::List).map_err(crdt)?,
                Some(_) => return Err(WriteError::NotAMap(array.clone())),
            };
            let map = tx.insert_object(&list, tx.length(&list), ObjType::Map).map_err(crdt)?;
            for (key, value) in fields {
                put_automerge(tx, &map, key.as_str(), value).map_err(crdt)?;
            }
            continue;
        }
        let (last, parents) =
            change.path.split_last().filter(|(_, p)| !p.is_empty()).ok_or(WriteError::ShortPath)?;
        let mut obj: ObjId = ROOT;
        for (depth, key) in parents.iter().enumerate() {
            obj = match tx.get(&obj, key.as_str()).map_err(crdt)? {
                Some((AmValue::Object(ObjType::Map), inner)) => inner,
                None => tx.put_object(&obj, key.as_str(), ObjType::Map).map_err(crdt)?,
                Some(_) => return Err(WriteError::NotAMap(parents[..=depth].join("/"))),
            };
        }
        let key = last.as_str();
        match &change.op {
            Op::Push(_) => {}
            Op::Remove => {
                if tx.get(&obj, key).map_err(crdt)?.is_some() {
                    tx.delete(&obj, key).map_err(crdt)?;
                }
            }
            Op::Set(Value::Text(text) | Value::Str(text)) => match tx.get(&obj, key).map_err(crdt)? {
                Some((AmValue::Object(ObjType::Text), existing)) => {
                    tx.update_text(&existing, text).map_err(crdt)?
                }
                _ => {
                    let id = tx.put_object(&obj, key, ObjType::Text).map_err(crdt)?;
                    tx.splice_text(&id, 0, 0, text).map_err(crdt)?;
                }
            },
            Op::Set(Value::List(items)) => {
                let list = tx.put_object(&obj, key, ObjType::List).map_err(crdt)?;
                for (i, item) in items.iter().enumerate() {
                    // List items stay scalars, as `@automerge/automerge` writes a string array.
                    tx.insert(&list, i, scalar(item)).map_err(crdt)?;
                }
            }
            Op::Set(Value::Anchor { index, .. }) => {
                let Some((AmValue::Object(ObjType::Text), content)) =
                    tx.get(ROOT, "content").map_err(crdt)?
                else {
                    return Err(WriteError::NoText);
                };
                let len = tx.length(&content);
                if *index > len {
                    return Err(WriteError::PastTheEnd { index: *index, len });
                }
                // A cursor names a character; a range's end names the first one after the range,
                // and a position at the end of the text is the text's end.
                let position = if *index == len {
                    automerge::CursorPosition::End
                } else {
                    automerge::CursorPosition::Index(*index)
                };
                let cursor = tx.get_cursor(&content, position, None).map_err(crdt)?;
                put_automerge(tx, &obj, key, &Value::Str(cursor.to_string())).map_err(crdt)?;
            }
            Op::Set(value) => tx.put(&obj, key, scalar(value)).map_err(crdt)?,
        }
    }
    Ok(())
}

/// Puts `value` at `key` of map `obj`. Strings become text objects, as `@automerge/automerge`
/// writes a JavaScript string (a scalar string would read there as an `ImmutableString`).
fn put_automerge<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: &Value,
) -> Result<(), automerge::AutomergeError> {
    match value {
        Value::Str(s) | Value::Text(s) => {
            let text = tx.put_object(obj, key, ObjType::Text)?;
            tx.splice_text(&text, 0, 0, s)
        }
        other => tx.put(obj, key, scalar(other)),
    }
}

fn scalar(value: &Value) -> ScalarValue {
    match value {
        Value::Str(s) | Value::Text(s) => ScalarValue::Str(s.as_str().into()),
        Value::Int(n) => ScalarValue::Int(*n),
        Value::Num(n) => ScalarValue::F64(*n),
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::List(_) | Value::Anchor { .. } => ScalarValue::Null,
    }
}

/// A list of strings (assignees, labels, attachments) as a [`Value::List`].
pub(super) fn strings(items: &[String]) -> Value {
    Value::List(items.iter().map(|s| Value::Str(s.clone())).collect())
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`: remove it) or a value.
pub(super) fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(de).map(Some)
}

/// Sets `key` of `path` to `value` when given, removes it when `null` was given.
pub(super) fn set_or_remove(changes: &mut Vec<Change>, path: [&str; 3], value: Option<Option<Value>>) {
    match value {
        Some(Some(value)) => changes.push(Change::set(&path, value)),
        Some(None) => changes.push(Change::remove(&path)),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_difference_keeps_the_common_prefix_and_suffix_at_character_boundaries() {
        assert_eq!(difference("hello world", "hello brave world"), ("hello ", "", "brave "));
        assert_eq!(difference("abc", "abc"), ("abc", "", ""));
        assert_eq!(difference("héllo", "hallo"), ("h", "é", "a"));
        assert_eq!(difference("", "new"), ("", "", "new"));
        assert_eq!(difference("gone", ""), ("", "gone", ""));
        assert_eq!(difference("aaa", "aa"), ("aa", "a", ""));
    }
}
