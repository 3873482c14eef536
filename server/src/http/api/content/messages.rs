//! A channel's messages: pages newest first and threads (`GET`), posting a message or a thread
//! reply (`POST`), editing and deleting one's own (`PATCH`, `DELETE …/messages/{message_id}`),
//! and reacting (`PUT` / `DELETE …/reactions/{emoji}`). Posting, editing and deleting take
//! `edit_document`; reacting takes `comment` (commenters may react).
//!
//! Long channels are segmented (`docs/schemas.md`, Long channels): once the channel's newest
//! document holds `channel_segment_messages` messages, the next post opens a segment document
//! (listed in the channel document's `segments`) and goes there. Reads load the channel document
//! and then segments newest first, only as far back as the page (or the message) they need
//! ([`view`]), so the latest page of a channel costs the same however long its history is.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weft_sync_core::DocKind;
use weft_sync_core::access::Action;
use weft_sync_core::domain::Projection;
use weft_sync_core::domain::channel::{self, Channel, Cursor, Message, NewMessage};

use super::{entry_id, of_kind, read, writable, write};
use crate::clock::now_ms;
use crate::http::api::docs::{document, new_id};
use crate::http::api::{Body, Caller, Params};
use crate::http::{ApiError, AppState};
use crate::storage::documents::Document;

/// Longest page of messages.
const MAX_MESSAGES: usize = 100;
/// Longest message body, in characters.
const MAX_BODY: usize = 40_000;
/// Most attachments on one message.
const MAX_ATTACHMENTS: usize = 32;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(messages, post))
        .routes(routes!(edit, delete))
        .routes(routes!(thread))
        .routes(routes!(react, unreact))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MessageQuery {
    /// Only messages older than this one: the `next.at` of the previous page…
    before_at: Option<i64>,
    /// …and its `next.id`.
    before_id: Option<String>,
    /// How many at most, 1 to 100 (default 50).
    limit: Option<usize>,
}

/// A page of messages, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Messages {
    /// The channel's topic.
    topic: String,
    /// Messages (thread replies are read with `…/thread`).
    #[schema(value_type = Vec<Object>)]
    messages: Vec<Message>,
    /// Where the next page starts (`before_at`, `before_id`), if there is one.
    #[schema(value_type = Option<Object>)]
    next: Option<NextPage>,
}

/// The cursor of the next page.
#[derive(Debug, Serialize)]
struct NextPage {
    at: i64,
    id: String,
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/messages",
    tag = "content",
    operation_id = "content_messages",
    params(("doc_id" = String, Path, description = "Document id"), MessageQuery),
    responses((status = 200, description = "Done", body = Messages), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<MessageQuery>,
) -> Result<Json<Messages>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_MESSAGES).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", format!("limit is 1 to {MAX_MESSAGES}")));
    }
    let before = match (q.before_at, q.before_id) {
        (Some(at), Some(id)) => Some(Cursor { at, id }),
        (None, None) => None,
        _ => return Err(ApiError::invalid("invalid_cursor", "give before_at and before_id together")),
    };
    let found = readable(&state, &id, &caller).await?;
    let channel = view(&state, &found, Until::Page { before: before.as_ref(), limit }).await?.channel;
    let (page, next) = channel.page(before.as_ref(), limit);
    Ok(Json(Messages {
        messages: page.into_iter().cloned().collect(),
        next: next.map(|c| NextPage { at: c.at, id: c.id }),
        topic: channel.topic,
    }))
}

/// A thread.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Thread {
    /// The message the thread answers.
    #[schema(value_type = Object)]
    parent: Message,
    /// Its replies, oldest first.
    #[schema(value_type = Vec<Object>)]
    replies: Vec<Message>,
}

#[utoipa::path(
    get,
    path = "/api/docs/{doc_id}/messages/{message_id}/thread",
    tag = "content",
    operation_id = "content_thread",
    params(("doc_id" = String, Path, description = "Document id"), ("message_id" = String, Path, description = "The thread's first message")),
    responses((status = 200, description = "Done", body = Thread), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn thread(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, message_id)): Path<(String, String)>,
) -> Result<Json<Thread>, ApiError> {
    let found = readable(&state, &id, &caller).await?;
    let channel = view(&state, &found, Until::Message(&message_id)).await?.channel;
    let parent =
        channel.messages.iter().find(|m| m.id == message_id).cloned().ok_or(ApiError::Missing("message"))?;
    let replies = channel.thread(&message_id).into_iter().cloned().collect();
    Ok(Json(Thread { parent, replies }))
}

