//! The rich-text document layout, on both CRDTs, and its projection to blocks of styled text,
//! plain text and Markdown.
//!
//! **Yjs**, in the order the projection looks for them: a `Y.XmlFragment` named `default` (what
//! Tiptap's Collaboration extension writes), one named `prosemirror` (y-prosemirror's default),
//! or a `Y.Text` named `content` (plain text; a line is a paragraph). In the fragments the
//! ProseMirror schema the common editors share: `paragraph`, `heading` (attribute `level`),
//! `bulletList`/`orderedList` of `listItem`, `blockquote`, `codeBlock`, `horizontalRule`, with
//! `hardBreak` inside text, and the marks `bold`, `italic`, `code`, `strike` and `link` (`href`)
//! as text attributes. **Automerge**: the root object's `content`, a text (or string) — a line is
//! a paragraph. An element the projection does not know is read for its text and reported.
//!
//! Comments (both CRDTs): the root map `comments`, from comment id to `author`, `body`, `at`,
//! `parent`, `resolved` and the anchors `anchorStart` / `anchorEnd` — Yjs relative positions
//! (`Y.encodeRelativePosition` bytes, as an array of numbers) or Automerge cursors — read back as
//! the text they span now ([`Comment::quote`]).

use automerge::{Automerge, ObjType, ReadDoc, Value as AmValue};
use serde::Serialize;
use yrs::types::text::YChange;
use yrs::updates::decoder::Decode;
use yrs::{Any, GetString, Map, Out, ReadTxn, Text, Xml, XmlFragment, XmlOut};

use super::Skipped;
use super::read::{Field, Fields, automerge_field, yjs_field};
use super::write::{Change, Value};

/// What a block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "level")]
pub enum BlockKind {
    /// A paragraph.
    Paragraph,
    /// A heading of level 1 to 6.
    Heading(u8),
    /// An item of a bulleted list.
    Bullet,
    /// An item of a numbered list.
    Numbered,
    /// A quoted paragraph.
    Quote,
    /// Preformatted code.
    Code,
    /// A horizontal rule.
    Rule,
}

/// A run of text with one style.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Span {
    /// The text.
    pub text: String,
    /// Bold.
    pub bold: bool,
    /// Italic.
    pub italic: bool,
    /// Inline code.
    pub code: bool,
    /// Struck through.
    pub strike: bool,
    /// A link's target.
    pub link: Option<String>,
}

/// A block of the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    /// What it is.
    pub kind: BlockKind,
    /// Its text, styled.
    pub spans: Vec<Span>,
}

impl Block {
    /// The block's text without styles.
    pub fn text(&self) -> String {
        self.spans.iter().map(|s| s.text.as_str()).collect()
    }
}

/// A comment on a document, or a reply to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// Stable id (its key in `comments`).
    pub id: String,
    /// Who wrote it.
    pub author: Option<String>,
    /// Its text.
    pub body: String,
    /// When, in milliseconds since the Unix epoch.
    pub at: i64,
    /// The comment this one replies to.
    pub parent: Option<String>,
    /// Resolved (a thread's first comment carries it; reopening sets it back).
    pub resolved: bool,
    /// The text the comment is anchored to, as it reads now (its anchors follow concurrent
    /// edits); `None` when it has no anchor or the anchored text is gone.
    pub quote: Option<String>,
    /// User ids mentioned in the body.
    pub mentions: Vec<String>,
}

/// The document: its blocks in order, its comments (oldest first), and what could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Document {
    /// Blocks, in document order.
    pub blocks: Vec<Block>,
    /// Comments and replies, oldest first (by `at`, then id).
    pub comments: Vec<Comment>,
    /// User ids mentioned in the text, in order of first mention: Tiptap `mention` nodes (their
    /// `id` attribute) and `<@user-id>` written in the text.
    pub mentions: Vec<String>,
    /// What the projection read only in part, and why.
    pub skipped: Vec<Skipped>,
}

impl Document {
    /// Plain text: one line per block.
    pub fn to_text(&self) -> String {
        self.blocks.iter().map(Block::text).collect::<Vec<_>>().join("\n")
    }

