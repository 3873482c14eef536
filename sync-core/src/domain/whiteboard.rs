//! The whiteboard layout, on both CRDTs, its projection to typed shapes and connectors, and its
//! rendering as SVG.
//!
//! **Yjs**: the root `Y.Map` `shapes` maps shape id to a `Y.Map` of the shape's fields.
//! **Automerge**: the root object's `shapes` maps shape id to a map of fields. Fields, the same
//! names on both: `type` (`rectangle`, `ellipse`, `line`, `arrow`, `text`, `sticky`, `path`), `x`,
//! `y`, `width`, `height`, `rotation` (degrees) — numbers; `points` (an array of numbers, `x, y`
//! pairs relative to `x`/`y`, for `line`, `arrow` and `path`); `text` (a `Y.Text` or string;
//! Automerge text or string); `stroke` and `fill` (CSS colours); `strokeWidth` (number); `z`
//! (number: stacking order, lowest first, then id); and, on a `line` or `arrow`, `from` and `to`
//! (ids of the shapes it connects: a connector).
//!
//! Every field sits under its own key, so two people moving and recolouring one shape at once both
//! win their field. The projection reads whatever a client wrote; an unknown `type` or a field it
//! cannot read is left out or defaulted and reported in [`Whiteboard::skipped`]; a connector end
//! naming a shape that is gone is dropped (the line stays).

use std::fmt::Write;

use automerge::{Automerge, ObjType, ReadDoc, Value as AmValue};
use serde::{Deserialize, Serialize};
use yrs::{Map, Out, ReadTxn};

use super::Skipped;
use super::read::{Field, Fields, automerge_field, yjs_field};
use super::write::{Change, Value};

/// What a shape is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShapeKind {
    /// A rectangle.
    Rectangle,
    /// An ellipse in its bounding box.
    Ellipse,
    /// A straight or poly-line.
    Line,
    /// A line with an arrow head at its end.
    Arrow,
    /// Free text.
    Text,
    /// A sticky note: a filled square with text.
    Sticky,
    /// A freehand path.
    Path,
}

impl ShapeKind {
    /// Every kind.
    pub const ALL: [ShapeKind; 7] = [
        ShapeKind::Rectangle,
        ShapeKind::Ellipse,
        ShapeKind::Line,
        ShapeKind::Arrow,
        ShapeKind::Text,
        ShapeKind::Sticky,
        ShapeKind::Path,
    ];

    /// The name the layout stores.
    pub fn as_str(self) -> &'static str {
        match self {
            ShapeKind::Rectangle => "rectangle",
            ShapeKind::Ellipse => "ellipse",
            ShapeKind::Line => "line",
            ShapeKind::Arrow => "arrow",
            ShapeKind::Text => "text",
            ShapeKind::Sticky => "sticky",
            ShapeKind::Path => "path",
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<ShapeKind> {
        ShapeKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether its geometry is `points` (rather than a box).
    pub fn has_points(self) -> bool {
        matches!(self, ShapeKind::Line | ShapeKind::Arrow | ShapeKind::Path)
    }
}

/// A shape, as the projection reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shape {
    /// Stable id (its key in `shapes`).
    pub id: String,
    /// What it is.
    pub kind: ShapeKind,
    /// Position of its box (or origin of its points).
    pub x: f64,
    /// Position of its box (or origin of its points).
    pub y: f64,
    /// Box size.
    pub width: f64,
    /// Box size.
    pub height: f64,
    /// Rotation about the box centre, in degrees.
    pub rotation: f64,
    /// `(x, y)` points relative to `x`/`y`, for lines, arrows and paths.
    pub points: Vec<(f64, f64)>,
    /// Its text.
    pub text: String,
    /// Stroke colour.
    pub stroke: Option<String>,
    /// Fill colour.
    pub fill: Option<String>,
    /// Stroke width.
    pub stroke_width: f64,
    /// Stacking order.
    pub z: f64,
    /// The shape a connector starts at.
    pub from: Option<String>,
    /// The shape a connector ends at.
    pub to: Option<String>,
}

/// The whiteboard: shapes in stacking order (lowest first) and what could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Whiteboard {
    /// Shapes, lowest first.
    pub shapes: Vec<Shape>,
    /// What the projection left out or defaulted, and why.
    pub skipped: Vec<Skipped>,
}

