//! Owns replaying golden y-protocols bytes, captured from the real Yjs npm packages, against our codec,
//! our awareness decoder and yrs. It does not own the capture: that is `compat/golden/generate.mjs`
//! (`npm run golden` in `compat/`), which writes `tests/golden/yjs.json`.
//!
//! Every case of `tests/golden/yjs.json` is checked four ways: `decode_frame` yields exactly the
//! listed messages, `encode_frame` gives back the captured frame byte for byte, yrs applies the
//! document payloads to the expected text and maps, and awareness payloads decode to the listed
//! entries. Each test walks every case and reports all failing ones at once, by name.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use weft_sync_core::yjs::Message;
use weft_sync_core::yjs::awareness::{self, AwarenessEntry};
use weft_sync_core::yjs::codec::{decode_frame, encode_frame};
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

/// The fixture, compiled in so the test binary does not depend on the working directory.
const GOLDEN: &str = include_str!("golden/yjs.json");

#[derive(Debug, Deserialize)]
struct Golden {
    generated_by: String,
    packages: BTreeMap<String, String>,
    cases: Vec<GoldenCase>,
}

#[derive(Debug, Deserialize)]
struct GoldenCase {
    name: String,
    frame_hex: String,
    messages: Vec<GoldenMessage>,
    #[serde(default)]
    expect_text: BTreeMap<String, String>,
    #[serde(default)]
    expect_map: BTreeMap<String, Value>,
    #[serde(default)]
    expect_state_vector: Option<BTreeMap<u64, u32>>,
    #[serde(default)]
    awareness: Option<Vec<GoldenAwarenessEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum GoldenMessage {
    SyncStep1 { payload_hex: String },
    SyncStep2 { payload_hex: String },
    SyncUpdate { payload_hex: String },
    Awareness { payload_hex: String },
    PermissionDenied { reason: String },
    QueryAwareness,
}

#[derive(Debug, Deserialize)]
struct GoldenAwarenessEntry {
    client_id: u64,
    clock: u64,
    state: String,
}

impl GoldenMessage {
    fn to_message(&self) -> Message {
        match self {
            Self::SyncStep1 { payload_hex } => Message::SyncStep1(unhex(payload_hex)),
            Self::SyncStep2 { payload_hex } => Message::SyncStep2(unhex(payload_hex)),
            Self::SyncUpdate { payload_hex } => Message::Update(unhex(payload_hex)),
            Self::Awareness { payload_hex } => Message::Awareness(unhex(payload_hex)),
            Self::PermissionDenied { reason } => Message::PermissionDenied(reason.clone()),
            Self::QueryAwareness => Message::QueryAwareness,
        }
    }
}

impl GoldenCase {
    fn frame(&self) -> Bytes {
        unhex(&self.frame_hex)
    }

    fn expected_messages(&self) -> Vec<Message> {
        self.messages.iter().map(GoldenMessage::to_message).collect()
    }
}

fn golden() -> Golden {
    serde_json::from_str(GOLDEN).expect("tests/golden/yjs.json is valid JSON of the documented shape")
}

/// Lower- or upper-case hex to bytes; the fixture is ours, so bad hex is a broken fixture and panics.
fn unhex(text: &str) -> Bytes {
    fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not a hex digit: {:?}", c as char),
        }
    }
    assert!(text.len().is_multiple_of(2), "odd-length hex string");
    text.as_bytes().chunks_exact(2).map(|pair| nibble(pair[0]) << 4 | nibble(pair[1])).collect()
}

/// Short description of bytes for failure messages: length and the first bytes in hex.
fn describe(bytes: &[u8]) -> String {
    let head: String = bytes.iter().take(24).map(|b| format!("{b:02x}")).collect();
    let ellipsis = if bytes.len() > 24 { "…" } else { "" };
    format!("{} bytes {head}{ellipsis}", bytes.len())
}