    /// Markdown (CommonMark): blocks separated by blank lines, list items by line breaks.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let mut number = 0;
        for (index, block) in self.blocks.iter().enumerate() {
            let listed = matches!(block.kind, BlockKind::Bullet | BlockKind::Numbered);
            if index > 0 {
                let previous = self.blocks[index - 1].kind;
                let same_list = listed && previous == block.kind;
                out.push_str(if same_list { "\n" } else { "\n\n" });
            }
            number = if block.kind == BlockKind::Numbered
                && index > 0
                && self.blocks[index - 1].kind == BlockKind::Numbered
            {
                number + 1
            } else {
                1
            };
            let inline: String = block.spans.iter().map(markdown_span).collect();
            match block.kind {
                BlockKind::Paragraph => out.push_str(&inline),
                BlockKind::Heading(level) => {
                    out.push_str(&"#".repeat(usize::from(level.clamp(1, 6))));
                    out.push(' ');
                    out.push_str(&inline);
                }
                BlockKind::Bullet => {
                    out.push_str("- ");
                    out.push_str(&inline);
                }
                BlockKind::Numbered => {
                    out.push_str(&format!("{number}. "));
                    out.push_str(&inline);
                }
                BlockKind::Quote => {
                    out.push_str("> ");
                    out.push_str(&inline.replace('\n', "\n> "));
                }
                BlockKind::Code => {
                    let text = block.text();
                    let fence = if text.contains("```") { "~~~" } else { "```" };
                    out.push_str(&format!("{fence}\n{text}\n{fence}"));
                }
                BlockKind::Rule => out.push_str("---"),
            }
        }
        out
    }
}

/// `s` with the characters Markdown would read as syntax escaped.
fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' | '~' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn markdown_span(span: &Span) -> String {
    if span.text.is_empty() {
        return String::new();
    }
    let mut text =
        if span.code { format!("`{}`", span.text.replace('`', "'")) } else { escape_markdown(&span.text) };
    if span.strike {
        text = format!("~~{text}~~");
    }
    if span.italic {
        text = format!("*{text}*");
    }
    if span.bold {
        text = format!("**{text}**");
    }
    if let Some(href) = &span.link {
        text = format!("[{text}](<{}>)", href.replace(['<', '>', '\n'], ""));
    }
    text
}

/// The document of a Yjs document (see the module documentation for where it looks).
pub fn from_yjs<T: ReadTxn>(txn: &T) -> Document {
    let mut doc = Document::default();
    let mut found = false;
    for name in ["default", "prosemirror"] {
        if let Some(fragment) = txn.get_xml_fragment(name)
            && fragment.len(txn) > 0
        {
            for child in fragment.children(txn) {
                block(txn, child, None, &mut doc);
            }
            found = true;
            break;
        }
    }
    if !found && let Some(text) = txn.get_text("content") {
        doc.blocks = lines(&text.get_string(txn));
    }
    if let Some(map) = txn.get_map("comments") {
        for (id, value) in map.iter(txn) {
            let Out::YMap(fields) = value else {
                doc.skipped.push(Skipped { path: format!("comments/{id}"), reason: "not a map".into() });
                continue;
            };
            let get = |key: &str| fields.get(txn, key).map(|out| yjs_field(txn, out));
            let mut reader = Fields::new("comments", id, get, &mut doc.skipped);
            let (start, end) = (reader.numbers("anchorStart"), reader.numbers("anchorEnd"));
            let quote = yjs_quote(txn, &start, &end);
            let comment = comment(reader, quote);
            doc.comments.push(comment);
        }
    }
    sort_comments(&mut doc);
    text_mentions(&mut doc);
    doc
}

/// Adds the `<@user-id>` mentions written in the text to those the nodes named.
fn text_mentions(doc: &mut Document) {
    for id in super::mentions(&doc.to_text()) {
        if !doc.mentions.contains(&id) {
            doc.mentions.push(id);
        }
    }
}

/// The text between two encoded Yjs relative positions (`Y.encodeRelativePosition`, as byte
/// arrays), when both resolve into the same text.
fn yjs_quote<T: ReadTxn>(txn: &T, start: &[f64], end: &[f64]) -> Option<String> {
    let decode = |bytes: &[f64]| {
        let raw: Option<Vec<u8>> = bytes
            .iter()
            .map(|b| (b.fract() == 0.0 && (0.0..=255.0).contains(b)).then_some(*b as u8))
            .collect();
        let raw = raw.filter(|r| !r.is_empty())?;
        let index = yrs::StickyIndex::decode_v1(&raw).ok()?;
        index.get_offset(txn)
    };
    let (start, end) = (decode(start)?, decode(end)?);
    if start.branch != end.branch || end.index < start.index {
        return None;
    }
    let text = match start.branch.type_ref() {
        yrs::types::TypeRef::XmlText => yrs::XmlTextRef::from(start.branch).get_string(txn),
        _ => yrs::TextRef::from(start.branch).get_string(txn),
    };
    text.get(start.index as usize..end.index as usize).map(str::to_owned).filter(|q| !q.is_empty())
}

