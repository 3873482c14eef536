//! Decoder targets: every wire decoder either refuses an input or decodes it into messages that
//! encode back to something that decodes to the same messages. None may panic.

use bytes::Bytes;
use weft_sync_core::automerge::codec as automerge_codec;
use weft_sync_core::hocuspocus;
use weft_sync_core::yjs::{awareness, codec};

/// y-websocket frames (sync, awareness, auth, query awareness), and the awareness updates inside.
pub fn yjs(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    let Ok(messages) = codec::decode_frame(&frame) else { return };
    let again = codec::decode_frame(&codec::encode_frame(&messages)).expect("an encoded frame decodes");
    assert_eq!(again, messages, "y-websocket frames round-trip");
    for message in &messages {
        if let codec::Message::Awareness(payload) = message
            && let Ok(entries) = awareness::decode_update(payload)
        {
            let encoded = awareness::encode_update(entries.iter());
            assert_eq!(awareness::decode_update(&encoded).expect("encoded awareness decodes"), entries);
        }
    }
}

/// Hocuspocus frames: routing key, then a message.
pub fn hocuspocus(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    let Ok(decoded) = hocuspocus::decode_frame(&frame) else { return };
    let again = hocuspocus::decode_frame(&decoded.encode()).expect("an encoded frame decodes");
    assert_eq!(again, decoded, "Hocuspocus frames round-trip");
    if let hocuspocus::Frame::Document { key, .. } = &decoded {
        // Routing keys are validated on use; that must not panic either.
        let _ = key.document();
    }
}

/// automerge-repo messages (one CBOR map per frame).
pub fn automerge_repo(data: &[u8]) {
    let Ok(message) = automerge_codec::decode(data) else { return };
    let again = automerge_codec::decode(&message.encode()).expect("an encoded message decodes");
    assert_eq!(again, message, "automerge-repo messages round-trip");
}
