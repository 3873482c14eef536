//! The Hocuspocus wire framing: every message is `varString routingKey` (the document name, or
//! `name\0sessionId` for v4 providers with session awareness), `varUint type`, then a body. Types 0–3
//! carry the y-protocols bodies unchanged; the others are Hocuspocus' own.
//!
//! This module holds what the relay needs to *send*; decoding of incoming frames lives beside it.

use bytes::{BufMut, Bytes, BytesMut};
use yrs::encoding::write::Write;

/// Message type: stateless (a string payload for the application).
pub const MESSAGE_STATELESS: u32 = 5;
/// Message type: sync status (signed varint 1 = applied, 0 = not applied).
pub const MESSAGE_SYNC_STATUS: u32 = 8;

/// The `varString` prefix that routes a frame to one document (and session) on a shared socket.
pub fn routing_prefix(routing_key: &str) -> Bytes {
    let mut out = Vec::with_capacity(routing_key.len() + 2);
    out.write_string(routing_key);
    Bytes::from(out)
}

/// `prefix` followed by a y-protocols message body (types 0–3 have identical bodies in both dialects).
pub fn wrap(prefix: &Bytes, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(prefix.len() + body.len());
    out.put_slice(prefix);
    out.put_slice(body);
    out.freeze()
}

/// A sync-status message: `applied` tells the provider one of its updates was (or was not) stored,
/// which is how it counts unsynced changes.
pub fn sync_status(prefix: &Bytes, applied: bool) -> Bytes {
    let mut out = prefix.to_vec();
    out.write_var(MESSAGE_SYNC_STATUS);
    // lib0 `writeVarInt`: for 0 and 1 the signed encoding is the single byte 0 or 1.
    out.write_u8(u8::from(applied));
    Bytes::from(out)
}

/// A stateless message carrying `payload` to a provider.
pub fn stateless(prefix: &Bytes, payload: &str) -> Bytes {
    let mut out = prefix.to_vec();
    out.write_var(MESSAGE_STATELESS);
    out.write_string(payload);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_start_with_the_routing_key() {
        let prefix = routing_prefix("doc\0session");
        assert_eq!(prefix.as_ref(), b"\x0bdoc\0session");
        assert_eq!(sync_status(&prefix, true).as_ref(), b"\x0bdoc\0session\x08\x01");
        assert_eq!(stateless(&prefix, "hi").as_ref(), b"\x0bdoc\0session\x05\x02hi");
        assert_eq!(wrap(&prefix, &[0, 2, 0]).as_ref(), b"\x0bdoc\0session\x00\x02\x00");
    }
}