/// A message to post.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewMessageBody {
    /// Your id for it (1–64 letters, digits, `-`, `_`), so that repeating the request posts it
    /// once; a UUID by default.
    id: Option<String>,
    /// Its text; mention members as `<@user-id>`.
    body: String,
    /// The message this one replies to, in its thread.
    parent: Option<String>,
    /// File ids.
    #[serde(default)]
    attachments: Vec<String>,
}

fn check_body(body: &str) -> Result<(), ApiError> {
    if body.trim().is_empty() || body.chars().count() > MAX_BODY {
        return Err(ApiError::invalid("invalid_body", format!("a message has 1 to {MAX_BODY} characters")));
    }
    Ok(())
}

/// The channel as it reads now, from a projection.
fn channel_of(now: Projection) -> Result<Channel, ApiError> {
    match now {
        Projection::Channel(channel) => Ok(channel),
        _ => Err(ApiError::Internal(anyhow::anyhow!("a channel projection of another kind"))),
    }
}

/// The caller's channel `id`, for reading (404 for whoever may not see it).
async fn readable(state: &AppState, id: &str, caller: &Caller) -> Result<Document, ApiError> {
    let (found, _) = document(state, id, caller, &[]).await?;
    of_kind(&found, DocKind::Channel)?;
    Ok(found)
}

/// How far back a read of a long channel goes.
#[derive(Clone, Copy)]
enum Until<'a> {
    /// Far enough for a page of `limit` messages older than `before`.
    Page { before: Option<&'a Cursor>, limit: usize },
    /// Until message `id` is found, and every segment that may hold later replies of its thread
    /// (those that end after it was posted).
    Message(&'a str),
    /// Until the document holding message `id` is found (a write to the message).
    Holder(&'a str),
}

/// A channel read as far back as a request needs.
struct View {
    /// The parts read, merged.
    channel: Channel,
    /// The documents read: the channel document, then segments newest first.
    docs: Vec<Document>,
    /// For each message, the index in `docs` of the document holding it.
    holder: std::collections::HashMap<String, usize>,
    /// How many messages the newest document (where posts go) holds, when it was read.
    newest_len: Option<usize>,
}

/// Reads channel `found`: its own document, then its segments newest first, until `until` is
/// satisfied. A segment's messages are posted from its `from` until the next segment's, so a page
/// stops at the first segment that ends before the oldest message it already has, and skips the
/// segments that start after its cursor.
async fn view(state: &AppState, found: &Document, until: Until<'_>) -> Result<View, ApiError> {
    let head = channel_of(read(state, found).await?)?;
    view_from(state, found, head, until).await
}

/// [`view`], with the channel document already read (`head`).
async fn view_from(
    state: &AppState,
    found: &Document,
    head: Channel,
    until: Until<'_>,
) -> Result<View, ApiError> {
    let segments = head.segments.clone();
    let mut holder: std::collections::HashMap<String, usize> =
        head.messages.iter().map(|m| (m.id.clone(), 0)).collect();
    let mut newest_len = segments.is_empty().then_some(head.messages.len());
    let mut docs = vec![found.clone()];
    let mut parts = vec![head];
    let mut end = i64::MAX;
    for (k, segment) in segments.iter().enumerate().rev() {
        let needed = match until {
            // Not found yet, or this segment may hold later replies of its thread.
            Until::Message(id) => {
                parts.iter().flat_map(|p| p.messages.iter()).find(|m| m.id == id).is_none_or(|m| end > m.at)
            }
            Until::Holder(id) => !holder.contains_key(id),
            Until::Page { before, limit } => {
                let older =
                    |m: &Message| before.is_none_or(|c| (m.at, m.id.as_str()) < (c.at, c.id.as_str()));
                let have = parts
                    .iter()
                    .flat_map(|p| p.messages.iter())
                    .filter(|m| m.written_parent.is_none() && older(m) && m.at >= end)
                    .count();
                if have > limit {
                    false
                } else if before.is_some_and(|c| c.at < segment.from) && k + 1 != segments.len() {
                    // Every message of this segment is newer than the cursor: look further back.
                    end = segment.from;
                    continue;
                } else {
                    true
                }
            }
        };
        if !needed {
            break;
        }
        let doc = Document { id: segment.id.clone(), ..found.clone() };
        let part = channel_of(read(state, &doc).await?)?;
        if k + 1 == segments.len() {
            newest_len = Some(part.messages.len());
        }
        for m in &part.messages {
            holder.insert(m.id.clone(), docs.len());
        }
        docs.push(doc);
        parts.push(part);
        end = segment.from;
    }
    Ok(View { channel: Channel::merged(parts), docs, holder, newest_len })
}

impl View {
    /// The document holding message `id` and the message as it reads now.
    fn holding(&self, id: &str) -> Result<(&Document, &Message), ApiError> {
        let message =
            self.channel.messages.iter().find(|m| m.id == id).ok_or(ApiError::Missing("message"))?;
        Ok((&self.docs[self.holder[id]], message))
    }
}

/// Message `id` as the document holding it (`holder`) reads now; its `replies` are those in that
/// document (a thread's later replies may sit in later segments: `…/thread` reads them all).
async fn written(state: &AppState, holder: &Document, id: &str) -> Result<Message, ApiError> {
    let part = channel_of(read(state, holder).await?)?;
    part.messages.into_iter().find(|m| m.id == id).ok_or(ApiError::Missing("message"))
}

/// The document new messages go to: the channel's newest (as `recent`, a view of at least the
/// newest segment, read it), or a new segment when that one is full.
async fn newest(
    state: &AppState,
    found: &Document,
    recent: &View,
    caller: &Caller,
) -> Result<Document, ApiError> {
    let full = recent.newest_len.unwrap_or(0) >= state.config.channel_segment_messages;
    let newest = match recent.channel.segments.last() {
        Some(segment) => Document { id: segment.id.clone(), ..found.clone() },
        None => found.clone(),
    };
    if !full {
        return Ok(newest);
    }
    let id = new_id()?;
    let now = now_ms();
    state.storage.create_segment(&found.id, &id, found.crdt, now).await?;
    write(state, found, caller, channel::add_segment(&id, now)).await?;
    tracing::info!(channel = %found.id, segment = %id, "the channel continues in a new segment");
    Ok(Document { id, ..found.clone() })
}

/// The document holding message `id`, which the caller wrote and did not delete.
fn own<'a>(view: &'a View, id: &str, caller: &Caller) -> Result<&'a Document, ApiError> {
    let (holder, message) = view.holding(id)?;
    if message.author.as_deref() != Some(caller.user_id.as_str()) {
        return Err(ApiError::Denied {
            code: "not_author",
            message: "only its author edits or deletes a message",
        });
    }
    if message.deleted {
        return Err(ApiError::Conflict { code: "deleted", message: "the message was deleted" });
    }
    Ok(holder)
}

