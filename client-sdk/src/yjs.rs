//! The tokio shell that runs a [`YjsClient`] over a WebSocket: connection lifecycle, reconnect with
//! backoff, local update capture, and status reporting. It does not interpret wire bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use weft_sync_core::yjs::YjsClient;
use weft_sync_core::yjs::client::REMOTE_ORIGIN;
use yrs::{Doc, Origin, TransactionMut};

/// How the client connects and reconnects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Delay before the first reconnect attempt; doubled after each failure.
    pub backoff_initial: Duration,
    /// Longest delay between reconnect attempts.
    pub backoff_max: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Largest message accepted from the relay. A document's whole state arrives as one message, so
    /// this must exceed the largest document (the relay's default limit is 256 MiB).
    pub max_message_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            max_message_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Why the client could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not a `ws://` or `wss://` URL.
    #[error("not a WebSocket URL: {0}")]
    InvalidUrl(String),
    /// The document is inside a transaction, so the update observer cannot be installed.
    #[error("the document is busy in a transaction")]
    DocumentBusy,
    /// A wait ended because the sync task stopped.
    #[error("the sync task has stopped")]
    Stopped,
    /// A wait did not finish in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

/// A close frame the relay sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code.
    pub code: u16,
    /// The reason text.
    pub reason: String,
}

/// A snapshot of the sync task's state.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    /// A WebSocket is open.
    pub connected: bool,
    /// The relay's state has been received on the current connection.
    pub synced: bool,
    /// `Some(n)`: the relay has stored everything this replica held after its first `n` local
    /// transactions (counted from when sync started). `None` until that has been true once.
    pub acknowledged_upto: Option<u64>,
    /// Connections opened so far.
    pub connections: u64,
    /// The last close frame received from the relay.
    pub last_close: Option<CloseInfo>,
    /// The last connection or protocol error.
    pub last_error: Option<String>,
    /// Other clients' awareness states (client id to JSON text).
    pub remote_awareness: BTreeMap<u64, String>,
}

enum Command {
    SetAwareness(Option<String>),
    Stop,
}

/// A running sync of one document. Dropping it stops the sync.
pub struct YjsSync {
    doc: Doc,
    observer: Origin,
    local_seq: Arc<AtomicU64>,
    status: watch::Receiver<SyncStatus>,
    commands: mpsc::UnboundedSender<Command>,
    task: Option<JoinHandle<()>>,
}

static NEXT_OBSERVER: AtomicU64 = AtomicU64::new(1);

impl YjsSync {
    /// Starts syncing `doc` with the document at `url` (for example
    /// `ws://127.0.0.1:8080/ws/yjs/my-doc`). Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for a URL that is not `ws://` or `wss://`;
    /// [`ClientError::DocumentBusy`] when `doc` is inside a transaction.
    pub fn start(url: &str, doc: Doc, options: ClientOptions) -> Result<Self, ClientError> {
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(ClientError::InvalidUrl(url.to_owned()));
        }
        // Local edits are produced by the application's own transactions and are already in memory
        // in the document, so this queue is unbounded: bounding it would mean blocking inside a yrs
        // observer. The sync task drains it continuously, connected or not.
        let (local_tx, local_rx) = mpsc::unbounded_channel();
        let local_seq = Arc::new(AtomicU64::new(0));
        let observer = Origin::from(format!("weft-client-{}", NEXT_OBSERVER.fetch_add(1, Ordering::Relaxed)));
        let remote = Origin::from(REMOTE_ORIGIN);
        let counter = local_seq.clone();
        doc.observe_update_v1(observer.clone(), move |txn: &TransactionMut, event| {
            if txn.origin() != Some(&remote) {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = local_tx.send(Bytes::from(event.update.clone()));
            }
        })
        .map_err(|_| ClientError::DocumentBusy)?;
        let (status_tx, status) = watch::channel(SyncStatus::default());
        let (commands, command_rx) = mpsc::unbounded_channel();
        let task = Task {
            url: url.to_owned(),
            options,
            client: YjsClient::new(doc.clone()),
            local: local_rx,
            commands: command_rx,
            status: status_tx,
            handled_local: 0,
        };
        let task = tokio::spawn(task.run());
        Ok(Self { doc, observer, local_seq, status, commands, task: Some(task) })
    }

    /// The synced document. Edit it as usual; edits are sent automatically.
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// A receiver of status changes.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.status.clone()
    }

    /// Sets this client's awareness state (JSON text), or clears it with `None`.
    pub fn set_awareness(&self, state_json: Option<String>) {
        let _ = self.commands.send(Command::SetAwareness(state_json));
    }

    /// Waits until the relay's state has been received on the current connection.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] or [`ClientError::Stopped`].
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), ClientError> {
        self.wait_for(timeout, "sync", |s| s.synced).await
    }

    /// Waits until the relay has durably stored every edit made to the document before this call.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] or [`ClientError::Stopped`].
    pub async fn wait_acknowledged(&self, timeout: Duration) -> Result<(), ClientError> {
        let target = self.local_seq.load(Ordering::SeqCst);
        self.wait_for(timeout, "acknowledgement", |s| s.acknowledged_upto.is_some_and(|n| n >= target)).await
    }

    /// Waits until `predicate` holds for the status.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] or [`ClientError::Stopped`].
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &'static str,
        predicate: impl FnMut(&SyncStatus) -> bool,
    ) -> Result<(), ClientError> {
        let mut status = self.status.clone();
        match tokio::time::timeout(timeout, status.wait_for(predicate)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ClientError::Stopped),
            Err(_) => Err(ClientError::Timeout(what)),
        }
    }

    /// Stops syncing and closes the connection.
    pub async fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for YjsSync {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        let _ = self.doc.unobserve_update_v1(self.observer.clone());
    }
}

