//! The task board layout, on both CRDTs, and its projection to typed tasks.
//!
//! **Yjs** (root types): `columns` is a `Y.Array` of `Y.Map`s `{ id, name }` in board order;
//! `tasks` is a `Y.Map` from task id to a `Y.Map` of the task's fields. **Automerge** (root object):
//! `columns` is a list of maps `{ id, name }`, `tasks` a map from task id to a map of fields.
//! Task fields, the same names on both: `title` (string), `description` (a `Y.Text` or string;
//! Automerge text or string), `column` (a column id), `priority` (`low`, `medium`, `high`,
//! `urgent`), `assignees` and `labels` (arrays of strings), `due` (`YYYY-MM-DD`, absent or null
//! when none), `order` (a number: tasks of a column sort by it, then by id), `archived`
//! (boolean), `createdBy` (user id) and `createdAt` (milliseconds since the Unix epoch).
//!
//! Every field sits under its own key, so concurrent edits of different fields of one task all
//! survive, and a concurrent move (two writers setting `column`/`order`) ends with one position,
//! never a duplicate. The projection reads whatever a client wrote: a field it cannot read takes
//! its default and is reported in [`Board::skipped`]; a task or column it cannot read at all is
//! left out and reported. It never fails and never panics on a document's content.

use std::cmp::Ordering;

use automerge::{Automerge, ObjType, ReadDoc, Value as AmValue};
use serde::{Deserialize, Serialize};
use yrs::{Any, Array, Map, Out, ReadTxn};

use super::Skipped;
use super::read::{Field, Fields, automerge_field, yjs_field};
use super::write::{Change, Value, nullable, set_or_remove, strings};

/// A task's priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Whenever.
    Low,
    /// The default.
    #[default]
    Medium,
    /// Soon.
    High,
    /// Now.
    Urgent,
}

impl Priority {
    /// Every priority, lowest first.
    pub const ALL: [Priority; 4] = [Priority::Low, Priority::Medium, Priority::High, Priority::Urgent];

    /// The name the layout stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    /// The priority named `name`, if any.
    pub fn parse(name: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// A column of the board.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    /// Stable id (what tasks name in `column`).
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A task, as the projection reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Task {
    /// Stable id (its key in `tasks`).
    pub id: String,
    /// Title.
    pub title: String,
    /// Description (plain text).
    pub description: String,
    /// The column it is in, if it names one that exists.
    pub column: Option<String>,
    /// Priority.
    pub priority: Priority,
    /// Assigned user ids.
    pub assignees: Vec<String>,
    /// Due date, `YYYY-MM-DD`.
    pub due: Option<String>,
    /// Labels.
    pub labels: Vec<String>,
    /// Position within its column.
    pub order: f64,
    /// Archived tasks stay readable and are left out of the board's columns by clients.
    pub archived: bool,
    /// Who created it.
    pub created_by: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub created_at: Option<i64>,
}

impl Task {
    /// Whether the task is past its due date on `today` (`YYYY-MM-DD`, the caller's clock and
    /// time zone): due before today and not archived.
    pub fn is_overdue(&self, today: &str) -> bool {
        !self.archived && self.due.as_deref().is_some_and(|due| due < today)
    }
}

/// The board: its columns in order, its tasks sorted by column (in column order; tasks without a
/// known column last), then `order`, then id; and what could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Board {
    /// Columns, in board order.
    pub columns: Vec<Column>,
    /// Tasks.
    pub tasks: Vec<Task>,
    /// What the projection left out or defaulted, and why.
    pub skipped: Vec<Skipped>,
}

/// Whether `s` is a calendar date written `YYYY-MM-DD`.
pub fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return false;
    }
    let month: u32 = s[5..7].parse().unwrap_or(0);
    let day: u32 = s[8..10].parse().unwrap_or(0);
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// Reading a task from its fields.
trait TaskFields {
    fn task(self) -> Task;
}

