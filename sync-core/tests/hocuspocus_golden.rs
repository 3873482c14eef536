//! Owns checking the Hocuspocus codec against golden frames captured from the real provider packages
//! (`@hocuspocus/provider` 4.x and 3.x). It does not own the capture: that is
//! `compat/golden/hocuspocus.mjs` (`node golden/hocuspocus.mjs` in `compat/`), which writes
//! `tests/golden/hocuspocus.json`.
//!
//! Frames a provider sends must decode to exactly the recorded message and encode back byte for
//! byte. Frames a server sends (each one checked by the generator against the real providers'
//! reactions) must be what our encoders produce, byte for byte, and decode back. Each test walks
//! every case and reports all failing ones at once, by name.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use weft_sync_core::hocuspocus::{self, Frame, Message, RoutingKey};
use weft_sync_core::yjs::Message as YMessage;

/// The fixture, compiled in so the test binary does not depend on the working directory.
const GOLDEN: &str = include_str!("golden/hocuspocus.json");

#[derive(Debug, Deserialize)]
struct Golden {
    generated_by: String,
    packages: BTreeMap<String, String>,
    provider_frames: Vec<ProviderFrame>,
    server_frames: Vec<ServerFrame>,
}

#[derive(Debug, Deserialize)]
struct ProviderFrame {
    name: String,
    provider: String,
    frame_hex: String,
    expect: Expected,
}

#[derive(Debug, Deserialize)]
struct ServerFrame {
    name: String,
    frame_hex: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(flatten)]
    expect: Expected,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Expected {
    Token { key: String, token: String, provider_version: Option<String> },
    SyncStep1 { key: String, payload_hex: String },
    SyncStep2 { key: String, payload_hex: String },
    SyncUpdate { key: String, payload_hex: String },
    Awareness { key: String, payload_hex: String },
    Stateless { key: Option<String>, payload: String },
    Close { key: Option<String>, reason: Option<String> },
    Authenticated { scope: String },
    PermissionDenied { reason: String },
    SyncStatus { applied: bool },
    Ping,
    Pong,
}

fn golden() -> Golden {
    serde_json::from_str(GOLDEN).expect("tests/golden/hocuspocus.json parses")
}

fn unhex(s: &str) -> Bytes {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    let bytes: Vec<u8> =
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect();
    Bytes::from(bytes)
}

fn doc(key: &str, message: Message) -> Frame {
    Frame::Document { key: RoutingKey::new(key), message }
}

/// The frame `expect` describes; `key` is the server frame's key where the variant has none.
fn expected_frame(expect: &Expected, key: Option<&str>) -> Frame {
    let key_or = |own: &Option<String>| own.as_deref().or(key).expect("a routing key").to_owned();
    match expect {
        Expected::Token { key, token, provider_version } => {
            doc(key, Message::Token { token: token.clone(), provider_version: provider_version.clone() })
        }
        Expected::SyncStep1 { key, payload_hex } => {
            doc(key, Message::Yjs(YMessage::SyncStep1(unhex(payload_hex))))
        }
        Expected::SyncStep2 { key, payload_hex } => {
            doc(key, Message::Yjs(YMessage::SyncStep2(unhex(payload_hex))))
        }
        Expected::SyncUpdate { key, payload_hex } => {
            doc(key, Message::Yjs(YMessage::Update(unhex(payload_hex))))
        }
        Expected::Awareness { key, payload_hex } => {
            doc(key, Message::Yjs(YMessage::Awareness(unhex(payload_hex))))
        }
        Expected::Stateless { key: own, payload } => doc(&key_or(own), Message::Stateless(payload.clone())),
        Expected::Close { key: own, reason } => doc(&key_or(own), Message::Close(reason.clone())),
        Expected::Authenticated { scope } => {
            doc(key.expect("a routing key"), Message::Authenticated(scope.clone()))
        }
        Expected::PermissionDenied { reason } => {
            doc(key.expect("a routing key"), Message::PermissionDenied(reason.clone()))
        }
        Expected::SyncStatus { applied } => doc(key.expect("a routing key"), Message::SyncStatus(*applied)),
        Expected::Ping => Frame::Ping,
        Expected::Pong => Frame::Pong,
    }
}

fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} golden case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_fixture_covers_both_provider_majors_and_every_message_kind() {
    let golden = golden();
    assert_eq!(golden.generated_by, "compat/golden/hocuspocus.mjs");
    for package in ["@hocuspocus/provider", "hocuspocus-provider-v3", "yjs"] {
        assert!(golden.packages.contains_key(package), "{package} version recorded");
    }
    let providers: std::collections::BTreeSet<_> =
        golden.provider_frames.iter().map(|f| f.provider.as_str()).collect();
    assert_eq!(providers.into_iter().collect::<Vec<_>>(), ["v3", "v4"]);
    let v3_token = golden.provider_frames.iter().find(|f| f.name == "v3_token").expect("v3 token");
    assert!(
        matches!(&v3_token.expect, Expected::Token { provider_version: None, .. }),
        "v3 sends no version"
    );
    let session =
        golden.provider_frames.iter().find(|f| f.name == "v4_session_token").expect("session token");
    assert!(matches!(&session.expect, Expected::Token { key, .. } if key.contains('\0')), "v4 session key");
    assert!(golden.server_frames.len() >= 9);
}

#[test]
fn provider_frames_decode_to_the_recorded_message_and_encode_back() {
    let mut failures = Vec::new();
    for case in golden().provider_frames {
        let bytes = unhex(&case.frame_hex);
        let want = expected_frame(&case.expect, None);
        match hocuspocus::decode_frame(&bytes) {
            Ok(got) if got == want => {}
            other => failures.push(format!("{}: decoded {other:?}, want {want:?}", case.name)),
        }
        if want.encode() != bytes {
            failures.push(format!("{}: re-encoding differs", case.name));
        }
    }
    report(failures);
}

#[test]
fn server_frames_are_what_our_encoders_write() {
    let mut failures = Vec::new();
    for case in golden().server_frames {
        let bytes = unhex(&case.frame_hex);
        let prefix = case.key.as_deref().map(hocuspocus::routing_prefix);
        let p = || prefix.clone().expect("a routing key");
        let ours = match &case.expect {
            Expected::Authenticated { scope } => hocuspocus::authenticated(&p(), scope),
            Expected::PermissionDenied { reason } => hocuspocus::permission_denied(&p(), reason),
            Expected::SyncStatus { applied } => hocuspocus::sync_status(&p(), *applied),
            Expected::Stateless { payload, .. } => hocuspocus::stateless(&p(), payload),
            Expected::Close { reason: Some(reason), .. } => hocuspocus::close(&p(), reason),
            Expected::Ping => Bytes::from_static(hocuspocus::PING),
            other => {
                failures.push(format!("{}: not a server message: {other:?}", case.name));
                continue;
            }
        };
        if ours != bytes {
            failures.push(format!("{}: we write {ours:02x?}, the provider expects {bytes:02x?}", case.name));
        }
        let want = expected_frame(&case.expect, case.key.as_deref());
        match hocuspocus::decode_frame(&bytes) {
            Ok(got) if got == want => {}
            other => failures.push(format!("{}: decoded {other:?}, want {want:?}", case.name)),
        }
    }
    report(failures);
}

#[test]
fn the_scopes_we_grant_are_the_ones_providers_know() {
    let golden = golden();
    let scopes: Vec<&str> = golden
        .server_frames
        .iter()
        .filter_map(|f| match &f.expect {
            Expected::Authenticated { scope } => Some(scope.as_str()),
            _ => None,
        })
        .collect();
    assert!(scopes.contains(&hocuspocus::SCOPE_READ_WRITE) && scopes.contains(&hocuspocus::SCOPE_READONLY));
}
