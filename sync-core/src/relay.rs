//! The vocabulary every relay state machine shares, whatever its CRDT: the [`Event`]s a relay asks
//! its shell to carry out, peer [`Access`], [`Snapshot`]s and the log accounting behind them.
//!
//! A relay owns one document's replica. Its shell (the server's room actor) feeds it inputs and
//! carries out the events in order; it never sees sockets or disks.

use bytes::Bytes;

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
        /// Why, for the log; never sent to other peers.
        detail: String,
    },
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

/// A full-state encoding of a replica covering the log up to `upto`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every log entry with `seq <= upto` is contained in `state`.
    pub upto: u64,
    /// The document state in the CRDT's own full-state encoding.
    pub state: Bytes,
    /// The relay's log totals when the snapshot was taken, so that compaction accounting stays right
    /// for updates appended while the snapshot was being written.
    marks: Totals,
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

    /// A snapshot of the current state, labelled with the current totals.
    pub fn snapshot(&self, upto: u64, state: Bytes) -> Snapshot {
        Snapshot { upto, state, marks: self.appended }
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
        let snapshot = log.snapshot(2, Bytes::from_static(&[0; 50]));
        log.record_append(5);
        assert_eq!((log.log_len(), log.stored_bytes()), (3, 135));
        log.compacted(&snapshot);
        assert_eq!((log.log_len(), log.stored_bytes()), (1, 55));
    }
}
