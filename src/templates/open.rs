//! A template rendered once with some of its context's fields left open,
//! to be filled in per file: the balancer's config is the same on every
//! balancer but for its `origin` and `host`, an app's nginx site the same
//! on every runner but for its `listen`.
//!
//! Rendering with a marker in place of each open field and splitting the
//! text at the markers gives the same text as rendering each file's own
//! context, as long as the template only prints those fields as they are
//! (no escaping: the registry has none) and the marker shows nowhere else.
//! [`can_open`] checks the first on the template's syntax tree, [`marked`]
//! the second on the context; when either fails, the file is rendered whole.

use handlebars::template::{HelperTemplate, Parameter, TemplateElement};
use handlebars::Template;
use serde_json::Value;

/// What stands for the open field `i` while rendering: NUL never shows in a
/// template's text nor, checked by [`marked`], in the context's.
fn marker(i: usize) -> String {
    format!("\0{i}\0")
}

/// A rendered template with open fields.
#[derive(Debug, Clone)]
pub struct Open {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    /// The open field at this index.
    Field(usize),
}

impl Open {
    /// The text with `values` (one per open field, in order) in place.
    pub fn fill(&self, values: &[&str]) -> String {
        let mut out = String::with_capacity(self.len(values));
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(i) => out.push_str(values[*i]),
            }
        }
        out
    }

    fn len(&self, values: &[&str]) -> usize {
        (self.parts.iter())
            .map(|part| match part {
                Part::Text(text) => text.len(),
                Part::Field(i) => values[*i].len(),
            })
            .sum()
    }

    /// Splits text rendered from a [`marked`] context; `None` if a marker
    /// is not one of the `fields` open ones.
    pub(super) fn split(text: &str, fields: usize) -> Option<Open> {
        let mut parts = Vec::new();
        for (n, piece) in text.split('\0').enumerate() {
            if n % 2 == 0 {
                parts.push(Part::Text(piece.to_string()));
            } else {
                let i: usize = piece.parse().ok().filter(|i| *i < fields)?;
                parts.push(Part::Field(i));
            }
        }
        Some(Open { parts })
    }
}

/// Puts a marker in place of each open field of `context`, returning the
/// fields' values; `None` (and `context` untouched) when a field is missing
/// or not a string, or a marker could be confused with the context's text.
pub fn marked(context: &mut Value, fields: &[&str]) -> Option<Vec<String>> {
    let map = context.as_object()?;
    if map.values().any(holds_nul) || map.keys().any(|k| k.contains('\0')) {
        return None;
    }
    let values: Vec<String> = (fields.iter())
        .map(|f| map.get(*f).and_then(Value::as_str).map(str::to_string))
        .collect::<Option<_>>()?;
    let map = context.as_object_mut()?;
    for (i, field) in fields.iter().enumerate() {
        map.insert((*field).to_string(), Value::String(marker(i)));
    }
    Some(values)
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.keys().any(|k| k.contains('\0')) || map.values().any(holds_nul),
        _ => false,
    }
}

/// Whether each of `fields` (of the top-level context) is only ever printed
/// as it is by `template`: never a condition, a loop, a helper's parameter,
/// a partial's; and the template has no NUL of its own.
pub fn can_open(template: &Template, fields: &[&str]) -> bool {
    fields
        .iter()
        .all(|field| only_printed(&template.elements, field, 0))
}

/// [`can_open`] for one field, in elements `depth` loops (`each`, `with`)
/// below the top-level context.
fn only_printed(elements: &[TemplateElement], field: &str, depth: usize) -> bool {
    elements.iter().all(|element| match element {
        TemplateElement::RawString(text) => !text.contains('\0'),
        TemplateElement::Comment(_) => true,
        TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
            let printed = h.params.is_empty() && h.hash.is_empty();
            let name = h.name.as_name().map(|raw| resolve(raw, depth));
            (printed && name == Some(Some(field))) || !helper_refers(h, field, depth)
        }
        TemplateElement::HelperBlock(h) => {
            let inner = match h.name.as_name() {
                Some("each" | "with") => depth + 1,
                Some("if" | "unless") => depth,
                _ => return false,
            };
            let in_block = |t: &Option<Template>, depth| {
                t.as_ref()
                    .is_none_or(|t| only_printed(&t.elements, field, depth))
            };
            !helper_refers(h, field, depth)
                && in_block(&h.template, inner)
                && in_block(&h.inverse, depth)
        }
        // Partials and decorators are not looked into: not open.
        _ => false,
    })
}

/// Whether a parameter reads `field` of the top-level context, something
/// inside it, or the whole context (which a helper could look into).
fn refers(parameter: &Parameter, field: &str, depth: usize) -> bool {
    match parameter {
        Parameter::Subexpression(sub) => match sub.as_element() {
            TemplateElement::Expression(h) => helper_refers(h, field, depth),
            _ => true,
        },
        Parameter::Literal(_) => false,
        _ => parameter
            .as_name()
            .and_then(|raw| resolve(raw, depth))
            .is_some_and(|name| name.is_empty() || name.split(['.', '/']).next() == Some(field)),
    }
}

