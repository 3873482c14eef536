//! `GET /ws/events`: a person's live events, as JSON text frames, authenticated by an access
//! token (`?token=` or `Authorization: Bearer`). On connecting: `{"type":"ready","unread":N}`;
//! then `{"type":"notification","notification":{…}}` for each notification as soon as the
//! derivation that made it is committed, and `{"type":"lagged","missed":N}` when the connection
//! fell behind (list them over REST). The server ignores text the client sends, and closes with
//! 4400 for binary frames and 1001 on shutdown (`docs/protocol.md`).

use std::collections::HashMap;

use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use weft_sync_core::CloseCode;

use super::api::limits::ConnectAttempt;
use super::socket::accept;
use super::yjs::request_token;
use super::{ApiError, AppState};
use crate::auth::AuthError;
use crate::events::Event;

/// Authenticates, then upgrades to a WebSocket.
pub async fn upgrade(
    State(state): State<AppState>,
    _attempt: ConnectAttempt,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|_| ApiError::UpgradeRequired)?;
    let token = request_token(&query, &headers).ok_or(ApiError::Auth(AuthError::Missing))?;
    let user_id = state.policy.user(token).await?;
    Ok(accept(ws, state, move |socket, state| serve(socket, user_id, state)))
}

async fn serve(socket: WebSocket, user_id: String, state: AppState) {
    let mut events = state.events.subscribe(&user_id);
    let (mut sink, mut stream) = socket.split();
    let unread = state.storage.unread_notifications(&user_id).await.unwrap_or(0);
    if sink.send(text(json!({ "type": "ready", "unread": unread }))).await.is_err() {
        return;
    }
    let close = loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break Some(CloseCode::GoingAway),
            event = events.recv() => {
                let frame = match event {
                    Ok(Event::Notification(id)) => {
                        match state.storage.notifications_by_id(&user_id, vec![id]).await {
                            Ok(mut found) => match found.pop() {
                                Some(notification) => json!({ "type": "notification", "notification": notification }),
                                None => continue,
                            },
                            Err(err) => {
                                tracing::warn!(error = %err, "reading a notification for /ws/events");
                                continue;
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => json!({ "type": "lagged", "missed": missed }),
                    Err(RecvError::Closed) => break Some(CloseCode::GoingAway),
                };
                if sink.send(text(frame)).await.is_err() {
                    break None;
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Binary(_))) => break Some(CloseCode::MalformedMessage),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => {}
            },
        }
    };
    if let Some(code) = close {
        let frame = CloseFrame { code: code.code(), reason: code.reason().into() };
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), sink.send(Message::Close(Some(frame))))
                .await;
    }
}

fn text(value: serde_json::Value) -> Message {
    Message::Text(value.to_string().into())
}
