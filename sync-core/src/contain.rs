//! The containment layer: the one place where a call into a CRDT library (yrs, automerge) may
//! panic without taking the caller down. [`contain`] runs such a call and turns both its error and
//! its panic into a [`CrdtFailure`] naming the operation.
//!
//! Only the replica wrappers (`yjs::replica`, `automerge::replica`) call it; relays, the client
//! state machine and projections reach the libraries through those wrappers, so every decode, apply,
//! encode, snapshot and read is contained by this one mechanism. A contained panic still runs the
//! process's panic hook (a fuzzer that aborts on every panic must install its own).
//!
//! Unwinding must stay enabled (`panic = "unwind"`, the default) in every profile that ships.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// A CRDT library call failed or panicked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {detail}")]
pub struct CrdtFailure {
    /// What was being done ("decode update", "encode state", …).
    pub operation: &'static str,
    /// What went wrong, as the library said it (or the panic message).
    pub detail: String,
    /// Whether the library panicked (rather than returning an error).
    pub panicked: bool,
}

impl CrdtFailure {
    /// A failure found by Weft's own checks around a library call.
    pub fn new(operation: &'static str, detail: impl Into<String>) -> Self {
        Self { operation, detail: detail.into(), panicked: false }
    }
}

/// Runs `call`, turning a panic into a [`CrdtFailure`] for `operation`, and an error it returns into
/// one too.
///
/// The closure is asserted unwind-safe: after a failure the caller must treat whatever the closure
/// could mutate as suspect (a replica that failed to apply an update is discarded and rebuilt).
///
/// # Errors
/// [`CrdtFailure`] when `call` returns an error or panics.
pub fn contain<T, E: std::fmt::Display>(
    operation: &'static str,
    call: impl FnOnce() -> Result<T, E>,
) -> Result<T, CrdtFailure> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(CrdtFailure { operation, detail: err.to_string(), panicked: false }),
        Err(payload) => Err(CrdtFailure { operation, detail: panic_message(&payload), panicked: true }),
    }
}

/// Like [`contain`], for a call that cannot return an error, only panic.
///
/// # Errors
/// [`CrdtFailure`] when `call` panics.
pub fn contain_infallible<T>(operation: &'static str, call: impl FnOnce() -> T) -> Result<T, CrdtFailure> {
    contain(operation, || Ok::<T, std::convert::Infallible>(call()))
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_owned());
    format!("panicked: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_panics_both_become_failures_naming_the_operation() {
        let ok: Result<u8, CrdtFailure> = contain("add", || Ok::<u8, String>(1));
        assert_eq!(ok, Ok(1));
        let err = contain("parse", || "x".parse::<u8>()).unwrap_err();
        assert_eq!((err.operation, err.panicked), ("parse", false));
        let values: Vec<u8> = vec![1];
        let panicked = contain_infallible("index", || values[values.len() + 2]).unwrap_err();
        assert!(panicked.panicked && panicked.detail.contains("index out of bounds"), "{panicked}");
        assert!(panicked.to_string().starts_with("index: panicked"));
    }
}
