//! Modules: from one root `.site` file to every file it reaches by `use`.
//!
//! `use std/NAME` loads a module embedded from `stdlib/`; any other path is a
//! file relative to the file that imports it. Each file is loaded and parsed
//! once however often it is imported; an import cycle is reported with every
//! `use` on the cycle. This is the only compiler stage that reads files: the
//! `.site` sources, and the templates of their own that roles name
//! (`own_templates::read`), so every later stage is a pure function of what
//! was loaded.

use crate::diagnostic::Diagnostic;
use crate::source::{FileId, SourceMap, Span};
use crate::syntax::{self, ast};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// One parsed file of a spec.
pub struct Module {
    pub file: FileId,
    /// How `use` names it: `std/platform`, or the file's path.
    pub name: String,
    /// The folder of the file it was read from; `None` for a standard module.
    pub folder: Option<PathBuf>,
    pub ast: ast::SourceFile,
}

/// Every module a spec reaches, the root first.
pub struct Program {
    pub modules: Vec<Module>,
    pub diagnostics: Vec<Diagnostic>,
    /// The templates of their own the modules' roles name, read beside them.
    pub templates: crate::own_templates::Files,
}

impl Program {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Every top-level entry of every module, in load order.
    pub fn entries(&self) -> impl Iterator<Item = &ast::Entry> {
        self.modules
            .iter()
            .flat_map(|m| m.ast.items.iter())
            .filter_map(|item| match item {
                ast::Item::Entry(e) => Some(e),
                ast::Item::Use(_) => None,
            })
    }

    /// The root spec's file (the one named on the command line).
    pub fn root(&self) -> Option<FileId> {
        self.modules.first().map(|m| m.file)
    }
}

/// Where a module comes from: what identifies it, so it loads once.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Origin {
    Std(String),
    File(PathBuf),
}

struct Loader<'s> {
    sources: &'s mut SourceMap,
    modules: Vec<Module>,
    diagnostics: Vec<Diagnostic>,
    /// Modules already loaded, by origin.
    done: HashMap<Origin, usize>,
    /// The chain of imports being loaded now: origin, and the `use` that
    /// led to the next one.
    stack: Vec<(Origin, Option<Span>)>,
}

/// Loads the spec at `path` and everything it uses.
pub fn load(sources: &mut SourceMap, path: &Path) -> Program {
    let mut loader = Loader::new(sources);
    match std::fs::read(path) {
        Ok(bytes) => loader.add(origin_of(path), display(path), bytes),
        Err(e) => loader.diagnostics.push(
            Diagnostic::error(
                "E033",
                format!("can't read `{}`: {}", path.display(), io_reason(&e)),
            )
            .help("check the path; a spec is a `.site` file"),
        ),
    }
    loader.finish()
}

/// Loads a spec from text already in memory (stdin, tests); its `use`s of
/// files are resolved relative to `dir`.
pub fn load_text(sources: &mut SourceMap, name: &str, text: &str, dir: &Path) -> Program {
    let mut loader = Loader::new(sources);
    loader.add(
        Origin::File(dir.join(name)),
        name.to_string(),
        text.as_bytes().to_vec(),
    );
    loader.finish()
}

impl<'s> Loader<'s> {
    fn new(sources: &'s mut SourceMap) -> Self {
        Loader {
            sources,
            modules: Vec::new(),
            diagnostics: Vec::new(),
            done: HashMap::new(),
            stack: Vec::new(),
        }
    }

    fn finish(mut self) -> Program {
        crate::diagnostic::sort(&mut self.diagnostics);
        let templates = crate::own_templates::read(&self.modules);
        Program {
            modules: self.modules,
            diagnostics: self.diagnostics,
            templates,
        }
    }

    /// Parses one module's bytes, then loads what it uses.
    fn add(&mut self, origin: Origin, name: String, bytes: Vec<u8>) {
        let (file, ast, diagnostics) = syntax::read(self.sources, &name, bytes);
        self.diagnostics.extend(diagnostics);
        let uses: Vec<ast::Use> = ast
            .items
            .iter()
            .filter_map(|item| match item {
                ast::Item::Use(u) => Some(u.clone()),
                ast::Item::Entry(_) => None,
            })
            .collect();
        self.done.insert(origin.clone(), self.modules.len());
        let folder = match &origin {
            Origin::File(path) => Some(path.parent().unwrap_or(Path::new(".")).to_path_buf()),
            Origin::Std(_) => None,
        };
        self.modules.push(Module {
            file,
            name: name.clone(),
            folder,
            ast,
        });
        self.stack.push((origin.clone(), None));
        for u in uses {
            self.import(&origin, &name, &u);
        }
        self.stack.pop();
    }

