//! `GET /ws/hocuspocus`: the Hocuspocus dialect. One socket carries many documents; every frame
//! names its document by a routing key (`name`, or `name\0session` from v4 providers with session
//! awareness), and each key that authenticates becomes one peer of its document's room, framed with
//! that key ([`Dialect::Hocuspocus`], a sibling of the socket's link sharing its outbox and closer).
//!
//! Per key: frames wait in a bounded queue until the provider's token is verified and the room is
//! joined, then flow to the room. Per socket: a frame that does not decode, a text frame, an
//! oversized message or an overfull queue closes the whole socket; a permanent problem with one
//! document (an invalid update, a wrong CRDT) closes only that document (see `PeerLink::close`).
//! v4 providers (the ones that send their version with the token) are pinged, so that a quiet
//! socket is not taken for a dead one.
//!
//! This module owns the connection's bookkeeping; it does not interpret bytes (that is
//! `weft_sync_core::hocuspocus`) nor sync documents (that is the room).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;

use axum::extract::ws::{
    Message as WsMessage, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use weft_sync_core::hocuspocus::{self, Frame, Message, RoutingKey};
use weft_sync_core::relay::Access;
use weft_sync_core::{CloseCode, DocId};

use super::api::limits::ConnectAttempt;
use super::socket::{accept, end_after_read_error, spawn_writer};
use super::yjs::request_token;
use super::{ApiError, AppState};
use crate::auth::AuthError;
use crate::auth::policy::Tracked;
use crate::rooms::{self, Closer, Dialect, Inbound, JoinError, Membership, PeerLink, Undeliverable};
use crate::storage::Crdt;

/// Messages one socket may hold for documents whose token has not arrived yet or whose room is
/// still loading. A provider sends its token first and then a handful of messages while the
/// document loads, so only a misbehaving (or hostile, unauthenticated) client gets near it. Bytes
/// are bounded too, by `max_message_bytes`.
pub const MAX_QUEUED_MESSAGES: usize = 1024;

/// Refused or server-closed routing keys one socket remembers (to drop their frames). Past this the
/// oldest is forgotten: its frames then queue like those of any unauthenticated key, under
/// [`MAX_QUEUED_MESSAGES`]. Keeps a client that collects refusals from growing the socket's state.
const MAX_CLOSED_KEYS: usize = 256;

/// Upgrades to a WebSocket. Tokens arrive in the provider's auth message, per document; a token on
/// the request (`?token=`, `Authorization: Bearer`) stands in for a provider that sends an empty one.
pub async fn upgrade(
    State(state): State<AppState>,
    _attempt: ConnectAttempt,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|_| ApiError::UpgradeRequired)?;
    let request_token = request_token(&query, &headers).map(str::to_owned);
    Ok(accept(ws, state, move |socket, state| serve(socket, request_token, state)))
}

/// Where one routing key stands on this socket.
enum DocState {
    /// Frames arrived; no token yet.
    AwaitingToken { queue: Vec<Queued> },
    /// The token was accepted (`authenticated` sent); the room is being joined.
    Joining { attempt: u64, queue: Vec<Queued> },
    /// A peer of the document's room.
    Joined {
        membership: Membership,
        link: PeerLink,
        /// Keeps the document reachable by access changes while it is open.
        _tracked: Option<Tracked>,
    },
    /// Refused, or closed by the server for a permanent problem: frames are dropped until the
    /// provider sends a token again (a provider whose document was closed resyncs it when its
    /// socket reconnects; its edits stay in its own replica meanwhile).
    Closed,
}

/// A message waiting for its document's room.
struct Queued {
    input: Inbound,
    bytes: usize,
}

/// A finished join, tagged with the attempt it answers (a key may be closed and re-authenticated
/// while an earlier join is still loading the document).
struct Joined {
    key: RoutingKey,
    attempt: u64,
    link: PeerLink,
    result: Result<(Membership, Option<Tracked>), Refusal>,
}

/// Why a key was not joined.
enum Refusal {
    /// The token does not open the document: the provider is told why.
    Denied(String),
    /// The room refused.
    Join(JoinError),
}

type JoinFuture = Pin<Box<dyn Future<Output = Joined> + Send>>;

