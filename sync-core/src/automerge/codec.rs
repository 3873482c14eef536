//! The automerge-repo network protocol as it travels over a WebSocket: one CBOR map per binary
//! frame, told apart by its `type` field. Field names and shapes follow
//! `@automerge/automerge-repo` (`network/messages.ts`) and `@automerge/automerge-repo-network-websocket`
//! (`messages.ts`), protocol version `"1"`.
//!
//! Decoding is lenient where the JavaScript implementation is (unknown fields are ignored; the join
//! message's metadata may be called `metadata` or `peerMetadata`; a missing
//! `supportedProtocolVersions` means version 1) and strict where a wrong value would mislead the relay
//! (a missing or mistyped required field, an invalid document id, trailing bytes). Encoding always
//! emits `peerMetadata`.
//!
//! This module reads and writes frames only. It does not interpret the Automerge sync messages
//! carried in `data` (see [`super::relay`]) and knows nothing about connections.

use std::fmt;

use bytes::Bytes;
use ciborium::Value;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use sha2::{Digest, Sha256};

/// The only protocol version automerge-repo's WebSocket adapters speak.
pub const PROTOCOL_V1: &str = "1";

/// Longest accepted document id, in bytes (the `DocId` limit; real ids are about 28 characters).
pub const MAX_DOCUMENT_ID_BYTES: usize = 512;

/// An automerge-repo document id: the base58check encoding of the document's binary id (a 16-byte
/// UUID for documents made by `Repo.create`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId(String);

/// Why a string is not a valid [`DocumentId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDocumentId {
    /// The string is longer than [`MAX_DOCUMENT_ID_BYTES`].
    #[error("document id is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Length of the rejected id in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The string is not base58 (it is empty or holds a character outside the alphabet).
    #[error("document id is not base58")]
    NotBase58,
    /// The base58 decodes, but its last four bytes are not the checksum of the rest (or there is
    /// no rest).
    #[error("document id has a wrong base58check checksum")]
    BadChecksum,
}

impl DocumentId {
    /// Validates `id` the way automerge-repo's `isValidDocumentId` does: it must decode as
    /// base58check with a non-empty payload.
    ///
    /// # Errors
    /// [`InvalidDocumentId`] when it does not.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidDocumentId> {
        let id = id.into();
        if id.len() > MAX_DOCUMENT_ID_BYTES {
            return Err(InvalidDocumentId::TooLong { len: id.len(), max: MAX_DOCUMENT_ID_BYTES });
        }
        if id.is_empty() {
            return Err(InvalidDocumentId::NotBase58);
        }
        let raw = bs58::decode(&id).into_vec().map_err(|_| InvalidDocumentId::NotBase58)?;
        if raw.len() <= 4 {
            return Err(InvalidDocumentId::BadChecksum);
        }
        let (payload, checksum) = raw.split_at(raw.len() - 4);
        if checksum != &double_sha256(payload)[..4] {
            return Err(InvalidDocumentId::BadChecksum);
        }
        Ok(Self(id))
    }

    /// The document id for the binary id `payload` (base58check of it).
    ///
    /// # Panics
    /// Never for the 16-byte ids automerge-repo uses; only if `payload` is so long that its
    /// encoding exceeds [`MAX_DOCUMENT_ID_BYTES`] — callers pass short ids.
    pub fn from_binary(payload: &[u8]) -> Self {
        let mut raw = payload.to_vec();
        raw.extend_from_slice(&double_sha256(payload)[..4]);
        let id = bs58::encode(raw).into_string();
        assert!(id.len() <= MAX_DOCUMENT_ID_BYTES, "binary document id too long");
        Self(id)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({:?})", self.0)
    }
}

fn double_sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(data)).into()
}

/// How a peer presents itself (`peerMetadata`). Fields Weft does not know are dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerMetadata {
    /// The id of the peer's storage, if it has persistent storage it wants remembered.
    pub storage_id: Option<String>,
    /// Whether the peer keeps no state between sessions.
    pub is_ephemeral: Option<bool>,
}

