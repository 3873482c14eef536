//! The y-protocols wire codec (what `y-websocket` speaks): one `varUint` message type, then a body.
//!
//! | type | body |
//! |------|------|
//! | 0 sync | `varUint` 0 step 1 + `varUint8Array` state vector; 1 step 2 / 2 update + `varUint8Array` update (v1) |
//! | 1 awareness | `varUint8Array` awareness update |
//! | 2 auth | `varUint` 0 permission denied + `varString` reason |
//! | 3 query awareness | empty |
//!
//! Several messages may follow each other in one frame. Decoding is zero-copy: payloads are
//! [`Bytes`] slices of the frame. This module interprets bytes only; it does not decide what a
//! message means for a document (see [`super::relay`]).

use bytes::Bytes;
use yrs::encoding::read::{self, Cursor, Read};
use yrs::encoding::write::Write;

/// Top-level message type: document sync.
pub const MESSAGE_SYNC: u32 = 0;
/// Top-level message type: awareness update.
pub const MESSAGE_AWARENESS: u32 = 1;
/// Top-level message type: auth.
pub const MESSAGE_AUTH: u32 = 2;
/// Top-level message type: query awareness.
pub const MESSAGE_QUERY_AWARENESS: u32 = 3;
/// Sync sub-type: step 1 (state vector).
pub const SYNC_STEP1: u32 = 0;
/// Sync sub-type: step 2 (the update the receiver lacks).
pub const SYNC_STEP2: u32 = 1;
/// Sync sub-type: incremental update.
pub const SYNC_UPDATE: u32 = 2;
/// Auth sub-type: permission denied.
pub const AUTH_PERMISSION_DENIED: u32 = 0;

/// One y-protocols message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Sync step 1: the sender's encoded state vector.
    SyncStep1(Bytes),
    /// Sync step 2: a v1 update holding what the step 1 sender lacks.
    SyncStep2(Bytes),
    /// An incremental v1 update.
    Update(Bytes),
    /// An encoded awareness update (see [`super::awareness`]).
    Awareness(Bytes),
    /// Auth: permission denied, with a human-readable reason.
    PermissionDenied(String),
    /// A request for the receiver's full awareness state.
    QueryAwareness,
}

/// Why a frame did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame held no bytes.
    #[error("empty frame")]
    Empty,
    /// The frame ended inside a message.
    #[error("frame ends in the middle of a message (needed {needed} more bytes)")]
    Truncated {
        /// How many bytes the decoder was trying to read.
        needed: usize,
    },
    /// A variable-length integer is longer than any valid one.
    #[error("invalid variable-length integer")]
    InvalidVarInt,
    /// The top-level message type is not one y-protocols defines.
    #[error("unknown message type {0}")]
    UnknownMessageType(u32),
    /// The sync sub-type is not step 1, step 2 or update.
    #[error("unknown sync message type {0}")]
    UnknownSyncType(u32),
    /// The auth sub-type is not permission denied.
    #[error("unknown auth message type {0}")]
    UnknownAuthType(u32),
    /// A string is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// Any other structural problem.
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl From<read::Error> for DecodeError {
    fn from(err: read::Error) -> Self {
        match err {
            read::Error::EndOfBuffer(needed) => Self::Truncated { needed },
            read::Error::InvalidVarInt => Self::InvalidVarInt,
            read::Error::Malformed(read::MalformedKind::Utf8) => Self::InvalidUtf8,
            other => Self::Malformed(other.to_string()),
        }
    }
}

/// Decodes every message in `frame`.
///
/// # Errors
/// [`DecodeError`] for the first message that does not decode; nothing is returned for a frame that is
/// only partly valid, so a caller never acts on half a frame.
pub fn decode_frame(frame: &Bytes) -> Result<Vec<Message>, DecodeError> {
    if frame.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut cursor = Cursor::new(frame);
    let mut messages = Vec::with_capacity(1);
    while cursor.has_content() {
        messages.push(decode_one(frame, &mut cursor)?);
    }
    Ok(messages)
}

