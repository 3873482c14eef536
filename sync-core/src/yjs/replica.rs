//! `YjsReplica`: a yrs document behind the containment layer, and the rules an update must pass
//! before it may change the document.
//!
//! Every call into yrs made on behalf of the relay, the client state machine or a projection goes
//! through this module, and each one through [`crate::contain::contain`]: a yrs error or panic is a
//! [`CrdtFailure`], never a dead task.
//!
//! The rules (what keeps "the replica can encode its full state, and that encoding loads" true
//! after every accepted update, without an O(document) check per update):
//! - **Bounded**: [`super::scan`] reads the bytes first and refuses counts the bytes cannot carry
//!   and `Any` values nested deeper than [`super::scan::MAX_DEPTH`]; yrs would reserve memory as
//!   declared and recurse without limit.
//! - **No subdocuments**: [`super::scan`] refuses an update holding one; yrs 0.28 never frees a
//!   document that integrated a subdocument (a reference cycle through the item).
//! - **Canonical**: an update must decode, and re-encoding it must give an update that decodes to
//!   the same insertions and deletions. A crafted update whose blocks overlap, repeat a client or
//!   carry content yrs cannot write back fails here, before it touches the replica.
//! - **Complete**: an applied update must integrate entirely. One that leaves yrs with pending
//!   structs or deletions (it refers to content the replica does not have) is a failure, and the
//!   replica it touched is suspect: the caller discards it and rebuilds from the log. Pending
//!   state is also where yrs 0.28 can integrate an item twice, so a replica never holds any.
//! - **Anchored**: an item's left and right origins must lie in the type (and map key) it is
//!   integrated into, as an honest editor's always do; [`super::anchors`] keeps where each item
//!   went and refuses, before anything is applied, an update that would link two types' lists
//!   into each other.
//! - **Consistent where it overlaps**: an update whose blocks start inside what the replica
//!   already has and reach past it (a client re-sending its whole state does this honestly; a
//!   forged one can claim other content for clocks the replica knows) is integrated, then the
//!   whole replica is verified as [`YjsReplica::verify`] does. Fuzzing found forged overlaps after
//!   which yrs keeps a state whose encoding loads with other deletions; honest updates from a
//!   y-protocols peer start where the replica's state vector ends, so this costs O(document) only
//!   on the rare update that overlaps.
//! - **Forwarded as integrated**: what peers are sent for an update that re-sends known clocks is
//!   what the replica gained from it ([`Applied::Gained`]), so that no peer ever receives two
//!   versions of the same clocks.
//!
//! Heavier checks run where whole states are handled anyway: [`YjsReplica::verify`] when a document
//! is loaded, [`verify_snapshot`] before a snapshot may replace log entries.

use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, IdSet, ReadTxn, StateVector, Transact, Update};

use super::anchors::Anchors;
use super::scan::{self, Struct};
use crate::contain::{CrdtFailure, contain, contain_infallible};

/// A Yjs document whose every library call is contained. See the module documentation.
pub struct YjsReplica {
    doc: Doc,
    /// Where each item went, for the anchored rule. Kept by [`YjsReplica::apply`]; a replica made
    /// with [`YjsReplica::from_doc`] (the client side) applies only through
    /// [`YjsReplica::apply_remote`] and keeps none.
    anchors: Anchors,
}

/// An update that decoded and is canonical, with its structs as the anchored rule reads them.
#[derive(Debug)]
pub struct Decoded {
    update: Update,
    structs: Vec<Struct>,
}

impl std::ops::Deref for Decoded {
    type Target = Update;

    fn deref(&self) -> &Update {
        &self.update
    }
}

impl Default for YjsReplica {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for YjsReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YjsReplica").finish_non_exhaustive()
    }
}

/// What applying an update gave the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Everything it inserts was new: the update's own bytes say exactly what the replica gained.
    AsSent,
    /// It re-sent clocks the replica already had. yrs keeps what it has for those, so the update's
    /// re-sent part may say something else about them (a forged update claiming another client's
    /// clocks does): peers must be sent what the replica gained, encoded here (`[0, 0]` if
    /// nothing), never the update itself — a replica receiving both versions of the same clocks is
    /// corrupted (yrs 0.28 crashed on the next edit in a release build; found by fuzzing).
    Gained(Vec<u8>),
}

