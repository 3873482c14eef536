//! The first read of every Yjs update and state vector, before yrs sees the bytes: it refuses
//! input whose declared sizes the bytes cannot carry, and it reads each item's struct for
//! [`super::anchors`].
//!
//! yrs 0.28 trusts declared counts too far for a relay that reads its clients' bytes. A state
//! vector, an update's client table and a map value reserve a hash table as large as the count the
//! input declares. On a machine that overcommits memory, that reservation succeeds, and clearing
//! its control bytes touches up to a gigabyte. So a five-byte state vector costs the relay more
//! than a second and a gigabyte of memory, and a few of them at once get it killed. Nested `Any`
//! values are decoded by recursion with no limit. A 400 KB update of nested one-element arrays
//! overflows the stack, which aborts the whole process; `catch_unwind` cannot contain that. Both
//! were found by fuzzing the relay.
//!
//! The rule here: every element takes at least one byte (most take two or three), so a count
//! larger than the bytes left is refused before anything is reserved. `Any` values nest at most
//! [`MAX_DEPTH`] deep. The walk mirrors yrs's v1 decoder structure for structure, so what passes
//! here is what yrs reads next.
//!
//! **Subdocuments are refused** here too. yrs 0.28 integrates a subdocument item by storing a
//! strong handle to the parent document inside the item, which the parent's own store holds: a
//! reference cycle, so a document that ever held a subdocument is never freed. Every room unload,
//! rebuild or snapshot check of such a document would leak all of it, and a client could repeat
//! that at will (found by the fuzz driver's memory growing by a kilobyte per run). y-websocket and
//! Hocuspocus do not sync subdocuments either; an app that embeds one gets a 4422 naming it.

use std::sync::Arc;

use yrs::block::{ClientID, ID};
use yrs::encoding::read::{Cursor, Read};

/// yrs's struct info values and flags (yrs `block.rs`; the Yjs v1 format).
const GC: u8 = 0;
const SKIP: u8 = 10;
pub(super) const HAS_ORIGIN: u8 = 0b1000_0000;
pub(super) const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
const HAS_PARENT_SUB: u8 = 0b0010_0000;

/// Why an update holding a subdocument is refused (see the module documentation).
pub(crate) const SUBDOCUMENT: &str =
    "it holds a subdocument, which Weft does not relay (yrs 0.28 cannot free a document holding one)";

/// How deep `Any` values (arrays and maps of values, as `Y.Array` and `Y.Map` entries hold them)
/// may nest. Documents real editors write nest a handful of levels; yrs decodes each level with one
/// stack frame.
pub const MAX_DEPTH: usize = 64;

/// The type an item belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Parent {
    /// A root type, by name.
    Root(Arc<str>),
    /// A nested type: the id of the item that holds it.
    Nested(ID),
}

/// Where an item went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// Garbage-collected: in no list (yrs collects an item whose origin is collected).
    Collected,
    /// In `parent`'s sequence (`key` `None`) or under map key `key`.
    In { parent: Parent, key: Option<Arc<str>> },
}

/// One struct of an update, as [`update`] read it.
#[derive(Clone, Debug)]
pub(crate) struct Struct {
    pub(super) id: ID,
    pub(super) len: u32,
    pub(super) kind: Kind,
}

#[derive(Clone, Debug)]
pub(super) enum Kind {
    Collected,
    Item { origin: Option<ID>, right_origin: Option<ID>, place: Option<Place> },
}

/// Checks a v1 update's shape and reads its structs (skips left out).
///
/// # Errors
/// A description of the first thing yrs would not read, or should not be asked to.
pub(crate) fn update(update: &[u8]) -> Result<Vec<Struct>, String> {
    let mut r = Reader(Cursor::new(update));
    // A client's entry is at least its struct count, client id and first clock.
    let clients = r.count(3, "clients")?;
    let mut structs = Vec::new();
    for _ in 0..clients {
        let count = r.count(1, "structs")?;
        let client = ClientID::new(r.var()?);
        let mut clock: u32 = r.var()?;
        for _ in 0..count {
            let id = ID::new(client, clock);
            let info = r.u8()?;
            let (len, kind) = match info {
                SKIP => (r.var()?, None),
                GC => (r.var()?, Some(Kind::Collected)),
                info => {
                    let origin = if info & HAS_ORIGIN != 0 { Some(r.id()?) } else { None };
                    let right_origin = if info & HAS_RIGHT_ORIGIN != 0 { Some(r.id()?) } else { None };
                    let place = if origin.is_none() && right_origin.is_none() {
                        let parent = if r.var::<u32>()? == 1 {
                            Parent::Root(r.string()?.into())
                        } else {
                            Parent::Nested(r.id()?)
                        };
                        let key = if info & HAS_PARENT_SUB != 0 { Some(r.string()?.into()) } else { None };
                        Some(Place::In { parent, key })
                    } else {
                        None
                    };
                    (r.content(info)?, Some(Kind::Item { origin, right_origin, place }))
                }
            };
            if len == 0 {
                return Err("it has a struct of length 0".to_owned());
            }
            if let Some(kind) = kind {
                structs.push(Struct { id, len, kind });
            }
            clock = clock.checked_add(len).ok_or("its clocks overflow")?;
        }
    }
    // The delete set: per client its id and ranges (clock, length).
    for _ in 0..r.count(2, "deleting clients")? {
        let _client: u64 = r.var()?;
        for _ in 0..r.count(2, "deleted ranges")? {
            let _clock: u32 = r.var()?;
            let _len: u32 = r.var()?;
        }
    }
    Ok(structs)
}

