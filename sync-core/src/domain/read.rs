//! Reading a layout's fields from either CRDT: one value type ([`Field`]) for what a Yjs map entry
//! or an Automerge map key holds, and [`Fields`], which reads an entry's fields by name, type by
//! type, taking each field's default and reporting it ([`Skipped`]) when a client wrote something
//! else. Every projection in `domain` reads through these, so all kinds treat bad input alike.

use automerge::{Automerge, ObjType, ReadDoc, ScalarValue, Value as AmValue};
use yrs::any::Number;
use yrs::types::ToJson;
use yrs::{Any, Array, GetString, Map, Out, ReadTxn};

use super::Skipped;

/// One field's value, read from either CRDT, before its type is checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field {
    Str(String),
    Num(f64),
    Bool(bool),
    /// An array.
    List(Vec<Item>),
    /// A map of maps (reactions: emoji → user → `true`): each key with the keys of its map whose
    /// value is `true`; `None` for a value that is not such a map.
    Keys(Vec<(String, Option<Vec<String>>)>),
    Null,
    Other,
}

/// One element of an array.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Str(String),
    Num(f64),
    Other,
}

/// Reads the fields of the entry `prefix/id` through `get`, reporting into `skipped`.
pub(crate) struct Fields<'a, G> {
    path: String,
    id: &'a str,
    get: G,
    skipped: &'a mut Vec<Skipped>,
}

impl<'a, G: Fn(&str) -> Option<Field>> Fields<'a, G> {
    pub(crate) fn new(prefix: &str, id: &'a str, get: G, skipped: &'a mut Vec<Skipped>) -> Self {
        Self { path: format!("{prefix}/{id}"), id, get, skipped }
    }

    /// The entry's id.
    pub(crate) fn id(&self) -> &'a str {
        self.id
    }

    pub(crate) fn skip(&mut self, field: &str, reason: &str) {
        self.skipped.push(Skipped { path: format!("{}/{field}", self.path), reason: reason.to_owned() });
    }

    pub(crate) fn string(&mut self, field: &str) -> Option<String> {
        match (self.get)(field) {
            Some(Field::Str(s)) => Some(s),
            None | Some(Field::Null) => None,
            Some(_) => {
                self.skip(field, "not a string");
                None
            }
        }
    }

    pub(crate) fn strings(&mut self, field: &str) -> Vec<String> {
        match (self.get)(field) {
            Some(Field::List(items)) => {
                let read: Vec<String> = items
                    .iter()
                    .filter_map(|i| if let Item::Str(s) = i { Some(s.clone()) } else { None })
                    .collect();
                if read.len() != items.len() {
                    self.skip(field, "holds something other than strings");
                }
                read
            }
            None | Some(Field::Null) => Vec::new(),
            Some(_) => {
                self.skip(field, "not an array of strings");
                Vec::new()
            }
        }
    }

    /// An array of finite numbers.
    pub(crate) fn numbers(&mut self, field: &str) -> Vec<f64> {
        match (self.get)(field) {
            Some(Field::List(items)) => {
                let read: Vec<f64> = items
                    .iter()
                    .filter_map(
                        |i| if let Item::Num(n) = i { Some(*n).filter(|n| n.is_finite()) } else { None },
                    )
                    .collect();
                if read.len() != items.len() {
                    self.skip(field, "holds something other than finite numbers");
                }
                read
            }
            None | Some(Field::Null) => Vec::new(),
            Some(_) => {
                self.skip(field, "not an array of numbers");
                Vec::new()
            }
        }
    }

    pub(crate) fn number(&mut self, field: &str, whole: bool) -> Option<f64> {
        match (self.get)(field) {
            Some(Field::Num(n)) if n.is_finite() && (!whole || n.fract() == 0.0) => Some(n),
            None | Some(Field::Null) => None,
            Some(_) => {
                self.skip(field, if whole { "not a whole number" } else { "not a finite number" });
                None
            }
        }
    }

    pub(crate) fn flag(&mut self, field: &str) -> bool {
        match (self.get)(field) {
            Some(Field::Bool(b)) => b,
            None | Some(Field::Null) => false,
            Some(_) => {
                self.skip(field, "not a boolean");
                false
            }
        }
    }

    /// A map of sets (key → the keys of its map set to `true`), sorted by key; empty sets left out.
    pub(crate) fn sets(&mut self, field: &str) -> Vec<(String, Vec<String>)> {
        match (self.get)(field) {
            Some(Field::Keys(entries)) => {
                let mut read = Vec::with_capacity(entries.len());
                for (key, members) in entries {
                    match members {
                        Some(mut members) if !members.is_empty() => {
                            members.sort();
                            read.push((key, members));
                        }
                        Some(_) => {}
                        None => self.skip(&format!("{field}/{key}"), "not a map of ids to true"),
                    }
                }
                read.sort();
                read
            }
            None | Some(Field::Null) => Vec::new(),
            Some(_) => {
                self.skip(field, "not a map");
                Vec::new()
            }
        }
    }
}