impl<G: Fn(&str) -> Option<Field>> TaskFields for Fields<'_, G> {
    fn task(mut self) -> Task {
        let priority = match self.string("priority") {
            None => Priority::default(),
            Some(name) => Priority::parse(&name).unwrap_or_else(|| {
                self.skip("priority", "not low, medium, high or urgent");
                Priority::default()
            }),
        };
        let due = match self.string("due") {
            Some(due) if is_date(&due) => Some(due),
            Some(_) => {
                self.skip("due", "not a YYYY-MM-DD date");
                None
            }
            None => None,
        };
        Task {
            id: self.id().to_owned(),
            title: self.string("title").unwrap_or_default(),
            description: self.string("description").unwrap_or_default(),
            column: self.string("column"),
            priority,
            assignees: self.strings("assignees"),
            due,
            labels: self.strings("labels"),
            order: self.number("order", false).unwrap_or(0.0),
            archived: self.flag("archived"),
            created_by: self.string("createdBy"),
            created_at: self.number("createdAt", true).map(|n| n as i64),
        }
    }
}

fn task(id: &str, get: impl Fn(&str) -> Option<Field>, skipped: &mut Vec<Skipped>) -> Task {
    Fields::new("tasks", id, get, skipped).task()
}

/// Columns in order (the first of duplicate ids wins), tasks sorted; tasks naming an unknown
/// column keep no column.
fn assemble(columns: Vec<Column>, mut tasks: Vec<Task>, mut skipped: Vec<Skipped>) -> Board {
    let mut unique: Vec<Column> = Vec::with_capacity(columns.len());
    for column in columns {
        if unique.iter().any(|c| c.id == column.id) {
            skipped.push(Skipped {
                path: format!("columns/{}", column.id),
                reason: "a second column with this id".into(),
            });
        } else {
            unique.push(column);
        }
    }
    let rank = |task: &Task| {
        task.column.as_ref().and_then(|c| unique.iter().position(|u| &u.id == c)).unwrap_or(usize::MAX)
    };
    for task in &mut tasks {
        if task.column.is_some() && rank(task) == usize::MAX {
            skipped.push(Skipped {
                path: format!("tasks/{}/column", task.id),
                reason: "names no column of the board".into(),
            });
            task.column = None;
        }
    }
    tasks.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then(a.order.partial_cmp(&b.order).unwrap_or(Ordering::Equal))
            .then_with(|| a.id.cmp(&b.id))
    });
    Board { columns: unique, tasks, skipped }
}

/// The board of a Yjs document (read-only; a fresh transaction on `txn`'s document).
pub fn from_yjs<T: ReadTxn>(txn: &T) -> Board {
    let mut skipped = Vec::new();
    let mut columns = Vec::new();
    if let Some(array) = txn.get_array("columns") {
        for (index, item) in array.iter(txn).enumerate() {
            let Out::YMap(map) = item else {
                skipped.push(Skipped { path: format!("columns/{index}"), reason: "not a map".into() });
                continue;
            };
            let text = |key: &str| match map.get(txn, key) {
                Some(Out::Any(Any::String(s))) => Some(s.to_string()),
                _ => None,
            };
            match text("id") {
                Some(id) => columns.push(Column { name: text("name").unwrap_or_default(), id }),
                None => {
                    skipped.push(Skipped { path: format!("columns/{index}"), reason: "no string id".into() })
                }
            }
        }
    }
    let mut tasks = Vec::new();
    if let Some(map) = txn.get_map("tasks") {
        for (id, value) in map.iter(txn) {
            let Out::YMap(fields) = value else {
                skipped.push(Skipped { path: format!("tasks/{id}"), reason: "not a map".into() });
                continue;
            };
            let get = |key: &str| fields.get(txn, key).map(|out| yjs_field(txn, out));
            tasks.push(task(id, get, &mut skipped));
        }
    }
    assemble(columns, tasks, skipped)
}

