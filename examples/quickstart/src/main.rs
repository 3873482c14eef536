//! Quickstart: connect to a Weft relay, append a line to a shared Yjs document, wait until the relay
//! has stored it, and print the whole document.
//!
//! ```text
//! cargo run -p weft-server -- serve                       # in one terminal
//! cargo run -p weft-quickstart -- hello "first line"      # in another, as often as you like
//! ```
//! Any y-websocket client on `ws://127.0.0.1:8080/ws/yjs` with room `hello` sees the same text.

use std::time::Duration;

use anyhow::Context;
use weft_client::{ClientOptions, YjsSync};
use yrs::{Doc, GetString, Text, Transact};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let doc_name = args.next().unwrap_or_else(|| "hello".to_owned());
    let line = args.next().unwrap_or_else(|| "hello from the Rust SDK".to_owned());
    let relay = std::env::var("WEFT_URL").unwrap_or_else(|_| "ws://127.0.0.1:8080".to_owned());
    let url = format!("{relay}/ws/yjs/{doc_name}");

    let sync = YjsSync::start(&url, Doc::new(), ClientOptions::default())?;
    sync.wait_synced(Duration::from_secs(10))
        .await
        .with_context(|| format!("is a relay running at {relay}?"))?;

    let text = sync.doc().get_or_insert_text("t");
    {
        let mut txn = sync.doc().transact_mut();
        let end = text.len(&txn);
        text.insert(&mut txn, end, &format!("{line}\n"));
    }
    sync.wait_acknowledged(Duration::from_secs(10)).await.context("the relay did not store the edit")?;

    print!("{}", text.get_string(&sync.doc().transact()));
    sync.stop().await;
    Ok(())
}