    /// Follows one `use` from the module `from` (named `from_name`).
    fn import(&mut self, from: &Origin, from_name: &str, u: &ast::Use) {
        let target = match self.target(from, from_name, u) {
            Ok(target) => target,
            Err(diagnostic) => return self.diagnostics.push(diagnostic),
        };
        if let Some(at) = self.stack.iter().position(|(o, _)| *o == target.0) {
            return self.cycle(at, u.path_span);
        }
        if self.done.contains_key(&target.0) {
            return;
        }
        if let Some(last) = self.stack.last_mut() {
            last.1 = Some(u.path_span);
        }
        let (origin, name, bytes) = target;
        self.add(origin, name, bytes);
    }

    /// Finds what a `use` names and reads it.
    fn target(
        &self,
        from: &Origin,
        from_name: &str,
        u: &ast::Use,
    ) -> Result<(Origin, String, Vec<u8>), Diagnostic> {
        if let Some(std_name) = u.path.strip_prefix("std/") {
            let origin = Origin::Std(std_name.to_string());
            if self.done.contains_key(&origin) || self.stack.iter().any(|(o, _)| *o == origin) {
                return Ok((origin, u.path.clone(), Vec::new()));
            }
            return match crate::stdlib::module(std_name) {
                Some(text) => Ok((
                    origin,
                    format!("std/{std_name}.site"),
                    text.as_bytes().to_vec(),
                )),
                None => {
                    let names: Vec<String> = crate::stdlib::names().collect();
                    let help =
                        match crate::suggest::closest(&u.path, names.iter().map(String::as_str)) {
                            Some(best) => format!("did you mean `{best}`?"),
                            None => format!("the standard modules are: {}", names.join(", ")),
                        };
                    Err(Diagnostic::error(
                        "E032",
                        format!("there is no standard module `{}`", u.path),
                    )
                    .primary(u.path_span, "not in sitec's stdlib")
                    .help(help))
                }
            };
        }
        let Origin::File(from_path) = from else {
            return Err(Diagnostic::error(
                "E030",
                format!("a standard module can't use the file `{}`", u.path),
            )
            .primary(u.path_span, "stdlib modules only use other `std/` modules"));
        };
        let base = from_path.parent().unwrap_or(Path::new("."));
        let path = normalize(&base.join(&u.path));
        let name = display(&normalize(
            &Path::new(from_name)
                .parent()
                .unwrap_or(Path::new(""))
                .join(&u.path),
        ));
        let origin = origin_of(&path);
        if self.done.contains_key(&origin) || self.stack.iter().any(|(o, _)| *o == origin) {
            return Ok((origin, name, Vec::new()));
        }
        std::fs::read(&path).map(|bytes| (origin, name.clone(), bytes)).map_err(|e| {
            let std_hint = crate::stdlib::module(u.path.trim_start_matches("./")).map(|_| {
                format!("to use the standard module, write `use std/{}`", u.path.trim_start_matches("./"))
            });
            Diagnostic::error("E030", format!("can't read module `{}`: {}", u.path, io_reason(&e)))
                .primary(u.path_span, format!("looked for `{name}`"))
                .help(std_hint.unwrap_or_else(|| {
                    "paths are relative to the file that has the `use`; check the name and the folder".to_string()
                }))
        })
    }

    /// Reports an import cycle: the module at `stack[at]` is being imported
    /// again, by the `use` at `closing`.
    fn cycle(&mut self, at: usize, closing: Span) {
        let mut names: Vec<String> = self.stack[at..]
            .iter()
            .map(|(o, _)| origin_name(o))
            .collect();
        names.push(origin_name(&self.stack[at].0));
        let mut diagnostic =
            Diagnostic::error("E031", format!("import cycle: {}", names.join(" -> ")))
                .primary(closing, "this `use` closes the cycle");
        for (_, span) in &self.stack[at..] {
            if let Some(span) = span {
                diagnostic = diagnostic.secondary(*span, "imported here");
            }
        }
        self.diagnostics
            .push(diagnostic.help("move what both files need into a third file that both use"));
    }
}

fn origin_of(path: &Path) -> Origin {
    Origin::File(std::fs::canonicalize(path).unwrap_or_else(|_| normalize(path)))
}

fn origin_name(origin: &Origin) -> String {
    match origin {
        Origin::Std(name) => format!("std/{name}"),
        Origin::File(path) => path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        ),
    }
}

/// `a/./b/../c` to `a/c`, without touching the file system.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn display(path: &Path) -> String {
    normalize(path).display().to_string()
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}
