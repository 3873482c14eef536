//! Fixtures shared by the Weft benchmarks: the automerge-paper editing trace, loaded into typed edits,
//! and its replay into the per-transaction Yjs updates that the benches feed to the relay.
//!
//! It measures nothing itself; the criterion targets under `benches/` and the `weft-bench` load
//! generator ([`loadgen`], binary in `src/bin/`) do. The data file and its provenance live in `data/`
//! (see `data/automerge-paper.SOURCE.md`).

pub mod loadgen;

use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use serde::Deserialize;
use yrs::{Doc, Text, Transact};

/// Path of the standard editing trace shipped with this crate.
pub const TRACE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/automerge-paper.json.gz");

/// Name of the root text type the trace is replayed into.
pub const TEXT_ROOT: &str = "t";

/// Yjs client id of the replaying document: fixed so that every run produces the same updates.
pub const TRACE_CLIENT_ID: u64 = 1;

/// One change to the text: delete `delete` characters at `pos`, then insert `insert` there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "(u32, u32, String)")]
pub struct Edit {
    /// Position in characters (Unicode code points) from the start of the text.
    pub pos: u32,
    /// Number of characters deleted at `pos`.
    pub delete: u32,
    /// Text inserted at `pos` after the deletion.
    pub insert: String,
}

impl From<(u32, u32, String)> for Edit {
    fn from((pos, delete, insert): (u32, u32, String)) -> Self {
        Self { pos, delete, insert }
    }
}

/// A sequential editing trace: edits applied one after another to an initially empty text.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The edits in order; the trace's transactions flattened (each holds one edit in the standard trace).
    pub edits: Vec<Edit>,
    /// The text after every edit has been applied.
    pub end_content: String,
}

/// The file format of josephg/editing-traces.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TraceFile {
    start_content: String,
    end_content: String,
    txns: Vec<TraceTxn>,
}

#[derive(Deserialize)]
struct TraceTxn {
    patches: Vec<Edit>,
}

impl Trace {
    /// Loads the standard trace, [`TRACE_PATH`].
    ///
    /// # Errors
    /// As [`Trace::load`].
    pub fn load_standard() -> io::Result<Self> {
        Self::load(Path::new(TRACE_PATH))
    }

    /// Loads a gzipped trace in the editing-traces JSON format.
    ///
    /// Only pure-ASCII traces that start from an empty text are accepted: for those, the format's
    /// code-point positions equal the UTF-8 byte offsets that [`Trace::replay_yjs`] hands to yrs.
    ///
    /// # Errors
    /// The file cannot be read or decompressed, is not the expected JSON, starts from a non-empty
    /// text, or holds non-ASCII text.
    pub fn load(path: &Path) -> io::Result<Self> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path)?).read_to_end(&mut json)?;
        let file: TraceFile = serde_json::from_slice(&json)?;
        if !file.start_content.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "trace starts from a non-empty text"));
        }
        let edits: Vec<Edit> = file.txns.into_iter().flat_map(|txn| txn.patches).collect();
        if !file.end_content.is_ascii() || !edits.iter().all(|edit| edit.insert.is_ascii()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "trace holds non-ASCII text; positions would not be byte offsets",
            ));
        }
        Ok(Self { edits, end_content: file.end_content })
    }

    /// Replays the trace on a fresh Yjs document (root text [`TEXT_ROOT`], client [`TRACE_CLIENT_ID`]),
    /// one transaction per edit, and returns the v1 update each transaction emitted, in order — what a
    /// y-websocket client would have sent for each keystroke.
    ///
    /// This takes about 20 seconds in release builds for the standard trace: yrs 0.28 finds a text
    /// position by walking the document from its start, so each edit costs time proportional to the
    /// document's length.
    pub fn replay_yjs(&self) -> Vec<Bytes> {
        replay_yjs_into(&self.edits, &Doc::with_client_id(TRACE_CLIENT_ID), TEXT_ROOT)
    }

    /// As [`Trace::replay_yjs`], into the root text `root` (`content`: what a Weft text document's
    /// projection reads); also returns the replayed document.
    pub fn replay_yjs_as(&self, root: &str) -> (Vec<Bytes>, Doc) {
        let doc = Doc::with_client_id(TRACE_CLIENT_ID);
        (replay_yjs_into(&self.edits, &doc, root), doc)
    }
}