impl Whiteboard {
    /// The connectors: lines and arrows with both ends on shapes.
    pub fn connectors(&self) -> impl Iterator<Item = &Shape> {
        self.shapes.iter().filter(|s| s.from.is_some() && s.to.is_some())
    }

    /// The board as a standalone SVG document, shapes in stacking order; its view box covers every
    /// shape with a margin.
    pub fn to_svg(&self) -> String {
        let (mut min_x, mut min_y, mut max_x, mut max_y) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for s in &self.shapes {
            let mut extend = |x: f64, y: f64| {
                min_x = min_x.min(x);
                min_y = min_y.min(y);
                max_x = max_x.max(x);
                max_y = max_y.max(y);
            };
            extend(s.x, s.y);
            extend(s.x + s.width, s.y + s.height);
            for (px, py) in &s.points {
                extend(s.x + px, s.y + py);
            }
        }
        if self.shapes.is_empty() {
            (min_x, min_y, max_x, max_y) = (0.0, 0.0, 0.0, 0.0);
        }
        let margin = 10.0;
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="{} {} {} {}">"#,
            num(min_x - margin),
            num(min_y - margin),
            num(max_x - min_x + 2.0 * margin),
            num(max_y - min_y + 2.0 * margin)
        );
        out.push_str(r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z"/></marker></defs>"#);
        for s in &self.shapes {
            svg_shape(&mut out, s);
        }
        out.push_str("</svg>");
        out
    }
}

/// A number as SVG writes it (no exponent, no trailing zeros).
fn num(n: f64) -> String {
    let rounded = (n * 100.0).round() / 100.0;
    if rounded == rounded.trunc() { format!("{}", rounded as i64) } else { format!("{rounded}") }
}

/// `s` escaped for XML text and attribute values.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

