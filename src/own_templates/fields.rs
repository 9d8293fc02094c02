//! Every name a template reads, held against its context's [`Shape`]: in
//! every branch, whether the context takes it or not (strict rendering
//! fails only on the branch it takes, on the host where it takes it).
//! `{{#each}}` and `{{#with}}` step into what they name, `../` and
//! `@root` back out, `as |item|` names an item; `@index`, `@key`,
//! `@first` and `@last` are there inside `each`.

use super::context::Shape;
use handlebars::template::{BlockParam, HelperTemplate, Parameter, Template, TemplateElement};

/// The helpers sitec's registry has (handlebars' own).
pub const HELPERS: [&str; 17] = [
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len",
];

/// A name the context does not have, where the template reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unknown {
    /// As written: `app.nmae`.
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// `missing` is not a field of what `at` names (`""`: the context).
    Field {
        at: String,
        missing: String,
        known: Vec<String>,
    },
    /// The path reads into `at`, which is a value.
    NotObject {
        at: String,
    },
    /// `#each` over what is a value.
    NotList {
        at: String,
    },
    Helper(String),
    Partial,
}

/// Every unknown name of `template` against the context `root`.
pub fn unknown(template: &Template, root: &Shape) -> Vec<Unknown> {
    let mut walk = Walk {
        root,
        found: Vec::new(),
    };
    let mut stack = vec![Frame {
        shape: root,
        path: String::new(),
        params: Vec::new(),
        in_each: false,
    }];
    walk.template(template, &mut stack);
    walk.found
}

/// One level of context: the top, or what an `each` or `with` stepped into.
struct Frame<'s> {
    shape: &'s Shape,
    /// How the context names it (`fleet.hosts`), for messages.
    path: String,
    /// `as |item index|`: the names and their shapes.
    params: Vec<(String, &'s Shape, String)>,
    in_each: bool,
}

struct Walk<'s> {
    root: &'s Shape,
    found: Vec<Unknown>,
}

/// Where an element stands in its template's file.
type At = (usize, usize);

static VALUE: Shape = Shape::Value;
static ANY: Shape = Shape::Any;

