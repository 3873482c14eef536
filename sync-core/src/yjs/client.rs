//! The client-side sync state machine for one Yjs document connected to a y-websocket relay.
//!
//! It owns no socket: the shell (the Rust SDK, or a simulation) reports connection changes, incoming
//! frames and local updates, and sends whatever [`YjsClient::poll_transmit`] returns.
//!
//! Acknowledgement: a Weft relay sends an update to anyone, its sender included, only once it is
//! durable — either with the same bytes, or merged with the other updates one commit released. The
//! client keeps the updates it sent in order and counts each acknowledged once an update from the
//! relay contains it (every item it inserts and every deletion it makes), so
//! [`YjsClient::is_acknowledged`] means "everything this replica has is stored".

use std::collections::VecDeque;

use bytes::Bytes;
use yrs::Doc;

use super::awareness::{self, AwarenessEntry, AwarenessStates};
use super::codec::{self, DecodeError, Message};
use super::replica::YjsReplica;

/// Transaction origin used when applying updates that came from the relay, so that an update observer
/// can tell them apart from local edits.
pub const REMOTE_ORIGIN: &str = "weft-remote";

/// Why the client rejected what the relay sent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The frame does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The relay sent an update or state vector that does not decode or apply.
    #[error("relay sent an invalid update: {0}")]
    InvalidUpdate(String),
    /// The relay denied access.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
}

/// The state machine. See the module documentation.
pub struct YjsClient {
    replica: YjsReplica,
    /// The document's own client id (its awareness id too).
    client_id: u64,
    connected: bool,
    /// The relay's step 2 arrived on this connection.
    received_state: bool,
    /// We answered the relay's step 1 on this connection.
    sent_state: bool,
    /// Updates sent on this connection and not yet echoed, oldest first.
    unacked: VecDeque<Bytes>,
    /// Updates that arrived before the relay's step 2; applied right after it, so that no update is
    /// applied ahead of the state it builds on (yrs's pending-structs path can duplicate items).
    early: Vec<Bytes>,
    outbox: VecDeque<Bytes>,
    local_awareness: Option<AwarenessEntry>,
    remote_awareness: AwarenessStates,
}

impl YjsClient {
    /// Wraps a document. The client applies remote updates to it with origin [`REMOTE_ORIGIN`].
    pub fn new(doc: Doc) -> Self {
        Self {
            client_id: doc.client_id().get(),
            replica: YjsReplica::from_doc(doc),
            connected: false,
            received_state: false,
            sent_state: false,
            unacked: VecDeque::new(),
            early: Vec::new(),
            outbox: VecDeque::new(),
            local_awareness: None,
            remote_awareness: AwarenessStates::default(),
        }
    }

    /// A connection opened: start the sync handshake and re-announce the local awareness state.
    ///
    /// # Errors
    /// [`ClientError::InvalidUpdate`] when the document cannot encode its state vector.
    pub fn handle_connected(&mut self) -> Result<(), ClientError> {
        self.connected = true;
        self.received_state = false;
        self.sent_state = false;
        self.unacked.clear();
        self.early.clear();
        self.outbox.clear();
        let sv = self.replica.encode_state_vector().map_err(invalid)?;
        self.outbox.push_back(Message::SyncStep1(sv.into()).encode());
        if let Some(entry) = &self.local_awareness {
            let frame = Message::Awareness(awareness::encode_update(std::iter::once(entry))).encode();
            self.outbox.push_back(frame);
        }
        Ok(())
    }

    /// The connection closed. Unsent and unacknowledged work is recovered by the next handshake.
    pub fn handle_disconnected(&mut self) {
        self.connected = false;
        self.received_state = false;
        self.sent_state = false;
        self.unacked.clear();
        self.early.clear();
        self.outbox.clear();
    }

