//! Identifier newtypes that stop bare strings at the edge: document names and relay-local peer ids.

use std::fmt;

/// Longest accepted document name, in bytes.
pub const MAX_DOC_ID_BYTES: usize = 512;

/// The name of a document as clients address it (`/ws/yjs/{doc_id}`, a Hocuspocus document name, …).
///
/// Any UTF-8 string of 1 to [`MAX_DOC_ID_BYTES`] bytes without control characters. Control characters
/// are refused because some dialects use them as separators (Hocuspocus v4 routes by `name\0session`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId(String);

/// Why a string is not a valid [`DocId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDocId {
    /// The name is empty.
    #[error("document name is empty")]
    Empty,
    /// The name is longer than [`MAX_DOC_ID_BYTES`].
    #[error("document name is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Length of the rejected name in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name contains a control character.
    #[error("document name contains a control character")]
    ControlCharacter,
}

impl DocId {
    /// Validates `name` as a document name.
    ///
    /// # Errors
    /// [`InvalidDocId`] when the name is empty, too long or contains a control character.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidDocId> {
        let name = name.into();
        if name.is_empty() {
            return Err(InvalidDocId::Empty);
        }
        if name.len() > MAX_DOC_ID_BYTES {
            return Err(InvalidDocId::TooLong { len: name.len(), max: MAX_DOC_ID_BYTES });
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidDocId::ControlCharacter);
        }
        Ok(Self(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({:?})", self.0)
    }
}

/// A connection's identity inside one relay process. Assigned by the relay shell, never sent on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl PeerId {
    /// The relay itself, as the sender of its own writes (REST routes): never a connection (the
    /// server numbers connections from 1). Its writes are logged and broadcast like a peer's; it
    /// is never sent anything.
    pub const LOCAL: PeerId = PeerId(0);
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer-{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_id_accepts_ordinary_names_and_refuses_bad_ones() {
        assert!(DocId::new("notes/2026 plan ✓").is_ok());
        assert_eq!(DocId::new(""), Err(InvalidDocId::Empty));
        assert_eq!(DocId::new("a\0b"), Err(InvalidDocId::ControlCharacter));
        assert!(matches!(DocId::new("x".repeat(513)), Err(InvalidDocId::TooLong { len: 513, .. })));
        assert!(DocId::new("x".repeat(512)).is_ok());
    }
}