/// Checks a v1 state vector's shape: its entry count fits the bytes (two varints each).
///
/// # Errors
/// A description of what is wrong.
pub(crate) fn state_vector(sv: &[u8]) -> Result<(), String> {
    Reader(Cursor::new(sv)).count(2, "state vector entries").map(|_| ())
}

struct Reader<'a>(Cursor<'a>);

impl Reader<'_> {
    fn left(&self) -> usize {
        self.0.buf.len().saturating_sub(self.0.next)
    }

    /// Reads a declared count of elements that take at least `bytes` bytes each.
    fn count(&mut self, bytes: usize, what: &str) -> Result<usize, String> {
        let declared: u64 = self.var()?;
        let left = self.left();
        match usize::try_from(declared) {
            Ok(count) if count <= left / bytes => Ok(count),
            _ => Err(format!("it declares {declared} {what} in the {left} bytes left")),
        }
    }

    fn var<T: yrs::encoding::varint::VarInt>(&mut self) -> Result<T, String> {
        self.0.read_var().map_err(|e| e.to_string())
    }

    fn u8(&mut self) -> Result<u8, String> {
        self.0.read_u8().map_err(|e| e.to_string())
    }

    fn skip(&mut self, len: usize) -> Result<(), String> {
        self.0.read_exact(len).map(|_| ()).map_err(|e| e.to_string())
    }

    fn buf(&mut self) -> Result<&[u8], String> {
        self.0.read_buf().map_err(|e| e.to_string())
    }

    fn string(&mut self) -> Result<&str, String> {
        self.0.read_string().map_err(|e| e.to_string())
    }

    fn id(&mut self) -> Result<ID, String> {
        Ok(ID::new(ClientID::new(self.var()?), self.var()?))
    }

    /// Reads an item's content (its kind is `info`'s low bits) and returns its length in clocks,
    /// as yrs's `ItemContent::decode` does.
    fn content(&mut self, info: u8) -> Result<u32, String> {
        let len = match info & 0b1111 {
            // Deleted: a length.
            1 => return self.var(),
            // JSON (legacy): yrs reads the declared count plus one strings.
            2 => {
                let count = self.count(1, "JSON values")?;
                for _ in 0..=count {
                    self.string()?;
                }
                count + 1
            }
            // Binary, embed (JSON text).
            3 => self.buf().map(|_| 1)?,
            4 => self.string()?.encode_utf16().count(),
            5 => self.string().map(|_| 1)?,
            // Format: key and JSON text.
            6 => {
                self.string()?;
                self.string().map(|_| 1)?
            }
            // Type: its type ref, and an XML element's name.
            7 => {
                match self.u8()? {
                    3 => {
                        self.string()?;
                    }
                    0..=2 | 4..=6 | 9 | 15 => {}
                    other => return Err(format!("it has a type of unknown kind {other}")),
                }
                1
            }
            8 => {
                let count = self.count(1, "values")?;
                for _ in 0..count {
                    self.any(0)?;
                }
                count
            }
            // Subdocument: refused (see the module documentation).
            9 => return Err(SUBDOCUMENT.to_owned()),
            other => return Err(format!("it has content of unknown kind {other}")),
        };
        u32::try_from(len).map_err(|_| "its content is too long".to_owned())
    }

    /// Reads one lib0 `Any` value at nesting `depth`.
    fn any(&mut self, depth: usize) -> Result<(), String> {
        if depth >= MAX_DEPTH {
            return Err(format!("its values nest deeper than {MAX_DEPTH} levels"));
        }
        match self.u8()? {
            // undefined, null, false, true
            127 | 126 | 121 | 120 => Ok(()),
            125 => self.var::<i64>().map(|_| ()),
            124 => self.skip(4),
            123 | 122 => self.skip(8),
            119 => self.string().map(|_| ()),
            118 => {
                for _ in 0..self.count(2, "map entries")? {
                    self.string()?;
                    self.any(depth + 1)?;
                }
                Ok(())
            }
            117 => {
                for _ in 0..self.count(1, "array values")? {
                    self.any(depth + 1)?;
                }
                Ok(())
            }
            116 => self.buf().map(|_| ()),
            other => Err(format!("it has a value of unknown kind {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use yrs::types::Attrs;
    use yrs::updates::decoder::Decode;
    use yrs::{
        Any, Array, ArrayPrelim, Doc, Map, MapPrelim, ReadTxn, StateVector, Text, Transact, Update,
        XmlElementPrelim, XmlFragment, XmlTextPrelim,
    };

    use super::*;
    use crate::yjs::YjsReplica;

    /// A document using every kind of content an editor writes, with deletions and collected items.
    fn every_kind() -> Vec<u8> {
        let doc = Doc::with_client_id(7);
        let text = doc.get_or_insert_text("t");
        let array = doc.get_or_insert_array("a");
        let map = doc.get_or_insert_map("m");
        let xml = doc.get_or_insert_xml_fragment("x");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "hello wörld 👋");
        text.format(&mut txn, 1, 3, Attrs::from([("bold".into(), Any::Bool(true))]));
        text.insert_embed(&mut txn, 2, Any::from(HashMap::from([("img".to_owned(), Any::from("x.png"))])));
        text.remove_range(&mut txn, 4, 2);
        array.insert(&mut txn, 0, Any::from(vec![Any::from(1.5), Any::from(vec![Any::Null, Any::from(-3)])]));
        array.insert(&mut txn, 1, Any::from(vec![0u8, 1, 2]));
        array.insert(&mut txn, 2, ArrayPrelim::default());
        map.insert(&mut txn, "n", MapPrelim::default());
        map.insert(&mut txn, "big", Any::from(1i64 << 60));
        map.insert(&mut txn, "s", "v");
        map.insert(&mut txn, "s", "replaced");
        let p = xml.insert(&mut txn, 0, XmlElementPrelim::empty("p"));
        p.insert(&mut txn, 0, XmlTextPrelim::new("para"));
        drop(txn);
        let nested = doc.get_or_insert_array("gone");
        let mut txn = doc.transact_mut();
        nested.insert(&mut txn, 0, ArrayPrelim::from([1, 2, 3]));
        nested.remove(&mut txn, 0);
        drop(txn);
        doc.transact().encode_state_as_update_v1(&StateVector::default())
    }

    #[test]
    fn every_kind_of_content_reads_as_yrs_reads_it() {
        let bytes = every_kind();
        let structs = update(&bytes).unwrap();
        let mut ends: HashMap<ClientID, u32> = HashMap::new();
        for s in &structs {
            let end = ends.entry(s.id.client).or_default();
            assert_eq!(*end, s.id.clock, "structs are contiguous");
            *end += s.len;
        }
        let yrs_sv = Update::decode_v1(&bytes).unwrap().state_vector();
        let ours: StateVector = ends.into_iter().collect();
        assert_eq!(ours, yrs_sv);
        assert!(structs.iter().any(|s| matches!(s.kind, Kind::Collected)), "a collected struct");
    }

    #[test]
    fn a_count_the_bytes_cannot_carry_is_refused() {
        // 2^29 entries declared in 5 bytes: yrs would reserve a table of them first.
        let huge = [0x80, 0x80, 0x80, 0x80, 0x02];
        assert!(state_vector(&huge).unwrap_err().contains("state vector entries"));
        assert!(YjsReplica::decode_state_vector(&huge).is_err());
        assert!(update(&huge).unwrap_err().contains("clients"));
        // One item in root "t" holding a map value that declares 2^27 entries.
        let map = [1, 1, 1, 0, 8, 1, 1, b't', 1, 118, 0x80, 0x80, 0x80, 0x40];
        assert!(update(&map).unwrap_err().contains("map entries"));
        assert!(YjsReplica::decode(&map).is_err());
        // A delete set declaring more ranges than it has bytes.
        let deletes = [0, 1, 5, 0x80, 0x80, 0x01];
        assert!(update(&deletes).unwrap_err().contains("deleted ranges"));
        // Honest sizes still pass.
        assert!(state_vector(&[1, 5, 3]).is_ok());
    }

    #[test]
    fn values_nested_too_deep_are_refused_without_recursing() {
        let nested = |depth: usize| {
            let mut b = vec![1, 1, 1, 0, 8, 1, 1, b't', 1];
            b.extend(std::iter::repeat_n([117u8, 1], depth).flatten());
            b.extend([126, 0]);
            b
        };
        assert!(YjsReplica::decode(&nested(MAX_DEPTH - 1)).is_ok());
        // Deep enough that yrs's recursive decoder would overflow the stack and abort the process.
        let err = YjsReplica::decode(&nested(200_000)).unwrap_err();
        assert!(err.detail.contains("nest deeper"), "{err}");
    }

    #[test]
    fn a_subdocument_is_refused_before_yrs_reads_it() {
        let doc = Doc::with_client_id(3);
        let map = doc.get_or_insert_map("m");
        map.insert(&mut doc.transact_mut(), "sub", Doc::new());
        let bytes = doc.transact().encode_state_as_update_v1(&StateVector::default());
        assert_eq!(update(&bytes).unwrap_err(), SUBDOCUMENT);
        assert!(YjsReplica::decode(&bytes).unwrap_err().detail.contains("subdocument"));
    }

    #[test]
    fn a_struct_of_length_zero_is_refused() {
        // One GC struct of length 0.
        assert!(update(&[1, 1, 1, 0, 0, 0, 0]).unwrap_err().contains("length 0"));
    }
}