fn svg_shape(out: &mut String, s: &Shape) {
    let stroke = xml(s.stroke.as_deref().unwrap_or("#000000"));
    let fill = xml(s.fill.as_deref().unwrap_or(if s.kind == ShapeKind::Sticky { "#fff59d" } else { "none" }));
    let width = num(s.stroke_width);
    let transform = if s.rotation == 0.0 {
        String::new()
    } else {
        format!(
            r#" transform="rotate({} {} {})""#,
            num(s.rotation),
            num(s.x + s.width / 2.0),
            num(s.y + s.height / 2.0)
        )
    };
    let paint = format!(r#"stroke="{stroke}" stroke-width="{width}" fill="{fill}"{transform}"#);
    let _ = match s.kind {
        ShapeKind::Rectangle | ShapeKind::Sticky => write!(
            out,
            r#"<rect data-id="{}" x="{}" y="{}" width="{}" height="{}" {paint}/>"#,
            xml(&s.id),
            num(s.x),
            num(s.y),
            num(s.width),
            num(s.height)
        ),
        ShapeKind::Ellipse => write!(
            out,
            r#"<ellipse data-id="{}" cx="{}" cy="{}" rx="{}" ry="{}" {paint}/>"#,
            xml(&s.id),
            num(s.x + s.width / 2.0),
            num(s.y + s.height / 2.0),
            num(s.width / 2.0),
            num(s.height / 2.0)
        ),
        ShapeKind::Line | ShapeKind::Arrow | ShapeKind::Path => {
            let points: Vec<String> =
                s.points.iter().map(|(px, py)| format!("{},{}", num(s.x + px), num(s.y + py))).collect();
            let marker = if s.kind == ShapeKind::Arrow { r#" marker-end="url(#arrow)""# } else { "" };
            write!(
                out,
                r#"<polyline data-id="{}" points="{}" stroke="{stroke}" stroke-width="{width}" fill="none"{marker}{transform}/>"#,
                xml(&s.id),
                points.join(" ")
            )
        }
        ShapeKind::Text => Ok(()),
    };
    if !s.text.is_empty() {
        let _ = write!(
            out,
            r#"<text data-id="{}" x="{}" y="{}" dominant-baseline="hanging"{transform}>{}</text>"#,
            xml(&s.id),
            num(s.x + 4.0),
            num(s.y + 4.0),
            xml(&s.text)
        );
    }
}

fn shape<G: Fn(&str) -> Option<Field>>(mut f: Fields<'_, G>) -> Option<Shape> {
    let kind = match f.string("type").as_deref().map(ShapeKind::parse) {
        Some(Some(kind)) => kind,
        _ => {
            f.skip("type", "not a shape type this layout knows");
            return None;
        }
    };
    let points = if kind.has_points() {
        let raw = f.numbers("points");
        if raw.len() % 2 == 1 {
            f.skip("points", "an odd count of coordinates");
        }
        raw.chunks_exact(2).map(|p| (p[0], p[1])).collect()
    } else {
        Vec::new()
    };
    let (from, to) = if matches!(kind, ShapeKind::Line | ShapeKind::Arrow) {
        (f.string("from"), f.string("to"))
    } else {
        (None, None)
    };
    Some(Shape {
        id: f.id().to_owned(),
        kind,
        x: f.number("x", false).unwrap_or(0.0),
        y: f.number("y", false).unwrap_or(0.0),
        width: f.number("width", false).unwrap_or(0.0).max(0.0),
        height: f.number("height", false).unwrap_or(0.0).max(0.0),
        rotation: f.number("rotation", false).unwrap_or(0.0),
        points,
        text: f.string("text").unwrap_or_default(),
        stroke: f.string("stroke"),
        fill: f.string("fill"),
        stroke_width: f.number("strokeWidth", false).unwrap_or(2.0).max(0.0),
        z: f.number("z", false).unwrap_or(0.0),
        from,
        to,
    })
}

fn assemble(mut shapes: Vec<Shape>, mut skipped: Vec<Skipped>) -> Whiteboard {
    let ids: std::collections::HashSet<String> = shapes.iter().map(|s| s.id.clone()).collect();
    for s in &mut shapes {
        for (end, name) in [(&mut s.from, "from"), (&mut s.to, "to")] {
            if end.as_ref().is_some_and(|id| !ids.contains(id)) {
                skipped.push(Skipped {
                    path: format!("shapes/{}/{name}", s.id),
                    reason: "names no shape".into(),
                });
                *end = None;
            }
        }
    }
    shapes.sort_by(|a, b| {
        a.z.partial_cmp(&b.z).unwrap_or(std::cmp::Ordering::Equal).then_with(|| a.id.cmp(&b.id))
    });
    Whiteboard { shapes, skipped }
}

/// The whiteboard of a Yjs document.
pub fn from_yjs<T: ReadTxn>(txn: &T) -> Whiteboard {
    let mut skipped = Vec::new();
    let mut shapes = Vec::new();
    if let Some(map) = txn.get_map("shapes") {
        for (id, value) in map.iter(txn) {
            let Out::YMap(fields) = value else {
                skipped.push(Skipped { path: format!("shapes/{id}"), reason: "not a map".into() });
                continue;
            };
            let get = |key: &str| fields.get(txn, key).map(|out| yjs_field(txn, out));
            shapes.extend(shape(Fields::new("shapes", id, get, &mut skipped)));
        }
    }
    assemble(shapes, skipped)
}

/// The whiteboard of an Automerge document.
pub fn from_automerge(doc: &Automerge) -> Whiteboard {
    let mut skipped = Vec::new();
    let mut shapes = Vec::new();
    if let Ok(Some((AmValue::Object(ObjType::Map), map))) = doc.get(&automerge::ROOT, "shapes") {
        for id in doc.keys(&map) {
            let Ok(Some((AmValue::Object(ObjType::Map), fields))) = doc.get(&map, id.as_str()) else {
                skipped.push(Skipped { path: format!("shapes/{id}"), reason: "not a map".into() });
                continue;
            };
            let get = |key: &str| automerge_field(doc, &fields, key);
            shapes.extend(shape(Fields::new("shapes", &id, get, &mut skipped)));
        }
    }
    assemble(shapes, skipped)
}

/// Fields of a shape to add or change, each written under its own key; `from: null` / `to: null`
/// disconnects a connector end.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShapeChange {
    /// What it is (required to add one).
    #[serde(rename = "type")]
    pub kind: Option<ShapeKind>,
    /// Position.
    pub x: Option<f64>,
    /// Position.
    pub y: Option<f64>,
    /// Box size (not negative).
    pub width: Option<f64>,
    /// Box size (not negative).
    pub height: Option<f64>,
    /// Degrees about the box centre.
    pub rotation: Option<f64>,
    /// `x, y` pairs relative to `x`/`y`.
    pub points: Option<Vec<f64>>,
    /// Its text (collaborative text, edited in place).
    pub text: Option<String>,
    /// Stroke colour.
    pub stroke: Option<String>,
    /// Fill colour.
    pub fill: Option<String>,
    /// Stroke width.
    pub stroke_width: Option<f64>,
    /// Stacking order.
    pub z: Option<f64>,
    /// The shape a connector starts at; `null` disconnects it.
    #[serde(default, deserialize_with = "super::write::nullable")]
    pub from: Option<Option<String>>,
    /// The shape a connector ends at; `null` disconnects it.
    #[serde(default, deserialize_with = "super::write::nullable")]
    pub to: Option<Option<String>>,
}

impl ShapeChange {
    /// The numeric fields, by their names in the layout.
    fn numbers(&self) -> [(&'static str, Option<f64>); 7] {
        [
            ("x", self.x),
            ("y", self.y),
            ("width", self.width),
            ("height", self.height),
            ("rotation", self.rotation),
            ("strokeWidth", self.stroke_width),
            ("z", self.z),
        ]
    }

    /// What is wrong with these fields, if anything.
    ///
    /// # Errors
    /// A sentence naming the field.
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in self.numbers() {
            if value.is_some_and(|v| !v.is_finite()) {
                return Err(format!("{name} is not a finite number"));
            }
        }
        if self.width.is_some_and(|w| w < 0.0) || self.height.is_some_and(|h| h < 0.0) {
            return Err("width and height are not negative".into());
        }
        if let Some(points) = &self.points
            && (points.len() % 2 != 0 || points.iter().any(|p| !p.is_finite()))
        {
            return Err("points are pairs of finite numbers".into());
        }
        Ok(())
    }

    /// The changes that write these fields to shape `id`.
    pub fn changes(&self, id: &str) -> Vec<Change> {
        let path = |key| ["shapes", id, key];
        let mut changes = Vec::new();
        let mut put = |key, value: Option<Value>| {
            if let Some(value) = value {
                changes.push(Change::set(&path(key), value));
            }
        };
        put("type", self.kind.map(|k| Value::from(k.as_str())));
        for (key, value) in self.numbers() {
            put(key, value.map(Value::Num));
        }
        put("points", self.points.as_ref().map(|p| Value::List(p.iter().copied().map(Value::Num).collect())));
        put("text", self.text.clone().map(Value::Text));
        put("stroke", self.stroke.clone().map(Value::Str));
        put("fill", self.fill.clone().map(Value::Str));
        super::write::set_or_remove(&mut changes, path("from"), self.from.clone().map(|v| v.map(Value::Str)));
        super::write::set_or_remove(&mut changes, path("to"), self.to.clone().map(|v| v.map(Value::Str)));
        changes
    }
}

/// The changes that remove shape `id`.
pub fn delete_shape(id: &str) -> Vec<Change> {
    vec![Change::remove(&["shapes", id])]
}
