//! Writing what the compiler produced: the rendered tree (`sitec render`)
//! and the graph as JSON. The only module of the compile stage that writes
//! files, and it writes only under the folder it is given.

use crate::compile::{HostState, Rendered};
use crate::resources::Kind;
use serde_json::json;
use std::path::Path;

/// The file that marks a folder as sitec's, so a second render may replace it.
pub const MARKER: &str = ".sitec-render";

/// Writes `DIR/HOST/<path>` for every file and `DIR/HOST/resources.json`;
/// returns how many files were written.
pub fn write_tree(dir: &Path, rendered: &Rendered) -> Result<usize, String> {
    prepare(dir)?;
    let mut count = 0;
    for host in &rendered.hosts {
        let root = dir.join(&host.name);
        for resource in &host.resources {
            let Kind::File {
                path,
                content,
                absent: false,
                secret,
                ..
            } = &resource.kind
            else {
                continue;
            };
            let target = root.join(path.trim_start_matches('/'));
            write(&target, content.as_bytes(), *secret)?;
            count += 1;
        }
        write(
            &root.join("resources.json"),
            host_json(host)?.as_bytes(),
            false,
        )?;
    }
    Ok(count)
}

/// The text of `HOST/resources.json`: the host, its address and its
/// resources in apply order (file contents left out, their sha256 kept).
pub fn host_json(host: &HostState) -> Result<String, String> {
    resources_json(host, &host.resources)
}

/// [`host_json`] with `resources` standing for the host's own.
pub fn resources_json(
    host: &HostState,
    resources: &[crate::resources::Resource],
) -> Result<String, String> {
    let doc = json!({ "host": host.name, "address": host.address, "resources": resources });
    Ok(serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n")
}

/// Writes a snapshot tree (`snapshot::tree`: path below `dir` to text)
/// into `dir`, which it replaces as [`write_tree`] does; returns how many
/// files were written.
pub fn write_snapshot(dir: &Path, files: &crate::snapshot::Files) -> Result<usize, String> {
    prepare(dir)?;
    for (path, text) in files {
        write(&dir.join(path), text.as_bytes(), false)?;
    }
    Ok(files.len())
}

/// Creates `dir`, or empties it if sitec rendered into it before; refuses
/// any other non-empty folder rather than delete what is not ours.
fn prepare(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| format!("can't read `{shown}`: {e}"))?
            .next()
            .is_none();
        if !empty {
            if !dir.join(MARKER).exists() {
                return Err(format!(
                    "`{shown}` is not empty and was not rendered by sitec; choose a new folder"
                ));
            }
            std::fs::remove_dir_all(dir).map_err(|e| format!("can't clear `{shown}`: {e}"))?;
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("can't create `{shown}`: {e}"))?;
    std::fs::write(
        dir.join(MARKER),
        "rendered by sitec; `sitec render` replaces this folder\n",
    )
    .map_err(|e| format!("can't write in `{shown}`: {e}"))
}

fn write(path: &Path, bytes: &[u8], private: bool) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("can't create `{}`: {e}", parent.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("can't write `{}`: {e}", path.display()))?;
    let mode = if private { 0o600 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("can't chmod `{}`: {e}", path.display()))
}

/// The graph as JSON: hosts with their resources in order, each with the
/// ids it requires and notifies, and the order between hosts.
pub fn graph_json(rendered: &Rendered) -> String {
    let hosts: Vec<_> = rendered
        .hosts
        .iter()
        .map(|h| {
            let resources: Vec<_> = h
                .resources
                .iter()
                .map(|r| json!({ "id": r.id, "requires": r.requires, "notifies": r.notifies, "origin": r.origin }))
                .collect();
            json!({ "host": h.name, "resources": resources })
        })
        .collect();
    let order: Vec<_> = rendered
        .host_order
        .iter()
        .map(|(before, after, why)| json!({ "before": before, "after": after, "why": why }))
        .collect();
    serde_json::to_string_pretty(&json!({ "hosts": hosts, "host_order": order }))
        .unwrap_or_default()
}

/// Graphviz dot of every host's graph (and the order between hosts).
pub fn graph_dot(rendered: &Rendered) -> String {
    use std::fmt::Write;
    let mut out = String::from("digraph sitec {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    for h in &rendered.hosts {
        let host = &h.name;
        let _ = write!(
            out,
            "  subgraph \"cluster_{host}\" {{\n    label=\"{host}\";\n"
        );
        for r in &h.resources {
            let _ = writeln!(out, "    \"{host}/{}\" [label=\"{}\"];", r.id, r.id);
        }
        for (a, b, edge) in &h.edges {
            let style = if *edge == crate::graph::Edge::Notifies {
                " [style=dashed, label=\"notifies\"]"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    \"{host}/{}\" -> \"{host}/{}\"{style};",
                h.resources[*a].id, h.resources[*b].id
            );
        }
        out.push_str("  }\n");
    }
    let first = |name: &str| {
        let h = rendered.hosts.iter().find(|h| h.name == name)?;
        Some(h.resources[h.first_declared?].id.as_str())
    };
    for (b, a, why) in &rendered.host_order {
        let (Some(first_b), Some(first_a)) = (first(b), first(a)) else {
            continue;
        };
        let _ = writeln!(
            out,
            "  \"{b}/{first_b}\" -> \"{a}/{first_a}\" [color=blue, ltail=\"cluster_{b}\", lhead=\"cluster_{a}\", label=\"{why}\"];"
        );
    }
    out.push_str("}\n");
    out
}
