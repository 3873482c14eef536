//! The derive job of one document: its merged state read through its kind's projection (from
//! its room, once everything the room holds is durable), turned into search rows
//! (`weft_sync_core::search::entries`) and written to the index with the log position it covers.

use weft_sync_core::DocId;
use weft_sync_core::search::{self, ItemKind};

use super::Deriver;

/// Derives document `id`'s search rows.
///
/// # Errors
/// Why not: the job is retried.
pub(super) async fn derive(deriver: &Deriver, id: &str) -> Result<(), String> {
    let storage = &deriver.storage;
    let Some(doc) = storage.derivable(id).await.map_err(|e| e.to_string())? else { return Ok(()) };
    let entries = if doc.deleted {
        Vec::new()
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
        entries
    };
    let indexed = storage.index_document(doc.key, entries, doc.upto).await.map_err(|e| e.to_string())?;
    tracing::debug!(doc = id, upto = doc.upto, ?indexed, "derived");
    Ok(())
}
