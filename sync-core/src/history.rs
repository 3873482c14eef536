//! What version history computes without I/O, for both CRDTs: who wrote which clocks
//! ([`Authorship`], from the [`Run`]s each logged update inserted), blame of a document's text,
//! and the difference between two projections ([`diff`], [`Summary`]). Capturing a version, the
//! state at a version and the update that restores one are per CRDT: `yjs::history` and
//! `automerge::history`. `docs/history.md` is the design.

use serde::Serialize;

use crate::domain::Projection;

/// Clocks one update inserted: for Yjs a client id (8 bytes, big-endian) and a range of its
/// clocks; for Automerge an actor id and a range of its operation counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The client or actor.
    pub origin: Vec<u8>,
    /// The first clock (or counter).
    pub start: u64,
    /// One past the last.
    pub end: u64,
}

/// Who wrote a run, and when the relay received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Author {
    /// The member's user id (`None`: written without an account, on a free document).
    pub user: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// Attributed runs of one document, looked up by clock.
#[derive(Debug, Clone, Default)]
pub struct Authorship {
    /// `(origin, start, end, author)`, sorted by origin then start; runs do not overlap.
    runs: Vec<(Vec<u8>, u64, u64, Author)>,
}

impl Authorship {
    /// Attributed runs, in any order. Where two claim the same clocks, the first one added wins
    /// (the relay keeps the first version of any clock, so the first writer is the author).
    pub fn new(runs: impl IntoIterator<Item = (Run, Author)>) -> Self {
        let mut all: Vec<(Vec<u8>, u64, u64, Author)> =
            runs.into_iter().map(|(run, author)| (run.origin, run.start, run.end, author)).collect();
        // Stable: among runs that start alike, the first added comes first and is kept.
        all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut kept: Vec<(Vec<u8>, u64, u64, Author)> = Vec::with_capacity(all.len());
        for (origin, start, end, author) in all {
            let start = match kept.last() {
                Some(last) if last.0 == origin && last.2 > start => last.2,
                _ => start,
            };
            if start < end {
                kept.push((origin, start, end, author));
            }
        }
        Self { runs: kept }
    }

    /// Who wrote clock `clock` of `origin`.
    pub fn author_of(&self, origin: &[u8], clock: u64) -> Option<&Author> {
        let after = self.runs.partition_point(|(o, start, _, _)| (o.as_slice(), *start) <= (origin, clock));
        let (o, _, end, author) = self.runs.get(after.checked_sub(1)?)?;
        (o.as_slice() == origin && clock < *end).then_some(author)
    }
}

/// Visible text one item (one origin, consecutive clocks) holds: what blame attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The text.
    pub text: String,
    /// Its client or actor.
    pub origin: Vec<u8>,
    /// The clock of its first character.
    pub start: u64,
    /// Clocks count UTF-16 code units (Yjs); otherwise one per character (Automerge).
    pub utf16: bool,
}

/// A span of the current text and who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlameSpan {
    /// Where it starts, in characters (Unicode scalar values) of the plain text.
    pub start: usize,
    /// Where it ends (exclusive).
    pub end: usize,
    /// The text.
    pub text: String,
    /// Who wrote it; `None` for what no recorded update wrote (the line breaks between blocks,
    /// text written before history was kept).
    pub author: Option<Author>,
}

/// Blame of `text` (a document's plain text, `Document::to_text`): spans of one author each, in
/// order, covering all of it. `written` is the document's visible text item by item in document
/// order (as `yjs::history::written` and `automerge::history::written` read it); characters of
/// `text` it does not hold (the line breaks the projection puts between blocks) have no author.
pub fn blame(text: &str, written: &[Written], authorship: &Authorship) -> Vec<BlameSpan> {
    let mut attributed = written.iter().flat_map(|w| {
        let mut clock = w.start;
        w.text.chars().map(move |c| {
            let at = clock;
            clock += if w.utf16 { c.len_utf16() as u64 } else { 1 };
            (c, w.origin.as_slice(), at)
        })
    });
    let mut next = attributed.next();
    let mut spans: Vec<BlameSpan> = Vec::new();
    for (index, c) in text.chars().enumerate() {
        let author = match next {
            Some((w, origin, clock)) if w == c => {
                next = attributed.next();
                authorship.author_of(origin, clock).cloned()
            }
            _ => None,
        };
        match spans.last_mut() {
            Some(last) if last.author == author => {
                last.end = index + 1;
                last.text.push(c);
            }
            _ => spans.push(BlameSpan { start: index, end: index + 1, text: c.to_string(), author }),
        }
    }
    spans
}

/// One piece of a text difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op", content = "text")]
pub enum TextOp {
    /// In both.
    Equal(String),
    /// Only in the later version.
    Insert(String),
    /// Only in the earlier version.
    Delete(String),
}

/// What happened to one item (a task, message, shape, comment or column) between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemChange {
    /// `task`, `column`, `message`, `shape` or `comment`.
    pub kind: &'static str,
    /// Its id.
    pub id: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
}

/// The counts a version list shows: what changed from the version before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
pub struct Summary {
    /// Characters of text added (documents; message bodies and task titles count as items).
    pub chars_added: usize,
    /// Characters of text removed.
    pub chars_removed: usize,
    /// Items added.
    pub items_added: usize,
    /// Items removed.
    pub items_removed: usize,
    /// Items changed.
    pub items_changed: usize,
}

