//! Rust client for the Weft relay.
//!
//! [`YjsSync`] keeps a [`yrs::Doc`] in sync with a document on a relay speaking the y-websocket
//! dialect (`ws://host/ws/yjs/{doc}`): it sends local edits, applies remote ones, reconnects with
//! jittered exponential backoff and resyncs from its state vector, and reports which local edits the
//! relay has acknowledged (stored durably). The protocol logic lives in
//! [`weft_sync_core::yjs::YjsClient`]; this crate is the tokio shell around it.

mod yjs;

pub use yjs::{ClientError, ClientOptions, CloseInfo, SyncStatus, YjsSync};
