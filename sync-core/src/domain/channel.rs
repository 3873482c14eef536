//! The chat channel layout, on both CRDTs, and its projection to typed messages and threads.
//!
//! **Yjs** (root types): `channel` is a `Y.Map` with `topic`; `messages` is a `Y.Map` from
//! message id to a `Y.Map` of the message's fields. **Automerge** (root object): `channel` a map
//! with `topic`, `messages` a map from message id to a map of fields. Message fields, the same
//! names on both: `author` (user id), `body` (a `Y.Text` or string; Automerge text or string),
//! `at` (milliseconds since the Unix epoch), `parent` (the id of the message a thread reply
//! answers; absent for a message in the channel itself), `attachments` (file ids), `editedAt`
//! (milliseconds), `deleted` (boolean: a deleted message stays as a tombstone without its body),
//! and `reactions` (a map from emoji to a map from user id to `true`). Mentions are written in the
//! body as `<@user-id>` and read by [`super::mentions`].
//!
//! Messages are keyed by id, so two offline writers never collide and a message edited while
//! another is posted keeps both; reactions are sets (a user reacting twice counts once, and a
//! removal is deleting the user's key). The projection reads whatever a client wrote; what it
//! cannot read is left out or defaulted and reported in [`Channel::skipped`].

use automerge::{Automerge, ObjType, ReadDoc, Value as AmValue};
use serde::Serialize;
use yrs::{Any, Array, Map, Out, ReadTxn};

use super::read::{Field, Fields, automerge_field, yjs_field};
use super::write::{Change, Value, strings};
use super::{Skipped, mentions};

/// One emoji's reactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reaction {
    /// The emoji (or short name) reacted with.
    pub emoji: String,
    /// Who reacted with it, sorted.
    pub users: Vec<String>,
}

/// A message, as the projection reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Message {
    /// Stable id (its key in `messages`).
    pub id: String,
    /// Who wrote it.
    pub author: Option<String>,
    /// Its text; empty once deleted.
    pub body: String,
    /// When it was posted, in milliseconds since the Unix epoch.
    pub at: i64,
    /// The message this one replies to in a thread.
    pub parent: Option<String>,
    /// Attached file ids.
    pub attachments: Vec<String>,
    /// When it was last edited.
    pub edited_at: Option<i64>,
    /// Deleted by its author (a tombstone: replies keep their parent).
    pub deleted: bool,
    /// Reactions, by emoji.
    pub reactions: Vec<Reaction>,
    /// User ids mentioned in the body, in order of first mention.
    pub mentions: Vec<String>,
    /// How many thread replies it has.
    pub replies: usize,
    /// The `parent` as written, kept when this document alone does not hold it (a reply in a
    /// later segment than its thread's start): [`Channel::merged`] looks for it across segments.
    #[serde(skip)]
    pub written_parent: Option<String>,
}

/// A later segment of a long channel: a document holding the messages posted from `from` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// The segment document's id.
    pub id: String,
    /// When it started taking messages (milliseconds since the Unix epoch).
    pub from: i64,
}

/// The channel: its topic, its messages oldest first (by `at`, then id), and what could not be
/// read.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Channel {
    /// The topic.
    pub topic: String,
    /// Every message, thread replies included.
    pub messages: Vec<Message>,
    /// Its later segments, oldest first (root array `segments` of the channel document).
    pub segments: Vec<Segment>,
    /// What the projection left out or defaulted, and why.
    pub skipped: Vec<Skipped>,
}

/// Where a page of messages starts: older than the message posted at `at` with id `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Its time.
    pub at: i64,
    /// Its id (breaks ties between messages of one millisecond).
    pub id: String,
}

impl Channel {
    /// Up to `limit` messages of the channel itself (not thread replies), newest first, older than
    /// `before`; and the cursor of the next page when there is one.
    pub fn page(&self, before: Option<&Cursor>, limit: usize) -> (Vec<&Message>, Option<Cursor>) {
        let older = |m: &Message| before.is_none_or(|c| (m.at, m.id.as_str()) < (c.at, c.id.as_str()));
        let mut page: Vec<&Message> =
            self.messages.iter().rev().filter(|m| m.parent.is_none() && older(m)).take(limit + 1).collect();
        let next = (page.len() > limit).then(|| {
            page.truncate(limit);
            page.last().map(|m| Cursor { at: m.at, id: m.id.clone() })
        });
        (page, next.flatten())
    }

