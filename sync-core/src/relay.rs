//! What every relay state machine shares, whatever its CRDT: the [`Event`]s a relay asks its shell
//! to carry out, peer [`Access`], its [`Health`], the [`Ledger`] of log positions, held frames and
//! pending events, [`Snapshot`]s with what they must reproduce, and loading with recovery
//! ([`Loaded`], [`Quarantined`]).
//!
//! A relay owns one document's replica. Its shell (the server's room actor) feeds it inputs and
//! carries out the events in order; it never sees sockets or disks. [`DocumentRelay`] is the part
//! of a relay the shell drives the same way for both CRDTs.

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;

use crate::contain::CrdtFailure;
use crate::{CloseCode, PeerId};

/// What a peer may do to a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Read and write.
    #[default]
    ReadWrite,
    /// Read only: updates from this peer are refused ([`Event::Refused`]).
    ReadOnly,
}

/// Size limits a relay enforces on document content, whatever its CRDT.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Largest size, in stored bytes (snapshot plus log tail), the document may grow to.
    pub max_document_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self { max_document_bytes: 256 * 1024 * 1024 }
    }
}

/// Something the shell must do on the relay's behalf, in the order returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Send `frame` to one peer.
    Send {
        /// The recipient.
        peer: PeerId,
        /// One encoded message of the relay's wire format.
        frame: Bytes,
    },
    /// Send `frame` to every peer currently joined (including the one whose message caused it),
    /// except those listed.
    Broadcast {
        /// One encoded message, shared by all recipients.
        frame: Bytes,
        /// Peers that must not receive it (usually none, so this does not allocate).
        except: Vec<PeerId>,
    },
    /// Append `update` to the durable log under `seq`, then report it with `handle_durable`.
    Append {
        /// The log sequence number; strictly increasing, without gaps.
        seq: u64,
        /// The bytes to store, exactly as they must be replayed.
        update: Bytes,
        /// The peer that sent it (for attribution).
        peer: PeerId,
    },
    /// An update (or a step that carried none) from `peer` is durable. Dialects whose clients count
    /// acknowledgements (Hocuspocus' sync status) tell the peer; others learn it from the echo.
    Acknowledge {
        /// The peer whose write is now durable.
        peer: PeerId,
    },
    /// A read-only peer tried to write; nothing was applied or stored.
    Refused {
        /// The peer whose write was refused.
        peer: PeerId,
    },
    /// Close this peer's connection. The relay has already forgotten the peer.
    Close {
        /// The peer to disconnect.
        peer: PeerId,
        /// The close code to send.
        code: CloseCode,
        /// Why, in words: logged, and sent to this peer with the close (never to others).
        detail: String,
    },
}

/// Whether a relay can go on serving its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Everything is in order.
    Serving,
    /// A refused write touched the replica before it was found out (it failed to integrate
    /// completely). Its sender has been closed and nothing of it was logged; every other peer stays.
    /// The shell must stop feeding input, wait until everything appended is durable (reporting it
    /// with `handle_durable`, which still releases), then load the document again from storage and
    /// let the new relay `adopt` this one's peers.
    Rebuild,
    /// Something failed that the relay cannot recover from alone (storage, or a replica that no
    /// longer encodes). Every peer has been closed with 1011; the shell must discard the relay.
    Poisoned,
}

/// Why a relay's own write (see `write` on each relay) was not made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteFailure {
    /// The relay is not serving (it is being rebuilt, or was poisoned): try again.
    #[error("the document is being reloaded")]
    NotServing,
    /// The write would grow the document past its limit. The replica held it already, so the
    /// relay asks for a rebuild; nothing was logged.
    #[error("{0}")]
    TooLarge(String),
    /// The CRDT library failed or panicked while writing: the replica is suspect and the relay asks
    /// for a rebuild; nothing was logged.
    #[error(transparent)]
    Failed(#[from] CrdtFailure),
}

/// Why stored state could not be loaded into a relay.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The stored snapshot does not load.
    #[error("stored snapshot does not load: {0}")]
    Snapshot(String),
    /// A stored log entry does not load.
    #[error("stored update {seq} does not load: {detail}")]
    Update {
        /// The entry's sequence number.
        seq: u64,
        /// What went wrong.
        detail: String,
    },
}