struct Connection {
    state: AppState,
    /// The socket's own link: connection-level frames go out through it unframed; documents get
    /// siblings of it.
    link: PeerLink,
    closer: Closer,
    request_token: Option<String>,
    docs: HashMap<RoutingKey, DocState>,
    /// Keys marked [`DocState::Closed`], oldest first (some may have been reopened since).
    closed: VecDeque<RoutingKey>,
    joins: FuturesUnordered<JoinFuture>,
    next_attempt: u64,
    queued_messages: usize,
    queued_bytes: usize,
    /// Whether a provider on this socket sent its version with its token. v4 providers do, and
    /// answer pings; v3 providers would fail on a frame without a routing key, so they get none.
    pings: bool,
}

async fn serve(socket: WebSocket, request_token: Option<String>, state: AppState) {
    let (sink, mut stream) = socket.split();
    // The base link never joins a room, so its own framing is never used: documents get siblings.
    let dialect = Dialect::Hocuspocus { prefix: Bytes::new() };
    let (link, outbox, closer) = rooms::link(state.config.rooms.peer_outbox, dialect);
    let writer = spawn_writer(sink, outbox, closer.clone(), state.shutdown.clone());
    let period = state.config.hocuspocus_ping;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = state.shutdown.clone();
    let mut conn = Connection {
        state,
        link,
        closer: closer.clone(),
        request_token,
        docs: HashMap::new(),
        closed: VecDeque::new(),
        joins: FuturesUnordered::new(),
        next_attempt: 0,
        queued_messages: 0,
        queued_bytes: 0,
        pings: false,
    };
    loop {
        let flow = tokio::select! {
            biased;
            () = closer.closed() => break,
            () = shutdown.cancelled() => break,
            Some(joined) = conn.joins.next(), if !conn.joins.is_empty() => conn.joined(joined).await,
            message = stream.next() => conn.receive(message).await,
            _ = ping.tick(), if conn.pings => conn.send(Bytes::from_static(hocuspocus::PING)),
        };
        if flow.is_break() {
            break;
        }
    }
    for (_, doc) in conn.docs.drain() {
        if let DocState::Joined { membership, .. } = doc {
            membership.leave().await;
        }
    }
    // A join still in flight is abandoned; if the room admitted the peer meanwhile, it finds the
    // link gone at its next delivery or sweep and forgets it.
    drop(conn.joins);
    let _ = writer.await;
    tracing::debug!(code = ?closer.code(), "hocuspocus connection ended");
}

impl Connection {
    async fn receive(&mut self, message: Option<Result<WsMessage, axum::Error>>) -> ControlFlow<()> {
        match message {
            Some(Ok(WsMessage::Binary(frame))) => match hocuspocus::decode_frame(&frame) {
                Ok(Frame::Ping) => self.send(Bytes::from_static(hocuspocus::PONG)),
                Ok(Frame::Pong) => ControlFlow::Continue(()),
                Ok(Frame::Document { key, message }) => self.handle(key, message, frame.len()).await,
                Err(err) => {
                    tracing::info!(error = %err, "malformed hocuspocus frame");
                    self.close(CloseCode::MalformedMessage)
                }
            },
            Some(Ok(WsMessage::Text(_))) => self.close(CloseCode::UnsupportedData),
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => ControlFlow::Continue(()),
            Some(Ok(WsMessage::Close(_))) | None => {
                self.closer.finish();
                ControlFlow::Break(())
            }
            Some(Err(err)) => {
                if let Some(code) = end_after_read_error(err, &self.closer) {
                    tracing::info!(code = code.code(), "closing hocuspocus connection after read error");
                }
                ControlFlow::Break(())
            }
        }
    }

    async fn handle(&mut self, key: RoutingKey, message: Message, bytes: usize) -> ControlFlow<()> {
        match message {
            Message::Token { token, provider_version } => {
                self.pings |= provider_version.is_some();
                self.authenticate(key, token)
            }
            Message::Yjs(message) => self.deliver(key, Inbound::Yjs(vec![message]), bytes).await,
            Message::Stateless(payload) => self.deliver(key, Inbound::Stateless(payload), bytes).await,
            Message::Close(_) => {
                self.leave(key).await;
                ControlFlow::Continue(())
            }
            // Server-to-provider messages; a provider never sends them, and they mean nothing here.
            Message::PermissionDenied(_) | Message::Authenticated(_) | Message::SyncStatus(_) => {
                tracing::debug!(key = key.as_str(), "ignoring a server-only message from a provider");
                ControlFlow::Continue(())
            }
        }
    }

