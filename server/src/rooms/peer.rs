//! A room's handle on one connected peer: a bounded outbox of encoded frames, a one-shot closer, and
//! the peer's dialect, which decides how relay frames and acknowledgements look on its socket.
//!
//! The room never awaits a peer. It `try_send`s; a full outbox means the peer is not keeping up and is
//! disconnected (close code 4529) so that it resyncs from its state vector — an update is never
//! dropped while the connection stays open.
//!
//! Several peers may share one connection (a Hocuspocus socket serves many documents): they share
//! its outbox and closer, and each can also be ended alone (see [`PeerLink::close`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft_sync_core::{CloseCode, automerge, hocuspocus, yjs};

/// Why a read-only peer's write was refused, as it is told.
const READ_ONLY: &str = "read-only access: updates are not accepted";

/// How a peer's connection frames what the room sends it.
#[derive(Clone, Debug)]
pub enum Dialect {
    /// y-websocket: relay frames go out as they are; the echo of an update is its acknowledgement.
    YWebsocket,
    /// Hocuspocus: every frame is prefixed with the routing key (`varString`); acknowledgements and
    /// refusals are sync-status messages; stateless messages are relayed.
    Hocuspocus {
        /// The encoded routing key this peer's provider uses.
        prefix: Bytes,
    },
    /// automerge-repo: the relay encodes complete messages addressed to this peer, by this route.
    AutomergeRepo {
        /// The peer ids and the document the relay's messages to this peer carry.
        route: automerge::Route,
    },
}

impl Dialect {
    /// Its name, as log rows record the connection (`updates.client`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::YWebsocket => "y-websocket",
            Self::Hocuspocus { .. } => "hocuspocus",
            Self::AutomergeRepo { .. } => "automerge-repo",
        }
    }
}

/// Creates the two ends of a peer's outbox: the [`PeerLink`] the room sends through, the receiver the
/// connection's writer drains, and the [`Closer`] both sides share.
pub fn link(capacity: usize, dialect: Dialect) -> (PeerLink, mpsc::Receiver<Bytes>, Closer) {
    let (tx, rx) = mpsc::channel(capacity);
    let closer = Closer::default();
    (PeerLink { outbox: tx, closer: closer.clone(), dialect, detached: Arc::default() }, rx, closer)
}

/// The room's end of a peer connection.
#[derive(Clone, Debug)]
pub struct PeerLink {
    outbox: mpsc::Sender<Bytes>,
    closer: Closer,
    dialect: Dialect,
    /// Set when this peer alone was ended while its connection goes on serving others (see
    /// [`PeerLink::close`]). Read on every frame, so a plain flag rather than a token.
    detached: Arc<AtomicBool>,
}

/// Why a frame could not be queued for a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Undeliverable {
    /// The outbox is full: the peer is too slow.
    Full,
    /// The connection is gone.
    Gone,
}

impl PeerLink {
    /// Another peer on the same connection (a Hocuspocus socket carries many documents): shares the
    /// outbox and closer, with its own dialect framing.
    pub fn sibling(&self, dialect: Dialect) -> PeerLink {
        PeerLink {
            outbox: self.outbox.clone(),
            closer: self.closer.clone(),
            dialect,
            detached: Arc::default(),
        }
    }

    /// How this peer's connection frames what the room sends it.
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    /// Queues a relay frame, framed for this peer's dialect, without waiting.
    ///
    /// # Errors
    /// [`Undeliverable`] when the outbox is full or the connection has ended.
    pub fn try_send(&self, frame: Bytes) -> Result<(), Undeliverable> {
        let frame = match &self.dialect {
            Dialect::YWebsocket | Dialect::AutomergeRepo { .. } => frame,
            Dialect::Hocuspocus { prefix } => hocuspocus::wrap(prefix, &frame),
        };
        self.send_raw(frame)
    }