/// Whether a helper's name, parameters or hash read `field` ([`refers`]).
fn helper_refers(h: &HelperTemplate, field: &str, depth: usize) -> bool {
    refers(&h.name, field, depth)
        || h.params.iter().any(|p| refers(p, field, depth))
        || h.hash.values().any(|p| refers(p, field, depth))
}

/// The top-level path a path written `depth` loops down reads (`../x` one
/// loop down, `@root/x` anywhere; `""` for the whole context), or `None`
/// when it reads the loop's item.
fn resolve(raw: &str, depth: usize) -> Option<&str> {
    if raw == "@root" {
        return Some("");
    }
    if let Some(path) = raw
        .strip_prefix("@root/")
        .or_else(|| raw.strip_prefix("@root."))
    {
        return Some(path);
    }
    let mut path = raw;
    for _ in 0..depth {
        path = path.strip_prefix("../")?;
    }
    if path.starts_with("../") {
        return None;
    }
    let path = (path.strip_prefix("this/"))
        .or_else(|| path.strip_prefix("this."))
        .or_else(|| path.strip_prefix("./"))
        .unwrap_or(path);
    Some(if path == "this" || path == "." {
        ""
    } else {
        path
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::Templates;
    use serde_json::json;

    fn opens(source: &str, field: &str) -> bool {
        let template = Template::compile(source).expect("compiles");
        can_open(&template, &[field])
    }

    #[test]
    fn fields_only_printed_can_be_open() {
        assert!(opens("a {{x}} b {{x}}", "x"));
        assert!(opens("{{#if y}}{{x}}{{/if}}", "x"));
        assert!(opens("{{#each xs}}{{../x}} {{x}}{{/each}}", "x"));
        assert!(opens("{{#each xs}}{{#if x}}{{x}}{{/if}}{{/each}}", "x"));
        assert!(opens("{{@root/x}} {{#each xs}}{{@root.x}}{{/each}}", "x"));
    }

    #[test]
    fn fields_tested_looped_or_passed_on_are_not_open() {
        assert!(!opens("{{#if x}}a{{/if}}", "x"));
        assert!(!opens("{{#unless x}}a{{/unless}}", "x"));
        assert!(!opens("{{#each x}}a{{/each}}", "x"));
        assert!(!opens("{{#each xs}}{{#if ../x}}a{{/if}}{{/each}}", "x"));
        assert!(!opens("{{#if @root.x}}a{{/if}}", "x"));
        assert!(!opens("{{x.y}}", "x"));
        assert!(!opens("{{lookup this \"x\"}}", "x"));
        assert!(!opens("{{lookup (lookup this \"x\") 0}}", "x"));
        assert!(!opens("{{> other}}", "x"));
        assert!(!opens("{{#other}}{{x}}{{/other}}", "x"));
    }

    /// What `only_printed` takes for granted: a bare name inside a loop
    /// reads the loop's item and never falls back to the outer context.
    #[test]
    fn strict_loops_do_not_read_outer_fields() {
        let mut registry = handlebars::Handlebars::new();
        registry.set_strict_mode(true);
        let context = json!({ "x": "outer", "xs": [{}] });
        let rendered = registry.render_template("{{#each xs}}{{x}}{{/each}}", &context);
        assert!(rendered.is_err());
    }

    #[test]
    fn the_open_fields_of_sitec_templates_can_be_open() {
        let templates = Templates::new().expect("templates");
        let can = |name: &str, fields: &[&str]| {
            let template = templates.registry.get_template(name).expect("template");
            can_open(template, fields)
        };
        assert!(can("balancer/balancer.toml", &["origin", "host"]));
        assert!(can("runner/nginx-app.conf", &["listen"]));
        assert!(!can("runner/nginx-app.conf", &["balancers"]));
        assert!(!can("django/sitec_settings.py", &["databases"]));
    }

    #[test]
    fn open_text_filled_is_the_text_rendered_whole() {
        let mut registry = handlebars::Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        let context = json!({ "x": "1", "y": "<a{{b}}>", "xs": [{ "x": "2" }] });
        let source = "{{x}}-{{y}}-{{#each xs}}{{x}}{{../y}}{{/each}}";
        let whole = registry.render_template(source, &context).expect("renders");
        let template = Template::compile(source).expect("compiles");
        assert!(can_open(&template, &["x", "y"]));
        let mut marked_context = context.clone();
        let values = marked(&mut marked_context, &["x", "y"]).expect("marked");
        assert_eq!(values, ["1", "<a{{b}}>"]);
        let text = registry
            .render_template(source, &marked_context)
            .expect("renders");
        let open = Open::split(&text, 2).expect("splits");
        assert_eq!(open.fill(&["1", "<a{{b}}>"]), whole);
        assert_eq!(open.fill(&["9", ""]), "9--2");
    }

    #[test]
    fn a_context_with_a_nul_is_not_marked() {
        let mut context = json!({ "x": "1", "other": ["a\0b"] });
        assert!(marked(&mut context, &["x"]).is_none());
        assert_eq!(context["x"], "1");
        let mut context = json!({ "x": 1 });
        assert!(marked(&mut context, &["x"]).is_none());
        assert!(marked(&mut json!({}), &["x"]).is_none());
    }
}