#[utoipa::path(
    post,
    path = "/api/docs/{doc_id}/messages",
    tag = "content",
    operation_id = "content_message_post",
    request_body = NewMessageBody,
    params(("doc_id" = String, Path, description = "Document id")),
    responses((status = 201, description = "The message as it reads now", body = Object), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn post(
    State(state): State<AppState>,
    caller: Caller,
    Path(doc): Path<String>,
    Body(new): Body<NewMessageBody>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let id = entry_id(new.id)?;
    check_body(&new.body)?;
    if new.attachments.len() > MAX_ATTACHMENTS
        || new.attachments.iter().any(|f| entry_id(Some(f.clone())).is_err())
    {
        return Err(ApiError::invalid(
            "invalid_attachments",
            format!("at most {MAX_ATTACHMENTS} file ids, each 1 to 64 letters, digits, '-' or '_'"),
        ));
    }
    let (found, head) = writable(&state, &doc, &caller, DocKind::Channel, Action::EditDocument).await?;
    // The channel document and its newest segment: where the message goes, and where a repeated
    // request finds it (a retry comes soon after; one that straddles a new segment is posted
    // again there, and reads show it once).
    let recent = view_from(&state, &found, channel_of(head)?, Until::Page { before: None, limit: 1 }).await?;
    if let Some(parent) = &new.parent
        && !recent.holder.contains_key(parent)
        && !view(&state, &found, Until::Holder(parent)).await?.holder.contains_key(parent)
    {
        return Err(ApiError::Missing("message to reply to"));
    }
    let message = NewMessage {
        id: &id,
        author: &caller.user_id,
        body: &new.body,
        at: now_ms(),
        parent: new.parent.as_deref(),
        attachments: &new.attachments,
    };
    let target = match recent.holder.get(&id) {
        Some(&index) => recent.docs[index].clone(),
        None => newest(&state, &found, &recent, &caller).await?,
    };
    write(&state, &target, &caller, channel::post(&message)).await?;
    Ok((StatusCode::CREATED, Json(written(&state, &target, &id).await?)))
}

/// A message's new text.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MessageEdit {
    /// The new text (edited in place: characters others typed meanwhile are kept).
    body: String,
}