fn comment<G: Fn(&str) -> Option<Field>>(mut f: Fields<'_, G>, quote: Option<String>) -> Comment {
    let body = f.string("body").unwrap_or_default();
    Comment {
        id: f.id().to_owned(),
        author: f.string("author"),
        mentions: super::mentions(&body),
        body,
        at: f.number("at", true).map_or(0, |n| n as i64),
        parent: f.string("parent"),
        resolved: f.flag("resolved"),
        quote,
    }
}

fn sort_comments(doc: &mut Document) {
    doc.comments.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    let ids: std::collections::HashSet<String> = doc.comments.iter().map(|c| c.id.clone()).collect();
    for c in &mut doc.comments {
        if c.parent.as_ref().is_some_and(|p| !ids.contains(p) || *p == c.id) {
            doc.skipped.push(Skipped {
                path: format!("comments/{}/parent", c.id),
                reason: "names no comment".into(),
            });
            c.parent = None;
        }
    }
}

/// The document of an Automerge document: the root's `content`.
pub fn from_automerge(doc: &Automerge) -> Document {
    let (text, content) = match doc.get(&automerge::ROOT, "content") {
        Ok(Some((AmValue::Object(ObjType::Text), id))) => (doc.text(&id).unwrap_or_default(), Some(id)),
        Ok(Some((AmValue::Scalar(s), _))) => (s.as_str().unwrap_or_default().to_owned(), None),
        _ => (String::new(), None),
    };
    let mut out = Document { blocks: lines(&text), ..Document::default() };
    if let Ok(Some((AmValue::Object(ObjType::Map), map))) = doc.get(&automerge::ROOT, "comments") {
        for id in doc.keys(&map) {
            let Ok(Some((AmValue::Object(ObjType::Map), fields))) = doc.get(&map, id.as_str()) else {
                out.skipped.push(Skipped { path: format!("comments/{id}"), reason: "not a map".into() });
                continue;
            };
            let get = |key: &str| automerge_field(doc, &fields, key);
            let mut reader = Fields::new("comments", &id, get, &mut out.skipped);
            let (start, end) = (reader.string("anchorStart"), reader.string("anchorEnd"));
            let quote = content.as_ref().and_then(|content| {
                let position = |cursor: &str| {
                    let cursor = automerge::Cursor::try_from(cursor).ok()?;
                    doc.get_cursor_position(content, &cursor, None).ok()
                };
                let (start, end) = (position(start.as_deref()?)?, position(end.as_deref()?)?);
                let quote: String = text.chars().skip(start).take(end.saturating_sub(start)).collect();
                (!quote.is_empty()).then_some(quote)
            });
            let c = comment(reader, quote);
            out.comments.push(c);
        }
    }
    sort_comments(&mut out);
    text_mentions(&mut out);
    out
}

fn lines(text: &str) -> Vec<Block> {
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n')
        .map(|line| Block {
            kind: BlockKind::Paragraph,
            spans: vec![Span { text: line.to_owned(), ..Span::default() }],
        })
        .collect()
}

