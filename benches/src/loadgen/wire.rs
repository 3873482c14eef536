//! What the load generator says on the wire, in each dialect it can speak: y-websocket (bare
//! y-protocols messages) and Hocuspocus (the same bodies behind a `varString` document name, after an
//! auth exchange).
//!
//! Outgoing y-protocols bodies are encoded with Weft's own codec (`weft_sync_core::yjs::Message`).
//! Incoming frames are only classified, not validated: the generator needs to know which payload is a
//! document update or a sync step 2 so it can scan it for edit markers, and ignores everything else
//! (sync status, pings, awareness it did not ask about).

use bytes::Bytes;
use weft_sync_core::yjs::Message;

/// lib0 message types the generator tells apart.
const MESSAGE_SYNC: u64 = 0;
const MESSAGE_AWARENESS: u64 = 1;
const MESSAGE_AUTH: u64 = 2;
/// Hocuspocus' "sync reply": a sync message that does not ask for another step 1.
const MESSAGE_SYNC_REPLY: u64 = 4;
const SYNC_STEP1: u64 = 0;
const SYNC_STEP2: u64 = 1;
const SYNC_UPDATE: u64 = 2;
/// Hocuspocus auth sub-types.
const AUTH_TOKEN: u64 = 0;
const AUTH_PERMISSION_DENIED: u64 = 1;
const AUTH_AUTHENTICATED: u64 = 2;

/// The protocol spoken to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// y-websocket: one document per socket, bare y-protocols messages (Weft, @y/websocket-server,
    /// y-sweet).
    Yjs,
    /// Hocuspocus: every message prefixed with the document name, and a token exchange first.
    Hocuspocus,
}

/// What one incoming message is, as far as the generator cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The server's sync step 1.
    SyncStep1,
    /// A sync step 2: everything the client lacked.
    SyncStep2(Bytes),
    /// An incremental document update.
    Update(Bytes),
    /// An awareness update.
    Awareness(Bytes),
    /// Hocuspocus: the token was accepted.
    Authenticated,
    /// Hocuspocus: the token was refused, with the server's reason.
    PermissionDenied(String),
    /// Anything else (sync status, ping, query awareness, auth from y-websocket servers).
    Other,
}

/// Frames for one document in one dialect.
#[derive(Debug, Clone)]
pub struct Framing {
    dialect: Dialect,
    /// The `varString` document name Hocuspocus puts before every message; empty for y-websocket.
    prefix: Vec<u8>,
}