/// How an update's insertions relate to the replica's state vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// Every range starts at or after what the replica has for its client.
    New,
    /// Some range lies within what the replica has.
    Resends,
    /// Some range starts within what the replica has and reaches past it.
    Overlaps,
}

/// What a snapshot must reproduce when loaded back: the replica's state vector and delete set when
/// it was taken (a yrs snapshot, compared as values: its encoding follows hash-map order). Two replicas with the same state vector and delete set
/// hold the same items (an item's id names its content) and the same deletions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCheck(yrs::Snapshot);

impl YjsReplica {
    /// An empty document that keeps deleted content (`skip_gc`), so that its past states can be
    /// rebuilt and restored (`super::history`). What that costs is measured in
    /// `docs/benchmarks.md` (History).
    pub fn new() -> Self {
        let options = yrs::Options { skip_gc: true, ..yrs::Options::default() };
        Self { doc: Doc::with_options(options), anchors: Anchors::default() }
    }

    /// Wraps a document an application owns (the client side). The application edits it through
    /// [`YjsReplica::doc`]; what the client state machine does to it goes through this wrapper.
    pub fn from_doc(doc: Doc) -> Self {
        Self { doc, anchors: Anchors::default() }
    }

    /// The document itself, for the application that owns it (client side). Calls made through it
    /// are the application's and are not contained; the relay never hands it out.
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// Decodes a v1 update and checks that it is canonical (see the module documentation).
    ///
    /// # Errors
    /// [`CrdtFailure`] when it does not decode, or is not canonical.
    pub fn decode(update: &[u8]) -> Result<Decoded, CrdtFailure> {
        let structs = contain("scan update", || scan::update(update))?;
        let decoded = contain("decode update", || Update::decode_v1(update))?;
        let reencoded = contain_infallible("re-encode update", || decoded.encode_v1())?;
        let again = contain("decode re-encoded update", || Update::decode_v1(&reencoded)).map_err(|f| {
            CrdtFailure::new("check update", format!("its re-encoding does not decode ({})", f.detail))
        })?;
        let same = contain_infallible("compare updates", || {
            same_ids(&decoded.insertions(true), &again.insertions(true))
                && same_ids(decoded.delete_set(), again.delete_set())
        })?;
        if !same {
            return Err(CrdtFailure::new(
                "check update",
                "its blocks overlap, repeat a client or are out of order",
            ));
        }
        Ok(Decoded { update: decoded, structs })
    }

    /// Decodes a v1 state vector.
    ///
    /// # Errors
    /// [`CrdtFailure`] when it does not decode.
    pub fn decode_state_vector(sv: &[u8]) -> Result<StateVector, CrdtFailure> {
        contain("scan state vector", || scan::state_vector(sv))?;
        contain("decode state vector", || StateVector::decode_v1(sv))
    }

    /// The document's state vector.
    ///
    /// # Errors
    /// [`CrdtFailure`] when yrs panics.
    pub fn state_vector(&self) -> Result<StateVector, CrdtFailure> {
        contain_infallible("read state vector", || reading(&self.doc).state_vector())
    }

    /// Applies a decoded update, which must integrate completely. `origin`, when given, is the
    /// transaction origin observers see.
    ///
    /// # Errors
    /// [`CrdtFailure`] when yrs fails or panics, or the update left pending structs or deletions.
    /// The replica may then hold part of the update: discard it.
    pub fn apply(&mut self, update: Decoded, origin: Option<&str>) -> Result<Applied, CrdtFailure> {
        let relation = self.relation(&update)?;
        let placed = contain("check update", || self.anchors.check(&update.structs))?;
        let Decoded { update, .. } = update;
        let applied = contain("apply update", || {
            write(&self.doc, origin, |txn| {
                txn.apply_update(update).map_err(|err| err.to_string())?;
                if txn.has_missing_updates() {
                    return Err("it refers to content this replica does not have".to_owned());
                }
                Ok(match relation {
                    Relation::New => Applied::AsSent,
                    Relation::Resends | Relation::Overlaps => Applied::Gained(txn.encode_update_v1()),
                })
            })
        })?;
        self.anchors.record(placed);
        if relation == Relation::Overlaps {
            self.verify().map_err(|failure| {
                CrdtFailure::new(
                    "apply update",
                    format!("it contradicts content this replica has ({failure})"),
                )
            })?;
        }
        Ok(applied)
    }