/// The difference between two versions of one document, projected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Diff {
    /// The plain text, character by character (documents only).
    pub text: Vec<TextOp>,
    /// Items added, removed or changed, by kind then id.
    pub items: Vec<ItemChange>,
    /// The counts.
    pub summary: Summary,
}

/// What changed from `before` to `after` (two projections of one document kind; projections of
/// different kinds compare as all removed and all added).
pub fn diff(before: &Projection, after: &Projection) -> Diff {
    let mut out = Diff::default();
    let (text_before, text_after) = (plain_text(before), plain_text(after));
    if text_before.is_some() || text_after.is_some() {
        let (a, b) = (text_before.unwrap_or_default(), text_after.unwrap_or_default());
        out.text = text_ops(&a, &b);
    }
    let (items_before, items_after) = (items(before), items(after));
    for (kind, id, value) in &items_before {
        match items_after.iter().find(|(k, i, _)| k == kind && i == id) {
            None => out.items.push(ItemChange { kind, id: id.clone(), change: "removed" }),
            Some((_, _, other)) if other != value => {
                out.items.push(ItemChange { kind, id: id.clone(), change: "changed" });
            }
            Some(_) => {}
        }
    }
    for (kind, id, _) in &items_after {
        if !items_before.iter().any(|(k, i, _)| k == kind && i == id) {
            out.items.push(ItemChange { kind, id: id.clone(), change: "added" });
        }
    }
    out.items.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
    for op in &out.text {
        match op {
            TextOp::Insert(s) => out.summary.chars_added += s.chars().count(),
            TextOp::Delete(s) => out.summary.chars_removed += s.chars().count(),
            TextOp::Equal(_) => {}
        }
    }
    for item in &out.items {
        match item.change {
            "added" => out.summary.items_added += 1,
            "removed" => out.summary.items_removed += 1,
            _ => out.summary.items_changed += 1,
        }
    }
    out
}

fn plain_text(projection: &Projection) -> Option<String> {
    match projection {
        Projection::Document(doc) => Some(doc.to_text()),
        _ => None,
    }
}

/// Every item of a projection as `(kind, id, its JSON)`, compared by value.
fn items(projection: &Projection) -> Vec<(&'static str, String, serde_json::Value)> {
    fn all<T: Serialize>(
        kind: &'static str,
        list: &[T],
        id: impl Fn(&T) -> &str,
    ) -> Vec<(&'static str, String, serde_json::Value)> {
        list.iter()
            .map(|item| {
                (kind, id(item).to_owned(), serde_json::to_value(item).unwrap_or(serde_json::Value::Null))
            })
            .collect()
    }
    match projection {
        Projection::Document(doc) => all("comment", &doc.comments, |c| &c.id),
        Projection::Channel(channel) => all("message", &channel.messages, |m| &m.id),
        Projection::Board(board) => {
            let mut out = all("column", &board.columns, |c| &c.id);
            out.extend(all("task", &board.tasks, |t| &t.id));
            out
        }
        Projection::Whiteboard(board) => all("shape", &board.shapes, |s| &s.id),
    }
}

/// Longest stretch of changed text diffed character by character; longer changed stretches are
/// one deletion and one insertion (keeps the diff's cost bounded without a deadline: sync-core
/// reads no clock).
const CHAR_DIFF_LIMIT: usize = 4096;

/// A line diff, refined to characters within changed stretches of lines.
fn text_ops(before: &str, after: &str) -> Vec<TextOp> {
    let mut ops: Vec<TextOp> = Vec::new();
    let mut push = |op: TextOp| match (ops.last_mut(), op) {
        (Some(TextOp::Equal(t)), TextOp::Equal(s))
        | (Some(TextOp::Insert(t)), TextOp::Insert(s))
        | (Some(TextOp::Delete(t)), TextOp::Delete(s)) => t.push_str(&s),
        (_, op) => {
            if !matches!(&op, TextOp::Equal(s) | TextOp::Insert(s) | TextOp::Delete(s) if s.is_empty()) {
                ops.push(op);
            }
        }
    };
    let lines = similar::TextDiff::from_lines(before, after);
    for op in lines.ops() {
        let old: String = lines.old_slices()[op.old_range()].concat();
        let new: String = lines.new_slices()[op.new_range()].concat();
        match op.tag() {
            similar::DiffTag::Equal => push(TextOp::Equal(old)),
            similar::DiffTag::Delete => push(TextOp::Delete(old)),
            similar::DiffTag::Insert => push(TextOp::Insert(new)),
            similar::DiffTag::Replace if old.len() + new.len() > CHAR_DIFF_LIMIT => {
                push(TextOp::Delete(old));
                push(TextOp::Insert(new));
            }
            similar::DiffTag::Replace => {
                let chars = similar::TextDiff::from_chars(old.as_str(), new.as_str());
                for change in chars.iter_all_changes() {
                    let s = change.value().to_owned();
                    push(match change.tag() {
                        similar::ChangeTag::Equal => TextOp::Equal(s),
                        similar::ChangeTag::Insert => TextOp::Insert(s),
                        similar::ChangeTag::Delete => TextOp::Delete(s),
                    });
                }
            }
        }
    }
    ops
}
