//! What a document's content owes people as notifications (`docs/derivation.md`): the pure half
//! of notifications. `facts` reads a projection and returns one [`Fact`] per notification it
//! calls for — a mention in text, a comment or a message; a reply in a thread someone takes part
//! in; a task assigned to someone — each with a key that names it for good. The same content
//! gives the same keys however often it is read, so storing facts by key creates each
//! notification exactly once, and a fact whose key disappears (a mention removed) can be
//! withdrawn.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::domain::Projection;

/// Longest excerpt a notification carries, in characters.
pub const EXCERPT_CHARS: usize = 140;

/// Why someone is notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// They were mentioned (`<@user-id>`).
    Mention,
    /// Someone replied in a thread they wrote in.
    Reply,
    /// A task was assigned to them.
    Assigned,
}

impl Reason {
    /// The name the API and the store use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mention => "mention",
            Self::Reply => "reply",
            Self::Assigned => "assigned",
        }
    }

    /// The reason named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Mention, Self::Reply, Self::Assigned].into_iter().find(|r| r.as_str() == name)
    }
}

/// One notification a document's content calls for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fact {
    /// Names it for good within its document: `reason:item:user`.
    pub key: String,
    /// Who is notified.
    pub user: String,
    /// Why.
    pub reason: Reason,
    /// Who caused it, when the layout says.
    pub actor: Option<String>,
    /// The item it is about: `text`, `comment:id`, `message:id` or `task:id`.
    pub item: String,
    /// The start of the item's text.
    pub excerpt: String,
    /// When the item was written (milliseconds since the Unix epoch), when the layout says.
    pub at: Option<i64>,
}

impl Fact {
    fn new(
        reason: Reason,
        user: &str,
        actor: Option<&String>,
        item: String,
        text: &str,
        at: Option<i64>,
    ) -> Self {
        Self {
            key: format!("{}:{item}:{user}", reason.as_str()),
            user: user.to_owned(),
            reason,
            actor: actor.cloned(),
            item,
            excerpt: excerpt(text),
            at,
        }
    }
}

/// The notifications `projection` calls for, in a stable order, each key once. Nobody is
/// notified of their own writing.
pub fn facts(projection: &Projection) -> Vec<Fact> {
    let mut out = Vec::new();
    match projection {
        Projection::Document(document) => {
            let text = document.to_text();
            for user in &document.mentions {
                out.push(Fact::new(Reason::Mention, user, None, "text".into(), &text, None));
            }
            for c in &document.comments {
                let item = format!("comment:{}", c.id);
                for user in &c.mentions {
                    out.push(Fact::new(
                        Reason::Mention,
                        user,
                        c.author.as_ref(),
                        item.clone(),
                        &c.body,
                        Some(c.at),
                    ));
                }
            }
        }
        Projection::Channel(channel) => {
            let mut ordered: Vec<_> = channel.messages.iter().filter(|m| !m.deleted).collect();
            ordered.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
            // Who takes part in each thread: its first message's author, then each reply's.
            let mut threads: HashMap<&str, BTreeSet<&str>> = HashMap::new();
            for m in ordered.iter().filter(|m| m.parent.is_none()) {
                if let Some(author) = &m.author {
                    threads.entry(&m.id).or_default().insert(author);
                }
            }
            for m in &ordered {
                let item = format!("message:{}", m.id);
                for user in &m.mentions {
                    out.push(Fact::new(
                        Reason::Mention,
                        user,
                        m.author.as_ref(),
                        item.clone(),
                        &m.body,
                        Some(m.at),
                    ));
                }
                let Some(parent) = m.parent.as_deref() else { continue };
                let taking_part = threads.entry(parent).or_default();
                for user in taking_part.iter() {
                    if !m.mentions.iter().any(|u| u == user) {
                        out.push(Fact::new(
                            Reason::Reply,
                            user,
                            m.author.as_ref(),
                            item.clone(),
                            &m.body,
                            Some(m.at),
                        ));
                    }
                }
                if let Some(author) = &m.author {
                    taking_part.insert(author);
                }
            }
        }
        Projection::Board(board) => {
            for t in board.tasks.iter().filter(|t| !t.archived) {
                for user in &t.assignees {
                    let item = format!("task:{}", t.id);
                    // Who assigned it is not in the layout: the fact names no actor.
                    out.push(Fact::new(Reason::Assigned, user, None, item, &t.title, t.created_at));
                }
            }
        }
        Projection::Whiteboard(_) => {}
    }
    let mut seen = BTreeSet::new();
    out.retain(|f| f.actor.as_deref() != Some(f.user.as_str()) && seen.insert(f.key.clone()));
    out
}

/// The first [`EXCERPT_CHARS`] characters of `text`, its whitespace collapsed.
fn excerpt(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::board::{Board, Task};
    use crate::domain::channel::{Channel, Message};

    fn message(id: &str, author: &str, body: &str, at: i64, parent: Option<&str>) -> Message {
        Message {
            id: id.into(),
            author: Some(author.into()),
            body: body.into(),
            at,
            parent: parent.map(Into::into),
            mentions: crate::domain::mentions(body),
            ..Message::default()
        }
    }

    fn keys(facts: &[Fact]) -> Vec<&str> {
        facts.iter().map(|f| f.key.as_str()).collect()
    }

    #[test]
    fn mentions_and_replies_in_a_thread_each_once_never_to_oneself() {
        let channel = Channel {
            messages: vec![
                // Out of time order in the layout: the thread's first message comes later.
                message("r1", "bob", "yes <@cy>", 20, Some("m1")),
                message("m1", "ada", "launch? <@bob> <@bob> <@ada>", 10, None),
                message("r2", "cy", "me too", 30, Some("m1")),
                message("x", "ada", "gone <@dan>", 40, None),
            ],
            ..Channel::default()
        };
        let mut channel = channel;
        channel.messages[3].deleted = true;
        let facts = facts(&Projection::Channel(channel));
        assert_eq!(
            keys(&facts),
            [
                "mention:message:m1:bob",
                "mention:message:r1:cy",
                "reply:message:r1:ada",
                "reply:message:r2:ada",
                "reply:message:r2:bob",
            ]
        );
        assert_eq!(facts[0].actor.as_deref(), Some("ada"));
        assert_eq!(facts[0].excerpt, "launch? <@bob> <@bob> <@ada>");
    }

    #[test]
    fn assignees_of_live_tasks_are_notified_and_excerpts_are_cut() {
        let long = "word ".repeat(100);
        let task = |id: &str, archived: bool| Task {
            id: id.into(),
            title: long.clone(),
            assignees: vec!["bob".into(), "cy".into()],
            archived,
            ..Task::default()
        };
        let board = Board { tasks: vec![task("t1", false), task("t2", true)], ..Board::default() };
        let facts = facts(&Projection::Board(board));
        assert_eq!(keys(&facts), ["assigned:task:t1:bob", "assigned:task:t1:cy"]);
        assert_eq!(facts[0].excerpt.chars().count(), EXCERPT_CHARS + 1);
        assert!(facts[0].excerpt.ends_with('…'));
    }
}
