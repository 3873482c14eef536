//! What search derives from a document, and what a search query means: the pure half of the
//! search index (`docs/search.md`). `entries` turns a projection into the rows the index holds,
//! one per searchable item; `Query::parse` turns what a person typed into a full-text expression
//! (the SQLite FTS5 syntax, every term quoted), or says why it cannot.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::Projection;

/// What a search result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A document itself: its title, and its text for rich-text documents.
    Document,
    /// A comment on a rich-text document.
    Comment,
    /// A channel message (a thread reply included).
    Message,
    /// A task on a board: its title and description.
    Task,
    /// A whiteboard shape with text.
    Shape,
}

impl ItemKind {
    /// The name the API and the index use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Document => "document",
            Self::Comment => "comment",
            Self::Message => "message",
            Self::Task => "task",
            Self::Shape => "shape",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Document, Self::Comment, Self::Message, Self::Task, Self::Shape]
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// One searchable item of a document, as the index stores it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Which item, unique in its document: `""` for the document itself, else `kind:id`.
    pub item: String,
    /// What it is.
    pub kind: ItemKind,
    /// Its title (the document's for the document itself; a task's title), weighted above the body.
    pub title: String,
    /// Its text.
    pub body: String,
    /// Who wrote it, when the layout says.
    pub author: Option<String>,
    /// When it was written (milliseconds since the Unix epoch), when the layout says.
    pub at: Option<i64>,
    /// An archived task (documents are archived as a whole, outside their content).
    pub archived: bool,
}

impl Entry {
    fn item(kind: ItemKind, id: &str) -> String {
        format!("{}:{id}", kind.as_str())
    }
}

/// The searchable items of a document titled `title`, created at `created_at`, whose content is
/// `projection`: the document itself first, then its comments, messages, tasks or shapes in the
/// projection's order. Deleted messages and shapes without text are left out.
pub fn entries(projection: &Projection, title: &str, created_at: i64) -> Vec<Entry> {
    let mut out = Vec::new();
    let body = match projection {
        Projection::Document(document) => document.to_text(),
        _ => String::new(),
    };
    out.push(Entry {
        item: String::new(),
        kind: ItemKind::Document,
        title: title.to_owned(),
        body,
        author: None,
        at: Some(created_at),
        archived: false,
    });
    match projection {
        Projection::Document(document) => out.extend(document.comments.iter().map(|c| Entry {
            item: Entry::item(ItemKind::Comment, &c.id),
            kind: ItemKind::Comment,
            title: String::new(),
            body: c.body.clone(),
            author: c.author.clone(),
            at: Some(c.at),
            archived: false,
        })),
        Projection::Channel(channel) => {
            out.extend(channel.messages.iter().filter(|m| !m.deleted).map(|m| Entry {
                item: Entry::item(ItemKind::Message, &m.id),
                kind: ItemKind::Message,
                title: String::new(),
                body: m.body.clone(),
                author: m.author.clone(),
                at: Some(m.at),
                archived: false,
            }))
        }
        Projection::Board(board) => out.extend(board.tasks.iter().map(|t| Entry {
            item: Entry::item(ItemKind::Task, &t.id),
            kind: ItemKind::Task,
            title: t.title.clone(),
            body: t.description.clone(),
            author: t.created_by.clone(),
            at: t.created_at,
            archived: t.archived,
        })),
        Projection::Whiteboard(board) => {
            out.extend(board.shapes.iter().filter(|s| !s.text.trim().is_empty()).map(|s| Entry {
                item: Entry::item(ItemKind::Shape, &s.id),
                kind: ItemKind::Shape,
                title: String::new(),
                body: s.text.clone(),
                author: None,
                at: None,
                archived: false,
            }))
        }
    }
    out
}

/// Longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 512;
/// Most terms (words, phrases, prefixes) in one query.
pub const MAX_TERMS: usize = 32;
/// Shortest prefix a `word*` term may have, in characters: shorter ones match too much to rank.
pub const MIN_PREFIX_CHARS: usize = 2;