impl Framing {
    /// Framing for `doc` in `dialect`.
    pub fn new(dialect: Dialect, doc: &str) -> Self {
        let prefix = match dialect {
            Dialect::Yjs => Vec::new(),
            Dialect::Hocuspocus => {
                let mut prefix = Vec::with_capacity(doc.len() + 2);
                write_var(&mut prefix, doc.len() as u64);
                prefix.extend_from_slice(doc.as_bytes());
                prefix
            }
        };
        Self { dialect, prefix }
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The first frame to send after connecting, if the dialect needs one (Hocuspocus: the token).
    pub fn hello(&self) -> Option<Bytes> {
        match self.dialect {
            Dialect::Yjs => None,
            Dialect::Hocuspocus => {
                let mut out = self.prefix.clone();
                write_var(&mut out, MESSAGE_AUTH);
                write_var(&mut out, AUTH_TOKEN);
                // No auth hook runs on the peers under test, so any token is accepted.
                write_var(&mut out, 5);
                out.extend_from_slice(b"bench");
                Some(Bytes::from(out))
            }
        }
    }

    /// Whether the handshake must wait for [`Incoming::Authenticated`] before sync step 1.
    pub fn needs_auth(&self) -> bool {
        self.dialect == Dialect::Hocuspocus
    }

    /// Sync step 1 of a client holding nothing.
    pub fn empty_step1(&self) -> Bytes {
        self.wrap(&Message::SyncStep1(Bytes::from_static(&[0])))
    }

    /// A document update message.
    pub fn update(&self, update: Bytes) -> Bytes {
        self.wrap(&Message::Update(update))
    }

    /// An awareness message carrying an encoded awareness update.
    pub fn awareness(&self, payload: Bytes) -> Bytes {
        self.wrap(&Message::Awareness(payload))
    }

    fn wrap(&self, message: &Message) -> Bytes {
        if self.prefix.is_empty() {
            return message.encode();
        }
        let mut out = self.prefix.clone();
        message.encode_into(&mut out);
        Bytes::from(out)
    }

    /// Classifies every message in `frame`, handing each to `each`. Stops quietly at the first byte
    /// it cannot follow: a frame the generator does not understand is not its business to reject.
    pub fn classify(&self, frame: &Bytes, mut each: impl FnMut(Incoming)) {
        let mut reader = Reader { frame, pos: 0 };
        while reader.pos < frame.len() {
            if self.dialect == Dialect::Hocuspocus && reader.bytes().is_none() {
                return;
            }
            match reader.message(self.dialect) {
                Some(incoming) => each(incoming),
                None => return,
            }
            // Hocuspocus sends one message per frame, and messages of its own types (sync status,
            // ping) cannot be skipped without knowing their bodies.
            if self.dialect == Dialect::Hocuspocus {
                return;
            }
        }
    }
}

/// A cursor over one frame.
struct Reader<'a> {
    frame: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn var(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.frame.get(self.pos)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<Bytes> {
        let len = usize::try_from(self.var()?).ok()?;
        let end = self.pos.checked_add(len)?;
        if end > self.frame.len() {
            return None;
        }
        let out = self.frame.slice(self.pos..end);
        self.pos = end;
        Some(out)
    }

    fn message(&mut self, dialect: Dialect) -> Option<Incoming> {
        match self.var()? {
            MESSAGE_SYNC | MESSAGE_SYNC_REPLY => {
                let sub = self.var()?;
                let payload = self.bytes()?;
                Some(match sub {
                    SYNC_STEP1 => Incoming::SyncStep1,
                    SYNC_STEP2 => Incoming::SyncStep2(payload),
                    SYNC_UPDATE => Incoming::Update(payload),
                    _ => Incoming::Other,
                })
            }
            MESSAGE_AWARENESS => Some(Incoming::Awareness(self.bytes()?)),
            MESSAGE_AUTH if dialect == Dialect::Hocuspocus => match self.var()? {
                AUTH_AUTHENTICATED => Some(Incoming::Authenticated),
                AUTH_PERMISSION_DENIED => {
                    let reason = self.bytes()?;
                    Some(Incoming::PermissionDenied(String::from_utf8_lossy(&reason).into_owned()))
                }
                _ => Some(Incoming::Other),
            },
            _ => Some(Incoming::Other),
        }
    }
}

fn write_var(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_all(framing: &Framing, frame: Bytes) -> Vec<Incoming> {
        let mut out = Vec::new();
        framing.classify(&frame, |incoming| out.push(incoming));
        out
    }

    #[test]
    fn yjs_frames_are_bare_y_protocols_messages() {
        let framing = Framing::new(Dialect::Yjs, "doc");
        assert_eq!(framing.empty_step1().as_ref(), [0, 0, 1, 0]);
        assert!(framing.hello().is_none());
        let update = framing.update(Bytes::from_static(b"xyz"));
        assert_eq!(classify_all(&framing, update), [Incoming::Update(Bytes::from_static(b"xyz"))]);
    }

    #[test]
    fn hocuspocus_frames_carry_the_document_name() {
        let framing = Framing::new(Dialect::Hocuspocus, "doc");
        assert_eq!(framing.empty_step1().as_ref(), [3, b'd', b'o', b'c', 0, 0, 1, 0]);
        let hello = framing.hello().expect("hocuspocus sends a token first");
        assert_eq!(&hello[..6], [3, b'd', b'o', b'c', 2, 0]);
        let authenticated = Bytes::from_static(&[3, b'd', b'o', b'c', 2, 2, 10]);
        assert_eq!(classify_all(&framing, authenticated), [Incoming::Authenticated]);
        // A sync reply (type 4) carrying step 2.
        let reply = Bytes::from_static(&[3, b'd', b'o', b'c', 4, 1, 2, 0, 0]);
        assert_eq!(classify_all(&framing, reply), [Incoming::SyncStep2(Bytes::from_static(&[0, 0]))]);
    }

    #[test]
    fn truncated_frames_are_ignored() {
        let framing = Framing::new(Dialect::Yjs, "doc");
        assert!(classify_all(&framing, Bytes::from_static(&[0, 2, 9, 1])).is_empty());
    }
}