    /// Verifies a token for `key` and starts joining its document.
    fn authenticate(&mut self, key: RoutingKey, token: String) -> ControlFlow<()> {
        let queue = match self.docs.remove(&key) {
            Some(DocState::AwaitingToken { queue }) => queue,
            Some(DocState::Closed) | None => Vec::new(),
            Some(current @ (DocState::Joining { .. } | DocState::Joined { .. })) => {
                // Providers send their token once per connection; a repeat changes nothing.
                tracing::debug!(key = key.as_str(), "ignoring a token for an authenticated document");
                self.docs.insert(key, current);
                return ControlFlow::Continue(());
            }
        };
        self.release(&queue);
        let doc = match key.document() {
            Ok(doc) => doc,
            Err(err) => return self.deny(key, &err.to_string()),
        };
        let token = if token.is_empty() { self.request_token.clone() } else { Some(token) };
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        let link = self.link.sibling(Dialect::Hocuspocus { prefix: key.prefix() });
        let base = self.link.clone();
        self.joins.push(join(self.state.clone(), doc, token, key.clone(), attempt, link, base));
        self.count(&queue);
        self.docs.insert(key, DocState::Joining { attempt, queue });
        ControlFlow::Continue(())
    }

    /// A join finished: hand the room what waited for it, or refuse the document.
    async fn joined(&mut self, joined: Joined) -> ControlFlow<()> {
        let Joined { key, attempt, link, result } = joined;
        let current =
            matches!(self.docs.get(&key), Some(DocState::Joining { attempt: a, .. }) if *a == attempt);
        if !current {
            // The provider closed the document (or started over) while it was loading.
            if let Ok((membership, _)) = result {
                membership.leave().await;
            }
            return ControlFlow::Continue(());
        }
        let Some(DocState::Joining { queue, .. }) = self.docs.remove(&key) else {
            return ControlFlow::Continue(());
        };
        self.release(&queue);
        let (membership, tracked) = match result {
            Ok(joined) => joined,
            Err(Refusal::Denied(reason)) => return self.deny(key, &reason),
            Err(Refusal::Join(err)) => {
                let code = err.close_code();
                tracing::info!(key = key.as_str(), error = %err, code = code.code(), "join refused");
                if code.is_transient() {
                    // Reconnecting is how a provider retries; other documents resync with it.
                    return self.close(code);
                }
                return self.deny(key, &format!("{} {}", code.code(), code.reason()));
            }
        };
        for input in coalesce(queue) {
            forward(&membership, &self.closer, input).await?;
        }
        self.docs.insert(key, DocState::Joined { membership, link, _tracked: tracked });
        ControlFlow::Continue(())
    }

    /// Hands `input` to the document's room, or queues it until the room is joined.
    async fn deliver(&mut self, key: RoutingKey, input: Inbound, bytes: usize) -> ControlFlow<()> {
        let doc =
            self.docs.entry(key.clone()).or_insert_with(|| DocState::AwaitingToken { queue: Vec::new() });
        match doc {
            DocState::Joined { membership, link, .. } => {
                if !link.is_gone() {
                    return forward(membership, &self.closer, input).await;
                }
                // The room closed this document (and already forgot the peer); its close message
                // is on the way.
                self.mark_closed(key);
                ControlFlow::Continue(())
            }
            DocState::AwaitingToken { queue } | DocState::Joining { queue, .. } => {
                if self.queued_messages >= MAX_QUEUED_MESSAGES
                    || self.queued_bytes + bytes > self.state.config.max_message_bytes
                {
                    tracing::info!(
                        messages = self.queued_messages,
                        bytes = self.queued_bytes,
                        "too many messages queued before authentication"
                    );
                    self.closer.close(CloseCode::TooManyPending);
                    return ControlFlow::Break(());
                }
                self.queued_messages += 1;
                self.queued_bytes += bytes;
                queue.push(Queued { input, bytes });
                ControlFlow::Continue(())
            }
            DocState::Closed => ControlFlow::Continue(()),
        }
    }

    /// The provider left `key` (it was destroyed or detached); the socket stays.
    async fn leave(&mut self, key: RoutingKey) {
        match self.docs.remove(&key) {
            Some(DocState::Joined { membership, .. }) => membership.leave().await,
            // A join still loading finds no state when it finishes, and leaves at once.
            Some(DocState::AwaitingToken { queue } | DocState::Joining { queue, .. }) => self.release(&queue),
            Some(DocState::Closed) | None => {}
        }
    }

