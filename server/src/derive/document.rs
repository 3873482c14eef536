//! The derive job of one document: its merged state read through its kind's projection (from
//! its room, once everything the room holds is durable), turned into search rows
//! (`weft_sync_core::search::entries`) and notification facts (`weft_sync_core::notify::facts`),
//! and recorded with the log position it covers, in one transaction.

use weft_sync_core::DocId;
use weft_sync_core::search::{self, ItemKind};

use super::Deriver;
use crate::clock::now_ms;

/// Derives document `id`'s search rows and notifications.
///
/// # Errors
/// Why not: the job is retried.
pub(super) async fn derive(deriver: &Deriver, id: &str) -> Result<(), String> {
    let storage = &deriver.storage;
    let Some(doc) = storage.derivable(id).await.map_err(|e| e.to_string())? else { return Ok(()) };
    let (entries, facts) = if doc.deleted {
        (Vec::new(), Vec::new())
    } else {
        let name = DocId::new(id).map_err(|e| format!("document id {id:?}: {e}"))?;
        let projection = deriver
            .rooms
            .project(&name, doc.crdt, doc.kind)
            .await
            .map_err(|e| format!("reading {id}: {e}"))?;
        let mut entries = search::entries(&projection, &doc.title, doc.created_at);
        if doc.segment {
            // A segment's title is its channel's: the channel's own row holds it.
            entries.retain(|entry| entry.kind != ItemKind::Document);
        }
        (entries, weft_sync_core::notify::facts(&projection))
    };
    let (indexed, notified) = storage
        .record_derivation(doc.key, entries, facts, doc.upto, now_ms())
        .await
        .map_err(|e| e.to_string())?;
    tracing::debug!(doc = id, upto = doc.upto, ?indexed, ?notified, "derived");
    if !notified.created.is_empty() {
        deriver.events.notified(&notified.created);
    }
    Ok(())
}
