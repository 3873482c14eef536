//! `GET /ws/automerge`: the automerge-repo dialect. One connection is one automerge-repo peer that
//! multiplexes many documents.
//!
//! The connection task owns the handshake and the routing: the client's `join` is answered with
//! `peer` (protocol version "1"), then every message that names a document goes to that document's
//! room, which is joined on first mention as an Automerge document. Each room sees this connection
//! as one peer of its own (a sibling [`PeerLink`] sharing the socket's outbox and closer), and its
//! relay addresses everything it sends by the [`Route`] given at join; the relay, not this task,
//! judges sync messages.
//!
//! Problems with the byte stream (a frame that is not a message, a message before `join`, an
//! unsupported protocol version) end the socket with an `error` message and a close code from
//! `docs/protocol.md`. A permanent problem with one document (another CRDT, a token that does not
//! cover it, an invalid sync message, the size limit) ends only that document on this socket, with
//! an `error` message naming the code: automerge-repo's adapter reconnects after any close and
//! would resync every document just to fail again. Transient problems close the socket.
//!
//! What it does not do: remote-heads gossip (`remote-subscription-change` and
//! `remote-heads-changed` are accepted and ignored), or forward messages addressed to other peers
//! (Weft is the only peer a client reaches through it; such messages are dropped).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use axum::extract::ws::{
    Message as WsMessage, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use weft_sync_core::automerge::codec::{
    self, DocUnavailable, ErrorMessage, Join, Message, PROTOCOL_V1, Peer,
};
use weft_sync_core::automerge::{DocumentId, PeerMetadata, Route};
use weft_sync_core::{CloseCode, DocId};

use super::api::limits::ConnectAttempt;
use super::socket::{accept, end_after_read_error, spawn_writer};
use super::yjs::request_token;
use super::{ApiError, AppState};
use crate::auth::AuthError;
use crate::auth::policy::Tracked;
use crate::rooms::{self, Closer, Dialect, Inbound, Membership, PeerLink};
use crate::storage::Crdt;

/// This process's automerge-repo peer id, `weft-` and 16 random hex digits. A new one per start,
/// so that clients never resume a sync state a restarted server no longer has in memory.
pub fn server_peer_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        // std's RandomState is seeded from the OS's randomness once per process; no extra crate needed.
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
        );
        hasher.write_u32(std::process::id());
        format!("weft-{:016x}", hasher.finish())
    })
}

/// Checks that a token is present when tokens are required (each document is checked against it
/// when the connection first names it), then upgrades to a WebSocket.
pub async fn upgrade(
    State(state): State<AppState>,
    _attempt: ConnectAttempt,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|_| ApiError::UpgradeRequired)?;
    let token = request_token(&query, &headers).filter(|t| !t.is_empty()).map(str::to_owned);
    if state.policy.requires_token() && token.is_none() {
        return Err(AuthError::Missing.into());
    }
    Ok(accept(ws, state, move |socket, state| serve(socket, token, state)))
}

/// Whether the connection goes on after a frame.
enum Flow {
    Continue,
    Stop,
}

struct Connection {
    state: AppState,
    token: Option<String>,
    /// The socket's own link: connection-level frames (`peer`, `error`) go out through it unchanged,
    /// and every document's link is a sibling of it. It never joins a room itself.
    link: PeerLink,
    closer: Closer,
    /// The client's peer id, once it has joined.
    remote: Option<String>,
    documents: HashMap<DocumentId, DocState>,
}

/// What the connection knows about a document it has seen a message for.
enum DocState {
    /// Messages go to the document's room. `link` is this document's peer link, which the room ends
    /// alone on a permanent problem (an invalid sync message, the size limit, read-only access).
    Joined {
        membership: Membership,
        link: PeerLink,
        /// Keeps the connection reachable by access changes while the document is open.
        _tracked: Option<Tracked>,
    },
    /// Refused when first named (another CRDT, not covered by the token); messages are dropped.
    Refused,
}

