//! The shape rules for what people type about themselves: login addresses and display names.
//! Pure, so the REST routes and the identity mapping (an external provider's claims) apply the
//! same rules.

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Longest address, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// The address normalised (trimmed, lower case), or `None` when it is not shaped like one.
/// Deliberately loose — one `@`, something on each side, no spaces: an address is proven by mail,
/// not by a pattern.
pub fn email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL_BYTES
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !domain.starts_with('.')
        });
    valid.then_some(email)
}

/// The name trimmed, or `None` unless it has 1 to [`MAX_NAME_CHARS`] characters and no control
/// characters.
pub fn display_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    let valid =
        !name.is_empty() && name.chars().count() <= MAX_NAME_CHARS && !name.chars().any(char::is_control);
    valid.then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_or_refused() {
        assert_eq!(email("  Ada@Example.COM ").as_deref(), Some("ada@example.com"));
        for bad in ["", "ada", "@example.com", "ada@", "a b@example.com", "a@b@c", "ada@.com"] {
            assert_eq!(email(bad), None, "{bad:?}");
        }
        assert_eq!(email(&format!("{}@example.com", "a".repeat(250))), None);
    }

    #[test]
    fn names_are_trimmed_or_refused() {
        assert_eq!(display_name("  Ada Lovelace ").as_deref(), Some("Ada Lovelace"));
        assert_eq!(
            display_name(&"é".repeat(MAX_NAME_CHARS)).map(|n| n.chars().count()),
            Some(MAX_NAME_CHARS)
        );
        for bad in [String::new(), "   ".into(), "a\u{0}b".into(), "x".repeat(MAX_NAME_CHARS + 1)] {
            assert_eq!(display_name(&bad), None, "{bad:?}");
        }
    }
}
