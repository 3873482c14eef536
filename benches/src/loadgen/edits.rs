//! The edits simulated clients make, and how a receiver times them without applying them.
//!
//! Each edit inserts a fixed-width ASCII *marker* into a real `yrs` text: `@wb:`, the sender's number
//! (8 hex digits), the edit's sequence number (8 hex) and the moment it was due to be sent, in
//! microseconds since the run's clock origin (12 hex), then `;`. Yjs v1 updates carry inserted text as
//! plain UTF-8, and merging updates (Hocuspocus merges the updates of one event-loop turn) only ever
//! concatenates strings, so a receiver finds every marker by scanning the bytes of an update or a
//! sync step 2. That keeps receiving cheap: the generator shares the machine with the server.
//!
//! The timestamp is when the edit was *scheduled*, not when it was produced: if the generator falls
//! behind, the lateness counts against the measured latency instead of silently lowering the load
//! (no coordinated omission).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use yrs::{Doc, Text, TextRef, Transact};

/// What every marker starts with.
const MAGIC: &[u8; 4] = b"@wb:";
/// Bytes in one marker.
pub const MARKER_LEN: usize = 4 + 8 + 8 + 12 + 1;

/// The run's clock origin: every timestamp is microseconds since this instant.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Microseconds from the clock origin to `at` (0 for instants before it).
pub fn micros_at(at: Instant) -> u64 {
    at.saturating_duration_since(origin()).as_micros() as u64
}

/// Microseconds since the clock origin.
pub fn now_micros() -> u64 {
    micros_at(Instant::now())
}

/// Fixes the clock origin; call once before any client starts so that timestamps stay small.
pub fn start_clock() {
    let _ = origin();
}

/// One marker found in a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Number of the client that made the edit.
    pub sender: u32,
    /// The sender's sequence number for the edit.
    pub seq: u32,
    /// When the edit was due, in microseconds since the clock origin.
    pub due_us: u64,
}

impl Marker {
    /// The marker's text.
    pub fn encode(&self) -> String {
        format!("@wb:{:08x}{:08x}{:012x};", self.sender, self.seq, self.due_us & 0xffff_ffff_ffff)
    }
}

/// Calls `found` for every well-formed marker in `bytes`.
pub fn scan(bytes: &[u8], mut found: impl FnMut(Marker)) {
    let mut at = 0;
    while at + MARKER_LEN <= bytes.len() {
        // `@` is rare in update encodings, so this skips along quickly.
        let Some(offset) = bytes[at..bytes.len() - MARKER_LEN + 1].iter().position(|&b| b == b'@') else {
            return;
        };
        let start = at + offset;
        let candidate = &bytes[start..start + MARKER_LEN];
        if &candidate[..4] == MAGIC && candidate[MARKER_LEN - 1] == b';' {
            let fields = (hex(&candidate[4..12]), hex(&candidate[12..20]), hex(&candidate[20..32]));
            if let (Some(sender), Some(seq), Some(due_us)) = fields {
                found(Marker { sender: sender as u32, seq: seq as u32, due_us });
                at = start + MARKER_LEN;
                continue;
            }
        }
        at = start + 1;
    }
}

fn hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| Some(acc << 4 | u64::from((d as char).to_digit(16)?)))
}

/// A client's replica: a real Yjs document whose edits become the updates the client sends.
///
/// It holds only the client's own edits (remote updates are timed, not applied), which is exactly
/// what a server needs to accept them: every edit builds on the sender's previous ones.
///
/// Each client writes into its own root text ([`Editor::root`]). Clients that never see each other's
/// edits but all insert at the start of one shared text would make every edit concurrent with all
/// the others, and a Yjs replica integrating such an edit walks past every concurrent item with the
/// same origin: the server's cost per update would grow with the document, and the benchmark would
/// measure YATA conflict resolution instead of the relay.
pub struct Editor {
    doc: Doc,
    text: TextRef,
    sender: u32,
    next_seq: u32,
}

impl Editor {
    /// A replica for client number `sender`, with Yjs client id `client_id`.
    pub fn new(sender: u32, client_id: u64) -> Self {
        let doc = Doc::with_client_id(client_id);
        let text = doc.get_or_insert_text(Self::root(sender).as_str());
        Self { doc, text, sender, next_seq: 0 }
    }

    /// Name of the root text client number `sender` edits.
    pub fn root(sender: u32) -> String {
        format!("c{sender}")
    }

    /// Makes one edit due at `due` and returns its v1 update. Inserting at the start of the text
    /// keeps every edit O(1) in yrs however long the run.
    pub fn edit(&mut self, due: Instant) -> Bytes {
        let marker = Marker { sender: self.sender, seq: self.next_seq, due_us: micros_at(due) };
        self.next_seq = self.next_seq.wrapping_add(1);
        let mut txn = self.doc.transact_mut();
        self.text.insert(&mut txn, 0, &marker.encode());
        Bytes::from(txn.encode_update_v1())
    }

    /// Edits made so far.
    pub fn edits(&self) -> u32 {
        self.next_seq
    }
}

/// Latency from a marker's due time to now.
pub fn latency_since(marker: &Marker, now_us: u64) -> Duration {
    Duration::from_micros(now_us.saturating_sub(marker.due_us))
}

#[cfg(test)]
mod tests {
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, Update};

    use super::*;

    #[test]
    fn markers_survive_into_the_update_and_are_found_again() {
        start_clock();
        let mut editor = Editor::new(7, 77);
        let due = Instant::now();
        let first = editor.edit(due);
        let second = editor.edit(due + Duration::from_millis(3));
        let mut found = Vec::new();
        scan(&first, |m| found.push(m));
        scan(&second, |m| found.push(m));
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].sender, found[0].seq, found[1].seq), (7, 0, 1));
        assert_eq!(found[1].due_us - found[0].due_us, 3000);

        // The updates are ordinary Yjs updates another replica can apply.
        let other = Doc::new();
        for update in [&first, &second] {
            other.transact_mut().apply_update(Update::decode_v1(update).unwrap()).unwrap();
        }
        let text = other.get_or_insert_text(Editor::root(7).as_str()).get_string(&other.transact());
        assert_eq!(text.len(), 2 * MARKER_LEN);
    }

    #[test]
    fn scanning_skips_near_misses() {
        let marker = Marker { sender: 1, seq: 2, due_us: 3 }.encode();
        let noisy = format!("@@wb:zz{marker}@wb:{marker}@");
        let mut found = Vec::new();
        scan(noisy.as_bytes(), |m| found.push(m));
        assert_eq!(found, [Marker { sender: 1, seq: 2, due_us: 3 }; 2]);
    }
}
