//! WebSocket plumbing shared by every dialect: the writer task that drains a peer's outbox into the
//! socket, coalescing queued frames into one flush, and the mapping from socket errors to close codes.

use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;
use weft_sync_core::CloseCode;

use super::AppState;
use crate::rooms::Closer;

/// Frames written before one flush: enough to turn a burst into one write, few enough to keep
/// latency for the first frame low.
const FRAMES_PER_FLUSH: usize = 64;

/// Initial capacity of a connection's read buffer. tungstenite's default (128 KiB) is sized for bulk
/// transfer; a sync connection is mostly idle and its messages are small, and larger ones grow the
/// buffer as needed, so idle connections stay cheap. The buffer is allocated when the connection
/// opens: going from 8 KiB to 2 KiB took an idle connection from ~16 to ~10 KiB of server RSS
/// (`weft-bench idle`).
const READ_BUFFER: usize = 2 * 1024;

/// Bytes of outgoing frames tungstenite gathers before writing to the socket; the writer task flushes
/// after every batch anyway.
const WRITE_BUFFER: usize = 64 * 1024;

/// Completes the upgrade of every Weft WebSocket: applies the message limit and buffer sizes, and
/// runs `serve` on the socket as a task graceful shutdown waits for.
pub fn accept<F, Fut>(ws: WebSocketUpgrade, state: AppState, serve: F) -> Response
where
    F: FnOnce(WebSocket, AppState) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let max = state.config.max_message_bytes;
    let task = state.tracker.token();
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            serve(socket, state).await;
            drop(task);
        })
}

/// How long a close frame may take to go out before the socket is dropped anyway. A peer disconnected
/// for being slow usually has a full socket, so its close frame often cannot be delivered.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Spawns the task that writes `outbox` to `sink` until the connection ends, then sends the close
/// frame `closer` carries (1001 on shutdown).
pub fn spawn_writer(
    mut sink: SplitSink<WebSocket, WsMessage>,
    mut outbox: mpsc::Receiver<Bytes>,
    closer: Closer,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let code = loop {
            tokio::select! {
                biased;
                () = closer.closed() => break closer.code(),
                () = shutdown.cancelled() => break Some(CloseCode::GoingAway),
                frame = outbox.recv() => {
                    let Some(frame) = frame else { break None };
                    let write = async {
                        sink.feed(WsMessage::Binary(frame)).await?;
                        for _ in 1..FRAMES_PER_FLUSH {
                            match outbox.try_recv() {
                                Ok(frame) => sink.feed(WsMessage::Binary(frame)).await?,
                                Err(_) => break,
                            }
                        }
                        sink.flush().await
                    };
                    // A peer that stops reading blocks the write; being closed must still win.
                    tokio::select! {
                        result = write => if result.is_err() { closer.finish(); break None },
                        () = closer.closed() => break closer.code(),
                        () = shutdown.cancelled() => break Some(CloseCode::GoingAway),
                    }
                }
            }
        };
        // Make sure the reading side stops too, whatever ended the writer.
        match code {
            Some(code) => {
                closer.close(code);
                let reason = closer.reason().map_or_else(|| code.reason().to_owned(), str::to_owned);
                let frame = CloseFrame { code: code.code(), reason: reason.into() };
                let close = async {
                    // Frames queued before the close go out first (an automerge-repo `error` message
                    // saying why, for one), within the same time limit. Not for a slow consumer: its
                    // backlog is what got it closed, and it resyncs anyway.
                    if code != CloseCode::SlowConsumer {
                        while let Ok(queued) = outbox.try_recv() {
                            sink.feed(WsMessage::Binary(queued)).await?;
                        }
                    }
                    sink.send(WsMessage::Close(Some(frame))).await
                };
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
            }
            None => {
                closer.finish();
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
            }
        }
    })
}

/// Ends a connection whose socket failed to read: with 4413 when a message exceeded the size limit
/// (returned, for the caller's log line), quietly otherwise (the transport failed; there is nobody
/// to tell).
pub fn end_after_read_error(err: axum::Error, closer: &Closer) -> Option<CloseCode> {
    match err.into_inner().downcast::<tungstenite::Error>() {
        Ok(err) if matches!(*err, tungstenite::Error::Capacity(_)) => {
            closer.close(CloseCode::MessageTooBig);
            Some(CloseCode::MessageTooBig)
        }
        _ => {
            closer.finish();
            None
        }
    }
}