    /// Tells the peer one of its writes is durable, if its dialect has a message for that.
    ///
    /// # Errors
    /// [`Undeliverable`] as for [`PeerLink::try_send`].
    pub fn acknowledge(&self) -> Result<(), Undeliverable> {
        match &self.dialect {
            Dialect::Hocuspocus { prefix } => self.send_raw(hocuspocus::sync_status(prefix, true)),
            Dialect::YWebsocket | Dialect::AutomergeRepo { .. } => Ok(()),
        }
    }

    /// Tells the peer a write was refused (it has read-only access). A Hocuspocus provider gets a
    /// failed sync status and stays; a y-websocket client gets the protocol's permission-denied
    /// auth message and then the close (4403), an automerge-repo peer the close alone (the relay
    /// has sent its `error` message).
    ///
    /// # Errors
    /// [`Undeliverable`] as for [`PeerLink::try_send`].
    pub fn refuse(&self) -> Result<(), Undeliverable> {
        match &self.dialect {
            Dialect::Hocuspocus { prefix } => self.send_raw(hocuspocus::sync_status(prefix, false)),
            Dialect::YWebsocket => {
                let denied = yjs::codec::Message::PermissionDenied(READ_ONLY.to_owned()).encode();
                // Its last frame before the close; a full outbox loses only the explanation.
                let _ = self.queue(denied);
                self.close_with(CloseCode::Forbidden, READ_ONLY);
                Ok(())
            }
            Dialect::AutomergeRepo { .. } => {
                self.close(CloseCode::Forbidden);
                Ok(())
            }
        }
    }

    /// Relays a stateless message to this peer if its dialect has them; others never see them.
    ///
    /// # Errors
    /// [`Undeliverable`] as for [`PeerLink::try_send`].
    pub fn stateless(&self, payload: &str) -> Result<(), Undeliverable> {
        match &self.dialect {
            Dialect::Hocuspocus { prefix } => self.send_raw(hocuspocus::stateless(prefix, payload)),
            Dialect::YWebsocket | Dialect::AutomergeRepo { .. } => Ok(()),
        }
    }

    /// Queues a frame exactly as given, without this peer's dialect framing: for connection-level
    /// frames such as Hocuspocus' ping, pong and auth replies.
    ///
    /// # Errors
    /// [`Undeliverable`] as for [`PeerLink::try_send`].
    pub fn send_raw(&self, frame: Bytes) -> Result<(), Undeliverable> {
        if self.detached.load(Ordering::Acquire) {
            return Err(Undeliverable::Gone);
        }
        self.queue(frame)
    }

    /// Queues a frame unless the connection is ending, whether or not this peer was detached.
    fn queue(&self, frame: Bytes) -> Result<(), Undeliverable> {
        if self.closer.is_closed() {
            return Err(Undeliverable::Gone);
        }
        self.outbox.try_send(frame).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => Undeliverable::Full,
            mpsc::error::TrySendError::Closed(_) => Undeliverable::Gone,
        })
    }

    /// Asks the connection to close with `code`. The first close wins.
    pub fn close(&self, code: CloseCode) {
        self.close_with(code, "");
    }

    /// Asks the connection to close with `code`, saying why in `detail` (sent to this peer with
    /// the close, shortened to fit a close frame). The first close wins.
    ///
    /// A Hocuspocus or automerge-repo socket carries other documents: a permanent problem with this
    /// one (4400–4499, reconnecting would not help) ends only this peer (for Hocuspocus, with its
    /// close message naming the code), and the socket goes on. A transient one closes the socket,
    /// because reconnecting is the only way a provider resyncs a document.
    pub fn close_with(&self, code: CloseCode, detail: &str) {
        match &self.dialect {
            Dialect::Hocuspocus { prefix } if !code.is_transient() => {
                if self.detached.swap(true, Ordering::AcqRel) {
                    return;
                }
                let reason = format!("{} {}", code.code(), close_reason(code, detail));
                // The close message is this peer's last frame: it goes out past the flag just set.
                let sent = self.queue(hocuspocus::close(prefix, &reason));
                if sent == Err(Undeliverable::Full) {
                    self.closer.close(CloseCode::SlowConsumer);
                }
            }
            // The same on an automerge-repo socket, whose adapter also reconnects after any close.
            // automerge-repo has no per-document close message: the relay has already sent an
            // `error` message naming the code, and the document simply stops syncing here.
            Dialect::AutomergeRepo { .. } if !code.is_transient() => {
                self.detached.store(true, Ordering::Release)
            }
            _ => self.closer.close_with(code, detail),
        }
    }

    /// Ends this peer from outside its room (its access was revoked or changed): like
    /// [`PeerLink::close_with`], and an automerge-repo peer is first sent the `error` message
    /// saying why, which its room would otherwise have sent.
    pub fn revoke(&self, code: CloseCode, detail: &str) {
        if let Dialect::AutomergeRepo { route } = &self.dialect
            && !code.is_transient()
            && !self.is_gone()
        {
            let _ = self.queue(automerge::error_frame(route, code, detail));
        }
        self.close_with(code, detail);
    }

    /// Whether the connection has ended or been asked to close, or this peer alone was closed.
    pub fn is_gone(&self) -> bool {
        self.closer.is_closed() || self.outbox.is_closed() || self.detached.load(Ordering::Acquire)
    }
}

