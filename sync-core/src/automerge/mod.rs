//! The Automerge side of the core: the automerge-repo network protocol codec (CBOR messages), the
//! contained replica, and the relay state machine that serves one Automerge document to many
//! automerge-repo peers.

pub mod codec;
pub mod history;
pub mod relay;
pub mod replica;

pub use codec::{DecodeError, DocumentId, InvalidDocumentId, Message, PROTOCOL_V1, PeerMetadata};
pub use relay::{Relay, Route, error_frame};
pub use replica::AutomergeReplica;
