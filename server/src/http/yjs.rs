//! `GET /ws/yjs/{doc_id}`: the y-websocket dialect. One connection is one peer of one document.
//!
//! The connection task decodes frames (off the room's thread) and hands typed messages to the room;
//! a spawned writer drains the peer's outbox. Any frame that does not decode ends the connection with
//! 4400 before the room sees any of it.

use axum::extract::ws::{
    Message as WsMessage, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::Response;
use futures_util::StreamExt;
use weft_sync_core::yjs::codec;
use weft_sync_core::{CloseCode, DocId};

use super::api::limits::ConnectAttempt;
use super::socket::{accept, end_after_read_error, spawn_writer};
use super::{ApiError, AppState};
use crate::auth::Grant;
use crate::rooms::{self, Dialect, Inbound};
use crate::storage::Crdt;

/// Validates the document name and the token, then upgrades to a WebSocket.
pub async fn upgrade(
    State(state): State<AppState>,
    _attempt: ConnectAttempt,
    Path(doc_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let doc = DocId::new(doc_id)?;
    let ws = ws.map_err(|_| ApiError::UpgradeRequired)?;
    let grant = state.policy.document(request_token(&query, &headers), &doc).await?;
    Ok(accept(ws, state, move |socket, state| serve(socket, doc, grant, state)))
}

/// The token of an HTTP request: `?token=` or `Authorization: Bearer`.
pub fn request_token<'a>(query: &'a HashMap<String, String>, headers: &'a HeaderMap) -> Option<&'a str> {
    query
        .get("token")
        .map(String::as_str)
        .or_else(|| headers.get(AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim))
}

async fn serve(socket: WebSocket, doc: DocId, grant: Grant, state: AppState) {
    let (sink, mut stream) = socket.split();
    let (link, outbox, closer) = rooms::link(state.config.rooms.peer_outbox, Dialect::YWebsocket);
    let writer = spawn_writer(sink, outbox, closer.clone(), state.shutdown.clone());
    let _tracked = state.policy.track(&grant, &doc, &link);
    let membership = match state.rooms.join(&doc, Crdt::Yjs, grant.identity(), link).await {
        Ok(membership) => membership,
        Err(err) => {
            tracing::info!(doc = %doc, error = %err, "join refused");
            closer.close(err.close_code());
            let _ = writer.await;
            return;
        }
    };
    let peer = membership.peer();
    tracing::debug!(doc = %doc, %peer, "peer joined");
    loop {
        let message = tokio::select! {
            () = closer.closed() => break,
            () = state.shutdown.cancelled() => break,
            message = stream.next() => message,
        };
        match message {
            Some(Ok(WsMessage::Binary(frame))) => match codec::decode_frame(&frame) {
                Ok(messages) => {
                    let sent = tokio::select! {
                        sent = membership.send(Inbound::Yjs(messages)) => sent,
                        () = closer.closed() => break,
                    };
                    if sent.is_err() {
                        closer.close(CloseCode::InternalError);
                        break;
                    }
                }
                Err(err) => {
                    tracing::info!(doc = %doc, %peer, error = %err, "malformed frame");
                    closer.close(CloseCode::MalformedMessage);
                    break;
                }
            },
            Some(Ok(WsMessage::Text(_))) => {
                closer.close(CloseCode::UnsupportedData);
                break;
            }
            Some(Ok(WsMessage::Close(_))) | None => {
                closer.finish();
                break;
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            Some(Err(err)) => {
                if let Some(code) = end_after_read_error(err, &closer) {
                    tracing::info!(doc = %doc, %peer, code = code.code(), "closing connection after read error");
                }
                break;
            }
        }
    }
    membership.leave().await;
    let _ = writer.await;
    tracing::debug!(doc = %doc, %peer, code = ?closer.code(), "peer left");
}