/// A full-state encoding of a replica covering the log up to `upto`, with what it must reproduce
/// when loaded back.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every log entry with `seq <= upto` is contained in `state`.
    pub upto: u64,
    /// The document state in the CRDT's own full-state encoding.
    pub state: Bytes,
    /// What loading `state` must give: checked by [`Snapshot::verify`].
    check: StateCheck,
    /// The relay's log totals when the snapshot was taken, so that compaction accounting stays right
    /// for updates appended while the snapshot was being written.
    marks: Totals,
}

/// What a snapshot must reproduce, per CRDT.
#[derive(Debug, Clone)]
pub(crate) enum StateCheck {
    Yjs(crate::yjs::replica::StateCheck),
    Automerge(Vec<::automerge::ChangeHash>),
}

impl Snapshot {
    /// Loads the snapshot back into a fresh replica and checks it holds what the replica held when
    /// it was taken (Yjs: state vector and delete set; Automerge: heads). A snapshot may replace
    /// log entries only after this passed. Costs O(document): run it off the async workers.
    ///
    /// # Errors
    /// [`CrdtFailure`] saying what failed or differs.
    pub fn verify(&self) -> Result<(), CrdtFailure> {
        match &self.check {
            StateCheck::Yjs(check) => crate::yjs::replica::verify_snapshot(&self.state, check),
            StateCheck::Automerge(heads) => crate::automerge::replica::verify_snapshot(&self.state, heads),
        }
    }
}

/// A stored item that broke the document when it was loaded, set aside so the rest can be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Which item.
    pub item: StoredItem,
    /// Why, in words.
    pub reason: String,
}

/// A stored item of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredItem {
    /// The snapshot covering the log up to `upto`.
    Snapshot {
        /// Its `upto`.
        upto: u64,
    },
    /// The log entry `seq`.
    Update {
        /// Its sequence number.
        seq: u64,
    },
}

/// A relay loaded from storage, and what had to be set aside to load it.
#[derive(Debug)]
pub struct Loaded<R> {
    /// The relay, serving everything that loaded.
    pub relay: R,
    /// Items that broke the document, in the order they were found. The shell must move them out
    /// of the log (into a quarantine) before the relay compacts, which would otherwise fold the
    /// log past them.
    pub quarantined: Vec<Quarantined>,
}

