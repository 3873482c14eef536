//! A channel's messages: pages newest first and threads (`GET`), posting a message or a thread
//! reply (`POST`), editing and deleting one's own (`PATCH`, `DELETE …/messages/{message_id}`),
//! and reacting (`PUT` / `DELETE …/reactions/{emoji}`). Posting, editing and deleting take
//! `edit_document`; reacting takes `comment` (commenters may react).

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

use super::{entry_id, project, writable, write};
use crate::clock::now_ms;
use crate::http::api::{Body, Caller, Params};
use crate::http::{ApiError, AppState};

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
    let Projection::Channel(channel) = project(&state, &id, &caller, DocKind::Channel).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!("a channel projection of another kind")));
    };
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
    let Projection::Channel(channel) = project(&state, &id, &caller, DocKind::Channel).await? else {
        return Err(ApiError::Internal(anyhow::anyhow!("a channel projection of another kind")));
    };
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

/// The channel as it reads now, from `writable`'s projection.
fn channel_of(now: Projection) -> Result<Channel, ApiError> {
    match now {
        Projection::Channel(channel) => Ok(channel),
        _ => Err(ApiError::Internal(anyhow::anyhow!("a channel projection of another kind"))),
    }
}

/// Message `id` as it reads now.
async fn find(state: &AppState, doc: &str, caller: &Caller, id: &str) -> Result<Message, ApiError> {
    let channel = channel_of(project(state, doc, caller, DocKind::Channel).await?)?;
    channel.messages.into_iter().find(|m| m.id == id).ok_or(ApiError::Missing("message"))
}

/// Message `id` of `channel`, which the caller wrote and did not delete.
fn own<'a>(channel: &'a Channel, id: &str, caller: &Caller) -> Result<&'a Message, ApiError> {
    let message = channel.messages.iter().find(|m| m.id == id).ok_or(ApiError::Missing("message"))?;
    if message.author.as_deref() != Some(caller.user_id.as_str()) {
        return Err(ApiError::Denied {
            code: "not_author",
            message: "only its author edits or deletes a message",
        });
    }
    if message.deleted {
        return Err(ApiError::Conflict { code: "deleted", message: "the message was deleted" });
    }
    Ok(message)
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
    let (found, now) = writable(&state, &doc, &caller, DocKind::Channel, Action::EditDocument).await?;
    let channel = channel_of(now)?;
    if let Some(parent) = &new.parent
        && !channel.messages.iter().any(|m| &m.id == parent)
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
    write(&state, &found, &caller, channel::post(&message)).await?;
    Ok((StatusCode::CREATED, Json(find(&state, &doc, &caller, &id).await?)))
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
    let (found, now) = writable(&state, &doc, &caller, DocKind::Channel, Action::EditDocument).await?;
    own(&channel_of(now)?, &message_id, &caller)?;
    write(&state, &found, &caller, channel::edit(&message_id, &change.body, now_ms())).await?;
    Ok(Json(find(&state, &doc, &caller, &message_id).await?))
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
    let (found, now) = writable(&state, &doc, &caller, DocKind::Channel, Action::EditDocument).await?;
    own(&channel_of(now)?, &message_id, &caller)?;
    write(&state, &found, &caller, channel::delete(&message_id)).await?;
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
    let (found, now) = writable(state, doc, caller, DocKind::Channel, Action::Comment).await?;
    let channel = channel_of(now)?;
    let message = channel.messages.iter().find(|m| m.id == message_id).ok_or(ApiError::Missing("message"))?;
    if message.deleted && on {
        return Err(ApiError::Conflict { code: "deleted", message: "the message was deleted" });
    }
    write(state, &found, caller, channel::react(message_id, emoji, &caller.user_id, on)).await?;
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
