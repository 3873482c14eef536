//! `AutomergeReplica`: an Automerge document behind the containment layer.
//!
//! Every call into the `automerge` crate made on behalf of the relay or a projection goes through
//! this module, and each one through [`crate::contain::contain`]: an automerge error or panic is a
//! [`CrdtFailure`], never a dead task. Decoding a sync message also refuses bloom filters whose
//! parameters would make the relay do unbounded work (automerge 0.12 trusts them).

// `::automerge` is the crate; `crate::automerge` is this module's parent.
use ::automerge::sync::{self, SyncDoc};
use ::automerge::{Automerge, ChangeHash, LoadOptions, OnPartialLoad, VerificationMode};

use crate::contain::{CrdtFailure, contain, contain_infallible};

/// Bloom filters in a sync message's `have` that the relay will look at. Automerge sends one.
const MAX_HAVES: usize = 8;

/// Probes per hash, and bits per entry, a bloom filter may ask for. Automerge uses 7 and 10; the
/// decoder accepts any `u32`, and the relay's work per change grows with them.
const MAX_BLOOM_PROBES: u64 = 64;
const MAX_BLOOM_BITS_PER_ENTRY: u64 = 64;

/// An Automerge document whose every library call is contained. Boxed: an `Automerge` is a few KiB
/// even when empty, and replicas move (into relays, rooms, enums).
#[derive(Default)]
pub struct AutomergeReplica {
    doc: Box<Automerge>,
}

impl std::fmt::Debug for AutomergeReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutomergeReplica").finish_non_exhaustive()
    }
}

impl AutomergeReplica {
    /// Loads a saved document strictly: every byte must be a valid document.
    ///
    /// # Errors
    /// [`CrdtFailure`] when it does not load.
    pub fn load(saved: &[u8]) -> Result<Self, CrdtFailure> {
        let options = LoadOptions::new()
            .on_partial_load(OnPartialLoad::Error)
            .verification_mode(VerificationMode::Check);
        let doc = contain("load document", || Automerge::load_with_options(saved, options))?;
        Ok(Self { doc: Box::new(doc) })
    }

    /// Replays one log entry (change chunks, or a saved document for an empty one), which must add
    /// changes.
    ///
    /// # Errors
    /// [`CrdtFailure`] when it does not load or adds nothing; the document may then hold part of it.
    pub fn apply_entry(&mut self, entry: &[u8]) -> Result<(), CrdtFailure> {
        let before = self.heads()?;
        contain("load log entry", || self.doc.load_incremental(entry))?;
        // Every entry the relay writes adds changes; one that adds none was not written by it.
        if !entry.is_empty() && self.heads()? == before {
            return Err(CrdtFailure::new("load log entry", "it adds no changes"));
        }
        Ok(())
    }

