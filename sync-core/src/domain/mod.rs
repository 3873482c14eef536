//! The canonical layouts of the workspace document kinds, on both CRDTs, and pure projections
//! from a replica to typed views (`docs/schemas.md` writes each layout down for app developers).
//! No I/O and no clock: a caller that needs "today" passes it in.

pub mod board;
pub mod channel;
pub mod document;
mod read;
pub mod whiteboard;
pub mod write;

use serde::Serialize;

use crate::DocKind;

/// A document's content read through its kind's projection.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// Rich text.
    Document(document::Document),
    /// A chat channel.
    Channel(channel::Channel),
    /// A task board.
    Board(board::Board),
    /// A whiteboard.
    Whiteboard(whiteboard::Whiteboard),
}

impl Projection {
    /// A Yjs document read as a `kind` document.
    pub fn of_yjs(doc: &yrs::Doc, kind: DocKind) -> Self {
        let txn = yrs::Transact::transact(doc);
        match kind {
            DocKind::Document => Self::Document(document::from_yjs(&txn)),
            DocKind::Channel => Self::Channel(channel::from_yjs(&txn)),
            DocKind::Board => Self::Board(board::from_yjs(&txn)),
            DocKind::Whiteboard => Self::Whiteboard(whiteboard::from_yjs(&txn)),
        }
    }

    /// An empty document of `kind` (the same on both CRDTs).
    pub fn empty(kind: DocKind) -> Self {
        Self::of_yjs(&yrs::Doc::new(), kind)
    }

    /// An Automerge document read as a `kind` document.
    pub fn of_automerge(doc: &automerge::Automerge, kind: DocKind) -> Self {
        match kind {
            DocKind::Document => Self::Document(document::from_automerge(doc)),
            DocKind::Channel => Self::Channel(channel::from_automerge(doc)),
            DocKind::Board => Self::Board(board::from_automerge(doc)),
            DocKind::Whiteboard => Self::Whiteboard(whiteboard::from_automerge(doc)),
        }
    }
}

/// Something a projection could not read and left out (or read with a default), and why. A
/// client that writes a malformed layout costs only what it broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Where, as `collection/id/field` (`tasks/t1/due`, `columns/3`).
    pub path: String,
    /// Why it could not be read.
    pub reason: String,
}

/// Longest user id a mention may name, in bytes.
const MAX_MENTION_BYTES: usize = 64;

/// The user ids a text mentions, written `<@user-id>` (ids of letters, digits, `-` and `_`), in
/// order of first mention, each once.
pub fn mentions(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('>') else { break };
        let id = &rest[..end];
        let valid = !id.is_empty()
            && id.len() <= MAX_MENTION_BYTES
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            if !found.iter().any(|f| f == id) {
                found.push(id.to_owned());
            }
            rest = &rest[end + 1..];
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_read_once_each_in_order() {
        assert_eq!(mentions("hi <@u-bob> and <@ada_1>, again <@u-bob>"), ["u-bob", "ada_1"]);
        assert!(mentions("no <@> <@bad id> <@x").is_empty());
        assert_eq!(mentions("<@<@u-1>"), ["u-1"]);
        assert!(mentions(&format!("<@{}>", "a".repeat(65))).is_empty());
    }
}