/// A search query, parsed. What people type: words (all must match), `"a phrase"`, `prefix*`,
/// `-word` or `-"a phrase"` (must not match) and `OR` between two terms. Matching ignores case
/// and accents (that is the index's tokenizer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    groups: Vec<Vec<Term>>,
    excluded: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Words(String),
    Prefix(String),
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Nothing to search for.
    #[error("the query has no words to search for")]
    Empty,
    /// Longer than [`MAX_QUERY_BYTES`].
    #[error("the query is longer than {MAX_QUERY_BYTES} bytes")]
    TooLong,
    /// More than [`MAX_TERMS`] terms.
    #[error("the query has more than {MAX_TERMS} terms")]
    TooManyTerms,
    /// A `"` without its closing one.
    #[error("a phrase opened with \" is not closed")]
    UnclosedPhrase,
    /// A prefix shorter than [`MIN_PREFIX_CHARS`].
    #[error("the prefix {0:?} is shorter than {MIN_PREFIX_CHARS} characters")]
    ShortPrefix(String),
    /// `*` inside a phrase or not after a word.
    #[error("* may only end a word, as in draft*")]
    MisplacedStar,
    /// `OR` with no term on one side.
    #[error("OR needs a term on each side")]
    DanglingOr,
    /// Only excluded terms: there is nothing for them to be excluded from.
    #[error("the query only excludes; add a word to search for")]
    OnlyExcluded,
}

impl Query {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`QueryError`] saying what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(QueryError::TooLong);
        }
        let mut groups: Vec<Vec<Term>> = Vec::new();
        let mut excluded = Vec::new();
        let mut or_pending = false;
        let mut terms = 0;
        let mut rest = text.trim_start();
        while !rest.is_empty() {
            let negated = rest.starts_with('-');
            if negated {
                rest = &rest[1..];
            }
            let (token, after) = next_token(rest)?;
            rest = after.trim_start();
            let term = match token {
                Token::Or if !negated => {
                    if groups.is_empty() || or_pending {
                        return Err(QueryError::DanglingOr);
                    }
                    or_pending = true;
                    continue;
                }
                Token::Or => Term::Words("OR".into()),
                Token::Term(term) => term,
                Token::Nothing => continue,
            };
            terms += 1;
            if terms > MAX_TERMS {
                return Err(QueryError::TooManyTerms);
            }
            if negated {
                if or_pending {
                    return Err(QueryError::DanglingOr);
                }
                excluded.push(term);
            } else if or_pending {
                or_pending = false;
                groups.last_mut().expect("OR follows a term").push(term);
            } else {
                groups.push(vec![term]);
            }
        }
        if or_pending {
            return Err(QueryError::DanglingOr);
        }
        if groups.is_empty() {
            return Err(if excluded.is_empty() { QueryError::Empty } else { QueryError::OnlyExcluded });
        }
        Ok(Self { groups, excluded })
    }

    /// The FTS5 expression: every term a quoted string, so nothing a person types is read as
    /// FTS5 syntax.
    pub fn to_fts5(&self) -> String {
        let mut out = String::new();
        for (i, group) in self.groups.iter().enumerate() {
            if i > 0 {
                out.push_str(" AND ");
            }
            if group.len() > 1 {
                out.push('(');
            }
            for (j, term) in group.iter().enumerate() {
                if j > 0 {
                    out.push_str(" OR ");
                }
                out.push_str(&term.to_string());
            }
            if group.len() > 1 {
                out.push(')');
            }
        }
        for term in &self.excluded {
            out.push_str(" NOT ");
            out.push_str(&term.to_string());
        }
        out
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (text, star) = match self {
            Self::Words(text) => (text, ""),
            Self::Prefix(text) => (text, "*"),
        };
        write!(f, "\"{}\"{star}", text.replace('"', "\"\""))
    }
}

enum Token {
    Term(Term),
    Or,
    /// Only punctuation: nothing the index would match.
    Nothing,
}

