//! Awareness (presence) updates: their encoding and the relay's table of the latest state per client.
//!
//! An awareness update is `varUint count` then, per entry, `varUint clientID`, `varUint clock`,
//! `varString state` where `state` is JSON text and `null` means "this client left". The merge rule is
//! y-protocols': an entry wins if its clock is newer, or equal with a `null` state removing a live one.
//! Awareness is ephemeral: nothing here is ever persisted.

use std::collections::HashMap;

use bytes::Bytes;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;

use super::codec::DecodeError;

const NULL_STATE: &[u8] = b"null";

/// One client's entry in an awareness update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwarenessEntry {
    /// The Yjs client id the state belongs to.
    pub client_id: u64,
    /// Lamport clock of the state; higher wins.
    pub clock: u64,
    /// The state as JSON text (`null` when the client left).
    pub state: Bytes,
}

impl AwarenessEntry {
    /// Whether this entry announces that the client left.
    pub fn is_removal(&self) -> bool {
        self.state.as_ref() == NULL_STATE
    }
}

/// Decodes an awareness update and checks that every state is JSON text.
///
/// # Errors
/// [`DecodeError`] when the payload is truncated, has trailing bytes, or a state is not valid JSON
/// (other clients would fail to parse it).
pub fn decode_update(payload: &Bytes) -> Result<Vec<AwarenessEntry>, DecodeError> {
    let mut cursor = Cursor::new(payload);
    let count: u32 = cursor.read_var()?;
    // The count comes from the peer; cap the pre-allocation by what the payload could possibly hold.
    let mut entries = Vec::with_capacity((count as usize).min(payload.len() / 3));
    for _ in 0..count {
        let client_id: u64 = cursor.read_var()?;
        let clock: u64 = cursor.read_var()?;
        let state = cursor.read_string()?;
        if serde_json::from_str::<serde::de::IgnoredAny>(state).is_err() {
            return Err(DecodeError::Malformed(format!("awareness state of client {client_id} is not JSON")));
        }
        entries.push(AwarenessEntry { client_id, clock, state: payload.slice_ref(state.as_bytes()) });
    }
    if cursor.has_content() {
        return Err(DecodeError::Malformed("trailing bytes after awareness update".into()));
    }
    Ok(entries)
}

/// Encodes entries as one awareness update payload.
pub fn encode_update<'a>(entries: impl ExactSizeIterator<Item = &'a AwarenessEntry>) -> Bytes {
    let mut out = Vec::new();
    out.write_var(entries.len() as u64);
    for entry in entries {
        out.write_var(entry.client_id);
        out.write_var(entry.clock);
        out.write_buf(&entry.state);
    }
    Bytes::from(out)
}

/// The latest awareness state of every client a relay has heard of.
#[derive(Debug, Default)]
pub struct AwarenessStates {
    clocks: HashMap<u64, u64>,
    live: HashMap<u64, Bytes>,
}

impl AwarenessStates {
    /// Merges one entry; returns whether it changed the table (and so should be relayed).
    pub fn apply(&mut self, entry: &AwarenessEntry) -> bool {
        let current = self.clocks.get(&entry.client_id).copied().unwrap_or(0);
        let newer = current < entry.clock;
        let removes_live =
            current == entry.clock && entry.is_removal() && self.live.contains_key(&entry.client_id);
        if !(newer || removes_live) {
            return false;
        }
        self.clocks.insert(entry.client_id, entry.clock);
        if entry.is_removal() {
            self.live.remove(&entry.client_id);
        } else {
            self.live.insert(entry.client_id, entry.state.clone());
        }
        true
    }

    /// Marks `client_id` as gone: returns the removal entry to broadcast, or `None` if it had no live state.
    pub fn remove(&mut self, client_id: u64) -> Option<AwarenessEntry> {
        self.live.remove(&client_id)?;
        let clock = self.clocks.get(&client_id).copied().unwrap_or(0) + 1;
        self.clocks.insert(client_id, clock);
        Some(AwarenessEntry { client_id, clock, state: Bytes::from_static(NULL_STATE) })
    }

    /// Every live state, as entries, in client-id order.
    pub fn live_entries(&self) -> Vec<AwarenessEntry> {
        let mut entries: Vec<_> = self
            .live
            .iter()
            .map(|(&client_id, state)| AwarenessEntry {
                client_id,
                clock: self.clocks.get(&client_id).copied().unwrap_or(0),
                state: state.clone(),
            })
            .collect();
        entries.sort_by_key(|e| e.client_id);
        entries
    }

    /// The live state of one client.
    pub fn get(&self, client_id: u64) -> Option<&Bytes> {
        self.live.get(&client_id)
    }

    /// Number of clients with a live state.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no client has a live state.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(client_id: u64, clock: u64, state: &'static str) -> AwarenessEntry {
        AwarenessEntry { client_id, clock, state: Bytes::from_static(state.as_bytes()) }
    }

    #[test]
    fn updates_round_trip() {
        let entries = vec![entry(1, 3, r#"{"user":"ann"}"#), entry(u64::from(u32::MAX) + 9, 0, "null")];
        assert_eq!(decode_update(&encode_update(entries.iter())).unwrap(), entries);
    }

    #[test]
    fn newer_clocks_win_and_removal_needs_a_live_state() {
        let mut states = AwarenessStates::default();
        assert!(states.apply(&entry(1, 1, "{}")));
        assert!(!states.apply(&entry(1, 1, r#"{"a":1}"#)), "same clock, not a removal");
        assert!(states.apply(&entry(1, 2, r#"{"a":1}"#)));
        assert!(!states.apply(&entry(1, 1, "null")), "older removal");
        assert!(states.apply(&entry(1, 2, "null")), "same-clock removal of a live state");
        assert!(states.is_empty());
        assert!(!states.apply(&entry(1, 2, "null")));
    }

    #[test]
    fn remove_bumps_the_clock_past_the_last_state() {
        let mut states = AwarenessStates::default();
        states.apply(&entry(7, 4, "{}"));
        let removal = states.remove(7).unwrap();
        assert_eq!((removal.clock, removal.is_removal()), (5, true));
        assert!(states.remove(7).is_none());
        assert!(!states.apply(&entry(7, 4, "{}")), "a stale state cannot resurrect the client");
    }

    #[test]
    fn states_that_are_not_json_are_refused() {
        let bad = encode_update([entry(1, 1, "{not json")].iter());
        assert!(matches!(decode_update(&bad), Err(DecodeError::Malformed(_))));
        let mut trailing = encode_update([entry(1, 1, "{}")].iter()).to_vec();
        trailing.push(0);
        assert!(decode_update(&Bytes::from(trailing)).is_err());
    }
}