async fn serve(socket: WebSocket, token: Option<String>, state: AppState) {
    let (sink, mut stream) = socket.split();
    // The socket-level link's dialect only decides how its own frames go out: unchanged.
    let (link, outbox, closer) = rooms::link(state.config.rooms.peer_outbox, Dialect::YWebsocket);
    let writer = spawn_writer(sink, outbox, closer.clone(), state.shutdown.clone());
    let shutdown = state.shutdown.clone();
    let mut conn =
        Connection { state, token, link, closer: closer.clone(), remote: None, documents: HashMap::new() };
    loop {
        let message = tokio::select! {
            () = closer.closed() => break,
            () = shutdown.cancelled() => break,
            message = stream.next() => message,
        };
        match message {
            Some(Ok(WsMessage::Binary(frame))) => {
                if let Flow::Stop = conn.handle_frame(&frame).await {
                    break;
                }
            }
            Some(Ok(WsMessage::Text(_))) => {
                conn.fail(
                    CloseCode::UnsupportedData,
                    "text frames are not supported; send CBOR in binary frames",
                );
                break;
            }
            Some(Ok(WsMessage::Close(_))) | None => {
                closer.finish();
                break;
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            Some(Err(err)) => {
                if let Some(code) = end_after_read_error(err, &closer) {
                    tracing::info!(peer = ?conn.remote, code = code.code(), "closing connection after read error");
                }
                break;
            }
        }
    }
    for (_, state) in conn.documents.drain() {
        if let DocState::Joined { membership, .. } = state {
            membership.leave().await;
        }
    }
    let _ = writer.await;
    tracing::debug!(peer = ?conn.remote, code = ?closer.code(), "automerge-repo peer left");
}

impl Connection {
    async fn handle_frame(&mut self, frame: &[u8]) -> Flow {
        let message = match codec::decode(frame) {
            Ok(message) => message,
            Err(err) => {
                tracing::info!(peer = ?self.remote, error = %err, "malformed automerge-repo message");
                self.fail(CloseCode::MalformedMessage, &format!("malformed message: {err}"));
                return Flow::Stop;
            }
        };
        match message {
            Message::Join(join) => self.handle_join(join),
            _ if self.remote.is_none() => {
                self.fail(CloseCode::MalformedMessage, "the first message must be join");
                Flow::Stop
            }
            Message::Request(_) | Message::Sync(_) | Message::DocUnavailable(_) | Message::Ephemeral(_) => {
                self.route(message).await
            }
            Message::RemoteSubscriptionChange(_) | Message::RemoteHeadsChanged(_) => {
                tracing::debug!(peer = ?self.remote, kind = message.type_name(), "remote-heads gossip ignored");
                Flow::Continue
            }
            Message::Peer(_) => {
                self.fail(CloseCode::MalformedMessage, "peer messages are sent by the server");
                Flow::Stop
            }
            Message::Error(error) => {
                // The peer closes after an error message; there is nothing to answer.
                tracing::info!(peer = ?self.remote, message = %error.message, "peer reported an error");
                self.closer.finish();
                Flow::Stop
            }
        }
    }

    fn handle_join(&mut self, join: Join) -> Flow {
        let speaks_v1 =
            join.supported_protocol_versions.as_ref().is_none_or(|v| v.iter().any(|v| v == PROTOCOL_V1));
        if !speaks_v1 {
            self.fail(CloseCode::MalformedMessage, "unsupported protocol version");
            return Flow::Stop;
        }
        if join.sender_id.is_empty() {
            self.fail(CloseCode::MalformedMessage, "join without a senderId");
            return Flow::Stop;
        }
        match &self.remote {
            Some(remote) if *remote != join.sender_id => {
                self.fail(CloseCode::MalformedMessage, "a connection carries one peer; it joined as another");
                return Flow::Stop;
            }
            _ => {}
        }
        tracing::debug!(peer = %join.sender_id, "automerge-repo peer joined");
        let peer = Message::Peer(Peer {
            sender_id: server_peer_id().to_owned(),
            target_id: join.sender_id.clone(),
            // A storage peer, though without a storage id: clients keep no sync state for it, and
            // resync from their heads on every connection.
            peer_metadata: PeerMetadata { storage_id: None, is_ephemeral: Some(false) },
            selected_protocol_version: PROTOCOL_V1.to_owned(),
        });
        self.remote = Some(join.sender_id);
        self.send(peer.encode())
    }

    /// Hands a document message to its room, joining the room on the document's first mention.
    async fn route(&mut self, message: Message) -> Flow {
        let Some(document) = message.document_id().cloned() else { return Flow::Continue };
        let target = match &message {
            Message::Request(m) | Message::Sync(m) => &m.target_id,
            Message::DocUnavailable(m) => &m.target_id,
            Message::Ephemeral(m) => &m.target_id,
            _ => return Flow::Continue,
        };
        if target != server_peer_id() {
            tracing::debug!(peer = ?self.remote, %target, "message for another peer dropped");
            return Flow::Continue;
        }
        let state = match self.documents.entry(document.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(_) => {
                let state = match self.open(&document).await {
                    Ok(state) => state,
                    Err(Flow::Stop) => return Flow::Stop,
                    Err(Flow::Continue) => DocState::Refused,
                };
                self.documents.entry(document).or_insert(state)
            }
        };
        let DocState::Joined { membership, link, .. } = state else { return Flow::Continue };
        if link.is_gone() {
            // The room ended this document's peer for a permanent problem (it sent an `error`
            // message saying which); the socket goes on for the others.
            return Flow::Continue;
        }
        let sent = tokio::select! {
            sent = membership.send(Inbound::Automerge(message)) => sent,
            () = self.closer.closed() => return Flow::Stop,
        };
        if sent.is_err() {
            self.closer.close(CloseCode::InternalError);
            return Flow::Stop;
        }
        Flow::Continue
    }

    /// Joins `document`'s room as an Automerge document. A permanent refusal (another CRDT, a token
    /// that does not cover it) is answered for that document alone, with `doc-unavailable` and an
    /// `error` message, and is `Err(Flow::Continue)`; a transient one closes the socket and is
    /// `Err(Flow::Stop)`.
    async fn open(&mut self, document: &DocumentId) -> Result<DocState, Flow> {
        let Some(remote) = self.remote.clone() else { return Err(Flow::Stop) };
        let doc = match DocId::new(document.as_str()) {
            Ok(doc) => doc,
            // Unreachable for ids the codec accepted (base58 within the DocId limit); refused anyway.
            Err(err) => return Err(self.refuse(document, CloseCode::MalformedMessage, &err.to_string())),
        };
        let decided = tokio::select! {
            decided = self.state.policy.document(self.token.as_deref(), &doc) => decided,
            () = self.closer.closed() => return Err(Flow::Stop),
        };
        let grant = match decided {
            Ok(grant) => grant,
            Err(AuthError::Unavailable) => {
                self.fail(CloseCode::InternalError, "access cannot be checked right now");
                return Err(Flow::Stop);
            }
            Err(err) => {
                let code = match err {
                    AuthError::NotForDocument | AuthError::Hidden => CloseCode::Forbidden,
                    AuthError::Missing | AuthError::Invalid(_) | AuthError::Unavailable => {
                        CloseCode::Unauthorized
                    }
                };
                return Err(self.refuse(document, code, &err.to_string()));
            }
        };
        let route = Route { local: server_peer_id().to_owned(), remote, document: document.clone() };
        let link = self.link.sibling(Dialect::AutomergeRepo { route });
        let tracked = self.state.policy.track(&grant, &doc, &link);
        let joined = tokio::select! {
            joined = self.state.rooms.join(&doc, Crdt::Automerge, grant.identity(), link.clone()) => joined,
            () = self.closer.closed() => return Err(Flow::Stop),
        };
        match joined {
            Ok(membership) => Ok(DocState::Joined { membership, link, _tracked: tracked }),
            Err(err) => {
                tracing::info!(doc = %doc, error = %err, "automerge-repo join refused");
                let code = err.close_code();
                if code.is_transient() {
                    self.fail(code, &format!("document {document} cannot be opened: {err}"));
                    return Err(Flow::Stop);
                }
                Err(self.refuse(document, code, &err.to_string()))
            }
        }
    }

    /// Answers every message about `document` with silence from now on, after saying why: the
    /// document is unavailable here (so a repo's `find` ends at once), and an `error` message
    /// carries the close code and the reason. Other documents on the socket are unaffected.
    fn refuse(&self, document: &DocumentId, code: CloseCode, detail: &str) -> Flow {
        let Some(remote) = self.remote.clone() else { return Flow::Stop };
        let unavailable = Message::DocUnavailable(DocUnavailable {
            sender_id: server_peer_id().to_owned(),
            target_id: remote,
            document_id: document.clone(),
        });
        if let Flow::Stop = self.send(unavailable.encode()) {
            return Flow::Stop;
        }
        let message = format!("{} {}: document {document}: {detail}", code.code(), code.reason());
        self.send(self.error(message).encode())
    }

    /// Queues a connection-level frame.
    fn send(&self, frame: bytes::Bytes) -> Flow {
        match self.link.try_send(frame) {
            Ok(()) => Flow::Continue,
            Err(rooms::Undeliverable::Full) => {
                self.closer.close(CloseCode::SlowConsumer);
                Flow::Stop
            }
            Err(rooms::Undeliverable::Gone) => Flow::Stop,
        }
    }

    /// Tells the peer what went wrong with an `error` message, then closes with `code`. The writer
    /// sends queued frames before the close frame, so the message arrives first.
    fn fail(&self, code: CloseCode, detail: &str) {
        let _ = self.link.try_send(self.error(detail.to_owned()).encode());
        self.closer.close(code);
    }

    fn error(&self, message: String) -> Message {
        Message::Error(ErrorMessage {
            sender_id: Some(server_peer_id().to_owned()),
            target_id: self.remote.clone(),
            message,
        })
    }
}