    /// How `update`'s insertions relate to what the replica has.
    fn relation(&self, update: &Update) -> Result<Relation, CrdtFailure> {
        let known = self.state_vector()?;
        contain_infallible("compare with state vector", || {
            let mut relation = Relation::New;
            for (client, ranges) in update.insertions(true).iter() {
                let end = known.get(client);
                for range in ranges.iter() {
                    if range.start < end && range.end > end {
                        return Relation::Overlaps;
                    }
                    if range.start < end {
                        relation = Relation::Resends;
                    }
                }
            }
            relation
        })
    }

    /// Runs `edit` in one write transaction on the replica: the relay's own writes (REST routes),
    /// which yrs makes as an honest editor does. Returns what `edit` returned and the v1 update it
    /// made (`[0, 0]` when it changed nothing); the anchored rule's index learns where its items
    /// went, as for an applied update.
    ///
    /// # Errors
    /// [`CrdtFailure`] when yrs panics, or the update does not pass the anchored rule; the replica
    /// may then hold part of the write: discard it.
    pub fn edit<T>(
        &mut self,
        edit: impl FnOnce(&mut yrs::TransactionMut<'_>) -> T,
    ) -> Result<(T, Vec<u8>), CrdtFailure> {
        let (out, update) = contain_infallible("local edit", || {
            write(&self.doc, Some(LOCAL_ORIGIN), |txn| {
                let out = edit(txn);
                (out, txn.encode_update_v1())
            })
        })?;
        let structs = contain("scan local edit", || scan::update(&update))?;
        let placed = contain("check local edit", || self.anchors.check(&structs))?;
        self.anchors.record(placed);
        Ok((out, update))
    }

    /// Applies an update from the relay to a client's document. Unlike [`YjsReplica::apply`],
    /// pending structs are yrs's business here: the application edits its document itself, and the
    /// client applies what the relay sends in order, so none arise from a Weft relay.
    ///
    /// # Errors
    /// [`CrdtFailure`] when yrs fails or panics; the document may then hold part of the update.
    pub fn apply_remote(&mut self, update: Decoded, origin: &str) -> Result<(), CrdtFailure> {
        contain("apply update", || write(&self.doc, Some(origin), |txn| txn.apply_update(update.update)))
    }

    /// The whole state as one v1 update.
    ///
    /// # Errors
    /// [`CrdtFailure`] when yrs panics.
    pub fn encode_state(&self) -> Result<Vec<u8>, CrdtFailure> {
        self.encode_diff(&StateVector::default())
    }

    /// What a peer with state vector `sv` lacks, as one v1 update.
    ///
    /// # Errors
    /// [`CrdtFailure`] when yrs panics.
    pub fn encode_diff(&self, sv: &StateVector) -> Result<Vec<u8>, CrdtFailure> {
        contain_infallible("encode state", || reading(&self.doc).encode_state_as_update_v1(sv))
    }

    /// The state vector, v1-encoded.
    ///
    /// # Errors
    /// [`CrdtFailure`] when yrs panics.
    pub fn encode_state_vector(&self) -> Result<Vec<u8>, CrdtFailure> {
        contain_infallible("encode state vector", || reading(&self.doc).state_vector().encode_v1())
    }

    /// Whether the document already holds everything `update` carries: every inserted item and every
    /// deletion.
    ///
    /// # Errors
    /// [`CrdtFailure`] when yrs panics.
    pub fn contains(&self, update: &Update) -> Result<bool, CrdtFailure> {
        contain_infallible("compare with state", || {
            let txn = reading(&self.doc);
            let known = txn.state_vector();
            let inserted_known = update
                .insertions(true)
                .iter()
                .all(|(client, ranges)| ranges.iter().all(|range| range.end <= known.get(client)));
            // The document's delete set costs a walk over every block, so it is built last and only
            // for an update that inserts nothing new.
            inserted_known
                && (update.delete_set().is_empty()
                    || update.delete_set().diff(&txn.snapshot().delete_set).is_empty())
        })
    }

    /// Whether every item and deletion in `update` builds on what the document holds: for each
    /// client, the update's insertions continue from (or overlap) the document's without a hole,
    /// and its deletions refer only to known or included items. Cross-client origins are not
    /// visible through yrs's public API; [`YjsReplica::apply`] finds those out.
    ///
    /// # Errors
    /// [`CrdtFailure`] when yrs panics.
    pub fn builds_on(&self, update: &Update) -> Result<bool, CrdtFailure> {
        let known = self.state_vector()?;
        contain_infallible("compare with state vector", || {
            let insertions = update.insertions(true);
            let mut covered = std::collections::HashMap::new();
            for (client, ranges) in insertions.iter() {
                let mut end = known.get(client);
                for range in ranges.iter() {
                    if range.start > end {
                        return false;
                    }
                    end = end.max(range.end);
                }
                covered.insert(*client, end);
            }
            update.delete_set().iter().all(|(client, ranges)| {
                let end = covered.get(client).copied().unwrap_or_else(|| known.get(client));
                ranges.iter().next_back().is_none_or(|last| last.end <= end)
            })
        })
    }

    /// What [`verify_snapshot`] compares a loaded-back snapshot with.
    ///
    /// # Errors
    /// [`CrdtFailure`] when yrs panics.
    pub fn state_check(&self) -> Result<StateCheck, CrdtFailure> {
        contain_infallible("read snapshot", || StateCheck(reading(&self.doc).snapshot()))
    }

    /// Checks the rule every replica keeps: its full state encodes, and the encoding loads into a
    /// fresh document with the same items and deletions. Returns the encoding (callers reuse it).
    /// Costs O(document).
    ///
    /// # Errors
    /// [`CrdtFailure`] when any step fails.
    pub fn verify(&self) -> Result<Vec<u8>, CrdtFailure> {
        let state = self.encode_state()?;
        verify_snapshot(&state, &self.state_check()?)?;
        Ok(state)
    }

    /// Reads the document through `read`, contained: for projections and tests. `read` must not
    /// mutate the document.
    ///
    /// # Errors
    /// [`CrdtFailure`] when `read` panics.
    pub fn read<T>(&self, read: impl FnOnce(&Doc) -> T) -> Result<T, CrdtFailure> {
        contain_infallible("read document", || {
            drop(reading(&self.doc));
            read(&self.doc)
        })
    }
}

/// Loads `state` (a full-state update) into a fresh document and checks that it holds exactly the
/// items and deletions `expected` names.
///
/// # Errors
/// [`CrdtFailure`] saying what does not match or what failed.
pub fn verify_snapshot(state: &[u8], expected: &StateCheck) -> Result<(), CrdtFailure> {
    let update = YjsReplica::decode(state)?;
    let mut fresh = YjsReplica::new();
    fresh.apply(update, None)?;
    let found = fresh.state_check()?;
    if found != *expected {
        return Err(CrdtFailure::new(
            "verify snapshot",
            "the loaded state differs from the replica (state vector or delete set)",
        ));
    }
    Ok(())
}

/// Merges v1 updates into one (the updates one commit releases).
///
/// # Errors
/// [`CrdtFailure`] when yrs fails or panics.
pub fn merge<'a>(updates: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, CrdtFailure> {
    contain("merge updates", || yrs::merge_updates_v1(updates))
}