struct Task {
    url: String,
    options: ClientOptions,
    client: YjsClient,
    local: mpsc::UnboundedReceiver<Bytes>,
    commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Sender<SyncStatus>,
    /// Local updates taken from the queue so far.
    handled_local: u64,
}

/// How one connection ended.
enum Ended {
    Disconnected,
    Stopped,
}

impl Task {
    async fn run(mut self) {
        let mut backoff = self.options.backoff_initial;
        loop {
            let config = WebSocketConfig::default()
                .max_message_size(Some(self.options.max_message_bytes))
                .max_frame_size(Some(self.options.max_message_bytes));
            let connect = tokio_tungstenite::connect_async_with_config(self.url.clone(), Some(config), true);
            let attempt = tokio::time::timeout(self.options.connect_timeout, connect);
            let ended = tokio::select! {
                attempt = attempt => match attempt {
                    Ok(Ok((ws, _))) => {
                        backoff = self.options.backoff_initial;
                        self.connection(ws).await
                    }
                    Ok(Err(err)) => self.note_error(err.to_string()),
                    Err(_) => self.note_error("connect timed out".into()),
                },
                stop = self.idle_until_stopped() => stop,
            };
            if matches!(ended, Ended::Stopped) {
                return;
            }
            let jitter = rand::rng().random_range(0.5..1.0);
            let delay = backoff.mul_f64(jitter);
            backoff = (backoff * 2).min(self.options.backoff_max);
            let ended = tokio::select! {
                () = tokio::time::sleep(delay) => Ended::Disconnected,
                stop = self.idle_until_stopped() => stop,
            };
            if matches!(ended, Ended::Stopped) {
                return;
            }
        }
    }

    fn note_error(&mut self, error: String) -> Ended {
        tracing::debug!(url = %self.url, %error, "connection attempt failed");
        self.status.send_modify(|s| s.last_error = Some(error));
        Ended::Disconnected
    }

    /// While not connected: keep taking local updates (they are covered by the next handshake) and
    /// commands, until asked to stop.
    async fn idle_until_stopped(&mut self) -> Ended {
        loop {
            tokio::select! {
                update = self.local.recv() => {
                    let Some(update) = update else { return Ended::Stopped };
                    self.handled_local += 1;
                    self.client.handle_local_update(update);
                }
                command = self.commands.recv() => match command {
                    Some(Command::SetAwareness(state)) => self.client.set_local_awareness(state.as_deref()),
                    Some(Command::Stop) | None => return Ended::Stopped,
                },
            }
        }
    }

    async fn connection(
        &mut self,
        ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    ) -> Ended {
        let (mut sink, mut stream) = ws.split();
        if let Err(err) = self.client.handle_connected() {
            tracing::warn!(url = %self.url, error = %err, "the document cannot start a sync");
            self.status.send_modify(|s| s.last_error = Some(err.to_string()));
            return Ended::Disconnected;
        }
        self.status.send_modify(|s| {
            s.connected = true;
            s.connections += 1;
        });
        let ended = loop {
            let mut stop = false;
            tokio::select! {
                message = stream.next() => match message {
                    Some(Ok(WsMessage::Binary(frame))) => {
                        if let Err(err) = self.client.handle_frame(&frame) {
                            tracing::warn!(url = %self.url, error = %err, "relay sent an invalid frame");
                            self.status.send_modify(|s| s.last_error = Some(err.to_string()));
                            break Ended::Disconnected;
                        }
                    }
                    Some(Ok(WsMessage::Close(frame))) => {
                        let close = frame.map(|CloseFrame { code, reason }| CloseInfo {
                            code: code.into(),
                            reason: reason.to_string(),
                        });
                        self.status.send_modify(|s| s.last_close = close);
                        break Ended::Disconnected;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        self.status.send_modify(|s| s.last_error = Some(err.to_string()));
                        break Ended::Disconnected;
                    }
                    None => break Ended::Disconnected,
                },
                update = self.local.recv() => match update {
                    Some(update) => {
                        self.handled_local += 1;
                        self.client.handle_local_update(update);
                    }
                    None => stop = true,
                },
                command = self.commands.recv() => match command {
                    Some(Command::SetAwareness(state)) => self.client.set_local_awareness(state.as_deref()),
                    Some(Command::Stop) | None => stop = true,
                },
            }
            if stop {
                let _ = sink.send(WsMessage::Close(None)).await;
                break Ended::Stopped;
            }
            let mut wrote = false;
            while let Some(frame) = self.client.poll_transmit() {
                if sink.feed(WsMessage::Binary(frame)).await.is_err() {
                    break;
                }
                wrote = true;
            }
            if wrote && sink.flush().await.is_err() {
                break Ended::Disconnected;
            }
            self.publish();
        };
        self.client.handle_disconnected();
        self.status.send_modify(|s| {
            s.connected = false;
            s.synced = false;
        });
        ended
    }

    fn publish(&mut self) {
        let synced = self.client.is_synced();
        let acknowledged = self.client.is_acknowledged().then_some(self.handled_local);
        let awareness: BTreeMap<u64, String> = self
            .client
            .remote_awareness()
            .live_entries()
            .into_iter()
            .map(|e| (e.client_id, String::from_utf8_lossy(&e.state).into_owned()))
            .collect();
        self.status.send_if_modified(|s| {
            let acknowledged_upto = acknowledged.or(s.acknowledged_upto);
            let changed = s.synced != synced
                || s.acknowledged_upto != acknowledged_upto
                || s.remote_awareness != awareness;
            s.synced = synced;
            s.acknowledged_upto = acknowledged_upto;
            s.remote_awareness = awareness;
            changed
        });
    }
}