    /// Runs `edit` in one transaction on the document: the relay's own writes (REST routes). An
    /// `edit` that returns an error is rolled back (automerge's `transact`).
    ///
    /// # Errors
    /// [`CrdtFailure`] when automerge panics; the document may then hold part of the edit: discard
    /// it.
    pub fn edit<T, E>(
        &mut self,
        edit: impl FnOnce(&mut ::automerge::transaction::Transaction<'_>) -> Result<T, E>,
    ) -> Result<Result<T, E>, CrdtFailure> {
        contain_infallible("local edit", || match self.doc.transact(edit) {
            Ok(success) => Ok(success.result),
            Err(failure) => Err(failure.error),
        })
    }

    /// The document's heads.
    ///
    /// # Errors
    /// [`CrdtFailure`] when automerge panics.
    pub fn heads(&self) -> Result<Vec<ChangeHash>, CrdtFailure> {
        contain_infallible("read heads", || self.doc.get_heads())
    }

    /// Applies a peer's sync message with that peer's sync state.
    ///
    /// # Errors
    /// [`CrdtFailure`] when automerge fails or panics; the document may then hold part of the
    /// message's changes: discard it.
    pub fn receive_sync(
        &mut self,
        state: &mut sync::State,
        message: sync::Message,
    ) -> Result<(), CrdtFailure> {
        contain("apply sync message", || self.doc.receive_sync_message(state, message))
    }

    /// The next sync message for a peer with sync state `state`, if one is due. Only reads the
    /// document; after a failure only `state` is in doubt.
    ///
    /// # Errors
    /// [`CrdtFailure`] when automerge panics (a peer's `have` naming changes nobody has).
    pub fn generate_sync(&self, state: &mut sync::State) -> Result<Option<sync::Message>, CrdtFailure> {
        contain_infallible("generate sync message", || self.doc.generate_sync_message(state))
    }

    /// The whole document in the compressed document format.
    ///
    /// # Errors
    /// [`CrdtFailure`] when automerge panics.
    pub fn save(&self) -> Result<Vec<u8>, CrdtFailure> {
        contain_infallible("save document", || self.doc.save())
    }

    /// The changes added since `heads`, as change chunks; for an empty `heads`, the whole saved
    /// document (smaller, and it replays the same).
    ///
    /// # Errors
    /// [`CrdtFailure`] when automerge panics.
    pub fn save_after(&self, heads: &[ChangeHash]) -> Result<Vec<u8>, CrdtFailure> {
        if heads.is_empty() {
            return self.save();
        }
        contain_infallible("save new changes", || self.doc.save_after(heads))
    }

    /// Checks the rule every replica keeps: the document saves, and the saved form loads back
    /// strictly with the same heads. Costs O(document).
    ///
    /// # Errors
    /// [`CrdtFailure`] when any step fails.
    pub fn verify(&self) -> Result<(), CrdtFailure> {
        verify_snapshot(&self.save()?, &self.heads()?)
    }

    /// Reads the document through `read`, contained: for projections and tests.
    ///
    /// # Errors
    /// [`CrdtFailure`] when `read` panics.
    pub fn read<T>(&self, read: impl FnOnce(&Automerge) -> T) -> Result<T, CrdtFailure> {
        contain_infallible("read document", || read(&self.doc))
    }
}

/// Loads `saved` strictly and checks its heads are `expected`.
///
/// # Errors
/// [`CrdtFailure`] saying what failed or differs.
pub fn verify_snapshot(saved: &[u8], expected: &[ChangeHash]) -> Result<(), CrdtFailure> {
    let loaded = AutomergeReplica::load(saved)?;
    if loaded.heads()? != expected {
        return Err(CrdtFailure::new(
            "verify snapshot",
            "the loaded document has other heads than the replica",
        ));
    }
    Ok(())
}

/// Decodes an Automerge sync message and refuses the ones whose bloom filters would make the relay
/// do unbounded work.
///
/// # Errors
/// [`CrdtFailure`] when it does not decode or asks too much.
pub fn decode_sync(data: &[u8]) -> Result<sync::Message, CrdtFailure> {
    let message = contain("decode sync message", || sync::Message::decode(data))?;
    if message.have.len() > MAX_HAVES {
        let detail = format!("it has {} bloom filters (limit {MAX_HAVES})", message.have.len());
        return Err(CrdtFailure::new("check sync message", detail));
    }
    for have in &message.have {
        let encoded = contain_infallible("encode bloom filter", || have.bloom.to_bytes())?;
        check_bloom(&encoded).map_err(|detail| CrdtFailure::new("check sync message", detail))?;
    }
    Ok(message)
}

/// Encodes a sync message for the wire.
///
/// # Errors
/// [`CrdtFailure`] when automerge panics.
pub fn encode_sync(message: sync::Message) -> Result<Vec<u8>, CrdtFailure> {
    contain_infallible("encode sync message", || message.encode())
}

/// Checks the header of an encoded bloom filter: `leb128 entries, leb128 bits per entry,
/// leb128 probes`, then the bits (an empty encoding is the empty filter).
fn check_bloom(encoded: &[u8]) -> Result<(), String> {
    if encoded.is_empty() {
        return Ok(());
    }
    let mut rest = encoded;
    let mut next = || read_leb128(&mut rest).ok_or_else(|| "bloom filter header does not decode".to_owned());
    let (entries, bits_per_entry, probes) = (next()?, next()?, next()?);
    if entries > 0 && !(1..=MAX_BLOOM_BITS_PER_ENTRY).contains(&bits_per_entry) {
        return Err(format!("bloom filter with {bits_per_entry} bits per entry"));
    }
    if !(1..=MAX_BLOOM_PROBES).contains(&probes) {
        return Err(format!("bloom filter with {probes} probes"));
    }
    Ok(())
}

fn read_leb128(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use ::automerge::transaction::Transactable;
    use ::automerge::{AutoCommit, ROOT};

    use super::*;

    #[test]
    fn bloom_headers_with_absurd_parameters_are_refused() {
        assert!(check_bloom(&[]).is_ok());
        assert!(check_bloom(&[3, 10, 7, 0, 0, 0, 0]).is_ok());
        assert!(check_bloom(&[3, 0, 7]).is_err(), "zero bits per entry divides by zero");
        assert!(check_bloom(&[3, 10, 0x80, 0x80, 0x80, 0x80, 0x08]).is_err(), "2^31 probes");
        assert!(check_bloom(&[3, 10]).is_err(), "truncated header");
    }

    #[test]
    fn a_saved_document_verifies_against_its_heads_only() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "k", "v").unwrap();
        let saved = doc.save();
        let heads = doc.get_heads();
        verify_snapshot(&saved, &heads).unwrap();
        assert!(verify_snapshot(&saved, &[]).is_err());
        assert!(verify_snapshot(&saved[..saved.len() - 1], &heads).is_err(), "a truncated save");
    }
}
