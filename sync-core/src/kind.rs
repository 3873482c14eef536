//! What a workspace document is for: its kind, fixed at creation. The domain layouts each kind
//! follows in its CRDT build on this.

use serde::{Deserialize, Serialize};

/// The kind of a workspace document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    /// Rich text, with comments and mentions.
    Document,
    /// A chat channel (or a direct-message conversation).
    Channel,
    /// A task board.
    Board,
    /// A whiteboard.
    Whiteboard,
}

impl DocKind {
    /// Every kind.
    pub const ALL: [DocKind; 4] = [DocKind::Document, DocKind::Channel, DocKind::Board, DocKind::Whiteboard];

    /// The kind's name as the API and the database spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Document => "document",
            DocKind::Channel => "channel",
            DocKind::Board => "board",
            DocKind::Whiteboard => "whiteboard",
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<DocKind> {
        DocKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for kind in DocKind::ALL {
            assert_eq!(DocKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(DocKind::parse("Document"), None);
    }
}