    /// The replies to `parent`, oldest first.
    pub fn thread(&self, parent: &str) -> Vec<&Message> {
        self.messages.iter().filter(|m| m.parent.as_deref() == Some(parent)).collect()
    }

    /// The channel document and segments read so far (`parts`, the channel document first) as one
    /// channel: every message once (a message in two parts, which only an interrupted copy leaves,
    /// counts once: the later part's), threads and reply counts across parts, the channel
    /// document's topic and segment list.
    pub fn merged(parts: Vec<Channel>) -> Channel {
        let mut parts = parts.into_iter();
        let Some(first) = parts.next() else { return Channel::default() };
        let (topic, segments) = (first.topic.clone(), first.segments.clone());
        let mut by_id = std::collections::HashMap::new();
        let mut skipped = Vec::new();
        for part in std::iter::once(first).chain(parts) {
            for m in part.messages {
                by_id.insert(m.id.clone(), m);
            }
            skipped.extend(part.skipped.into_iter().filter(|s| s.reason != NO_PARENT));
        }
        let messages = by_id
            .into_values()
            .map(|m| Message { parent: m.written_parent.clone(), replies: 0, ..m })
            .collect();
        let mut channel = assemble(topic, messages, skipped);
        channel.segments = segments;
        channel
    }
}

/// Why a reply's parent was dropped.
const NO_PARENT: &str = "names no message";

fn message<G: Fn(&str) -> Option<Field>>(mut fields: Fields<'_, G>) -> Message {
    let deleted = fields.flag("deleted");
    let body = fields.string("body").unwrap_or_default();
    let whole = |n: f64| n as i64;
    Message {
        id: fields.id().to_owned(),
        author: fields.string("author"),
        mentions: if deleted { Vec::new() } else { mentions(&body) },
        body: if deleted { String::new() } else { body },
        at: fields.number("at", true).map_or(0, whole),
        parent: None,
        written_parent: fields.string("parent"),
        attachments: fields.strings("attachments"),
        edited_at: fields.number("editedAt", true).map(whole),
        deleted,
        reactions: fields
            .sets("reactions")
            .into_iter()
            .map(|(emoji, users)| Reaction { emoji, users })
            .collect(),
        replies: 0,
    }
}

fn assemble(topic: String, mut messages: Vec<Message>, mut skipped: Vec<Skipped>) -> Channel {
    messages.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    let ids: std::collections::HashSet<String> = messages.iter().map(|m| m.id.clone()).collect();
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for m in &mut messages {
        if let Some(parent) = &m.written_parent {
            if ids.contains(parent) && *parent != m.id {
                *counts.entry(parent.clone()).or_default() += 1;
                m.parent = Some(parent.clone());
            } else {
                skipped.push(Skipped { path: format!("messages/{}/parent", m.id), reason: NO_PARENT.into() });
            }
        }
    }
    for m in &mut messages {
        m.replies = counts.get(&m.id).copied().unwrap_or(0);
    }
    Channel { topic, messages, segments: Vec::new(), skipped }
}

fn segment<G: Fn(&str) -> Option<Field>>(mut fields: Fields<'_, G>) -> Option<Segment> {
    let id = fields.string("id")?;
    Some(Segment { id, from: fields.number("from", true).map_or(0, |n| n as i64) })
}

/// The channel of a Yjs document.
pub fn from_yjs<T: ReadTxn>(txn: &T) -> Channel {
    let mut skipped = Vec::new();
    let topic = txn
        .get_map("channel")
        .and_then(|m| match m.get(txn, "topic") {
            Some(Out::Any(Any::String(s))) => Some(s.to_string()),
            _ => None,
        })
        .unwrap_or_default();
    let mut messages = Vec::new();
    if let Some(map) = txn.get_map("messages") {
        for (id, value) in map.iter(txn) {
            let Out::YMap(fields) = value else {
                skipped.push(Skipped { path: format!("messages/{id}"), reason: "not a map".into() });
                continue;
            };
            let get = |key: &str| fields.get(txn, key).map(|out| yjs_field(txn, out));
            messages.push(message(Fields::new("messages", id, get, &mut skipped)));
        }
    }
    let mut segments = Vec::new();
    if let Some(array) = txn.get_array("segments") {
        for (i, value) in array.iter(txn).enumerate() {
            let Out::YMap(fields) = value else {
                skipped.push(Skipped { path: format!("segments/{i}"), reason: "not a map".into() });
                continue;
            };
            let get = |key: &str| fields.get(txn, key).map(|out| yjs_field(txn, out));
            segments.extend(segment(Fields::new("segments", &i.to_string(), get, &mut skipped)));
        }
    }
    let mut channel = assemble(topic, messages, skipped);
    channel.segments = segments;
    channel
}