    /// A frame arrived from the relay.
    ///
    /// # Errors
    /// [`ClientError`] when the frame does not decode or carries an invalid update; the caller should
    /// drop the connection and reconnect.
    pub fn handle_frame(&mut self, frame: &Bytes) -> Result<(), ClientError> {
        for message in codec::decode_frame(frame)? {
            match message {
                Message::SyncStep1(sv) => {
                    let sv = YjsReplica::decode_state_vector(&sv).map_err(invalid)?;
                    let diff = Bytes::from(self.replica.encode_diff(&sv).map_err(invalid)?);
                    if diff.as_ref() != [0, 0] {
                        self.unacked.push_back(diff.clone());
                    }
                    self.outbox.push_back(Message::SyncStep2(diff).encode());
                    self.sent_state = true;
                }
                Message::SyncStep2(update) => {
                    self.apply_remote(&update)?;
                    self.received_state = true;
                    for early in std::mem::take(&mut self.early) {
                        self.apply_remote(&early)?;
                    }
                }
                Message::Update(update) => {
                    if self.unacked.front() == Some(&update) {
                        // Its own echo, byte for byte: nothing to apply.
                        self.unacked.pop_front();
                        continue;
                    }
                    self.acknowledge_contained(&update);
                    if self.received_state {
                        self.apply_remote(&update)?;
                    } else {
                        self.early.push(update);
                    }
                }
                Message::Awareness(payload) => {
                    for entry in awareness::decode_update(&payload)? {
                        if entry.client_id != self.client_id {
                            self.remote_awareness.apply(&entry);
                        }
                    }
                }
                Message::QueryAwareness => {
                    if let Some(entry) = &self.local_awareness {
                        let frame =
                            Message::Awareness(awareness::encode_update(std::iter::once(entry))).encode();
                        self.outbox.push_back(frame);
                    }
                }
                Message::PermissionDenied(reason) => return Err(ClientError::PermissionDenied(reason)),
            }
        }
        Ok(())
    }

    /// Drops the oldest unacknowledged updates that `released` contains. The relay releases updates
    /// in the order it received them, so acknowledgements arrive for a prefix of `unacked`.
    fn acknowledge_contained(&mut self, released: &[u8]) {
        if self.unacked.is_empty() {
            return;
        }
        let acknowledged = acknowledged_prefix(released, self.unacked.iter().map(Bytes::as_ref));
        self.unacked.drain(..acknowledged);
    }

    /// A local transaction produced `update` (as a v1 update observer reports it).
    pub fn handle_local_update(&mut self, update: Bytes) {
        if !self.connected || update.as_ref() == [0, 0] {
            return;
        }
        self.outbox.push_back(Message::Update(update.clone()).encode());
        self.unacked.push_back(update);
    }

    /// Sets (or with `None` clears) this client's awareness state, given as JSON text.
    pub fn set_local_awareness(&mut self, state_json: Option<&str>) {
        // y-protocols ignores clock 0 from a client it has not seen (a JS client spends clock 0 on
        // its initial empty state), so the first state announced is clock 1.
        let clock = self.local_awareness.as_ref().map_or(1, |e| e.clock + 1);
        let state = Bytes::copy_from_slice(state_json.unwrap_or("null").as_bytes());
        let entry = AwarenessEntry { client_id: self.client_id, clock, state };
        if self.connected {
            let frame = Message::Awareness(awareness::encode_update(std::iter::once(&entry))).encode();
            self.outbox.push_back(frame);
        }
        self.local_awareness = Some(entry);
    }

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.outbox.pop_front()
    }

    /// Whether the relay's full state has been received on the current connection.
    pub fn is_synced(&self) -> bool {
        self.connected && self.received_state
    }

    /// Whether the relay has acknowledged (stored) everything this replica holds: synced both ways on
    /// the current connection and every update sent since has been echoed.
    pub fn is_acknowledged(&self) -> bool {
        self.is_synced() && self.sent_state && self.unacked.is_empty()
    }

    /// Number of sent updates whose echo has not arrived yet.
    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// Other clients' awareness states as last heard.
    pub fn remote_awareness(&self) -> &AwarenessStates {
        &self.remote_awareness
    }

    /// The document.
    pub fn doc(&self) -> &Doc {
        self.replica.doc()
    }

    fn apply_remote(&mut self, update: &[u8]) -> Result<(), ClientError> {
        let update = YjsReplica::decode(update).map_err(invalid)?;
        self.replica.apply_remote(update, REMOTE_ORIGIN).map_err(invalid)
    }
}

fn invalid(failure: crate::contain::CrdtFailure) -> ClientError {
    ClientError::InvalidUpdate(failure.to_string())
}