/// Whether two id sets name the same ids, however their ranges are split.
/// Runs `edit` in a write transaction on `doc`, which commits when `edit` returns.
///
/// yrs commits a transaction in its `Drop`. When `edit` panics (yrs does on some crafted updates),
/// unwinding would drop the transaction and commit half-applied state, and a second panic inside
/// that commit aborts the process: no `catch_unwind` can contain it (found by fuzzing: "thread
/// caused non-unwinding panic"). So the transaction is only dropped on the way out of a returning
/// `edit`; on a panic it is leaked, uncommitted, and the document stays locked, which is what the
/// caller wants of a replica it must discard anyway: every later call on it fails, contained,
/// through [`reading`] (the leaked transaction and the document it holds are not freed).
fn write<T>(doc: &Doc, origin: Option<&str>, edit: impl FnOnce(&mut yrs::TransactionMut<'_>) -> T) -> T {
    let txn = match origin {
        Some(origin) => doc.try_transact_mut_with(origin),
        None => doc.try_transact_mut(),
    };
    let mut txn = std::mem::ManuallyDrop::new(txn.expect(LOCKED));
    let out = edit(&mut txn);
    drop(std::mem::ManuallyDrop::into_inner(txn));
    out
}

/// A read transaction on `doc`. yrs's own `transact` would block forever on a document that a
/// failed [`write`] left locked; this panics instead, inside the caller's containment.
fn reading(doc: &Doc) -> yrs::Transaction<'_> {
    doc.try_transact().expect(LOCKED)
}