/// The channel of an Automerge document.
pub fn from_automerge(doc: &Automerge) -> Channel {
    let mut skipped = Vec::new();
    let root = automerge::ROOT;
    let topic = match doc.get(&root, "channel") {
        Ok(Some((AmValue::Object(ObjType::Map), channel))) => match automerge_field(doc, &channel, "topic") {
            Some(Field::Str(s)) => s,
            _ => String::new(),
        },
        _ => String::new(),
    };
    let mut messages = Vec::new();
    if let Ok(Some((AmValue::Object(ObjType::Map), map))) = doc.get(&root, "messages") {
        for id in doc.keys(&map) {
            let Ok(Some((AmValue::Object(ObjType::Map), fields))) = doc.get(&map, id.as_str()) else {
                skipped.push(Skipped { path: format!("messages/{id}"), reason: "not a map".into() });
                continue;
            };
            let get = |key: &str| automerge_field(doc, &fields, key);
            messages.push(message(Fields::new("messages", &id, get, &mut skipped)));
        }
    }
    let mut segments = Vec::new();
    if let Ok(Some((AmValue::Object(ObjType::List), list))) = doc.get(&root, "segments") {
        for i in 0..doc.length(&list) {
            let Ok(Some((AmValue::Object(ObjType::Map), fields))) = doc.get(&list, i) else {
                skipped.push(Skipped { path: format!("segments/{i}"), reason: "not a map".into() });
                continue;
            };
            let get = |key: &str| automerge_field(doc, &fields, key);
            segments.extend(segment(Fields::new("segments", &i.to_string(), get, &mut skipped)));
        }
    }
    let mut channel = assemble(topic, messages, skipped);
    channel.segments = segments;
    channel
}

/// A message to post with [`post`].
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// Its id (a UUID, or the caller's own for an idempotent retry).
    pub id: &'a str,
    /// Who posts it.
    pub author: &'a str,
    /// Its text; mentions as `<@user-id>`.
    pub body: &'a str,
    /// When, in milliseconds since the Unix epoch.
    pub at: i64,
    /// The message a thread reply answers.
    pub parent: Option<&'a str>,
    /// File ids.
    pub attachments: &'a [String],
}

/// The changes that post `message`.
pub fn post(message: &NewMessage<'_>) -> Vec<Change> {
    let path = |key| ["messages", message.id, key];
    let mut changes = vec![
        Change::set(&path("author"), message.author),
        Change::set(&path("body"), Value::Text(message.body.to_owned())),
        Change::set(&path("at"), Value::Int(message.at)),
        Change::set(&path("attachments"), strings(message.attachments)),
    ];
    if let Some(parent) = message.parent {
        changes.push(Change::set(&path("parent"), parent));
    }
    changes
}

/// The changes that list segment document `id`, taking messages from `from` on, as the channel's
/// newest segment (written to the channel document).
pub fn add_segment(id: &str, from: i64) -> Vec<Change> {
    vec![Change::push("segments", vec![("id", Value::from(id)), ("from", Value::Int(from))])]
}

/// The changes that replace message `id`'s body (edited in place) at time `at`.
pub fn edit(id: &str, body: &str, at: i64) -> Vec<Change> {
    vec![
        Change::set(&["messages", id, "body"], Value::Text(body.to_owned())),
        Change::set(&["messages", id, "editedAt"], Value::Int(at)),
    ]
}

/// The changes that delete message `id`: a tombstone without body or attachments, whose replies
/// keep their thread.
pub fn delete(id: &str) -> Vec<Change> {
    vec![
        Change::set(&["messages", id, "deleted"], true),
        Change::remove(&["messages", id, "body"]),
        Change::remove(&["messages", id, "attachments"]),
    ]
}

/// The changes that add (`on`) or remove `user`'s `emoji` reaction to message `id`.
pub fn react(id: &str, emoji: &str, user: &str, on: bool) -> Vec<Change> {
    let path = ["messages", id, "reactions", emoji, user];
    vec![if on { Change::set(&path, true) } else { Change::remove(&path) }]
}
