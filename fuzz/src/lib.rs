//! What each of Weft's fuzz targets does with one input, and the property it asserts. The
//! libFuzzer targets in `fuzz/fuzz_targets/` are one line each around these; the regression tests
//! (`tests/regressions.rs`) replay every committed input through the same functions, so an input
//! that ever failed stays a test of the ordinary suite.
//!
//! A driver panics (an assertion) only when Weft broke a rule: a decoder that does not round-trip,
//! a replica that stops encoding, a snapshot that does not load back, a reload that quarantines
//! what the relay itself logged, a reloaded document that differs from the live one. Panics inside
//! yrs or automerge that Weft's containment layer catches are not findings.

pub mod automerge_relay;
pub mod codecs;
pub mod load;
pub mod yjs_relay;

/// What a target does with one input.
pub type Driver = fn(&[u8]);

/// Every fuzz target, by the name of its file in `fuzz/fuzz_targets/` and its directories under
/// `fuzz/corpus/` and `fuzz/regressions/`.
pub const TARGETS: &[(&str, Driver)] = &[
    ("yjs_codec", codecs::yjs),
    ("hocuspocus_codec", codecs::hocuspocus),
    ("automerge_codec", codecs::automerge_repo),
    ("yjs_relay", yjs_relay::run),
    ("automerge_relay", automerge_relay::run),
    ("load", load::run),
];

/// Under libFuzzer, silences the panic hook for panics the code under test catches (yrs and
/// automerge panic on some crafted input, and Weft contains that): libfuzzer-sys's hook would
/// otherwise abort on the first one. A panic nobody catches still ends the run, through
/// libfuzzer-sys's own `catch_unwind`. With `WEFT_FUZZ_PANICS=1` every panic is printed (to read
/// a crash's message). Elsewhere (the regression tests) panics print as usual.
pub fn quiet_contained_panics() {
    #[cfg(fuzzing)]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var_os("WEFT_FUZZ_PANICS").is_none() {
                std::panic::set_hook(Box::new(|_| {}));
            }
        });
    }
}

/// A REST write, as the server's routes build them (`weft_sync_core::domain`): the relays apply it
/// as their own update (`Relay::write`), beside the peers' traffic.
pub(crate) fn rest_write(
    u: &mut arbitrary::Unstructured,
) -> arbitrary::Result<Vec<weft_sync_core::domain::write::Change>> {
    use weft_sync_core::domain::{board, channel, document, whiteboard};
    let id = format!("e{}", u.int_in_range(0..=3u8)?);
    let text = ascii(u, 8)?;
    Ok(match u.int_in_range(0..=7u8)? {
        0 => channel::post(&channel::NewMessage {
            id: &id,
            author: "u-a",
            body: &text,
            at: u.int_in_range(0..=1_000i64)?,
            parent: u.arbitrary::<bool>()?.then_some("e0"),
            attachments: &[],
        }),
        1 => channel::edit(&id, &text, 2_000),
        2 => channel::react(&id, "ok", "u-b", u.arbitrary()?),
        3 => channel::delete(&id),
        4 => board::TaskChange { title: Some(text), order: Some(1.5), ..board::TaskChange::default() }
            .changes(&id),
        5 => board::add_column(&id, &text),
        6 => whiteboard::ShapeChange {
            x: Some(f64::from(u.int_in_range(0..=9u8)?)),
            text: Some(text),
            ..Default::default()
        }
        .changes(&id),
        _ => document::add_comment(&document::NewComment {
            id: &id,
            author: "u-a",
            body: &text,
            at: 3,
            parent: None,
            anchor: u.arbitrary::<bool>()?.then_some((0, 1)),
        }),
    })
}

/// Up to `max` ASCII letters: what the honest editors type (text offsets then mean the same in
/// every encoding yrs and automerge count in).
pub(crate) fn ascii(u: &mut arbitrary::Unstructured, max: usize) -> arbitrary::Result<String> {
    let len = u.int_in_range(0..=max)?;
    (0..len).map(|_| Ok(char::from(b'a' + u.int_in_range(0..=25u8)?))).collect()
}

/// The payloads recorded from real clients by `compat/golden/record-corpus.mjs` (each `u32` LE
/// length, then bytes), which the relay targets replay in any order and mutate.
pub(crate) fn recorded(file: &'static [u8]) -> Vec<&'static [u8]> {
    let mut items = Vec::new();
    let mut rest = file;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let Some((item, tail)) = tail.split_at_checked(len) else { break };
        items.push(item);
        rest = tail;
    }
    items
}