fn describe_messages(messages: &[Message]) -> String {
    let parts: Vec<String> = messages
        .iter()
        .map(|m| match m {
            Message::SyncStep1(b) => format!("SyncStep1({})", describe(b)),
            Message::SyncStep2(b) => format!("SyncStep2({})", describe(b)),
            Message::Update(b) => format!("Update({})", describe(b)),
            Message::Awareness(b) => format!("Awareness({})", describe(b)),
            Message::PermissionDenied(reason) => format!("PermissionDenied({reason:?})"),
            Message::QueryAwareness => "QueryAwareness".to_owned(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Runs `check` on every case and fails once, listing every case that failed.
fn for_every_case(check: impl Fn(&GoldenCase) -> Result<(), String>) {
    let golden = golden();
    let failures: Vec<String> = golden
        .cases
        .iter()
        .filter_map(|case| check(case).err().map(|why| format!("{}: {why}", case.name)))
        .collect();
    assert!(failures.is_empty(), "{} golden case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// JSON equality where numbers compare by value: yrs stores every JS number as a float, so `42`
/// may come back as `42.0`.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len() && xs.iter().all(|(k, x)| ys.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

#[test]
fn fixture_covers_every_message_kind_and_multi_byte_lengths() {
    let golden = golden();
    assert_eq!(golden.generated_by, "compat/golden/generate.mjs");
    for package in ["yjs", "y-protocols", "lib0"] {
        assert!(golden.packages.contains_key(package), "fixture does not say which {package} produced it");
    }
    let kinds: std::collections::BTreeSet<&str> = golden
        .cases
        .iter()
        .flat_map(|c| &c.messages)
        .map(|m| match m {
            GoldenMessage::SyncStep1 { .. } => "sync_step1",
            GoldenMessage::SyncStep2 { .. } => "sync_step2",
            GoldenMessage::SyncUpdate { .. } => "sync_update",
            GoldenMessage::Awareness { .. } => "awareness",
            GoldenMessage::PermissionDenied { .. } => "permission_denied",
            GoldenMessage::QueryAwareness => "query_awareness",
        })
        .collect();
    assert_eq!(kinds.len(), 6, "every y-protocols message kind is captured, got {kinds:?}");
    assert!(golden.cases.iter().any(|c| c.messages.len() > 1), "a frame holding several messages");
    // Payloads of 16 KiB and more need a three-byte varUint length prefix.
    assert!(golden.cases.iter().any(|c| c.frame_hex.len() / 2 > 1 << 14), "a frame with a multi-byte length");
}

#[test]
fn decode_frame_yields_exactly_the_captured_messages() {
    for_every_case(|case| {
        let decoded = decode_frame(&case.frame()).map_err(|e| format!("decode_frame failed: {e}"))?;
        let expected = case.expected_messages();
        if decoded != expected {
            return Err(format!(
                "decoded {}\n  expected {}",
                describe_messages(&decoded),
                describe_messages(&expected)
            ));
        }
        Ok(())
    });
}

#[test]
fn encode_frame_reproduces_the_captured_bytes() {
    for_every_case(|case| {
        let frame = case.frame();
        let encoded = encode_frame(&case.expected_messages());
        if encoded != frame {
            let at = encoded
                .iter()
                .zip(frame.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(encoded.len().min(frame.len()));
            return Err(format!(
                "encoded frame differs from byte {at}: ours {} vs yjs {}",
                describe(&encoded[at.min(encoded.len())..]),
                describe(&frame[at.min(frame.len())..])
            ));
        }
        Ok(())
    });
}

#[test]
fn single_message_frames_cut_short_are_rejected() {
    for_every_case(|case| {
        if case.messages.len() != 1 {
            // A multi-message frame cut at a message boundary is a valid shorter frame.
            return Ok(());
        }
        let frame = case.frame();
        for end in [0, 1, frame.len() / 2, frame.len() - 1] {
            if end < frame.len() && decode_frame(&frame.slice(..end)).is_ok() {
                return Err(format!("a {end}-byte prefix of the {}-byte frame decoded", frame.len()));
            }
        }
        Ok(())
    });
}

#[test]
fn yrs_applies_the_document_payloads_to_the_expected_state() {
    for_every_case(|case| {
        if case.expect_text.is_empty() && case.expect_map.is_empty() {
            return Ok(());
        }
        let doc = Doc::new();
        // Root handles are taken before any transaction: yrs creates roots under its own write lock.
        let texts: Vec<_> = case
            .expect_text
            .iter()
            .map(|(name, want)| (name, want, doc.get_or_insert_text(name.as_str())))
            .collect();
        let maps: Vec<_> = case
            .expect_map
            .iter()
            .map(|(name, want)| (name, want, doc.get_or_insert_map(name.as_str())))
            .collect();
        {
            let mut txn = doc.transact_mut();
            for (i, message) in case.expected_messages().iter().enumerate() {
                let (Message::SyncStep2(payload) | Message::Update(payload)) = message else {
                    continue;
                };
                let update = Update::decode_v1(payload)
                    .map_err(|e| format!("message {i}: yrs cannot decode the update: {e}"))?;
                txn.apply_update(update)
                    .map_err(|e| format!("message {i}: yrs cannot apply the update: {e}"))?;
            }
            if txn.has_missing_updates() {
                return Err("yrs holds part of the updates as pending (missing dependencies)".into());
            }
        }
        let txn = doc.transact();
        for (name, want, text) in texts {
            let got = text.get_string(&txn);
            if &got != want {
                return Err(format!("text {name:?} is {got:?}, expected {want:?}"));
            }
        }
        for (name, want, map) in maps {
            let got =
                serde_json::to_value(map.to_json(&txn)).map_err(|e| format!("map {name:?} to JSON: {e}"))?;
            if !json_eq(&got, want) {
                return Err(format!("map {name:?} is {got}, expected {want}"));
            }
        }
        Ok(())
    });
}

#[test]
fn step1_payloads_decode_to_the_expected_state_vectors() {
    for_every_case(|case| {
        let Some(want) = &case.expect_state_vector else {
            return Ok(());
        };
        for message in case.expected_messages() {
            let Message::SyncStep1(payload) = message else {
                continue;
            };
            let sv = StateVector::decode_v1(&payload)
                .map_err(|e| format!("yrs cannot decode the state vector: {e}"))?;
            let got: BTreeMap<u64, u32> = sv.iter().map(|(client, &clock)| (client.get(), clock)).collect();
            if &got != want {
                return Err(format!("state vector {got:?}, expected {want:?}"));
            }
        }
        Ok(())
    });
}

#[test]
fn awareness_payloads_decode_to_the_captured_entries() {
    for_every_case(|case| {
        let payloads: Vec<Bytes> = case
            .expected_messages()
            .into_iter()
            .filter_map(|m| if let Message::Awareness(p) = m { Some(p) } else { None })
            .collect();
        let Some(want) = &case.awareness else {
            return if payloads.is_empty() {
                Ok(())
            } else {
                Err("awareness message without listed entries".into())
            };
        };
        let mut got = Vec::new();
        for payload in &payloads {
            got.extend(awareness::decode_update(payload).map_err(|e| format!("decode_update failed: {e}"))?);
        }
        let want: Vec<AwarenessEntry> = want
            .iter()
            .map(|e| AwarenessEntry {
                client_id: e.client_id,
                clock: e.clock,
                state: Bytes::from(e.state.clone()),
            })
            .collect();
        if got != want {
            return Err(format!("awareness entries {got:?}, expected {want:?}"));
        }
        // Re-encoding the decoded entries must give back what y-protocols wrote.
        if payloads.len() == 1 && awareness::encode_update(got.iter()) != payloads[0] {
            return Err("awareness::encode_update does not reproduce the captured payload".into());
        }
        Ok(())
    });
}