#[utoipa::path(
    patch,
    path = "/api/docs/{doc_id}/messages/{message_id}",
    tag = "content",
    operation_id = "content_message_edit",
    request_body = MessageEdit,
    params(("doc_id" = String, Path, description = "Document id"), ("message_id" = String, Path, description = "Message id")),
    responses((status = 200, description = "The message as it reads now", body = Object), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn edit(
    State(state): State<AppState>,
    caller: Caller,
    Path((doc, message_id)): Path<(String, String)>,
    Body(change): Body<MessageEdit>,
) -> Result<Json<Message>, ApiError> {
    check_body(&change.body)?;
    let (found, head) = writable(&state, &doc, &caller, DocKind::Channel, Action::EditDocument).await?;
    let view = view_from(&state, &found, channel_of(head)?, Until::Holder(&message_id)).await?;
    let holder = own(&view, &message_id, &caller)?;
    write(&state, holder, &caller, channel::edit(&message_id, &change.body, now_ms())).await?;
    Ok(Json(written(&state, holder, &message_id).await?))
}

#[utoipa::path(
    delete,
    path = "/api/docs/{doc_id}/messages/{message_id}",
    tag = "content",
    operation_id = "content_message_delete",
    params(("doc_id" = String, Path, description = "Document id"), ("message_id" = String, Path, description = "Message id")),
    responses((status = 204, description = "Deleted: a tombstone without its text stays, and its thread"), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((doc, message_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (found, head) = writable(&state, &doc, &caller, DocKind::Channel, Action::EditDocument).await?;
    let view = view_from(&state, &found, channel_of(head)?, Until::Holder(&message_id)).await?;
    let holder = own(&view, &message_id, &caller)?;
    write(&state, holder, &caller, channel::delete(&message_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds or removes the caller's `emoji` reaction to a message.
async fn reaction(
    state: &AppState,
    caller: &Caller,
    doc: &str,
    message_id: &str,
    emoji: &str,
    on: bool,
) -> Result<StatusCode, ApiError> {
    if emoji.is_empty() || emoji.chars().count() > 32 || emoji.chars().any(char::is_control) {
        return Err(ApiError::invalid("invalid_emoji", "a reaction is 1 to 32 characters"));
    }
    let (found, head) = writable(state, doc, caller, DocKind::Channel, Action::Comment).await?;
    let view = view_from(state, &found, channel_of(head)?, Until::Holder(message_id)).await?;
    let (holder, message) = view.holding(message_id)?;
    if message.deleted && on {
        return Err(ApiError::Conflict { code: "deleted", message: "the message was deleted" });
    }
    write(state, holder, caller, channel::react(message_id, emoji, &caller.user_id, on)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/api/docs/{doc_id}/messages/{message_id}/reactions/{emoji}",
    tag = "content",
    operation_id = "content_message_react",
    params(("doc_id" = String, Path, description = "Document id"), ("message_id" = String, Path, description = "Message id"), ("emoji" = String, Path, description = "The emoji (URL-encoded)")),
    responses((status = 204, description = "The caller reacts with it (once, however often asked)"), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn react(
    State(state): State<AppState>,
    caller: Caller,
    Path((doc, message_id, emoji)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    reaction(&state, &caller, &doc, &message_id, &emoji, true).await
}

#[utoipa::path(
    delete,
    path = "/api/docs/{doc_id}/messages/{message_id}/reactions/{emoji}",
    tag = "content",
    operation_id = "content_message_unreact",
    params(("doc_id" = String, Path, description = "Document id"), ("message_id" = String, Path, description = "Message id"), ("emoji" = String, Path, description = "The emoji (URL-encoded)")),
    responses((status = 204, description = "The caller's reaction is gone"), (status = "4XX", description = "Refused: the JSON error body", body = crate::http::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn unreact(
    State(state): State<AppState>,
    caller: Caller,
    Path((doc, message_id, emoji)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    reaction(&state, &caller, &doc, &message_id, &emoji, false).await
}