/// What a Yjs map entry holds.
pub(crate) fn yjs_field<T: ReadTxn>(txn: &T, out: Out) -> Field {
    match out {
        Out::Any(any) => any_field(&any),
        Out::YText(text) => Field::Str(text.get_string(txn)),
        Out::YArray(array) => Field::List(
            array
                .iter(txn)
                .map(|item| match item {
                    Out::Any(any) => any_item(&any),
                    _ => Item::Other,
                })
                .collect(),
        ),
        Out::YMap(map) => Field::Keys(
            map.iter(txn)
                .map(|(key, value)| {
                    let members = match value {
                        Out::YMap(inner) => Some(
                            inner
                                .iter(txn)
                                .filter(|(_, v)| matches!(v, Out::Any(Any::Bool(true))))
                                .map(|(k, _)| k.to_owned())
                                .collect(),
                        ),
                        Out::Any(Any::Map(inner)) => Some(true_keys(&inner)),
                        _ => None,
                    };
                    (key.to_owned(), members)
                })
                .collect(),
        ),
        other => match other.to_json(txn) {
            Any::Null | Any::Undefined => Field::Null,
            _ => Field::Other,
        },
    }
}

/// The keys of a map whose value is `true` (a set, as reactions store one).
fn true_keys(map: &std::collections::HashMap<String, Any>) -> Vec<String> {
    map.iter().filter(|(_, v)| matches!(v, Any::Bool(true))).map(|(k, _)| k.clone()).collect()
}

fn any_field(any: &Any) -> Field {
    match any {
        Any::String(s) => Field::Str(s.to_string()),
        Any::Number(Number::Int(n)) => Field::Num(*n as f64),
        Any::Number(Number::Float(n)) => Field::Num(*n),
        Any::Bool(b) => Field::Bool(*b),
        Any::Null | Any::Undefined => Field::Null,
        Any::Array(items) => Field::List(items.iter().map(any_item).collect()),
        Any::Map(entries) => Field::Keys(
            entries
                .iter()
                .map(|(key, value)| {
                    let members = match value {
                        Any::Map(inner) => Some(true_keys(inner)),
                        _ => None,
                    };
                    (key.clone(), members)
                })
                .collect(),
        ),
        _ => Field::Other,
    }
}

fn any_item(any: &Any) -> Item {
    match any {
        Any::String(s) => Item::Str(s.to_string()),
        Any::Number(Number::Int(n)) => Item::Num(*n as f64),
        Any::Number(Number::Float(n)) => Item::Num(*n),
        _ => Item::Other,
    }
}

fn scalar_item(scalar: &ScalarValue) -> Item {
    match scalar {
        ScalarValue::Str(s) => Item::Str(s.to_string()),
        ScalarValue::Int(n) => Item::Num(*n as f64),
        ScalarValue::Uint(n) => Item::Num(*n as f64),
        ScalarValue::F64(n) => Item::Num(*n),
        _ => Item::Other,
    }
}

/// What key `key` of the Automerge object `obj` holds.
pub(crate) fn automerge_field(doc: &Automerge, obj: &automerge::ObjId, key: &str) -> Option<Field> {
    let (value, id) = doc.get(obj, key).ok()??;
    Some(match value {
        AmValue::Scalar(scalar) => match scalar.as_ref() {
            ScalarValue::Str(s) => Field::Str(s.to_string()),
            ScalarValue::Int(n) => Field::Num(*n as f64),
            ScalarValue::Uint(n) => Field::Num(*n as f64),
            ScalarValue::F64(n) => Field::Num(*n),
            ScalarValue::Timestamp(n) => Field::Num(*n as f64),
            ScalarValue::Boolean(b) => Field::Bool(*b),
            ScalarValue::Null => Field::Null,
            _ => Field::Other,
        },
        AmValue::Object(ObjType::Text) => doc.text(&id).map_or(Field::Other, Field::Str),
        AmValue::Object(ObjType::List) => Field::List(
            (0..doc.length(&id))
                .map(|index| match doc.get(&id, index) {
                    Ok(Some((AmValue::Scalar(s), _))) => scalar_item(s.as_ref()),
                    _ => Item::Other,
                })
                .collect(),
        ),
        AmValue::Object(ObjType::Map | ObjType::Table) => Field::Keys(
            doc.keys(&id)
                .map(|key| {
                    let members = match doc.get(&id, key.as_str()) {
                        Ok(Some((AmValue::Object(ObjType::Map), inner))) => Some(
                            doc.keys(&inner)
                                .filter(|k| {
                                    matches!(doc.get(&inner, k.as_str()), Ok(Some((AmValue::Scalar(v), _)))
                                        if matches!(v.as_ref(), ScalarValue::Boolean(true)))
                                })
                                .collect(),
                        ),
                        _ => None,
                    };
                    (key, members)
                })
                .collect(),
        ),
    })
}
