//! The Hocuspocus wire codec: every message is `varString routingKey` (the document name, or
//! `name\0sessionId` for v4 providers with session awareness), `varUint type`, then a body; one
//! message per WebSocket frame. Types 0, 1 and 3 carry the y-protocols bodies unchanged (decoded by
//! [`crate::yjs::codec`]); the others are Hocuspocus' own:
//!
//! | type | body |
//! |------|------|
//! | 2 auth | `varUint` 0 token + `varString` token (+ `varString` provider version, v4); 1 permission denied + `varString` reason; 2 authenticated + `varString` scope |
//! | 5 stateless | `varString` payload |
//! | 7 close | empty (provider leaves the document), or `varString` reason (server closed it) |
//! | 8 sync status | lib0 `varInt`: 1 applied, 0 not applied |
//!
//! Two frames have no routing key at all: the one-byte ping (`9`) and pong (`10`). A routing key
//! cannot be confused with them: a key of length 9 or 10 needs more than one byte.
//!
//! This module interprets bytes only: it neither validates document names beyond UTF-8 (see
//! [`RoutingKey::document`]) nor decides what a message means for a connection.

use bytes::{BufMut, Bytes, BytesMut};
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;

use crate::ids::{DocId, InvalidDocId};
use crate::yjs::codec;

/// Message type: auth (token, permission denied, authenticated).
pub const MESSAGE_AUTH: u32 = 2;
/// Message type: stateless (a string payload for the application).
pub const MESSAGE_STATELESS: u32 = 5;
/// Message type: close one document on a shared socket.
pub const MESSAGE_CLOSE: u32 = 7;
/// Message type: sync status (signed varint 1 = applied, 0 = not applied).
pub const MESSAGE_SYNC_STATUS: u32 = 8;
/// The one-byte ping frame (v4 providers answer it with [`PONG`]).
pub const PING: &[u8] = &[9];
/// The one-byte pong frame.
pub const PONG: &[u8] = &[10];
/// Auth sub-type: the provider's token.
pub const AUTH_TOKEN: u32 = 0;
/// Auth sub-type: permission denied, with a reason.
pub const AUTH_PERMISSION_DENIED: u32 = 1;
/// Auth sub-type: authenticated, with the granted scope.
pub const AUTH_AUTHENTICATED: u32 = 2;
/// The scope of an `authenticated` message for a connection that may write.
pub const SCOPE_READ_WRITE: &str = "read-write";
/// The scope of an `authenticated` message for a read-only connection.
pub const SCOPE_READONLY: &str = "readonly";
/// Longest accepted session part of a routing key, in bytes. Providers use a short random id; the
/// key is repeated in front of every frame the connection is sent, so it stays small.
pub const MAX_SESSION_BYTES: usize = 256;

/// What a routing key addresses: `name` or, from v4 providers with session awareness,
/// `name\0sessionId`. Replies carry the whole key, so that the right provider receives them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutingKey(String);

