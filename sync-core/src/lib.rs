//! Sans-IO core of Weft: wire codecs, CRDT replicas and the sync state machines that both the relay
//! (`weft-server`) and the Rust client (`weft-client`) drive.
//!
//! Nothing in this crate performs I/O, spawns tasks or reads a clock: inputs arrive through `handle_*`
//! calls, outputs leave through `poll_*` calls or return values. That is what lets the same logic run in
//! the relay, in the SDK and in deterministic simulations.

pub mod access;
pub mod automerge;
pub mod close;
pub mod contain;
pub mod domain;
pub mod history;
pub mod hocuspocus;
pub mod ids;
pub mod kind;
pub mod names;
pub mod notify;
pub mod relay;
pub mod search;
pub mod yjs;

pub use close::CloseCode;
pub use contain::CrdtFailure;
pub use ids::{DocId, InvalidDocId, PeerId};
pub use kind::DocKind;
pub use relay::{
    Access, DocumentRelay, Event, Health, LoadError, Loaded, Quarantined, RelayLimits, Snapshot, StoredItem,
    WriteFailure,
};
