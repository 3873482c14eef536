//! The WebSocket close codes Weft sends, shared by the relay and the Rust client.
//!
//! Convention (the one y-websocket 3.1's default `shouldReconnect` follows): 4400–4499 mirror HTTP
//! 4xx and mean "this input is wrong, reconnecting will not help" — clients stop; every other code,
//! including 1001, 1011 and 4500–4599, is transient and clients reconnect and resync.
//! The table in `docs/protocol.md` is the user-facing copy of this enum; keep them in step.

/// Why the relay closed a WebSocket. The numeric value is the close code on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// The server is shutting down; reconnect later.
    GoingAway = 1001,
    /// The server hit an internal error (for example storage failed); reconnect and resync.
    InternalError = 1011,
    /// A frame that does not decode: garbage bytes, a truncated varint, an unknown message type.
    MalformedMessage = 4400,
    /// The connection presented no valid credentials.
    Unauthorized = 4401,
    /// The credentials do not allow this operation on this document.
    Forbidden = 4403,
    /// The document exists with a different CRDT than the endpoint speaks.
    WrongCrdt = 4409,
    /// A frame or message exceeded the configured maximum message size.
    MessageTooBig = 4413,
    /// Accepting the update would grow the document beyond the configured maximum size.
    DocumentTooLarge = 4414,
    /// A text frame arrived where the dialect is binary.
    UnsupportedData = 4415,
    /// A message decoded but carried an invalid CRDT update or state vector.
    InvalidUpdate = 4422,
    /// More messages arrived for documents not yet authenticated (or still loading) than the
    /// connection may queue.
    TooManyPending = 4429,
    /// The peer did not read its messages fast enough and its outbox filled; reconnect and resync.
    SlowConsumer = 4529,
    /// The member's access to this document changed (a new role, an archived document): reconnect
    /// to be served with the new access.
    AccessChanged = 4503,
}

impl CloseCode {
    /// The numeric close code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The short reason string sent in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Self::GoingAway => "server shutting down",
            Self::UnsupportedData => "text frames are not supported",
            Self::MessageTooBig => "message too big",
            Self::InternalError => "internal error",
            Self::MalformedMessage => "malformed message",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::WrongCrdt => "document uses a different CRDT",
            Self::DocumentTooLarge => "document too large",
            Self::InvalidUpdate => "invalid update",
            Self::TooManyPending => "too many messages before authentication",
            Self::SlowConsumer => "slow consumer",
            Self::AccessChanged => "access changed; reconnect",
        }
    }

    /// Whether a client should reconnect after this close (everything outside 4400–4499).
    pub fn is_transient(self) -> bool {
        !(4400..4500).contains(&self.code())
    }

    /// Looks up a close code received on the wire.
    pub fn from_code(code: u16) -> Option<Self> {
        const ALL: [CloseCode; 13] = [
            CloseCode::GoingAway,
            CloseCode::InternalError,
            CloseCode::MalformedMessage,
            CloseCode::Unauthorized,
            CloseCode::Forbidden,
            CloseCode::WrongCrdt,
            CloseCode::MessageTooBig,
            CloseCode::DocumentTooLarge,
            CloseCode::UnsupportedData,
            CloseCode::InvalidUpdate,
            CloseCode::TooManyPending,
            CloseCode::SlowConsumer,
            CloseCode::AccessChanged,
        ];
        ALL.into_iter().find(|c| c.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_round_trip_through_their_numbers() {
        for code in [CloseCode::GoingAway, CloseCode::SlowConsumer, CloseCode::InvalidUpdate] {
            assert_eq!(CloseCode::from_code(code.code()), Some(code));
        }
        assert_eq!(CloseCode::from_code(1000), None);
        assert!(CloseCode::SlowConsumer.is_transient() && CloseCode::GoingAway.is_transient());
        assert!(!CloseCode::InvalidUpdate.is_transient() && !CloseCode::MessageTooBig.is_transient());
    }
}
