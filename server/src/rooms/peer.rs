//! A room's handle on one connected peer: a bounded outbox of encoded frames and a one-shot closer.
//!
//! The room never awaits a peer. It `try_send`s; a full outbox means the peer is not keeping up and is
//! disconnected (close code 4529) so that it resyncs from its state vector — an update is never
//! dropped while the connection stays open.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft_sync_core::CloseCode;

/// Creates the two ends of a peer's outbox: the [`PeerLink`] the room sends through, the receiver the
/// connection's writer drains, and the [`Closer`] both sides share.
pub fn link(capacity: usize) -> (PeerLink, mpsc::Receiver<Bytes>, Closer) {
    let (tx, rx) = mpsc::channel(capacity);
    let closer = Closer::default();
    (
        PeerLink {
            outbox: tx,
            closer: closer.clone(),
        },
        rx,
        closer,
    )
}

/// The room's end of a peer connection.
#[derive(Clone, Debug)]
pub struct PeerLink {
    outbox: mpsc::Sender<Bytes>,
    closer: Closer,
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
    /// Queues `frame` without waiting.
    ///
    /// # Errors
    /// [`Undeliverable`] when the outbox is full or the connection has ended.
    pub fn try_send(&self, frame: Bytes) -> Result<(), Undeliverable> {
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
        self.closer.close(code);
    }

    /// Whether the connection has ended or been asked to close.
    pub fn is_gone(&self) -> bool {
        self.closer.is_closed() || self.outbox.is_closed()
    }
}

/// Shared "this connection is ending" signal, carrying the close code to send (if any).
#[derive(Clone, Debug, Default)]
pub struct Closer {
    inner: Arc<CloserInner>,
}

#[derive(Debug, Default)]
struct CloserInner {
    code: OnceLock<Option<CloseCode>>,
    token: CancellationToken,
}

impl Closer {
    /// Ends the connection with `code`. Later calls have no effect.
    pub fn close(&self, code: CloseCode) {
        self.end(Some(code));
    }

    /// Ends the connection without a code of our own (the peer closed, or the socket failed).
    pub fn finish(&self) {
        self.end(None);
    }

    fn end(&self, code: Option<CloseCode>) {
        if self.inner.code.set(code).is_ok() {
            self.inner.token.cancel();
        }
    }

    /// Whether the connection is ending.
    pub fn is_closed(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// The code the connection was closed with, if it was closed with one.
    pub fn code(&self) -> Option<CloseCode> {
        self.inner.code.get().copied().flatten()
    }

    /// Resolves once the connection is ending.
    pub async fn closed(&self) {
        self.inner.token.cancelled().await;
    }
}