/// `join`: the first message a client sends on a socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    /// The client's peer id.
    pub sender_id: String,
    /// The client's metadata (`peerMetadata`, or `metadata` from older clients).
    pub peer_metadata: Option<PeerMetadata>,
    /// Protocol versions the client speaks; `None` (absent) means version 1 only.
    pub supported_protocol_versions: Option<Vec<String>>,
}

/// `peer`: the server's answer to a `join`.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// The server's peer id.
    pub sender_id: String,
    /// The client's peer id.
    pub target_id: String,
    /// The server's metadata.
    pub peer_metadata: PeerMetadata,
    /// The protocol version chosen for this connection.
    pub selected_protocol_version: String,
}

/// `sync` or `request`: an Automerge sync message for one document. A `request` is the first sync
/// message of a peer that does not have the document and asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct DocSync {
    /// The sending peer.
    pub sender_id: String,
    /// The receiving peer.
    pub target_id: String,
    /// The document the sync message is about.
    pub document_id: DocumentId,
    /// The encoded Automerge sync message.
    pub data: Bytes,
}

/// `doc-unavailable`: the sender does not have the document, and none of its other peers do.
#[derive(Debug, Clone, PartialEq)]
pub struct DocUnavailable {
    /// The sending peer.
    pub sender_id: String,
    /// The receiving peer.
    pub target_id: String,
    /// The document it does not have.
    pub document_id: DocumentId,
}

/// `ephemeral`: application data about a document (presence, cursors) that is relayed, never stored.
/// `(sender_id, session_id, count)` identifies one message: peers drop counts they have seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Ephemeral {
    /// The peer that created the message (kept as it is relayed).
    pub sender_id: String,
    /// The receiving peer.
    pub target_id: String,
    /// The document the message is about.
    pub document_id: DocumentId,
    /// The sender's session, chosen at random when its repo starts.
    pub session_id: String,
    /// Increases with every ephemeral message of the session.
    pub count: u64,
    /// The application's payload (CBOR in automerge-repo, opaque to Weft).
    pub data: Bytes,
}

/// `remote-subscription-change`: add or remove storage ids whose heads the sender wants to hear about.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSubscriptionChange {
    /// The sending peer.
    pub sender_id: String,
    /// The receiving peer.
    pub target_id: String,
    /// Storage ids to subscribe to.
    pub add: Option<Vec<String>>,
    /// Storage ids to unsubscribe from.
    pub remove: Option<Vec<String>>,
}

/// The heads one storage peer reported for a document.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteHeads {
    /// The heads, as automerge-repo spells them (hex strings).
    pub heads: Vec<String>,
    /// When they were reported, in milliseconds since the Unix epoch.
    pub timestamp: f64,
}

/// `remote-heads-changed`: the heads of a document changed on some storage peers.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteHeadsChanged {
    /// The sending peer.
    pub sender_id: String,
    /// The receiving peer.
    pub target_id: String,
    /// The document whose heads changed.
    pub document_id: DocumentId,
    /// The new heads per storage id.
    pub new_heads: Vec<(String, RemoteHeads)>,
}

/// `error`: something went wrong; the sender closes the connection after it.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorMessage {
    /// The sending peer, if it said.
    pub sender_id: Option<String>,
    /// The receiving peer, if it said.
    pub target_id: Option<String>,
    /// What went wrong, for people.
    pub message: String,
}

/// One automerge-repo message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `join`
    Join(Join),
    /// `peer`
    Peer(Peer),
    /// `request`
    Request(DocSync),
    /// `sync`
    Sync(DocSync),
    /// `doc-unavailable`
    DocUnavailable(DocUnavailable),
    /// `ephemeral`
    Ephemeral(Ephemeral),
    /// `remote-subscription-change`
    RemoteSubscriptionChange(RemoteSubscriptionChange),
    /// `remote-heads-changed`
    RemoteHeadsChanged(RemoteHeadsChanged),
    /// `error`
    Error(ErrorMessage),
}