/// Shared "this connection is ending" signal, carrying the close code to send (if any).
#[derive(Clone, Debug, Default)]
pub struct Closer {
    inner: Arc<CloserInner>,
}

#[derive(Debug, Default)]
struct CloserInner {
    code: OnceLock<Option<(CloseCode, String)>>,
    token: CancellationToken,
}

impl Closer {
    /// Ends the connection with `code`. Later calls have no effect.
    pub fn close(&self, code: CloseCode) {
        self.close_with(code, "");
    }

    /// Ends the connection with `code`, saying why in `detail`. Later calls have no effect.
    pub fn close_with(&self, code: CloseCode, detail: &str) {
        self.end(Some((code, close_reason(code, detail))));
    }

    /// Ends the connection without a code of our own (the peer closed, or the socket failed).
    pub fn finish(&self) {
        self.end(None);
    }

    fn end(&self, code: Option<(CloseCode, String)>) {
        if self.inner.code.set(code).is_ok() {
            self.inner.token.cancel();
        }
    }

    /// The reason sent with the close frame, when the connection was closed with a code.
    pub fn reason(&self) -> Option<&str> {
        self.inner.code.get()?.as_ref().map(|(_, reason)| reason.as_str())
    }

    /// Whether the connection is ending. An atomic load (the code is set before the token is
    /// cancelled): this is checked on every frame, and the token's own check takes a lock.
    pub fn is_closed(&self) -> bool {
        self.inner.code.get().is_some()
    }

    /// The code the connection was closed with, if it was closed with one.
    pub fn code(&self) -> Option<CloseCode> {
        self.inner.code.get()?.as_ref().map(|(code, _)| *code)
    }

    /// Resolves once the connection is ending.
    pub async fn closed(&self) {
        self.inner.token.cancelled().await;
    }
}

/// Longest close-frame reason, in bytes: a close frame's payload is at most 125 bytes, two of which
/// are the code.
const MAX_CLOSE_REASON: usize = 123;

/// The reason a close carries: the code's short reason, then `detail` if any, cut at a character
/// boundary to fit a close frame.
pub fn close_reason(code: CloseCode, detail: &str) -> String {
    let mut reason =
        if detail.is_empty() { code.reason().to_owned() } else { format!("{}: {detail}", code.reason()) };
    if reason.len() > MAX_CLOSE_REASON {
        let mut end = MAX_CLOSE_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_name_the_code_then_the_detail_and_fit_a_close_frame() {
        assert_eq!(close_reason(CloseCode::InvalidUpdate, ""), "invalid update");
        assert_eq!(
            close_reason(CloseCode::InvalidUpdate, "decode update: x"),
            "invalid update: decode update: x"
        );
        let long = close_reason(CloseCode::InternalError, &"é".repeat(200));
        assert!(long.len() <= MAX_CLOSE_REASON && long.starts_with("internal error: é"), "{long}");
    }
}