/// Why a routing key does not name a document Weft serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRoutingKey {
    /// The document name part is not a valid [`DocId`].
    #[error("invalid document name: {0}")]
    Document(#[from] InvalidDocId),
    /// The session part is longer than [`MAX_SESSION_BYTES`].
    #[error("session id is {len} bytes long; the limit is {max}")]
    SessionTooLong {
        /// Length of the session part in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl RoutingKey {
    /// Wraps a key as it appears on the wire.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// A v4 session-aware key: `name\0session`.
    pub fn with_session(name: &str, session: &str) -> Self {
        Self(format!("{name}\0{session}"))
    }

    /// The whole key, as it goes on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The document name: everything before the first `\0`.
    pub fn name(&self) -> &str {
        self.0.split_once('\0').map_or(self.0.as_str(), |(name, _)| name)
    }

    /// The session id after the first `\0`, if the key has one.
    pub fn session(&self) -> Option<&str> {
        self.0.split_once('\0').map(|(_, session)| session)
    }

    /// The document this key addresses, validated.
    ///
    /// # Errors
    /// [`InvalidRoutingKey`] when the name is not a valid [`DocId`] or the session part is too long.
    pub fn document(&self) -> Result<DocId, InvalidRoutingKey> {
        if let Some(session) = self.session()
            && session.len() > MAX_SESSION_BYTES
        {
            return Err(InvalidRoutingKey::SessionTooLong { len: session.len(), max: MAX_SESSION_BYTES });
        }
        Ok(DocId::new(self.name())?)
    }

    /// The encoded key, to put in front of every frame for it (see [`wrap`]).
    pub fn prefix(&self) -> Bytes {
        routing_prefix(&self.0)
    }
}

/// One Hocuspocus message after its routing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Types 0 (sync), 1 (awareness) and 3 (query awareness): a y-protocols message. Never
    /// [`codec::Message::PermissionDenied`]: type 2 means Hocuspocus auth here.
    Yjs(codec::Message),
    /// Auth: the provider's token. v4 providers append their version; v3 providers do not.
    Token {
        /// The token (empty when the provider has none).
        token: String,
        /// The provider's version, e.g. `"4.8.0"`, if it sent one.
        provider_version: Option<String>,
    },
    /// Auth: the server refused the token, with a reason for the application.
    PermissionDenied(String),
    /// Auth: the server accepted the token with this scope ([`SCOPE_READ_WRITE`] or [`SCOPE_READONLY`]).
    Authenticated(String),
    /// A stateless message for the application.
    Stateless(String),
    /// Close one document: `None` from a provider that leaves it, a reason from a server that closed it.
    Close(Option<String>),
    /// Whether one of the provider's updates was applied (stored) or not.
    SyncStatus(bool),
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The connection-level ping.
    Ping,
    /// The connection-level pong.
    Pong,
    /// A message for one document (and session).
    Document {
        /// Where the message goes.
        key: RoutingKey,
        /// The message.
        message: Message,
    },
}

/// Why a frame did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is not a valid routing key plus message: empty, truncated, a bad varint or UTF-8,
    /// or a y-protocols body that does not decode.
    #[error(transparent)]
    Body(#[from] codec::DecodeError),
    /// The message type is not one Hocuspocus defines for a document message.
    #[error("unknown message type {0}")]
    UnknownMessageType(u32),
    /// The auth sub-type is not token, permission denied or authenticated.
    #[error("unknown auth message type {0}")]
    UnknownAuthType(u32),
    /// The frame goes on after its message (Hocuspocus sends one message per frame).
    #[error("{0} bytes after the end of the message")]
    TrailingBytes(usize),
}

impl From<yrs::encoding::read::Error> for DecodeError {
    fn from(err: yrs::encoding::read::Error) -> Self {
        Self::Body(err.into())
    }
}

/// Decodes one frame.
///
/// # Errors
/// [`DecodeError`] when the frame is not exactly one valid message.
pub fn decode_frame(frame: &Bytes) -> Result<Frame, DecodeError> {
    match frame.as_ref() {
        [] => return Err(codec::DecodeError::Empty.into()),
        b if b == PING => return Ok(Frame::Ping),
        b if b == PONG => return Ok(Frame::Pong),
        _ => {}
    }
    let mut cursor = Cursor::new(frame);
    let key = RoutingKey(cursor.read_string()?.to_owned());
    let body_start = cursor.next;
    let kind: u32 = cursor.read_var()?;
    let message = match kind {
        codec::MESSAGE_SYNC | codec::MESSAGE_AWARENESS | codec::MESSAGE_QUERY_AWARENESS => {
            // The y-protocols codec reads the type again and slices payloads out of the frame.
            let messages = codec::decode_frame(&frame.slice(body_start..))?;
            return match <[codec::Message; 1]>::try_from(messages) {
                Ok([message]) => Ok(Frame::Document { key, message: Message::Yjs(message) }),
                Err(more) => {
                    let first_len = more.first().map_or(0, |m| m.encode().len());
                    Err(DecodeError::TrailingBytes((frame.len() - body_start).saturating_sub(first_len)))
                }
            };
        }
        MESSAGE_AUTH => match cursor.read_var::<u32>()? {
            AUTH_TOKEN => {
                let token = cursor.read_string()?.to_owned();
                let provider_version =
                    if cursor.has_content() { Some(cursor.read_string()?.to_owned()) } else { None };
                Message::Token { token, provider_version }
            }
            AUTH_PERMISSION_DENIED => Message::PermissionDenied(cursor.read_string()?.to_owned()),
            AUTH_AUTHENTICATED => Message::Authenticated(cursor.read_string()?.to_owned()),
            other => return Err(DecodeError::UnknownAuthType(other)),
        },
        MESSAGE_STATELESS => Message::Stateless(cursor.read_string()?.to_owned()),
        MESSAGE_CLOSE => {
            Message::Close(if cursor.has_content() { Some(cursor.read_string()?.to_owned()) } else { None })
        }
        MESSAGE_SYNC_STATUS => Message::SyncStatus(cursor.read_var::<i64>()? == 1),
        other => return Err(DecodeError::UnknownMessageType(other)),
    };
    if cursor.has_content() {
        return Err(DecodeError::TrailingBytes(frame.len() - cursor.next));
    }
    Ok(Frame::Document { key, message })
}