/// Reads `node` into `doc`'s blocks; `list` is the kind of the list it is in, if any.
fn block<T: ReadTxn>(txn: &T, node: XmlOut, list: Option<BlockKind>, doc: &mut Document) {
    let element = match node {
        XmlOut::Element(element) => element,
        XmlOut::Text(text) => {
            // Text directly in the fragment: a paragraph of its own.
            let spans = inline(txn, &text);
            doc.blocks.push(Block { kind: list.unwrap_or(BlockKind::Paragraph), spans });
            return;
        }
        XmlOut::Fragment(fragment) => {
            for child in fragment.children(txn) {
                block(txn, child, list, doc);
            }
            return;
        }
    };
    let tag = element.tag().to_string();
    let kind = match tag.as_str() {
        "paragraph" => list.unwrap_or(BlockKind::Paragraph),
        "heading" => {
            let level = match element.get_attribute(txn, "level") {
                Some(Out::Any(Any::Number(n))) => n.as_f64().unwrap_or(1.0),
                Some(Out::Any(Any::String(s))) => s.parse().unwrap_or(1.0),
                _ => 1.0,
            };
            BlockKind::Heading(level.clamp(1.0, 6.0) as u8)
        }
        "bulletList" | "bullet_list" | "orderedList" | "ordered_list" | "listItem" | "list_item"
        | "taskList" | "taskItem" => {
            let inner = match tag.as_str() {
                "bulletList" | "bullet_list" | "taskList" => Some(BlockKind::Bullet),
                "orderedList" | "ordered_list" => Some(BlockKind::Numbered),
                _ => list.or(Some(BlockKind::Bullet)),
            };
            for child in element.children(txn) {
                block(txn, child, inner, doc);
            }
            return;
        }
        "blockquote" => {
            for child in element.children(txn) {
                block(txn, child, Some(BlockKind::Quote), doc);
            }
            return;
        }
        "codeBlock" | "code_block" => BlockKind::Code,
        "horizontalRule" | "horizontal_rule" => {
            doc.blocks.push(Block { kind: BlockKind::Rule, spans: Vec::new() });
            return;
        }
        other => {
            doc.skipped.push(Skipped {
                path: format!("blocks/{}", doc.blocks.len()),
                reason: format!("unknown element {other:?}, read as a paragraph"),
            });
            list.unwrap_or(BlockKind::Paragraph)
        }
    };
    let mut spans = Vec::new();
    for child in element.children(txn) {
        match child {
            XmlOut::Text(text) => spans.extend(inline(txn, &text)),
            XmlOut::Element(inner) if matches!(inner.tag().as_ref(), "hardBreak" | "hard_break") => {
                spans.push(Span { text: "\n".into(), ..Span::default() });
            }
            XmlOut::Element(inner) if inner.tag().as_ref() == "mention" => {
                // Tiptap's Mention node: an atom with `id` and `label` attributes.
                let attribute = |name| inner.get_attribute(txn, name).map(|v| v.to_string(txn));
                if let Some(id) = attribute("id") {
                    let label = attribute("label").unwrap_or_else(|| id.clone());
                    spans.push(Span { text: format!("@{label}"), ..Span::default() });
                    if !doc.mentions.contains(&id) {
                        doc.mentions.push(id);
                    }
                }
            }
            XmlOut::Element(inner) => {
                // An inline node the projection does not know (an image, …): its text.
                spans.push(Span { text: inner.get_string(txn), ..Span::default() });
            }
            XmlOut::Fragment(_) => {}
        }
    }
    doc.blocks.push(Block { kind, spans });
}

fn inline<T: ReadTxn>(txn: &T, text: &yrs::XmlTextRef) -> Vec<Span> {
    text.diff(txn, YChange::identity)
        .into_iter()
        .filter_map(|chunk| {
            let Out::Any(Any::String(s)) = chunk.insert else { return None };
            let attrs = chunk.attributes.unwrap_or_default();
            let on = |name: &str| attrs.get(name).is_some_and(|v| !matches!(v, Any::Null | Any::Bool(false)));
            let link = match attrs.get("link") {
                Some(Any::Map(map)) => match map.get("href") {
                    Some(Any::String(href)) => Some(href.to_string()),
                    _ => None,
                },
                Some(Any::String(href)) => Some(href.to_string()),
                _ => None,
            };
            Some(Span {
                text: s.to_string(),
                bold: on("bold") || on("strong"),
                italic: on("italic") || on("em"),
                code: on("code"),
                strike: on("strike"),
                link,
            })
        })
        .collect()
}

/// A comment to add with [`add_comment`].
#[derive(Debug, Clone)]
pub struct NewComment<'a> {
    /// Its id.
    pub id: &'a str,
    /// Who writes it.
    pub author: &'a str,
    /// Its text; mentions as `<@user-id>`.
    pub body: &'a str,
    /// When, in milliseconds since the Unix epoch.
    pub at: i64,
    /// The comment a reply answers.
    pub parent: Option<&'a str>,
    /// The commented range of the document's plain text (root `content`), in characters: start
    /// and end (exclusive). Anchored by relative positions (Yjs) or cursors (Automerge).
    pub anchor: Option<(usize, usize)>,
}

/// The changes that add `comment`.
pub fn add_comment(comment: &NewComment<'_>) -> Vec<Change> {
    let path = |key| ["comments", comment.id, key];
    let mut changes = vec![
        Change::set(&path("author"), comment.author),
        Change::set(&path("body"), comment.body),
        Change::set(&path("at"), Value::Int(comment.at)),
    ];
    if let Some(parent) = comment.parent {
        changes.push(Change::set(&path("parent"), parent));
    }
    if let Some((start, end)) = comment.anchor {
        changes.push(Change::set(&path("anchorStart"), Value::Anchor { index: start, end: false }));
        changes.push(Change::set(&path("anchorEnd"), Value::Anchor { index: end, end: true }));
    }
    changes
}

/// The changes that resolve (or reopen) comment `id`.
pub fn resolve_comment(id: &str, resolved: bool) -> Vec<Change> {
    vec![Change::set(&["comments", id, "resolved"], resolved)]
}