/// How one CRDT's relay replays stored state; [`recover`] drives it.
pub(crate) trait Replay: Sized {
    /// Replays `snapshot` then `log` strictly: the first item that does not load is the error.
    fn replay<'a>(
        limits: RelayLimits,
        snapshot: Option<(u64, &'a [u8])>,
        log: impl Iterator<Item = (u64, &'a [u8])>,
    ) -> Result<Self, LoadError>;

    /// Checks the loaded replica's full state encodes and loads back (O(document)).
    fn verify(&mut self) -> Result<(), CrdtFailure>;
}

/// Loads a relay from stored state, setting aside (quarantining) every item that breaks it: a
/// snapshot or log entry that does not load, and — when the replayed replica fails
/// [`Replay::verify`] — the first entry after which it fails (found by bisection). What remains is
/// served. Each round removes one item, so this ends; an item is never modified, only left out.
pub(crate) fn recover<'a, R: Replay>(
    limits: RelayLimits,
    snapshot: Option<(u64, &'a [u8])>,
    log: &[(u64, &'a [u8])],
) -> Loaded<R> {
    let mut snapshot = snapshot;
    let mut skipped = BTreeSet::new();
    let mut quarantined = Vec::new();
    loop {
        let after = snapshot.map_or(0, |(upto, _)| upto);
        let kept: Vec<(u64, &[u8])> =
            log.iter().copied().filter(|(seq, _)| *seq > after && !skipped.contains(seq)).collect();
        let failed = match R::replay(limits, snapshot, kept.iter().copied()) {
            Ok(mut relay) => match relay.verify() {
                Ok(()) => return Loaded { relay, quarantined },
                Err(failure) => first_unverifiable::<R>(limits, snapshot, &kept, failure),
            },
            Err(LoadError::Snapshot(reason)) => Quarantined {
                item: StoredItem::Snapshot { upto: after },
                reason: format!("snapshot does not load: {reason}"),
            },
            Err(LoadError::Update { seq, detail }) => Quarantined {
                item: StoredItem::Update { seq },
                reason: format!("update does not load: {detail}"),
            },
        };
        match failed.item {
            StoredItem::Snapshot { .. } => snapshot = None,
            StoredItem::Update { seq } => {
                skipped.insert(seq);
            }
        }
        quarantined.push(failed);
    }
}

/// The item to blame when the replica replayed from `snapshot` and all of `kept` fails
/// verification: the snapshot, if it fails alone, else the entry that the shortest failing prefix
/// ends with. Prefixes replay to exactly the states the full replay passed through (every
/// decision a relay makes while replaying depends only on what came before), so bisection finds it.
fn first_unverifiable<R: Replay>(
    limits: RelayLimits,
    snapshot: Option<(u64, &[u8])>,
    kept: &[(u64, &[u8])],
    failure: CrdtFailure,
) -> Quarantined {
    let verifies = |len: usize| {
        R::replay(limits, snapshot, kept[..len].iter().copied()).is_ok_and(|mut relay| relay.verify().is_ok())
    };
    let reason = format!("the document stops encoding after it: {failure}");
    if let Some((upto, _)) = snapshot
        && !verifies(0)
    {
        return Quarantined { item: StoredItem::Snapshot { upto }, reason };
    }
    // Invariant: the prefix of `good` entries verifies, the prefix of `bad` does not.
    let (mut good, mut bad) = (0, kept.len());
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if verifies(mid) { good = mid } else { bad = mid }
    }
    // With no snapshot and no entries the document is empty, which always verifies, so `bad >= 1`.
    let seq = kept.get(bad.saturating_sub(1)).map_or(0, |(seq, _)| *seq);
    Quarantined { item: StoredItem::Update { seq }, reason }
}

/// The bookkeeping both relays keep the same way: log positions, frames held until durable, the
/// events for the shell, size accounting and health.
#[derive(Debug)]
pub struct Ledger {
    /// Sequence number of the last log entry the replica contains (or deferred).
    pub(crate) last_seq: u64,
    /// Sequence number of the last log entry the shell reported durable.
    pub(crate) durable_seq: u64,
    /// Frames waiting until the log holds everything up to the sequence number they were made at.
    pub(crate) held: VecDeque<(u64, PeerId, Bytes)>,
    /// Snapshot plus log tail sizes, for the document limit and the compaction trigger.
    pub(crate) log: LogAccounting,
    pub(crate) events: VecDeque<Event>,
    pub(crate) health: Health,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            last_seq: 0,
            durable_seq: 0,
            held: VecDeque::new(),
            log: LogAccounting::default(),
            events: VecDeque::new(),
            health: Health::Serving,
        }
    }
}

impl Ledger {
    /// Sends `frame` to `peer` now if the log holds everything, else once it does.
    pub(crate) fn send_when_durable(&mut self, peer: PeerId, frame: Bytes) {
        if self.durable_seq >= self.last_seq {
            self.events.push_back(Event::Send { peer, frame });
        } else {
            self.held.push_back((self.last_seq, peer, frame));
        }
    }

    /// Records that the log holds everything up to `upto` and releases the frames held for it.
    pub(crate) fn release_held(&mut self, upto: u64) {
        self.durable_seq = self.durable_seq.max(upto);
        while let Some((needs, _, _)) = self.held.front() {
            if *needs > self.durable_seq {
                break;
            }
            let Some((_, peer, frame)) = self.held.pop_front() else { break };
            self.events.push_back(Event::Send { peer, frame });
        }
    }

    /// Forgets the frames held for `peer`.
    pub(crate) fn forget_peer(&mut self, peer: PeerId) {
        self.held.retain(|(_, p, _)| *p != peer);
    }

    /// A snapshot of `state` covering the log up to `upto`.
    pub(crate) fn snapshot(&self, upto: u64, state: Bytes, check: StateCheck) -> Snapshot {
        Snapshot { upto, state, check, marks: self.log.appended }
    }

    /// Marks the relay poisoned and closes every peer in `peers` with 1011 and `detail`.
    pub(crate) fn poison(&mut self, peers: impl IntoIterator<Item = PeerId>, detail: &str) {
        self.health = Health::Poisoned;
        self.held.clear();
        for peer in peers {
            self.events.push_back(Event::Close {
                peer,
                code: CloseCode::InternalError,
                detail: detail.to_owned(),
            });
        }
    }
}

/// The part of a relay its shell drives the same way whatever the CRDT. Joining and input differ
/// per CRDT (and per dialect) and stay on the relay types.
pub trait DocumentRelay {
    /// The shared bookkeeping.
    fn ledger(&self) -> &Ledger;