/// The board of an Automerge document.
pub fn from_automerge(doc: &Automerge) -> Board {
    let mut skipped = Vec::new();
    let mut columns = Vec::new();
    let root = automerge::ROOT;
    if let Ok(Some((AmValue::Object(ObjType::List), list))) = doc.get(&root, "columns") {
        for index in 0..doc.length(&list) {
            let Ok(Some((AmValue::Object(ObjType::Map), column))) = doc.get(&list, index) else {
                skipped.push(Skipped { path: format!("columns/{index}"), reason: "not a map".into() });
                continue;
            };
            let text = |key: &str| match automerge_field(doc, &column, key) {
                Some(Field::Str(s)) => Some(s),
                _ => None,
            };
            match text("id") {
                Some(id) => columns.push(Column { name: text("name").unwrap_or_default(), id }),
                None => {
                    skipped.push(Skipped { path: format!("columns/{index}"), reason: "no string id".into() })
                }
            }
        }
    }
    let mut tasks = Vec::new();
    if let Ok(Some((AmValue::Object(ObjType::Map), map))) = doc.get(&root, "tasks") {
        for id in doc.keys(&map) {
            let Ok(Some((AmValue::Object(ObjType::Map), fields))) = doc.get(&map, id.as_str()) else {
                skipped.push(Skipped { path: format!("tasks/{id}"), reason: "not a map".into() });
                continue;
            };
            let get = |key: &str| automerge_field(doc, &fields, key);
            tasks.push(task(&id, get, &mut skipped));
        }
    }
    assemble(columns, tasks, skipped)
}

/// Fields of a task to create or change: each one given is written under its own key; `due: null`
/// removes the due date.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskChange {
    /// Title.
    pub title: Option<String>,
    /// Description (collaborative text, edited in place).
    pub description: Option<String>,
    /// The id of the column it is in.
    pub column: Option<String>,
    /// Priority.
    pub priority: Option<Priority>,
    /// Assigned user ids.
    pub assignees: Option<Vec<String>>,
    /// Labels.
    pub labels: Option<Vec<String>>,
    /// Due date, `YYYY-MM-DD`; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    pub due: Option<Option<String>>,
    /// Position within its column.
    pub order: Option<f64>,
    /// Archived.
    pub archived: Option<bool>,
}

impl TaskChange {
    /// What is wrong with these fields, if anything.
    ///
    /// # Errors
    /// A sentence naming the field.
    pub fn check(&self) -> Result<(), String> {
        if let Some(Some(due)) = &self.due
            && !is_date(due)
        {
            return Err(format!("due {due:?} is not a date (YYYY-MM-DD)"));
        }
        if self.order.is_some_and(|o| !o.is_finite()) {
            return Err("order is not a finite number".into());
        }
        Ok(())
    }

    /// The changes that write these fields to task `id`.
    pub fn changes(&self, id: &str) -> Vec<Change> {
        let path = |key| ["tasks", id, key];
        let mut changes = Vec::new();
        let mut put = |key, value: Option<Value>| {
            if let Some(value) = value {
                changes.push(Change::set(&path(key), value));
            }
        };
        put("title", self.title.clone().map(Value::Str));
        put("description", self.description.clone().map(Value::Text));
        put("column", self.column.clone().map(Value::Str));
        put("priority", self.priority.map(|p| Value::from(p.as_str())));
        put("assignees", self.assignees.as_deref().map(strings));
        put("labels", self.labels.as_deref().map(strings));
        put("order", self.order.map(Value::Num));
        put("archived", self.archived.map(Value::Bool));
        set_or_remove(&mut changes, path("due"), self.due.clone().map(|d| d.map(Value::Str)));
        changes
    }
}

/// The changes that add column `id` named `name` at the end of the board.
pub fn add_column(id: &str, name: &str) -> Vec<Change> {
    vec![Change::push("columns", vec![("id", Value::from(id)), ("name", Value::from(name))])]
}

/// The changes that create task `id` with `fields`, by `user` at `at` (milliseconds).
pub fn create_task(id: &str, fields: &TaskChange, user: &str, at: i64) -> Vec<Change> {
    let mut changes = fields.changes(id);
    changes.push(Change::set(&["tasks", id, "createdBy"], user));
    changes.push(Change::set(&["tasks", id, "createdAt"], Value::Int(at)));
    if fields.archived.is_none() {
        changes.push(Change::set(&["tasks", id, "archived"], false));
    }
    changes
}