/// The first token of `text` (which starts with no space) and what follows it.
fn next_token(text: &str) -> Result<(Token, &str), QueryError> {
    if let Some(inner) = text.strip_prefix('"') {
        let end = inner.find('"').ok_or(QueryError::UnclosedPhrase)?;
        let phrase = &inner[..end];
        let after = &inner[end + 1..];
        if phrase.contains('*') || after.starts_with('*') {
            return Err(QueryError::MisplacedStar);
        }
        return Ok((words(phrase).map_or(Token::Nothing, |w| Token::Term(Term::Words(w))), after));
    }
    let end = text.find(|c: char| c.is_whitespace() || c == '"').unwrap_or(text.len());
    let (word, after) = text.split_at(end);
    if word == "OR" {
        return Ok((Token::Or, after));
    }
    let (stem, prefix) = match word.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (word, false),
    };
    if stem.contains('*') {
        return Err(QueryError::MisplacedStar);
    }
    let Some(stem) = words(stem) else {
        return if prefix { Err(QueryError::MisplacedStar) } else { Ok((Token::Nothing, after)) };
    };
    if prefix {
        if stem.contains(' ') {
            return Err(QueryError::MisplacedStar);
        }
        if stem.chars().count() < MIN_PREFIX_CHARS {
            return Err(QueryError::ShortPrefix(stem));
        }
        return Ok((Token::Term(Term::Prefix(stem)), after));
    }
    Ok((Token::Term(Term::Words(stem)), after))
}

/// The words of `text` (letters and digits; everything else separates them, as the index's
/// tokenizer does), joined by single spaces; `None` when there are none.
fn words(text: &str) -> Option<String> {
    let joined =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    (!joined.is_empty()).then_some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fts(text: &str) -> String {
        Query::parse(text).map(|q| q.to_fts5()).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn words_phrases_prefixes_or_and_exclusions() {
        assert_eq!(fts("quarterly report"), r#""quarterly" AND "report""#);
        assert_eq!(fts(r#""launch plan" draft*"#), r#""launch plan" AND "draft"*"#);
        assert_eq!(fts("alpha OR beta gamma"), r#"("alpha" OR "beta") AND "gamma""#);
        assert_eq!(fts("notes -draft"), r#""notes" NOT "draft""#);
        assert_eq!(fts(r#"notes -"old plan""#), r#""notes" NOT "old plan""#);
        // FTS5 syntax typed by a person is read as words, never as syntax.
        assert_eq!(fts("title:secret NEAR(a b)"), r#""title secret" AND "NEAR a" AND "b""#);
        assert_eq!(fts("re-launch"), r#""re launch""#);
        assert_eq!(fts("Éclair"), r#""Éclair""#);
        assert_eq!(fts("a -OR"), r#""a" NOT "OR""#);
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(Query::parse("   "), Err(QueryError::Empty));
        assert_eq!(Query::parse("!!! ??"), Err(QueryError::Empty));
        assert_eq!(Query::parse("\"open"), Err(QueryError::UnclosedPhrase));
        assert_eq!(Query::parse("a*"), Err(QueryError::ShortPrefix("a".into())));
        assert_eq!(Query::parse("*"), Err(QueryError::MisplacedStar));
        assert_eq!(Query::parse("dra*ft"), Err(QueryError::MisplacedStar));
        assert_eq!(Query::parse("\"a b\"*"), Err(QueryError::MisplacedStar));
        assert_eq!(Query::parse("OR a"), Err(QueryError::DanglingOr));
        assert_eq!(Query::parse("a OR"), Err(QueryError::DanglingOr));
        assert_eq!(Query::parse("a OR OR b"), Err(QueryError::DanglingOr));
        assert_eq!(Query::parse("-a"), Err(QueryError::OnlyExcluded));
        assert_eq!(Query::parse(&"x ".repeat(33)), Err(QueryError::TooManyTerms));
        assert_eq!(Query::parse(&"x".repeat(513)), Err(QueryError::TooLong));
    }
}