    /// `peer` disconnected: forget it.
    fn handle_leave(&mut self, peer: PeerId);

    /// The log holds every entry up to `upto`: release what waited for it.
    fn handle_durable(&mut self, upto: u64);

    /// The shell found the document cannot go on as it is: the log could not be written (the
    /// replica now holds updates the log may not), or a snapshot of the replica did not verify.
    /// Every peer is closed with 1011 and `detail` (they resync on reconnect) and the relay is
    /// [`Health::Poisoned`].
    fn handle_failure(&mut self, detail: &str);

    /// The next thing the shell must do, if any.
    fn poll_event(&mut self) -> Option<Event>;

    /// A full-state snapshot for compaction (see each relay for what `upto` covers). `None` when
    /// the relay is not [`Health::Serving`], or when encoding failed — which poisons it.
    ///
    /// The shell must persist it only after the appends up to `upto` it has already been handed,
    /// in order, and only after [`Snapshot::verify`] passed, so that the snapshot replaces exactly
    /// the log prefix it contains.
    fn snapshot(&mut self) -> Option<Snapshot>;

    /// Number of joined peers.
    fn peer_count(&self) -> usize;

    /// `snapshot` is stored and replaced the log prefix it covers.
    fn handle_compacted(&mut self, snapshot: &Snapshot);

    /// Whether the relay can go on serving.
    fn health(&self) -> Health {
        self.ledger().health
    }

    /// Sequence number of the last log entry the replica contains.
    fn last_seq(&self) -> u64 {
        self.ledger().last_seq
    }

    /// Sequence number of the last log entry reported durable.
    fn durable_seq(&self) -> u64 {
        self.ledger().durable_seq
    }

    /// Log entries after the last snapshot.
    fn log_len(&self) -> u64 {
        self.ledger().log.log_len()
    }

    /// Stored size of the document: snapshot plus log tail.
    fn stored_bytes(&self) -> u64 {
        self.ledger().log.stored_bytes()
    }

    /// Whether the relay was poisoned and must be discarded.
    fn is_poisoned(&self) -> bool {
        self.health() == Health::Poisoned
    }
}

/// Running totals of what a relay has appended since it was loaded.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    bytes: u64,
    count: u64,
}

/// How much of the stored document is snapshot and how much is log tail — what the document-size
/// limit and the compaction trigger look at. Kept without asking storage.
#[derive(Debug, Default)]
pub struct LogAccounting {
    /// Size of the snapshot the stored state starts from.
    base_bytes: u64,
    /// Totals at the time of that snapshot (zero for the one found at load).
    base: Totals,
    /// Totals of the log tail loaded plus everything appended since.
    appended: Totals,
}

impl LogAccounting {
    /// Starts from a stored snapshot of `snapshot_bytes` bytes (0 if none).
    pub fn with_snapshot(snapshot_bytes: u64) -> Self {
        Self { base_bytes: snapshot_bytes, ..Self::default() }
    }

    /// One entry of `len` bytes joined the log.
    pub fn record_append(&mut self, len: usize) {
        self.appended.bytes += len as u64;
        self.appended.count += 1;
    }

    /// `snapshot` is stored and replaced the log prefix it covers.
    pub fn compacted(&mut self, snapshot: &Snapshot) {
        self.base_bytes = snapshot.state.len() as u64;
        self.base = snapshot.marks;
    }

    /// Log entries after the last snapshot.
    pub fn log_len(&self) -> u64 {
        self.appended.count - self.base.count
    }

    /// Stored size of the document: snapshot plus log tail.
    pub fn stored_bytes(&self) -> u64 {
        self.base_bytes + self.appended.bytes - self.base.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_accounts_for_appends_made_while_it_ran() {
        let mut log = LogAccounting::with_snapshot(100);
        log.record_append(10);
        log.record_append(20);
        let snapshot = Snapshot {
            upto: 2,
            state: Bytes::from_static(&[0; 50]),
            check: StateCheck::Automerge(Vec::new()),
            marks: log.appended,
        };
        log.record_append(5);
        assert_eq!((log.log_len(), log.stored_bytes()), (3, 135));
        log.compacted(&snapshot);
        assert_eq!((log.log_len(), log.stored_bytes()), (1, 55));
    }
}