impl Frame {
    /// This frame's encoding.
    pub fn encode(&self) -> Bytes {
        match self {
            Self::Ping => Bytes::from_static(PING),
            Self::Pong => Bytes::from_static(PONG),
            Self::Document { key, message } => {
                let mut out = Vec::new();
                out.write_string(key.as_str());
                message.encode_into(&mut out);
                Bytes::from(out)
            }
        }
    }
}

impl Message {
    /// Appends the message type and body (everything after the routing key) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Self::Yjs(message) => message.encode_into(out),
            Self::Token { token, provider_version } => {
                out.write_var(MESSAGE_AUTH);
                out.write_var(AUTH_TOKEN);
                out.write_string(token);
                if let Some(version) = provider_version {
                    out.write_string(version);
                }
            }
            Self::PermissionDenied(reason) => {
                out.write_var(MESSAGE_AUTH);
                out.write_var(AUTH_PERMISSION_DENIED);
                out.write_string(reason);
            }
            Self::Authenticated(scope) => {
                out.write_var(MESSAGE_AUTH);
                out.write_var(AUTH_AUTHENTICATED);
                out.write_string(scope);
            }
            Self::Stateless(payload) => {
                out.write_var(MESSAGE_STATELESS);
                out.write_string(payload);
            }
            Self::Close(reason) => {
                out.write_var(MESSAGE_CLOSE);
                if let Some(reason) = reason {
                    out.write_string(reason);
                }
            }
            Self::SyncStatus(applied) => {
                out.write_var(MESSAGE_SYNC_STATUS);
                // lib0 `writeVarInt`: for 0 and 1 the signed encoding is the single byte 0 or 1.
                out.write_u8(u8::from(*applied));
            }
        }
    }
}

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

fn prefixed(prefix: &Bytes, message: &Message) -> Bytes {
    let mut out = prefix.to_vec();
    message.encode_into(&mut out);
    Bytes::from(out)
}

/// A sync-status message: `applied` tells the provider one of its updates was (or was not) stored,
/// which is how it counts unsynced changes.
pub fn sync_status(prefix: &Bytes, applied: bool) -> Bytes {
    prefixed(prefix, &Message::SyncStatus(applied))
}

/// A stateless message carrying `payload` to a provider.
pub fn stateless(prefix: &Bytes, payload: &str) -> Bytes {
    prefixed(prefix, &Message::Stateless(payload.to_owned()))
}

/// An `authenticated` message granting `scope` ([`SCOPE_READ_WRITE`] or [`SCOPE_READONLY`]).
pub fn authenticated(prefix: &Bytes, scope: &str) -> Bytes {
    prefixed(prefix, &Message::Authenticated(scope.to_owned()))
}

/// A `permission denied` message with a reason the provider reports to the application.
pub fn permission_denied(prefix: &Bytes, reason: &str) -> Bytes {
    prefixed(prefix, &Message::PermissionDenied(reason.to_owned()))
}