/// Applies `edits` to the (empty) `doc`, one transaction each, and returns each transaction's v1
/// update. The document is left holding the final text.
fn replay_yjs_into(edits: &[Edit], doc: &Doc, root: &str) -> Vec<Bytes> {
    const OBSERVER: &str = "weft-benches-replay";
    let text = doc.get_or_insert_text(root);
    let updates = Arc::new(Mutex::new(Vec::with_capacity(edits.len())));
    let sink = Arc::clone(&updates);
    doc.observe_update_v1(OBSERVER, move |_, event| {
        sink.lock().unwrap_or_else(PoisonError::into_inner).push(Bytes::from(event.update.clone()));
    })
    // Holds: nothing else can have a transaction open on a document this function is handed fresh.
    .expect("no transaction is open on the replay document");
    for edit in edits {
        let mut txn = doc.transact_mut();
        if edit.delete > 0 {
            text.remove_range(&mut txn, edit.pos, edit.delete);
        }
        if !edit.insert.is_empty() {
            text.insert(&mut txn, edit.pos, &edit.insert);
        }
    }
    // Holds: every transaction above was dropped (committed) at the end of its loop iteration.
    doc.unobserve_update_v1(OBSERVER).expect("no transaction is open after the replay");
    std::mem::take(&mut *updates.lock().unwrap_or_else(PoisonError::into_inner))
}

#[cfg(test)]
mod tests {
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, Update};

    use super::*;

    /// Edits replayed through yrs in the test. The whole trace would take a minute in a debug build
    /// (see [`Trace::replay_yjs`]); the relay benchmark checks the full Yjs replay before it measures.
    const YJS_PREFIX: usize = 20_000;

    /// Applies `edits` to a plain string; positions are byte offsets because the trace is ASCII.
    fn apply_to_string(edits: &[Edit]) -> String {
        let mut text = String::new();
        for edit in edits {
            let pos = edit.pos as usize;
            text.replace_range(pos..pos + edit.delete as usize, &edit.insert);
        }
        text
    }

    #[test]
    fn standard_trace_edits_produce_its_end_content() {
        let trace = Trace::load_standard().expect("the standard trace loads");
        assert_eq!(trace.edits.len(), 259_778);
        assert_eq!(trace.end_content.chars().count(), 104_852);
        assert!(
            apply_to_string(&trace.edits) == trace.end_content,
            "applying the edits does not give endContent"
        );
    }

    #[test]
    fn yjs_replay_matches_the_edits_and_its_updates_rebuild_the_text() {
        let trace = Trace::load_standard().expect("the standard trace loads");
        let edits = &trace.edits[..YJS_PREFIX];
        assert!(edits.iter().any(|edit| edit.delete > 0), "the prefix exercises deletions");
        let expected = apply_to_string(edits);

        let doc = Doc::with_client_id(TRACE_CLIENT_ID);
        let updates = replay_yjs_into(edits, &doc, TEXT_ROOT);
        assert_eq!(updates.len(), edits.len(), "one update per edit");
        let replayed = doc.get_or_insert_text(TEXT_ROOT).get_string(&doc.transact());
        assert!(replayed == expected, "the Yjs replay diverges from the edits");

        // The updates alone rebuild the same text on a document that never saw the edits.
        let fresh = Doc::new();
        for update in &updates {
            let update = Update::decode_v1(update).expect("replayed updates decode");
            fresh.transact_mut().apply_update(update).expect("replayed updates apply");
        }
        let rebuilt = fresh.get_or_insert_text(TEXT_ROOT).get_string(&fresh.transact());
        assert!(rebuilt == expected, "applying the updates does not rebuild the text");
    }
}
