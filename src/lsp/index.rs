//! What the language server knows of one checked spec: every name in every
//! module it uses, with what the name is (a field of the schema, a
//! declaration, a reference to one, a secret), and every block with the
//! schema it follows. Built by walking the syntax trees against the schema,
//! as `resolve` does, after the check; it never reports anything itself.

use crate::modules::Program;
use crate::resolve::schema::{self, Kind, Labels, Schema, Ty};
use crate::source::{FileId, Span};
use crate::syntax::ast::{Block, Entry, Item, Value, ValueKind};
use std::path::Path;

/// What a name in the text is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// A keyword or field name; its documentation from the schema.
    Key { doc: String },
    /// The name a declaration gives (`host web1`).
    Declaration { kind: Kind, name: String },
    /// A use of a declared name (`roles = [web]`).
    Reference { kind: Kind, name: String },
    /// `secret("blog.key")`: a value in the secrets file.
    Secret { name: String },
    /// A `use`'s path: `std/NAME`, or the file it names (the using
    /// module's folder joined with the path as written).
    Use { target: String },
}

#[derive(Clone, Debug)]
pub struct Occurrence {
    pub span: Span,
    pub what: What,
}

/// Every name of a spec, and its blocks.
#[derive(Default)]
pub struct Index {
    pub occurrences: Vec<Occurrence>,
    /// Each block's span (braces included) and the schema it follows, for
    /// completion.
    pub blocks: Vec<(Span, &'static Schema)>,
}

impl Index {
    pub fn build(program: &Program) -> Index {
        let mut index = Index::default();
        for module in &program.modules {
            for item in &module.ast.items {
                match item {
                    Item::Entry(entry) => index.top_level(entry),
                    Item::Use(u) => {
                        let target = if u.path.starts_with("std/") {
                            u.path.clone()
                        } else {
                            let folder = Path::new(&module.name).parent().unwrap_or(Path::new(""));
                            crate::modules::normalize(&folder.join(&u.path))
                                .display()
                                .to_string()
                        };
                        index.push(u.path_span, What::Use { target });
                    }
                }
            }
        }
        index
    }

    /// The occurrence under `offset` in `file`, the innermost first.
    pub fn at(&self, file: FileId, offset: usize) -> Option<&Occurrence> {
        (self.occurrences.iter())
            .filter(|o| o.span.file == file && o.span.start <= offset && offset <= o.span.end)
            .min_by_key(|o| o.span.end - o.span.start)
    }

    /// Where `kind name` is declared.
    pub fn declaration(&self, kind: Kind, name: &str) -> Option<Span> {
        self.occurrences.iter().find_map(|o| match &o.what {
            What::Declaration { kind: k, name: n } if *k == kind && n == name => Some(o.span),
            _ => None,
        })
    }

    /// Every reference to `kind name`, in file order.
    pub fn references(&self, kind: Kind, name: &str) -> impl Iterator<Item = Span> + '_ {
        let name = name.to_string();
        self.occurrences.iter().filter_map(move |o| match &o.what {
            What::Reference { kind: k, name: n } if *k == kind && *n == name => Some(o.span),
            _ => None,
        })
    }

    /// Every declared name of `kind`.
    pub fn declared(&self, kind: Kind) -> impl Iterator<Item = &str> {
        self.occurrences.iter().filter_map(move |o| match &o.what {
            What::Declaration { kind: k, name } if *k == kind => Some(name.as_str()),
            _ => None,
        })
    }