/// How many of `sent` (oldest first) the relay's `released` update contains: every item each one
/// inserts and every deletion it makes. A Weft relay releases an update only once it is durable, and
/// may merge several into one, so containment (not byte equality) is what acknowledges an update.
/// Stops at the first one not contained; an update that does not decode contains nothing.
pub fn acknowledged_prefix<'a>(released: &[u8], sent: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let Ok(released) = YjsReplica::decode(released) else { return 0 };
    let inserted = released.insertions(true);
    let deleted = released.delete_set();
    sent.into_iter()
        .take_while(|sent| match YjsReplica::decode(sent) {
            Ok(sent) => {
                sent.insertions(true).diff(&inserted).is_empty() && sent.delete_set().diff(deleted).is_empty()
            }
            Err(_) => false,
        })
        .count()
}

#[cfg(test)]
mod tests {
    use yrs::{GetString, ReadTxn, StateVector, Text, Transact};

    use super::*;

    /// A client on client id 1 whose handshake with an empty relay is complete.
    fn synced_client() -> YjsClient {
        let mut client = YjsClient::new(Doc::with_client_id(1));
        client.handle_connected().unwrap();
        client.handle_frame(&Message::SyncStep1(Bytes::from_static(&[0])).encode()).unwrap();
        client.handle_frame(&Message::SyncStep2(Bytes::from_static(&[0, 0])).encode()).unwrap();
        while client.poll_transmit().is_some() {}
        client
    }

    /// Types `text` at the end of root text "t" and hands the update to the client.
    fn type_text(client: &mut YjsClient, text: &str) -> Bytes {
        let t = client.doc().get_or_insert_text("t");
        let update = {
            let mut txn = client.doc().transact_mut();
            let end = t.len(&txn);
            t.insert(&mut txn, end, text);
            txn.encode_update_v1()
        };
        let update = Bytes::from(update);
        client.handle_local_update(update.clone());
        update
    }

    fn other_client(text: &str) -> Bytes {
        let doc = Doc::with_client_id(2);
        doc.get_or_insert_text("t").insert(&mut doc.transact_mut(), 0, text);
        Bytes::from(doc.transact().encode_state_as_update_v1(&StateVector::default()))
    }

    #[test]
    fn a_merged_echo_acknowledges_every_update_it_contains() {
        let mut client = synced_client();
        let first = type_text(&mut client, "ab");
        let second = type_text(&mut client, "cd");
        let third = type_text(&mut client, "ef");
        assert_eq!(client.unacked_len(), 3);

        // Another client's update acknowledges nothing, and is applied.
        let theirs = other_client("xy");
        client.handle_frame(&Message::Update(theirs.clone()).encode()).unwrap();
        assert_eq!(client.unacked_len(), 3);

        // The relay released the first two with the other client's in one merged update.
        let merged = yrs::merge_updates_v1([first.as_ref(), theirs.as_ref(), second.as_ref()]).unwrap();
        client.handle_frame(&Message::Update(Bytes::from(merged)).encode()).unwrap();
        assert_eq!(client.unacked_len(), 1, "the third is not in it");
        assert!(!client.is_acknowledged());

        client.handle_frame(&Message::Update(third).encode()).unwrap();
        assert!(client.is_acknowledged());
        let text = client.doc().get_or_insert_text("t").get_string(&client.doc().transact());
        assert_eq!(text.len(), 8, "{text:?}: nothing applied twice");
    }

    #[test]
    fn a_deletion_is_acknowledged_only_by_an_update_that_deletes_the_same() {
        let mut client = synced_client();
        let typed = type_text(&mut client, "abc");
        client.handle_frame(&Message::Update(typed.clone()).encode()).unwrap();
        let t = client.doc().get_or_insert_text("t");
        let deletion = {
            let mut txn = client.doc().transact_mut();
            t.remove_range(&mut txn, 0, 1);
            Bytes::from(txn.encode_update_v1())
        };
        client.handle_local_update(deletion.clone());
        // The insertion alone does not contain the deletion.
        client.handle_frame(&Message::Update(typed.clone()).encode()).unwrap();
        assert_eq!(client.unacked_len(), 1);
        let merged = yrs::merge_updates_v1([typed.as_ref(), deletion.as_ref()]).unwrap();
        client.handle_frame(&Message::Update(Bytes::from(merged)).encode()).unwrap();
        assert!(client.is_acknowledged());
    }
}