impl<'s> Walk<'s> {
    fn template(&mut self, template: &Template, stack: &mut Vec<Frame<'s>>) {
        for (i, element) in template.elements.iter().enumerate() {
            let at = (template.mapping.get(i)).map_or((0, 0), |m| (m.0, m.1));
            match element {
                TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
                TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                    self.helper(h, stack, at);
                }
                TemplateElement::HelperBlock(h) => self.block(h, stack, at),
                _ => self.push(String::new(), at, What::Partial),
            }
        }
    }

    fn push(&mut self, path: String, at: At, what: What) {
        self.found.push(Unknown {
            path,
            line: at.0,
            column: at.1,
            what,
        });
    }

    /// `{{name}}` or `{{helper params}}`; the shape it gives (`Any` for a
    /// helper's result).
    fn helper(&mut self, h: &HelperTemplate, stack: &[Frame<'s>], at: At) -> &'s Shape {
        if h.params.is_empty() && h.hash.is_empty() && !h.block {
            return self.parameter(&h.name, stack, at);
        }
        let name = h.name.as_name().unwrap_or_default();
        if !HELPERS.contains(&name) {
            self.push(name.to_string(), at, What::Helper(name.to_string()));
        }
        for p in h.params.iter().chain(h.hash.values()) {
            self.parameter(p, stack, at);
        }
        &ANY
    }

    fn parameter(&mut self, p: &Parameter, stack: &[Frame<'s>], at: At) -> &'s Shape {
        match p {
            Parameter::Literal(_) => &VALUE,
            Parameter::Subexpression(sub) => match sub.as_element() {
                TemplateElement::Expression(h) => {
                    self.helper(h, stack, at);
                    &ANY
                }
                _ => &ANY,
            },
            name => self.path(name.as_name().unwrap_or_default(), stack, at),
        }
    }

    /// `{{#name params}}...{{else}}...{{/name}}`.
    fn block(&mut self, h: &HelperTemplate, stack: &mut Vec<Frame<'s>>, at: At) {
        let name = h.name.as_name().unwrap_or_default();
        if !HELPERS.contains(&name) {
            self.push(name.to_string(), at, What::Helper(name.to_string()));
        }
        let shapes: Vec<(&'s Shape, String)> = h
            .params
            .iter()
            .map(|p| {
                let raw = p.as_name().unwrap_or_default().to_string();
                (self.parameter(p, stack, at), raw)
            })
            .collect();
        for p in h.hash.values() {
            self.parameter(p, stack, at);
        }
        if name == "raw" {
            return;
        }
        let inner = match (name, shapes.first()) {
            ("each", Some((shape, raw))) => Some(match shape {
                Shape::List(item) => (&**item, true, raw.clone()),
                Shape::Value => {
                    self.push(raw.clone(), at, What::NotList { at: raw.clone() });
                    (&ANY, true, raw.clone())
                }
                _ => (&ANY, true, raw.clone()),
            }),
            ("with", Some((shape, raw))) => Some((*shape, false, raw.clone())),
            _ => None,
        };
        if let Some(template) = &h.template {
            match inner {
                Some((shape, in_each, raw)) => {
                    let params = block_params(h.block_param.as_ref(), shape, in_each);
                    stack.push(Frame {
                        shape,
                        path: raw,
                        params,
                        in_each,
                    });
                    self.template(template, stack);
                    stack.pop();
                }
                None => self.template(template, stack),
            }
        }
        if let Some(inverse) = &h.inverse {
            self.template(inverse, stack);
        }
    }

    /// The shape a path names, reporting it when there is none.
    fn path(&mut self, raw: &str, stack: &[Frame<'s>], at: At) -> &'s Shape {
        if let Some(data) = raw.strip_prefix('@') {
            let (var, rest) = data.split_once(['.', '/']).unwrap_or((data, ""));
            if var == "root" {
                let root = Frame {
                    shape: self.root,
                    path: String::new(),
                    params: Vec::new(),
                    in_each: false,
                };
                return self.lookup(raw, &root, rest, at);
            }
            let in_each = stack.last().is_some_and(|f| f.in_each);
            if !(in_each && matches!(var, "index" | "key" | "first" | "last")) {
                self.push(
                    raw.to_string(),
                    at,
                    What::Field {
                        at: String::new(),
                        missing: format!("@{var}"),
                        known: vec![],
                    },
                );
            }
            return &VALUE;
        }
        let mut rest = raw;
        let mut up = 0;
        while let Some(after) = rest.strip_prefix("../") {
            rest = after;
            up += 1;
        }
        let Some(frame) = stack.len().checked_sub(up + 1).and_then(|i| stack.get(i)) else {
            self.push(
                raw.to_string(),
                at,
                What::Field {
                    at: String::new(),
                    missing: "..".into(),
                    known: vec![],
                },
            );
            return &ANY;
        };
        let rest = (rest.strip_prefix("this."))
            .or_else(|| rest.strip_prefix("this/"))
            .or_else(|| rest.strip_prefix("./"))
            .unwrap_or(rest);
        if matches!(rest, "this" | "." | "") {
            return frame.shape;
        }
        // `as |item|` names, from the innermost block out.
        let first = segments(rest).into_iter().next().unwrap_or_default();
        if up == 0 {
            for f in stack.iter().rev() {
                if let Some((_, shape, path)) = f.params.iter().find(|(n, _, _)| *n == first) {
                    let tail = rest[first.len()..].trim_start_matches(['.', '/']);
                    let named = Frame {
                        shape,
                        path: path.clone(),
                        params: Vec::new(),
                        in_each: false,
                    };
                    return self.lookup(raw, &named, tail, at);
                }
            }
        }
        self.lookup(raw, frame, rest, at)
    }

    /// Follows `rest`'s segments down from `frame`'s shape.
    fn lookup(&mut self, raw: &str, frame: &Frame<'s>, rest: &str, at: At) -> &'s Shape {
        let mut shape = frame.shape;
        let mut path = frame.path.clone();
        for segment in segments(rest) {
            let next = match shape {
                Shape::Any => return &ANY,
                Shape::Value => {
                    self.push(raw.to_string(), at, What::NotObject { at: path });
                    return &ANY;
                }
                Shape::List(item) => segment.parse::<usize>().ok().map(|_| &**item),
                Shape::Object(fields) => fields.iter().find(|(n, _)| *n == segment).map(|(_, s)| s),
            };
            let Some(next) = next else {
                let known = match shape {
                    Shape::Object(fields) => fields.iter().map(|(n, _)| n.clone()).collect(),
                    _ => vec!["0".to_string()],
                };
                self.push(
                    raw.to_string(),
                    at,
                    What::Field {
                        at: path,
                        missing: segment,
                        known,
                    },
                );
                return &ANY;
            };
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment);
            shape = next;
        }
        shape
    }
}

/// `a.b/[c d]` to `a`, `b`, `c d`.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']').unwrap_or(inner.len());
            out.push(inner[..end].to_string());
            rest = inner.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(['.', '/']).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
        rest = rest.strip_prefix(['.', '/']).unwrap_or(rest);
    }
    out
}

/// The names `as |item index|` gives, with their shapes.
fn block_params<'s>(
    param: Option<&BlockParam>,
    item: &'s Shape,
    in_each: bool,
) -> Vec<(String, &'s Shape, String)> {
    let name = |p: &Parameter| p.as_name().unwrap_or_default().to_string();
    match param {
        Some(BlockParam::Single(p)) => vec![(name(p), item, name(p))],
        Some(BlockParam::Pair((p, i))) if in_each => {
            vec![(name(p), item, name(p)), (name(i), &VALUE, name(i))]
        }
        Some(BlockParam::Pair((p, i))) => vec![(name(p), item, name(p)), (name(i), &ANY, name(i))],
        _ => Vec::new(),
    }
}