    /// The innermost block around `offset`, and its schema.
    pub fn block_at(&self, file: FileId, offset: usize) -> Option<&'static Schema> {
        (self.blocks.iter())
            .filter(|(span, _)| span.file == file && span.start < offset && offset < span.end)
            .min_by_key(|(span, _)| span.end - span.start)
            .map(|(_, schema)| *schema)
    }

    fn push(&mut self, span: Span, what: What) {
        self.occurrences.push(Occurrence { span, what });
    }

    fn top_level(&mut self, entry: &Entry) {
        let Some(schema) = schema::top_level(&entry.key.text) else {
            return;
        };
        self.push(
            entry.key.span,
            What::Key {
                doc: block_doc(schema),
            },
        );
        if let (Some(kind), [name]) = (schema.declares, entry.labels.as_slice()) {
            let name_text = name.text.clone();
            self.push(
                name.span,
                What::Declaration {
                    kind,
                    name: name_text,
                },
            );
        }
        if schema.labels == Labels::SettingsTarget {
            let labels = &entry.labels;
            for pair in labels.windows(2) {
                let kind = match pair[0].text.as_str() {
                    "host" => Kind::Host,
                    "app" => Kind::App,
                    _ => continue,
                };
                let name = pair[1].text.clone();
                self.push(pair[1].span, What::Reference { kind, name });
            }
        }
        if let Some(block) = entry.block() {
            self.block(block, schema);
        }
    }

    fn block(&mut self, block: &Block, schema: &'static Schema) {
        self.blocks.push((block.span, schema));
        for entry in &block.entries {
            let key = entry.key.text.as_str();
            if let Some(field) = schema.field(key) {
                let doc = format!("`{key}`: {}\n\nTakes {}.", field.doc, field.ty.describe());
                self.push(entry.key.span, What::Key { doc });
                if let Some(value) = entry.value() {
                    self.value(value, field.ty);
                }
            } else if let Some(sub) = schema.block(key) {
                self.push(
                    entry.key.span,
                    What::Key {
                        doc: block_doc(sub),
                    },
                );
                if let (Labels::Scope, [scope]) = (sub.labels, entry.labels.as_slice()) {
                    let known = schema::SCOPES
                        .iter()
                        .find(|(word, _, _)| *word == scope.text);
                    if let Some((word, _, doc)) = known {
                        let doc = format!("`each {word}`: {doc}");
                        self.push(scope.span, What::Key { doc });
                    }
                }
                if let Some(block) = entry.block() {
                    self.block(block, sub);
                }
            } else if let (Some(ty), Some(value)) = (schema.open, entry.value()) {
                self.value(value, ty);
            }
        }
    }

    fn value(&mut self, value: &Value, ty: Ty) {
        match (ty, &value.kind) {
            (Ty::Ref(kind), ValueKind::Ref(name)) => {
                let name_text = name.text.clone();
                self.push(
                    name.span,
                    What::Reference {
                        kind,
                        name: name_text,
                    },
                );
            }
            (Ty::List(item), ValueKind::List(list)) => {
                for v in &list.items {
                    self.value(v, *item);
                }
            }
            (_, ValueKind::Call(call)) if call.name.text == "secret" => {
                if let [Value {
                    kind: ValueKind::Str(name),
                    ..
                }] = call.args.as_slice()
                {
                    let name = name.clone();
                    self.push(value.span, What::Secret { name });
                }
            }
            _ => {}
        }
    }
}

/// A block keyword's documentation: what it is, and what it holds.
fn block_doc(schema: &Schema) -> String {
    let keys: Vec<String> = schema.keys().map(|k| format!("`{k}`")).collect();
    let holds = if keys.is_empty() {
        String::new()
    } else {
        format!("\n\nHolds {}.", keys.join(", "))
    };
    format!("`{}`: {}{holds}", schema.keyword, schema.doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceMap;

    #[test]
    fn names_are_declarations_references_keys_and_secrets() {
        let mut sources = SourceMap::new();
        let text = "provider p { kind = local }\nhost web1 {\n  provider = p\n  roles = [web]\n}\n\
                    settings app blog host web1 { KEY = secret(\"blog.key\") }\n";
        let program = crate::modules::load_text(&mut sources, "t.site", text, ".".as_ref());
        let index = Index::build(&program);
        let file = program.root().expect("root");
        let at = |needle: &str| {
            let offset = text.find(needle).expect("needle");
            index.at(file, offset).map(|o| o.what.clone())
        };
        assert_eq!(
            at("web1 {"),
            Some(What::Declaration {
                kind: Kind::Host,
                name: "web1".into()
            })
        );
        assert_eq!(
            at("p\n  roles"),
            Some(What::Reference {
                kind: Kind::Provider,
                name: "p".into()
            })
        );
        assert_eq!(
            at("web]"),
            Some(What::Reference {
                kind: Kind::Role,
                name: "web".into()
            })
        );
        assert_eq!(
            at("web1 { KEY"),
            Some(What::Reference {
                kind: Kind::Host,
                name: "web1".into()
            })
        );
        assert!(
            matches!(at("roles"), Some(What::Key { doc }) if doc.contains("the roles this host plays"))
        );
        assert_eq!(
            at("secret("),
            Some(What::Secret {
                name: "blog.key".into()
            })
        );
        assert_eq!(index.references(Kind::Host, "web1").count(), 1);
        assert!(index.declaration(Kind::Role, "web").is_none());
        let inside_host = text.find("roles").expect("roles");
        assert_eq!(
            index.block_at(file, inside_host).map(|s| s.keyword),
            Some("host")
        );
    }
}