/// The transaction origin of the relay's own writes.
const LOCAL_ORIGIN: &str = "weft-local";

const LOCKED: &str = "the document is locked by a transaction a failed update left open";

fn same_ids(a: &IdSet, b: &IdSet) -> bool {
    a.diff(b).is_empty() && b.diff(a).is_empty()
}

#[cfg(test)]
mod tests {
    use yrs::Text;

    use super::*;

    fn typed(client: u64, text: &str) -> Vec<u8> {
        let doc = Doc::with_client_id(client);
        doc.get_or_insert_text("t").push(&mut doc.transact_mut(), text);
        doc.transact().encode_state_as_update_v1(&StateVector::default())
    }

    #[test]
    fn an_ordinary_update_is_canonical_and_applies() {
        let mut replica = YjsReplica::new();
        let update = YjsReplica::decode(&typed(1, "hello")).unwrap();
        replica.apply(update, None).unwrap();
        assert_eq!(replica.state_vector().unwrap().get(&yrs::block::ClientID::new(1)), 5);
        replica.verify().unwrap();
    }

    #[test]
    fn a_client_repeated_with_overlapping_blocks_is_not_canonical() {
        // Two entries for client 1, the second restarting at clock 0: each decodes on its own.
        let one = typed(1, "abc");
        let mut crafted = vec![2];
        crafted.extend_from_slice(&one[1..one.len() - 1]);
        crafted.extend_from_slice(&one[1..]);
        assert!(Update::decode_v1(&crafted).is_ok(), "yrs accepts it");
        let err = YjsReplica::decode(&crafted).unwrap_err();
        assert_eq!(err.operation, "check update", "{err}");
    }

    #[test]
    fn an_update_missing_a_dependency_fails_to_apply() {
        let writer = Doc::with_client_id(1);
        let text = writer.get_or_insert_text("t");
        text.push(&mut writer.transact_mut(), "a");
        let only_a = writer.transact().encode_state_as_update_v1(&StateVector::default());
        text.push(&mut writer.transact_mut(), "b");
        // Client 2 appends after client 1's "b", which the replica never gets.
        let other = Doc::with_client_id(2);
        let both = writer.transact().encode_state_as_update_v1(&StateVector::default());
        other.transact_mut().apply_update(Update::decode_v1(&both).unwrap()).unwrap();
        let before = other.transact().state_vector();
        other.get_or_insert_text("t").push(&mut other.transact_mut(), "c");
        let theirs = other.transact().encode_state_as_update_v1(&before);

        let mut replica = YjsReplica::new();
        replica.apply(YjsReplica::decode(&only_a).unwrap(), None).unwrap();
        let err = replica.apply(YjsReplica::decode(&theirs).unwrap(), None).unwrap_err();
        assert!(err.detail.contains("does not have"), "{err}");
    }

    #[test]
    fn a_snapshot_is_checked_against_the_replica_it_came_from() {
        let mut replica = YjsReplica::new();
        replica.apply(YjsReplica::decode(&typed(1, "one")).unwrap(), None).unwrap();
        let check = replica.state_check().unwrap();
        let state = replica.encode_state().unwrap();
        verify_snapshot(&state, &check).unwrap();
        replica.apply(YjsReplica::decode(&typed(2, "two")).unwrap(), None).unwrap();
        assert!(verify_snapshot(&state, &replica.state_check().unwrap()).is_err());
        assert!(verify_snapshot(&[1, 2, 3], &check).is_err());
    }

    #[test]
    fn a_panic_inside_a_write_leaves_the_replica_failing_not_blocked() {
        let replica = YjsReplica::new();
        let text = replica.doc.get_or_insert_text("t");
        let panicked = contain_infallible("edit", || {
            write(&replica.doc, None, |txn| {
                text.push(txn, "half");
                panic!("yrs failed mid-edit");
            })
        })
        .unwrap_err();
        assert!(panicked.panicked, "{panicked}");
        // The transaction was neither committed nor released: every later call fails, contained,
        // instead of waiting forever for the lock.
        let after = replica.state_vector().unwrap_err();
        assert!(after.panicked && after.detail.contains("locked"), "{after}");
        assert!(replica.encode_state().is_err() && replica.read(|_| ()).is_err());
    }
}
