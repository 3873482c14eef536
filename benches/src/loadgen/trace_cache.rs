//! The standard editing trace as Yjs updates, cached on disk: replaying it in yrs takes about 20 s
//! (see [`crate::Trace::replay_yjs`]), and the side-by-side run needs it once per server.
//!
//! The cache lives under the system temp directory and is only a speed-up: it is rebuilt whenever it
//! is missing or does not hold one update per trace edit.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

use crate::Trace;

fn cache_path() -> PathBuf {
    std::env::temp_dir().join("weft-bench-cache").join("automerge-paper.yjs-v1.bin")
}

/// The trace's per-edit v1 updates, from the cache or replayed (and cached).
///
/// # Errors
/// When the trace cannot be loaded.
pub fn updates() -> anyhow::Result<Vec<Bytes>> {
    let trace = Trace::load_standard().context("loading the standard trace")?;
    if let Ok(cached) = read_cache()
        && cached.len() == trace.edits.len()
    {
        return Ok(cached);
    }
    eprintln!("replaying the editing trace in yrs (about 20 s, cached afterwards)");
    let updates = trace.replay_yjs();
    if let Err(err) = write_cache(&updates) {
        eprintln!("could not cache the trace updates: {err}");
    }
    Ok(updates)
}

/// The trace's final document as one v1 update (a full-state encoding).
///
/// # Errors
/// As [`updates`].
pub fn final_state() -> anyhow::Result<Bytes> {
    let doc = replica_of(&updates()?)?;
    Ok(Bytes::from(doc.transact().encode_state_as_update_v1(&StateVector::default())))
}

/// The text after applying `updates` in order.
///
/// # Errors
/// When an update does not apply.
pub fn text_after(updates: &[Bytes]) -> anyhow::Result<String> {
    let doc = replica_of(updates)?;
    Ok(doc.get_or_insert_text(crate::TEXT_ROOT).get_string(&doc.transact()))
}

fn replica_of(updates: &[Bytes]) -> anyhow::Result<Doc> {
    let doc = Doc::new();
    for update in updates {
        let update = Update::decode_v1(update).context("a cached update does not decode")?;
        doc.transact_mut().apply_update(update).context("a cached update does not apply")?;
    }
    Ok(doc)
}

fn read_cache() -> io::Result<Vec<Bytes>> {
    let mut bytes = Vec::new();
    std::fs::File::open(cache_path())?.read_to_end(&mut bytes)?;
    let bytes = Bytes::from(bytes);
    let mut updates = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len_bytes: [u8; 4] = bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "truncated cache"))?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let end = at + 4 + len;
        if end > bytes.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated cache"));
        }
        updates.push(bytes.slice(at + 4..end));
        at = end;
    }
    Ok(updates)
}

fn write_cache(updates: &[Bytes]) -> io::Result<()> {
    let path = cache_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension("partial");
    let mut file = io::BufWriter::new(std::fs::File::create(&partial)?);
    for update in updates {
        file.write_all(&(update.len() as u32).to_le_bytes())?;
        file.write_all(update)?;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    // Rename last so that a half-written cache is never read.
    std::fs::rename(partial, path)
}