fn decode_one(frame: &Bytes, cursor: &mut Cursor<'_>) -> Result<Message, DecodeError> {
    let kind: u32 = cursor.read_var()?;
    match kind {
        MESSAGE_SYNC => {
            let sub: u32 = cursor.read_var()?;
            let payload = frame.slice_ref(cursor.read_buf()?);
            match sub {
                SYNC_STEP1 => Ok(Message::SyncStep1(payload)),
                SYNC_STEP2 => Ok(Message::SyncStep2(payload)),
                SYNC_UPDATE => Ok(Message::Update(payload)),
                other => Err(DecodeError::UnknownSyncType(other)),
            }
        }
        MESSAGE_AWARENESS => Ok(Message::Awareness(frame.slice_ref(cursor.read_buf()?))),
        MESSAGE_AUTH => {
            let sub: u32 = cursor.read_var()?;
            if sub != AUTH_PERMISSION_DENIED {
                return Err(DecodeError::UnknownAuthType(sub));
            }
            Ok(Message::PermissionDenied(cursor.read_string()?.to_owned()))
        }
        MESSAGE_QUERY_AWARENESS => Ok(Message::QueryAwareness),
        other => Err(DecodeError::UnknownMessageType(other)),
    }
}

impl Message {
    /// Appends this message's encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Self::SyncStep1(sv) => encode_sync(out, SYNC_STEP1, sv),
            Self::SyncStep2(update) => encode_sync(out, SYNC_STEP2, update),
            Self::Update(update) => encode_sync(out, SYNC_UPDATE, update),
            Self::Awareness(payload) => {
                out.write_var(MESSAGE_AWARENESS);
                out.write_buf(payload);
            }
            Self::PermissionDenied(reason) => {
                out.write_var(MESSAGE_AUTH);
                out.write_var(AUTH_PERMISSION_DENIED);
                out.write_string(reason);
            }
            Self::QueryAwareness => out.write_var(MESSAGE_QUERY_AWARENESS),
        }
    }

    /// This message alone as a frame.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        Bytes::from(out)
    }

    fn encoded_len_hint(&self) -> usize {
        let payload = match self {
            Self::SyncStep1(b) | Self::SyncStep2(b) | Self::Update(b) | Self::Awareness(b) => b.len(),
            Self::PermissionDenied(reason) => reason.len(),
            Self::QueryAwareness => 0,
        };
        payload + 8
    }
}

fn encode_sync(out: &mut Vec<u8>, sub: u32, payload: &[u8]) {
    out.write_var(MESSAGE_SYNC);
    out.write_var(sub);
    out.write_buf(payload);
}

/// Encodes several messages into one frame (y-protocols readers that loop over a frame accept this).
pub fn encode_frame<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Bytes {
    let mut out = Vec::new();
    for message in messages {
        message.encode_into(&mut out);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_message() -> impl Strategy<Value = Message> {
        let payload = proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
        prop_oneof![
            payload.clone().prop_map(Message::SyncStep1),
            payload.clone().prop_map(Message::SyncStep2),
            payload.clone().prop_map(Message::Update),
            payload.prop_map(Message::Awareness),
            ".{0,40}".prop_map(Message::PermissionDenied),
            Just(Message::QueryAwareness),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(messages in proptest::collection::vec(arb_message(), 1..6)) {
            let frame = encode_frame(&messages);
            prop_assert_eq!(decode_frame(&frame).unwrap(), messages);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_frame(&Bytes::from(bytes));
        }

        #[test]
        fn every_strict_prefix_of_a_message_is_rejected(message in arb_message()) {
            let frame = message.encode();
            for end in 0..frame.len() {
                prop_assert!(decode_frame(&frame.slice(..end)).is_err());
            }
        }
    }

    #[test]
    fn decode_errors_name_the_problem() {
        let f = |b: &'static [u8]| decode_frame(&Bytes::from_static(b));
        assert_eq!(f(b""), Err(DecodeError::Empty));
        assert_eq!(f(&[7]), Err(DecodeError::UnknownMessageType(7)));
        assert_eq!(f(&[0, 9, 0]), Err(DecodeError::UnknownSyncType(9)));
        assert_eq!(f(&[2, 1]), Err(DecodeError::UnknownAuthType(1)));
        assert_eq!(f(&[0, 2, 5, 1, 2]), Err(DecodeError::Truncated { needed: 5 }));
        assert!(matches!(f(&[0x80, 0x80]), Err(DecodeError::Truncated { .. })));
        assert_eq!(f(&[0xff; 12]), Err(DecodeError::InvalidVarInt));
        assert_eq!(f(&[2, 0, 2, 0xff, 0xfe]), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn payloads_borrow_the_frame() {
        let frame = Message::Update(Bytes::from_static(&[1, 2, 3])).encode();
        let Message::Update(payload) = &decode_frame(&frame).unwrap()[0] else { panic!("not an update") };
        assert_eq!(payload.as_ptr(), frame[3..].as_ptr());
    }
}