/// The server-side close message: this document is closed on the socket, for `reason`.
pub fn close(prefix: &Bytes, reason: &str) -> Bytes {
    prefixed(prefix, &Message::Close(Some(reason.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MAX_DOC_ID_BYTES;
    use proptest::prelude::*;

    fn arb_text() -> impl Strategy<Value = String> {
        ".{0,24}"
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let payload = proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
        prop_oneof![
            payload.clone().prop_map(|p| Message::Yjs(codec::Message::SyncStep1(p))),
            payload.clone().prop_map(|p| Message::Yjs(codec::Message::SyncStep2(p))),
            payload.clone().prop_map(|p| Message::Yjs(codec::Message::Update(p))),
            payload.prop_map(|p| Message::Yjs(codec::Message::Awareness(p))),
            Just(Message::Yjs(codec::Message::QueryAwareness)),
            (arb_text(), proptest::option::of(arb_text()))
                .prop_map(|(token, provider_version)| Message::Token { token, provider_version }),
            arb_text().prop_map(Message::PermissionDenied),
            arb_text().prop_map(Message::Authenticated),
            arb_text().prop_map(Message::Stateless),
            proptest::option::of(arb_text()).prop_map(Message::Close),
            any::<bool>().prop_map(Message::SyncStatus),
        ]
    }

    fn arb_key() -> impl Strategy<Value = RoutingKey> {
        prop_oneof![
            "[a-z/ ]{0,20}".prop_map(RoutingKey::new),
            ("[a-z]{1,12}", "[a-z0-9]{1,12}").prop_map(|(n, s)| RoutingKey::with_session(&n, &s)),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(key in arb_key(), message in arb_message()) {
            let frame = Frame::Document { key, message };
            prop_assert_eq!(decode_frame(&frame.encode()).unwrap(), frame);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_frame(&Bytes::from(bytes));
        }

        #[test]
        fn every_strict_prefix_but_a_token_without_version_is_rejected(
            key in arb_key(),
            message in arb_message(),
        ) {
            let frame = Frame::Document { key, message: message.clone() }.encode();
            for end in 0..frame.len() {
                let cut = decode_frame(&frame.slice(..end));
                // Cutting off a whole trailing string leaves a shorter valid message: a v4 token
                // without its version, or a server close without its reason.
                let shorter_is_valid = matches!(
                    (&message, &cut),
                    (Message::Token { provider_version: Some(_), .. }, Ok(Frame::Document { message: Message::Token { provider_version: None, .. }, .. }))
                        | (Message::Close(Some(_)), Ok(Frame::Document { message: Message::Close(None), .. }))
                );
                let one_byte_frame = end == 1 && (frame[0] == 9 || frame[0] == 10);
                prop_assert!(cut.is_err() || shorter_is_valid || one_byte_frame, "prefix {} of {:?} decoded as {:?}", end, frame, cut);
            }
        }
    }

    #[test]
    fn frames_start_with_the_routing_key() {
        let prefix = routing_prefix("doc\0session");
        assert_eq!(prefix.as_ref(), b"\x0bdoc\0session");
        assert_eq!(sync_status(&prefix, true).as_ref(), b"\x0bdoc\0session\x08\x01");
        assert_eq!(stateless(&prefix, "hi").as_ref(), b"\x0bdoc\0session\x05\x02hi");
        assert_eq!(wrap(&prefix, &[0, 2, 0]).as_ref(), b"\x0bdoc\0session\x00\x02\x00");
        assert_eq!(authenticated(&prefix, SCOPE_READONLY).as_ref(), b"\x0bdoc\0session\x02\x02\x08readonly");
        assert_eq!(permission_denied(&prefix, "no").as_ref(), b"\x0bdoc\0session\x02\x01\x02no");
        assert_eq!(close(&prefix, "bye").as_ref(), b"\x0bdoc\0session\x07\x03bye");
    }

    #[test]
    fn routing_keys_split_at_the_first_nul() {
        let plain = RoutingKey::new("notes/plan");
        assert_eq!((plain.name(), plain.session()), ("notes/plan", None));
        assert_eq!(plain.document().unwrap().as_str(), "notes/plan");
        let v4 = RoutingKey::with_session("notes/plan", "k3x9");
        assert_eq!((v4.name(), v4.session()), ("notes/plan", Some("k3x9")));
        assert_eq!(v4.document().unwrap().as_str(), "notes/plan");
        assert_eq!(RoutingKey::new("a\0b\0c").session(), Some("b\0c"));
        assert_eq!(RoutingKey::new("").document(), Err(InvalidRoutingKey::Document(InvalidDocId::Empty)));
        assert_eq!(RoutingKey::new("\0s").document(), Err(InvalidRoutingKey::Document(InvalidDocId::Empty)));
        assert!(matches!(
            RoutingKey::new("tab\there").document(),
            Err(InvalidRoutingKey::Document(InvalidDocId::ControlCharacter))
        ));
        let long_session = RoutingKey::with_session("d", &"s".repeat(MAX_SESSION_BYTES + 1));
        assert!(matches!(long_session.document(), Err(InvalidRoutingKey::SessionTooLong { .. })));
        assert!(RoutingKey::new("x".repeat(MAX_DOC_ID_BYTES + 1)).document().is_err());
    }

    #[test]
    fn one_byte_frames_are_ping_and_pong() {
        assert_eq!(decode_frame(&Bytes::from_static(&[9])), Ok(Frame::Ping));
        assert_eq!(decode_frame(&Bytes::from_static(&[10])), Ok(Frame::Pong));
        assert_eq!(Frame::Ping.encode().as_ref(), PING);
        // A nine-byte routing key starts with the byte 9 but never stops there.
        let key = RoutingKey::new("ninechars");
        let frame = Frame::Document { key, message: Message::Stateless(String::new()) };
        assert_eq!(frame.encode()[0], 9);
        assert!(matches!(decode_frame(&frame.encode()), Ok(Frame::Document { .. })));
    }

    #[test]
    fn decode_errors_name_the_problem() {
        let f = |b: &'static [u8]| decode_frame(&Bytes::from_static(b));
        assert_eq!(f(b""), Err(DecodeError::Body(codec::DecodeError::Empty)));
        assert!(matches!(f(b"\x05ab"), Err(DecodeError::Body(codec::DecodeError::Truncated { .. }))));
        assert_eq!(f(b"\x01d\x06"), Err(DecodeError::UnknownMessageType(6)));
        assert_eq!(f(b"\x01d\x04\x00\x00\x00"), Err(DecodeError::UnknownMessageType(4)));
        assert_eq!(f(b"\x01d\x02\x07"), Err(DecodeError::UnknownAuthType(7)));
        assert_eq!(f(b"\x01d\x00\x09\x00"), Err(DecodeError::Body(codec::DecodeError::UnknownSyncType(9))));
        assert_eq!(f(b"\x01d\x05\x01xyz"), Err(DecodeError::TrailingBytes(2)));
        assert_eq!(f(b"\x01d\x03\x03"), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(f(b"\x01d\x00\x02\x02\x00\x00\x03"), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(f(b"\x02\xff\xfe\x05\x00"), Err(DecodeError::Body(codec::DecodeError::InvalidUtf8)));
        assert_eq!(f(b"\x01d"), Err(DecodeError::Body(codec::DecodeError::Truncated { needed: 1 })));
    }

    #[test]
    fn yjs_payloads_borrow_the_frame() {
        let update = codec::Message::Update(Bytes::from_static(&[1, 2, 3]));
        let frame = Frame::Document { key: RoutingKey::new("d"), message: Message::Yjs(update) }.encode();
        let Ok(Frame::Document { message: Message::Yjs(codec::Message::Update(payload)), .. }) =
            decode_frame(&frame)
        else {
            panic!("not an update")
        };
        assert_eq!(payload.as_ptr(), frame[5..].as_ptr());
    }
}