/// Why a frame is not an automerge-repo message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is empty.
    #[error("empty frame")]
    Empty,
    /// The bytes are not one well-formed CBOR item.
    #[error("not CBOR: {0}")]
    Cbor(String),
    /// Bytes follow the CBOR item.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The item is not a map.
    #[error("the message is not a CBOR map")]
    NotAMap,
    /// The map has no text `type` field.
    #[error("the message has no text `type` field")]
    MissingType,
    /// The `type` is not one this protocol version defines.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A required field is absent (or null).
    #[error("{message_type} message lacks `{field}`")]
    MissingField {
        /// The message's `type`.
        message_type: &'static str,
        /// The absent field.
        field: &'static str,
    },
    /// A field has the wrong CBOR type.
    #[error("`{field}` of a {message_type} message is not {expected}")]
    WrongType {
        /// The message's `type`.
        message_type: &'static str,
        /// The mistyped field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// `documentId` is not a valid document id.
    #[error("invalid documentId: {0}")]
    InvalidDocumentId(#[from] InvalidDocumentId),
}

/// Decodes one frame. See the module documentation for what is accepted.
///
/// # Errors
/// [`DecodeError`] when the frame is not exactly one valid message.
pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
    if frame.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut rest = frame;
    // ciborium reads byte and text strings in bounded chunks and caps nesting at 256 levels, so a
    // hostile length or depth costs an error, not memory or stack.
    let value: Value = ciborium::from_reader(&mut rest).map_err(|e| DecodeError::Cbor(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    let Value::Map(entries) = value else { return Err(DecodeError::NotAMap) };
    let mut fields = Fields { entries, message_type: "" };
    let message_type = match fields.take("type") {
        Some(Value::Text(t)) => t,
        _ => return Err(DecodeError::MissingType),
    };
    let Some(message_type) = KNOWN_TYPES.iter().copied().find(|known| *known == message_type) else {
        return Err(DecodeError::UnknownType(message_type));
    };
    fields.message_type = message_type;
    let f = &mut fields;
    Ok(match message_type {
        "join" => Message::Join(Join {
            sender_id: f.text("senderId")?,
            // Older clients called it `metadata`; current ones `peerMetadata`.
            peer_metadata: match f.optional_metadata("peerMetadata")? {
                Some(metadata) => Some(metadata),
                None => f.optional_metadata("metadata")?,
            },
            supported_protocol_versions: f.optional_text_list("supportedProtocolVersions")?,
        }),
        "peer" => Message::Peer(Peer {
            sender_id: f.text("senderId")?,
            target_id: f.text("targetId")?,
            peer_metadata: match f.optional_metadata("peerMetadata")? {
                Some(metadata) => metadata,
                None => f.optional_metadata("metadata")?.unwrap_or_default(),
            },
            selected_protocol_version: f.text("selectedProtocolVersion")?,
        }),
        "request" | "sync" => {
            let sync = DocSync {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                document_id: f.document_id()?,
                data: f.bytes("data")?,
            };
            if message_type == "sync" { Message::Sync(sync) } else { Message::Request(sync) }
        }
        "doc-unavailable" => Message::DocUnavailable(DocUnavailable {
            sender_id: f.text("senderId")?,
            target_id: f.text("targetId")?,
            document_id: f.document_id()?,
        }),
        "ephemeral" => Message::Ephemeral(Ephemeral {
            sender_id: f.text("senderId")?,
            target_id: f.text("targetId")?,
            document_id: f.document_id()?,
            session_id: f.text("sessionId")?,
            count: f.count("count")?,
            data: f.bytes("data")?,
        }),
        "remote-subscription-change" => Message::RemoteSubscriptionChange(RemoteSubscriptionChange {
            sender_id: f.text("senderId")?,
            target_id: f.text("targetId")?,
            add: f.optional_text_list("add")?,
            remove: f.optional_text_list("remove")?,
        }),
        "remote-heads-changed" => Message::RemoteHeadsChanged(RemoteHeadsChanged {
            sender_id: f.text("senderId")?,
            target_id: f.text("targetId")?,
            document_id: f.document_id()?,
            new_heads: f.new_heads()?,
        }),
        // The only type left in KNOWN_TYPES.
        _ => Message::Error(ErrorMessage {
            sender_id: f.optional_text("senderId")?,
            target_id: f.optional_text("targetId")?,
            message: f.text("message")?,
        }),
    })
}

const KNOWN_TYPES: [&str; 9] = [
    "join",
    "peer",
    "request",
    "sync",
    "doc-unavailable",
    "ephemeral",
    "remote-subscription-change",
    "remote-heads-changed",
    "error",
];

/// The fields of a decoded map, taken one by one.
struct Fields {
    entries: Vec<(Value, Value)>,
    message_type: &'static str,
}

impl Fields {
    /// Removes and returns the value of `key`; the last entry wins, as in a JavaScript object. A
    /// CBOR `null` or `undefined` counts as absent, as `undefined` fields do in JavaScript.
    fn take(&mut self, key: &str) -> Option<Value> {
        let mut found = None;
        for (k, v) in &mut self.entries {
            if matches!(k, Value::Text(t) if t == key) {
                found = Some(std::mem::replace(v, Value::Null));
            }
        }
        found.filter(|v| !v.is_null())
    }

    fn missing(&self, field: &'static str) -> DecodeError {
        DecodeError::MissingField { message_type: self.message_type, field }
    }

    fn wrong(&self, field: &'static str, expected: &'static str) -> DecodeError {
        DecodeError::WrongType { message_type: self.message_type, field, expected }
    }

    fn text(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.optional_text(field)?.ok_or_else(|| self.missing(field))
    }

    fn optional_text(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Text(t)) => Ok(Some(t)),
            Some(_) => Err(self.wrong(field, "a text string")),
        }
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        match self.take(field) {
            None => Err(self.missing(field)),
            Some(value) => match untag(value) {
                Value::Bytes(b) => Ok(Bytes::from(b)),
                _ => Err(self.wrong(field, "a byte string")),
            },
        }
    }

    fn count(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        match self.take(field) {
            None => Err(self.missing(field)),
            Some(value) => as_u64(&value).ok_or_else(|| self.wrong(field, "a non-negative integer")),
        }
    }

    fn document_id(&mut self) -> Result<DocumentId, DecodeError> {
        Ok(DocumentId::new(self.text("documentId")?)?)
    }

    fn optional_text_list(&mut self, field: &'static str) -> Result<Option<Vec<String>>, DecodeError> {
        match self.take(field) {
            None => Ok(None),
            Some(value) => text_list(value).map(Some).ok_or_else(|| self.wrong(field, "an array of text")),
        }
    }

    fn optional_metadata(&mut self, field: &'static str) -> Result<Option<PeerMetadata>, DecodeError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Map(entries)) => {
                let mut inner = Fields { entries, message_type: self.message_type };
                let storage_id = match inner.take("storageId") {
                    Some(Value::Text(t)) => Some(t),
                    // A storage id Weft cannot read is one it cannot use; it is not an error.
                    _ => None,
                };
                let is_ephemeral = match inner.take("isEphemeral") {
                    Some(Value::Bool(b)) => Some(b),
                    _ => None,
                };
                Ok(Some(PeerMetadata { storage_id, is_ephemeral }))
            }
            Some(_) => Err(self.wrong(field, "a map")),
        }
    }

    fn new_heads(&mut self) -> Result<Vec<(String, RemoteHeads)>, DecodeError> {
        const FIELD: &str = "newHeads";
        const EXPECTED: &str = "a map of storage id to {heads, timestamp}";
        let Some(value) = self.take(FIELD) else { return Err(self.missing(FIELD)) };
        let Value::Map(entries) = value else { return Err(self.wrong(FIELD, EXPECTED)) };
        let mut out = Vec::with_capacity(entries.len());
        for (storage_id, info) in entries {
            let (Value::Text(storage_id), Value::Map(info)) = (storage_id, info) else {
                return Err(self.wrong(FIELD, EXPECTED));
            };
            let mut info = Fields { entries: info, message_type: self.message_type };
            let heads = info.take("heads").and_then(text_list);
            let timestamp = info.take("timestamp").and_then(|t| as_f64(&t));
            let (Some(heads), Some(timestamp)) = (heads, timestamp) else {
                return Err(self.wrong(FIELD, EXPECTED));
            };
            out.push((storage_id, RemoteHeads { heads, timestamp }));
        }
        Ok(out)
    }
}