    /// Refuses `key` with a reason the provider reports to the application.
    fn deny(&mut self, key: RoutingKey, reason: &str) -> ControlFlow<()> {
        let frame = hocuspocus::permission_denied(&key.prefix(), reason);
        self.mark_closed(key);
        self.send(frame)
    }

    fn mark_closed(&mut self, key: RoutingKey) {
        self.docs.insert(key.clone(), DocState::Closed);
        self.closed.push_back(key);
        if self.closed.len() > MAX_CLOSED_KEYS
            && let Some(oldest) = self.closed.pop_front()
            && matches!(self.docs.get(&oldest), Some(DocState::Closed))
        {
            self.docs.remove(&oldest);
        }
    }

    /// Queues a connection-level frame; a full outbox means the socket is too slow.
    fn send(&self, frame: Bytes) -> ControlFlow<()> {
        match self.link.send_raw(frame) {
            Ok(()) => ControlFlow::Continue(()),
            Err(Undeliverable::Full) => self.close(CloseCode::SlowConsumer),
            Err(Undeliverable::Gone) => ControlFlow::Break(()),
        }
    }

    fn close(&self, code: CloseCode) -> ControlFlow<()> {
        self.closer.close(code);
        ControlFlow::Break(())
    }

    fn count(&mut self, queue: &[Queued]) {
        self.queued_messages += queue.len();
        self.queued_bytes += queue.iter().map(|q| q.bytes).sum::<usize>();
    }

    fn release(&mut self, queue: &[Queued]) {
        self.queued_messages -= queue.len();
        self.queued_bytes -= queue.iter().map(|q| q.bytes).sum::<usize>();
    }
}

/// Decides whether `token` opens `doc`, tells the provider (`authenticated` with its scope, sent
/// on the socket's `base` link before anything the room sends), and joins the room.
fn join(
    state: AppState,
    doc: DocId,
    token: Option<String>,
    key: RoutingKey,
    attempt: u64,
    link: PeerLink,
    base: PeerLink,
) -> JoinFuture {
    Box::pin(async move {
        let result = async {
            let grant = match state.policy.document(token.as_deref(), &doc).await {
                Ok(grant) => grant,
                Err(AuthError::Unavailable) => {
                    return Err(Refusal::Join(JoinError::Unavailable("access cannot be checked".into())));
                }
                Err(err) => {
                    tracing::info!(doc = %doc, error = %err, "hocuspocus token refused");
                    return Err(Refusal::Denied(err.to_string()));
                }
            };
            let scope = match grant.access {
                Access::ReadWrite => hocuspocus::SCOPE_READ_WRITE,
                Access::ReadOnly => hocuspocus::SCOPE_READONLY,
            };
            // A full outbox closes the socket at the next send; the join then finds it gone.
            let _ = base.send_raw(hocuspocus::authenticated(&key.prefix(), scope));
            let tracked = state.policy.track(&grant, &doc, &link);
            let membership = state
                .rooms
                .join(&doc, Crdt::Yjs, grant.identity(), link.clone())
                .await
                .map_err(Refusal::Join)?;
            Ok((membership, tracked))
        }
        .await;
        Joined { key, attempt, link, result }
    })
}

/// Hands `input` to the room, waiting while its inbox is full (unless the socket closes meanwhile).
async fn forward(membership: &Membership, closer: &Closer, input: Inbound) -> ControlFlow<()> {
    let sent = tokio::select! {
        sent = membership.send(input) => sent,
        () = closer.closed() => return ControlFlow::Break(()),
    };
    if sent.is_err() {
        closer.close(CloseCode::InternalError);
        return ControlFlow::Break(());
    }
    ControlFlow::Continue(())
}

/// Queued messages in order, with runs of y-protocols messages merged into one room command.
fn coalesce(queue: Vec<Queued>) -> Vec<Inbound> {
    let mut out: Vec<Inbound> = Vec::with_capacity(queue.len());
    for Queued { input, .. } in queue {
        match (out.last_mut(), input) {
            (Some(Inbound::Yjs(run)), Inbound::Yjs(more)) => run.extend(more),
            (_, input) => out.push(input),
        }
    }
    out
}
