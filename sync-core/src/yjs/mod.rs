//! The Yjs side of the core: the y-protocols wire codec, awareness bookkeeping, the contained
//! replica, and the relay and client sync state machines for one document.

mod anchors;
pub mod awareness;
pub mod client;
pub mod codec;
pub mod history;
pub mod relay;
pub mod replica;
mod scan;

pub use awareness::{AwarenessEntry, AwarenessStates};
pub use client::{ClientError, YjsClient, acknowledged_prefix};
pub use codec::{DecodeError, Message};
pub use relay::{Relay, RelayLimits};
pub use replica::{Decoded, YjsReplica};