/// Removes CBOR tags: cbor-x may tag typed arrays (tag 64 for a `Uint8Array`).
fn untag(mut value: Value) -> Value {
    while let Value::Tag(_, inner) = value {
        value = *inner;
    }
    value
}

fn text_list(value: Value) -> Option<Vec<String>> {
    let Value::Array(items) = value else { return None };
    items
        .into_iter()
        .map(|item| match item {
            Value::Text(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// A JavaScript number that is a non-negative integer (cbor-x writes whole numbers as integers, but
/// a float with an integral value means the same).
fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Integer(i) => u64::try_from(*i).ok(),
        Value::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64 => Some(*f as u64),
        _ => None,
    }
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(i) => Some(i128::from(*i) as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

impl Message {
    /// Decodes one frame; see [`decode`].
    ///
    /// # Errors
    /// As [`decode`].
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        decode(frame)
    }

    /// The message's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Join(_) => "join",
            Self::Peer(_) => "peer",
            Self::Request(_) => "request",
            Self::Sync(_) => "sync",
            Self::DocUnavailable(_) => "doc-unavailable",
            Self::Ephemeral(_) => "ephemeral",
            Self::RemoteSubscriptionChange(_) => "remote-subscription-change",
            Self::RemoteHeadsChanged(_) => "remote-heads-changed",
            Self::Error(_) => "error",
        }
    }

    /// The document the message is about, for the messages that name one.
    pub fn document_id(&self) -> Option<&DocumentId> {
        match self {
            Self::Request(m) | Self::Sync(m) => Some(&m.document_id),
            Self::DocUnavailable(m) => Some(&m.document_id),
            Self::Ephemeral(m) => Some(&m.document_id),
            Self::RemoteHeadsChanged(m) => Some(&m.document_id),
            Self::Join(_) | Self::Peer(_) | Self::RemoteSubscriptionChange(_) | Self::Error(_) => None,
        }
    }

    /// Encodes the message as one CBOR map, `type` first, the way automerge-repo writes it.
    pub fn encode(&self) -> Bytes {
        let mut map: Vec<(&str, Field<'_>)> = vec![("type", Field::Text(self.type_name()))];
        match self {
            Self::Join(m) => {
                map.push(("senderId", Field::Text(&m.sender_id)));
                if let Some(metadata) = &m.peer_metadata {
                    map.push(("peerMetadata", Field::Metadata(metadata)));
                }
                if let Some(versions) = &m.supported_protocol_versions {
                    map.push(("supportedProtocolVersions", Field::TextList(versions)));
                }
            }
            Self::Peer(m) => {
                map.push(("senderId", Field::Text(&m.sender_id)));
                map.push(("targetId", Field::Text(&m.target_id)));
                map.push(("peerMetadata", Field::Metadata(&m.peer_metadata)));
                map.push(("selectedProtocolVersion", Field::Text(&m.selected_protocol_version)));
            }
            Self::Request(m) | Self::Sync(m) => {
                map.push(("senderId", Field::Text(&m.sender_id)));
                map.push(("targetId", Field::Text(&m.target_id)));
                map.push(("documentId", Field::Text(m.document_id.as_str())));
                map.push(("data", Field::Bytes(&m.data)));
            }
            Self::DocUnavailable(m) => {
                map.push(("senderId", Field::Text(&m.sender_id)));
                map.push(("targetId", Field::Text(&m.target_id)));
                map.push(("documentId", Field::Text(m.document_id.as_str())));
            }
            Self::Ephemeral(m) => {
                map.push(("senderId", Field::Text(&m.sender_id)));
                map.push(("targetId", Field::Text(&m.target_id)));
                map.push(("documentId", Field::Text(m.document_id.as_str())));
                map.push(("sessionId", Field::Text(&m.session_id)));
                map.push(("count", Field::UInt(m.count)));
                map.push(("data", Field::Bytes(&m.data)));
            }
            Self::RemoteSubscriptionChange(m) => {
                map.push(("senderId", Field::Text(&m.sender_id)));
                map.push(("targetId", Field::Text(&m.target_id)));
                if let Some(add) = &m.add {
                    map.push(("add", Field::TextList(add)));
                }
                if let Some(remove) = &m.remove {
                    map.push(("remove", Field::TextList(remove)));
                }
            }
            Self::RemoteHeadsChanged(m) => {
                map.push(("senderId", Field::Text(&m.sender_id)));
                map.push(("targetId", Field::Text(&m.target_id)));
                map.push(("documentId", Field::Text(m.document_id.as_str())));
                map.push(("newHeads", Field::NewHeads(&m.new_heads)));
            }
            Self::Error(m) => {
                if let Some(sender) = &m.sender_id {
                    map.push(("senderId", Field::Text(sender)));
                }
                if let Some(target) = &m.target_id {
                    map.push(("targetId", Field::Text(target)));
                }
                map.push(("message", Field::Text(&m.message)));
            }
        }
        let mut out = Vec::with_capacity(64 + self.payload_len());
        // Holds: writing to a Vec cannot fail, and every field serializes to plain CBOR.
        ciborium::into_writer(&FieldMap(&map), &mut out).expect("encoding to memory cannot fail");
        Bytes::from(out)
    }

    fn payload_len(&self) -> usize {
        match self {
            Self::Request(m) | Self::Sync(m) => m.data.len(),
            Self::Ephemeral(m) => m.data.len(),
            _ => 0,
        }
    }
}

/// A field value to encode, borrowed from the message so that payloads are copied only once, into
/// the frame.
enum Field<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
    UInt(u64),
    Bool(bool),
    /// A JavaScript number.
    Number(f64),
    TextList(&'a [String]),
    Metadata(&'a PeerMetadata),
    NewHeads(&'a [(String, RemoteHeads)]),
}

struct FieldMap<'a>(&'a [(&'a str, Field<'a>)]);

impl Serialize for FieldMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

struct TextList<'a>(&'a [String]);

impl Serialize for TextList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Text(t) => serializer.serialize_str(t),
            Self::Bytes(b) => serializer.serialize_bytes(b),
            Self::UInt(n) => serializer.serialize_u64(*n),
            Self::TextList(items) => TextList(items).serialize(serializer),
            Self::Metadata(metadata) => {
                let mut fields = Vec::new();
                if let Some(storage_id) = &metadata.storage_id {
                    fields.push(("storageId", Field::Text(storage_id)));
                }
                if let Some(is_ephemeral) = metadata.is_ephemeral {
                    fields.push(("isEphemeral", Field::Bool(is_ephemeral)));
                }
                FieldMap(&fields).serialize(serializer)
            }
            Self::NewHeads(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (storage_id, heads) in *entries {
                    let info = [
                        ("heads", Field::TextList(&heads.heads)),
                        ("timestamp", Field::Number(heads.timestamp)),
                    ];
                    map.serialize_entry(storage_id, &FieldMap(&info))?;
                }
                map.end()
            }
            Self::Bool(b) => serializer.serialize_bool(*b),
            Self::Number(n) => {
                // JavaScript has one number type; whole values go out as integers, like cbor-x does.
                if n.fract() == 0.0 && *n >= 0.0 && *n < u64::MAX as f64 {
                    serializer.serialize_u64(*n as u64)
                } else {
                    serializer.serialize_f64(*n)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_id() -> DocumentId {
        DocumentId::from_binary(&[7; 16])
    }

    fn cbor(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).unwrap();
        out
    }

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(entries.iter().map(|(k, v)| (Value::Text((*k).into()), v.clone())).collect())
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn every_message_round_trips() {
        let metadata = PeerMetadata { storage_id: Some("store-1".into()), is_ephemeral: Some(false) };
        let messages = vec![
            Message::Join(Join {
                sender_id: "client".into(),
                peer_metadata: Some(metadata.clone()),
                supported_protocol_versions: Some(vec![PROTOCOL_V1.into()]),
            }),
            Message::Peer(Peer {
                sender_id: "weft".into(),
                target_id: "client".into(),
                peer_metadata: metadata,
                selected_protocol_version: PROTOCOL_V1.into(),
            }),
            Message::Request(DocSync {
                sender_id: "a".into(),
                target_id: "b".into(),
                document_id: doc_id(),
                data: Bytes::from_static(&[0x42, 0, 0, 0, 0]),
            }),
            Message::Sync(DocSync {
                sender_id: "a".into(),
                target_id: "b".into(),
                document_id: doc_id(),
                data: Bytes::from_static(&[0x42, 1]),
            }),
            Message::DocUnavailable(DocUnavailable {
                sender_id: "a".into(),
                target_id: "b".into(),
                document_id: doc_id(),
            }),
            Message::Ephemeral(Ephemeral {
                sender_id: "a".into(),
                target_id: "b".into(),
                document_id: doc_id(),
                session_id: "s".into(),
                count: 1 << 40,
                data: Bytes::from_static(b"\xa1\x61x\x01"),
            }),
            Message::RemoteSubscriptionChange(RemoteSubscriptionChange {
                sender_id: "a".into(),
                target_id: "b".into(),
                add: Some(vec!["s1".into()]),
                remove: None,
            }),
            Message::RemoteHeadsChanged(RemoteHeadsChanged {
                sender_id: "a".into(),
                target_id: "b".into(),
                document_id: doc_id(),
                new_heads: vec![("s1".into(), RemoteHeads { heads: vec!["ab".into()], timestamp: 17.0 })],
            }),
            Message::Error(ErrorMessage { sender_id: None, target_id: None, message: "nope".into() }),
        ];
        for message in messages {
            let frame = message.encode();
            assert_eq!(decode(&frame), Ok(message.clone()), "{}", message.type_name());
        }
    }

    #[test]
    fn join_accepts_metadata_under_either_name_and_defaults_the_version() {
        let old = map(&[
            ("type", text("join")),
            ("senderId", text("c")),
            ("metadata", map(&[("isEphemeral", Value::Bool(true))])),
        ]);
        let Ok(Message::Join(join)) = decode(&cbor(&old)) else { panic!("decodes") };
        assert_eq!(join.peer_metadata, Some(PeerMetadata { storage_id: None, is_ephemeral: Some(true) }));
        assert_eq!(join.supported_protocol_versions, None);
        // Encoding always says `peerMetadata`.
        let reencoded: Value = ciborium::from_reader(&Message::Join(join).encode()[..]).unwrap();
        let Value::Map(entries) = reencoded else { panic!("a map") };
        assert!(entries.iter().any(|(k, _)| k == &text("peerMetadata")));
        assert!(!entries.iter().any(|(k, _)| k == &text("metadata")));
    }

    #[test]
    fn sync_data_may_be_tagged_and_unknown_fields_are_ignored() {
        let value = map(&[
            ("type", text("sync")),
            ("senderId", text("a")),
            ("targetId", text("b")),
            ("documentId", text(doc_id().as_str())),
            ("data", Value::Tag(64, Box::new(Value::Bytes(vec![1, 2])))),
            ("somethingNew", Value::Integer(5.into())),
        ]);
        let Ok(Message::Sync(sync)) = decode(&cbor(&value)) else { panic!("decodes") };
        assert_eq!(sync.data.as_ref(), [1, 2]);
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert!(matches!(decode(&[0xff, 0x00]), Err(DecodeError::Cbor(_))));
        // A byte string that claims 2^62 bytes but has none: an error, no allocation.
        assert!(matches!(decode(&[0x5b, 0x40, 0, 0, 0, 0, 0, 0, 0]), Err(DecodeError::Cbor(_))));
        assert_eq!(decode(&cbor(&Value::Array(vec![]))), Err(DecodeError::NotAMap));
        assert_eq!(decode(&cbor(&map(&[("senderId", text("a"))]))), Err(DecodeError::MissingType));
        assert_eq!(
            decode(&cbor(&map(&[("type", text("shout"))]))),
            Err(DecodeError::UnknownType("shout".into()))
        );
        let mut trailing = cbor(&map(&[("type", text("join")), ("senderId", text("a"))]));
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(DecodeError::TrailingBytes(1)));
        let no_data = map(&[
            ("type", text("sync")),
            ("senderId", text("a")),
            ("targetId", text("b")),
            ("documentId", text(doc_id().as_str())),
        ]);
        assert_eq!(
            decode(&cbor(&no_data)),
            Err(DecodeError::MissingField { message_type: "sync", field: "data" })
        );
        let text_data = map(&[
            ("type", text("sync")),
            ("senderId", text("a")),
            ("targetId", text("b")),
            ("documentId", text(doc_id().as_str())),
            ("data", text("not bytes")),
        ]);
        assert!(matches!(decode(&cbor(&text_data)), Err(DecodeError::WrongType { field: "data", .. })));
        let bad_doc = map(&[
            ("type", text("doc-unavailable")),
            ("senderId", text("a")),
            ("targetId", text("b")),
            ("documentId", text("not-a-document")),
        ]);
        assert!(matches!(decode(&cbor(&bad_doc)), Err(DecodeError::InvalidDocumentId(_))));
        let negative_count = map(&[
            ("type", text("ephemeral")),
            ("senderId", text("a")),
            ("targetId", text("b")),
            ("documentId", text(doc_id().as_str())),
            ("sessionId", text("s")),
            ("count", Value::Integer((-1).into())),
            ("data", Value::Bytes(vec![])),
        ]);
        assert!(matches!(decode(&cbor(&negative_count)), Err(DecodeError::WrongType { field: "count", .. })));
        // Deep nesting is refused by the decoder's recursion limit, not by the stack.
        let deep: Vec<u8> = std::iter::repeat_n(0x81, 100_000).chain([0x00]).collect();
        assert!(matches!(decode(&deep), Err(DecodeError::Cbor(_))));
    }

    #[test]
    fn document_ids_are_base58check() {
        // The encoding of sixteen 7s by the `bs58check` npm package automerge-repo uses.
        let id = doc_id();
        assert_eq!(id.as_str(), "6gMHXjsZ5cxdn4qSbgGYYY8CnKK");
        assert_eq!(DocumentId::new(id.as_str()), Ok(id.clone()));
        let mut broken = id.as_str().to_owned();
        let last = broken.pop().unwrap();
        broken.push(if last == '2' { '3' } else { '2' });
        assert_eq!(DocumentId::new(broken), Err(InvalidDocumentId::BadChecksum));
        assert_eq!(DocumentId::new("0OIl"), Err(InvalidDocumentId::NotBase58));
        assert_eq!(DocumentId::new(""), Err(InvalidDocumentId::NotBase58));
        assert!(matches!(DocumentId::new("1".repeat(600)), Err(InvalidDocumentId::TooLong { .. })));
    }
}
