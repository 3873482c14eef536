//! The canonical layouts of the workspace document kinds, on both CRDTs, and pure projections
//! from a replica to typed views (`docs/schemas.md` writes each layout down for app developers).
//! No I/O and no clock: a caller that needs "today" passes it in.

pub mod board;

use serde::Serialize;

/// Something a projection could not read and left out (or read with a default), and why. A
/// client that writes a malformed layout costs only what it broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Where, as `collection/id/field` (`tasks/t1/due`, `columns/3`).
    pub path: String,
    /// Why it could not be read.
    pub reason: String,
}
