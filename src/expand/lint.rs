//! A role's mistakes found without a host: every `each` inside the scope it
//! needs (E220), every `{name}` in its strings a value of the scopes around
//! it and no list in a label (E221, E220 for a lone brace), and, where a string names no value, a
//! template that exists (E223) and is used inside the scope its context
//! needs (E224), a template of your own (a file's or a unit's) that reads,
//! parses and names only what its context has, secrets only for a file that
//! asks (E226-E228, `own_templates`), `secrets = true` only on such a file
//! (E234), a path that is one on
//! the host (E225), a `user`'s `uid` sitec gives (E229), a user or group name
//! a host takes (E113); every `requires` and `notify` naming a resource some
//! role declares (E231); every timer's user said where there is no app's
//! (E232) and one a role of each host that runs it makes, or the host has (E233). Expansion finds the same, but
//! only where a host's roles meet the items an `each` repeats over: a typo
//! inside `each worker` stayed silent until an app got its first worker.
//! `sitec check` runs this on every role, used or not; so does every
//! compile, before it expands.

use super::{
    each_outside, list_in_label, lone_brace, path_problem, pieces, uid_problem, unknown_template,
    unknown_value, Piece, LISTS, VALUES,
};
use crate::diagnostic::Diagnostic;
use crate::model::Fleet;
use crate::own_templates::Checker;
use crate::resolve::schema::SCOPES;
use crate::syntax::ast::{Block, Entry, Value, ValueKind};

/// Every role's mistakes, in declaration order.
pub fn lint(fleet: &Fleet, templates: &crate::own_templates::Files) -> Vec<Diagnostic> {
    let own = crate::own_templates::Checker::new(fleet, templates);
    let mut found = Vec::new();
    for role in fleet.roles.values() {
        block(role.block, &mut Vec::new(), &own, &mut found);
    }
    let declared = declared_ids(fleet);
    for role in fleet.roles.values() {
        references(role.block, &declared, &mut found);
    }
    for role in fleet.roles.values() {
        timers(role.block, false, &declared, &mut found);
    }
    timer_users_per_host(fleet, &declared, &mut found);
    found
}

/// The users a Debian host has without a role making them: base-passwd's,
/// on every Debian system, and those of the packages the standard roles
/// install (`postgres`, `redis`). Not `nobody`: shared by whatever runs
/// unprivileged, systemd calls a unit run as it unsafe.
const SYSTEM_USERS: [&str; 19] = [
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
    "www-data", "backup", "list", "irc", "_apt", "postgres", "redis",
];

/// E232 and E233: whom each timer runs as. Inside `each app` a timer
/// runs as the app's user unless it names one; elsewhere it must name one
/// (root only when written), and a name written out is a user the host
/// has: one a role makes, or one of `SYSTEM_USERS`.
fn timers(block_: &Block, in_app: bool, declared: &[String], found: &mut Vec<Diagnostic>) {
    for entry in &block_.entries {
        let Some(inner) = entry.block() else {
            continue;
        };
        if entry.key.text == "each" {
            let word = entry.labels.first().map_or("", |w| w.text.as_str());
            let needs_app = SCOPES
                .iter()
                .any(|(scope, needed, _)| *scope == word && *needed == Some("app"));
            timers(inner, in_app || word == "app" || needs_app, declared, found);
            continue;
        }
        if entry.key.text != "timer" {
            continue;
        }
        let name = entry.labels.first().map_or("", |l| l.text.as_str());
        let user = inner.entries.iter().find(|f| f.key.text == "user");
        match user.and_then(|f| f.value()) {
            None if !in_app => found.push(super::timer_without_user(name, entry.head_span())),
            Some(Value {
                kind: ValueKind::Str(text),
                span,
                ..
            }) if literal(text) => found.extend(unknown_user(name, text, *span, declared)),
            _ => {}
        }
    }
}

/// E233: a timer's user that no role makes and the host lacks.
fn unknown_user(
    timer: &str,
    user: &str,
    span: crate::source::Span,
    declared: &[String],
) -> Option<Diagnostic> {
    let made = declared
        .iter()
        .any(|id| same_resource(id, &format!("user:{user}")));
    if made || SYSTEM_USERS.contains(&user) || crate::names::user_problem(user).is_some() {
        return None;
    }
    let known = (declared.iter())
        .filter_map(|id| id.strip_prefix("user:"))
        .filter(|name| literal(name))
        .chain(SYSTEM_USERS);
    let help = match crate::suggest::closest(user, known) {
        _ if user == "nobody" => "`nobody` is shared by every program that runs unprivileged (systemd calls a unit run as it unsafe): make a user of its own in a role, `user NAME { system = true }`".to_string(),
        Some(best) => format!("did you mean `{best}`? Or make `{user}` in a role: `user {user} {{ system = true }}`"),
        None => format!("make it in a role (`user {user} {{ system = true }}`), or write `user = \"root\"` if it must run as root"),
    };
    Some(
        Diagnostic::error(
            "E233",
            format!("timer `{timer}` runs as `{user}`, a user no role makes"),
        )
        .primary(span, "no such user on the host")
        .help(help),
    )
}

/// E233 on a host: a timer (outside any `each`) that runs as a user some
/// role makes, but none of the roles of a host that runs the timer: the
/// unit would fail there. A user no role makes is `unknown_user`'s, said
/// once for the spec.
fn timer_users_per_host(fleet: &Fleet, declared: &[String], found: &mut Vec<Diagnostic>) {
    for host in 0..fleet.hosts.len() {
        let roles = super::roles_of(fleet, host);
        let blocks: Vec<(&String, &Block)> = (roles.iter())
            .filter_map(|r| Some((r, fleet.roles.get(r)?.block)))
            .collect();
        let mut here = Vec::new();
        for (_, block) in &blocks {
            walk_ids(block, &mut here);
        }
        for (role, block) in &blocks {
            for (timer, user, span) in top_level_timer_users(block) {
                let wanted = format!("user:{user}");
                let made = |ids: &[String]| ids.iter().any(|id| same_resource(id, &wanted));
                if SYSTEM_USERS.contains(&user) || made(&here) || !made(declared) {
                    continue;
                }
                let host = &fleet.hosts[host].name;
                found.push(
                    Diagnostic::error(
                        "E233",
                        format!("timer `{timer}` runs as `{user}`, a user no role of host `{host}` makes"),
                    )
                    .primary(span, format!("a role makes `{user}`, but not one `{host}` has"))
                    .help(format!(
                        "give `{host}` the role that makes `{user}`, or make it in role `{role}` too: `user {user} {{ system = true }}`"
                    )),
                );
            }
        }
    }
}

/// Each timer of `block` outside any `each` whose `user` is written out:
/// its name, the user and where the user is written.
fn top_level_timer_users(block: &Block) -> Vec<(&str, &str, crate::source::Span)> {
    (block.entries.iter())
        .filter(|e| e.key.text == "timer")
        .filter_map(|e| {
            let name = e.labels.first().map_or("", |l| l.text.as_str());
            let field = e.block()?.entries.iter().find(|f| f.key.text == "user")?;
            match field.value() {
                Some(Value {
                    kind: ValueKind::Str(text),
                    span,
                    ..
                }) if literal(text) => Some((name, text.as_str(), *span)),
                _ => None,
            }
        })
        .collect()
}

/// The ids of every resource the roles declare (`kind:label`, the label as
/// written, `{values}` and all), and of the unit files services write.
fn declared_ids(fleet: &Fleet) -> Vec<String> {
    let mut ids = Vec::new();
    for role in fleet.roles.values() {
        walk_ids(role.block, &mut ids);
    }
    ids
}

/// The ids `block` declares, its `each` blocks' too (see `declared_ids`).
fn walk_ids(block: &Block, ids: &mut Vec<String>) {
    for entry in &block.entries {
        match (entry.key.text.as_str(), entry.labels.first(), entry.block()) {
            ("each", _, Some(inner)) => walk_ids(inner, ids),
            ("description", _, _) | (_, None, _) => {}
            (kind, Some(label), _) => {
                ids.push(format!("{kind}:{}", label.text));
                let unit = entry
                    .block()
                    .and_then(|b| b.entries.iter().find(|e| e.key.text == "unit"));
                if kind == "service" && unit.is_some() {
                    ids.push(format!(
                        "file:/etc/systemd/system/{}",
                        crate::resources::unit_name(&label.text)
                    ));
                }
            }
        }
    }
}

/// E231: every `requires` and `notify` that names no resource a role
/// declares: the order or reload it asks for would silently not happen.
fn references(block_: &Block, declared: &[String], found: &mut Vec<Diagnostic>) {
    for entry in &block_.entries {
        let Some(inner) = entry.block() else {
            continue;
        };
        if entry.key.text == "each" {
            references(inner, declared, found);
            continue;
        }
        for field in inner
            .entries
            .iter()
            .filter(|f| matches!(f.key.text.as_str(), "requires" | "notify"))
        {
            let Some(ValueKind::List(list)) = field.value().map(|v| &v.kind) else {
                continue;
            };
            for item in &list.items {
                let ValueKind::Str(id) = &item.kind else {
                    continue;
                };
                let id = &as_items(id);
                if !declared.iter().any(|d| same_resource(d, id)) {
                    found.push(unknown_resource(&field.key.text, id, item.span, declared));
                }
            }
        }
    }
}

/// An id as the resources it names are declared: a list value written as
/// the value its items are (`{app.workers}` as `{worker}`), so that
/// `service:sitec-app-{app}-worker-{app.workers}` names what `each worker`
/// declares as `service:sitec-app-{app}-worker-{worker}`.
fn as_items(id: &str) -> String {
    LISTS
        .iter()
        .fold(id.to_string(), |id, (list, item)| match item {
            Some(item) => id.replace(&format!("{{{list}}}"), &format!("{{{item}}}")),
            None => id,
        })
}

/// Whether a resource id as written in a role (`{values}` and all) can be
/// the id `wanted` names: equal with every value the same, or, for a
/// `wanted` without values, matching with each value standing for any text.
fn same_resource(declared: &str, wanted: &str) -> bool {
    if declared == wanted {
        return true;
    }
    let Some(pieces) = pieces(declared).filter(|_| literal(wanted)) else {
        return false;
    };
    // The literal text between the values, in order.
    let mut parts = vec![String::new()];
    for piece in pieces {
        match piece {
            Piece::Text(text) => parts
                .last_mut()
                .unwrap_or(&mut String::new())
                .push_str(text),
            Piece::Value(_) => parts.push(String::new()),
        }
    }
    let (Some((first, rest)), Some(last)) = (parts.split_first(), parts.last()) else {
        return false;
    };
    if parts.len() == 1 {
        return false;
    }
    let Some(mut left) = wanted.strip_prefix(first.as_str()) else {
        return false;
    };
    for middle in &rest[..rest.len() - 1] {
        match left.find(middle.as_str()) {
            Some(at) => left = &left[at + middle.len()..],
            None => return false,
        }
    }
    left.ends_with(last.as_str())
}

fn unknown_resource(
    field: &str,
    id: &str,
    span: crate::source::Span,
    declared: &[String],
) -> Diagnostic {
    let literal_ids: Vec<&str> = declared
        .iter()
        .map(String::as_str)
        .filter(|d| literal(d))
        .collect();
    let help = match crate::suggest::closest(id, literal_ids.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None if !id.contains(':') => "a resource's id is its kind and name: `package:nginx`, `service:nginx`, `file:/etc/motd`".to_string(),
        None => "name a resource a role declares, as `KIND:NAME-OR-PATH`".to_string(),
    };
    let what = if field == "notify" {
        "reload"
    } else {
        "wait for"
    };
    Diagnostic::error(
        "E231",
        format!("`{field}` names `{id}`, which no role declares"),
    )
    .primary(span, format!("nothing to {what}"))
    .help(help)
}

/// `open`: the `each` scopes around the block, outermost first.
fn block<'b>(
    block_: &'b Block,
    open: &mut Vec<&'b str>,
    own: &Checker,
    found: &mut Vec<Diagnostic>,
) {
    for entry in &block_.entries {
        match entry.key.text.as_str() {
            "description" => {}
            "each" => each(entry, open, own, found),
            _ => resource(entry, open, own, found),
        }
    }
}

fn each<'b>(entry: &'b Entry, open: &mut Vec<&'b str>, own: &Checker, found: &mut Vec<Diagnostic>) {
    let (Some(word), Some(inner)) = (entry.labels.first(), entry.block()) else {
        return;
    };
    let needed = SCOPES
        .iter()
        .find(|(scope, _, _)| *scope == word.text)
        .and_then(|(_, needed, _)| *needed);
    let mut opened = 1;
    if let Some(needed) = needed.filter(|n| !open.contains(n)) {
        found.push(each_outside(&word.text, needed, word.span));
        // Inside, as if it stood where it should: one run reports all.
        open.push(needed);
        opened += 1;
    }
    open.push(&word.text);
    block(inner, open, own, found);
    open.truncate(open.len() - opened);
}

/// The resource's label and every string field expansion fills in (all
/// but `content`, which is the file's literal text unless the file says
/// `values = true`). A label or template name without values is checked as
/// expansion would check it filled in.
fn resource(entry: &Entry, open: &[&str], own: &Checker, found: &mut Vec<Diagnostic>) {
    if let Some(label) = entry.labels.first() {
        let problem = string(&label.text, label.span, open)
            .or_else(|| list_in_label(&label.text, label.span));
        match problem {
            Some(problem) => found.push(problem),
            None if literal(&label.text) => {
                found.extend(path_problem(entry, &label.text, label.span));
            }
            None => {}
        }
    }
    if let Some(label) = entry
        .labels
        .first()
        .filter(|l| entry.key.text == "user" && literal(&l.text))
    {
        found.extend(user_name(&entry.key.text, &label.text, label.span));
    }
    let Some(fields) = entry.block() else {
        return;
    };
    let content_has_values = (fields.entries.iter()).any(|f| {
        f.key.text == "values" && matches!(f.value().map(|v| &v.kind), Some(ValueKind::Bool(true)))
    });
    let filled = |f: &&Entry| f.key.text != "content" || content_has_values;
    found.extend(secrets_unused(entry));
    for field in fields.entries.iter().filter(filled) {
        match field.value().map(|v| (&v.kind, v)) {
            Some((ValueKind::Str(text), value)) => match string(text, value.span, open) {
                Some(problem) => found.push(problem),
                None if crate::own_templates::FIELDS.contains(&field.key.text.as_str())
                    && crate::own_templates::is_own(text) =>
                {
                    let secrets = crate::own_templates::Secrets::of(entry, &field.key.text);
                    found.extend(own.check(text, value.span, open, secrets));
                }
                None if matches!(field.key.text.as_str(), "template" | "unit") && literal(text) => {
                    if !crate::templates::Templates::names().any(|n| n == text) {
                        found.push(unknown_template(text, value.span));
                    } else if let Some(problem) = template_scope(text, value.span, open) {
                        found.push(problem);
                    }
                }
                None if entry.key.text == "user" && field.key.text == "uid" && literal(text) => {
                    found.extend(uid_problem(text, entry).err());
                }
                None if is_user_field(entry, &field.key.text) && literal(text) => {
                    found.extend(user_name(&field.key.text, text, value.span));
                }
                None => {}
            },
            Some((ValueKind::Text(text), value)) if field.key.text == "content" => {
                found.extend(string(text, value.span, open));
            }
            Some((ValueKind::List(list), _)) => {
                for item in &list.items {
                    if let Value {
                        kind: ValueKind::Str(text),
                        span,
                        ..
                    } = item
                    {
                        found.extend(string(text, *span, open));
                    }
                }
            }
            _ => {}
        }
    }
}

/// E234: `secrets = true` on a file whose `template` is not one of your
/// own: sitec's templates know what they hold, and `content` is literal.
fn secrets_unused(entry: &Entry) -> Option<Diagnostic> {
    let own = crate::own_templates::written(entry, "template").is_some();
    if !crate::own_templates::wants_secrets(entry) || own || entry.key.text != "file" {
        return None;
    }
    let span = (entry.block()?.entries.iter())
        .find(|e| e.key.text == crate::own_templates::SECRETS)
        .map_or(entry.head_span(), |e| e.span);
    Some(
        Diagnostic::error(
            crate::own_templates::SECRETS_UNUSED,
            "`secrets = true` gives nothing to this file: it is not rendered from a template of your own",
        )
        .primary(span, "nothing here reads a secret")
        .help("remove it: sitec's templates mark their own secret files, and `content` holds no setting; a template of your own (`template = \"./NAME.hbs\"`) may read the secret settings with it"),
    )
}

/// Whether a field of a resource names a user or group on the host.
fn is_user_field(entry: &Entry, field: &str) -> bool {
    matches!(field, "owner" | "group")
        || (matches!(entry.key.text.as_str(), "command" | "timer") && field == "user")
}

/// E113: a user or group name a host would not take.
fn user_name(field: &str, name: &str, span: crate::source::Span) -> Option<Diagnostic> {
    let problem = crate::names::user_problem(name)?;
    Some(
        Diagnostic::error("E113", format!("`{field}`: {}", problem.what))
            .primary(span, "not a user name")
            .help(problem.fix),
    )
}

/// E224: a template whose context is built from a scope's item, used
/// outside every `each` that gives one.
fn template_scope(template: &str, span: crate::source::Span, open: &[&str]) -> Option<Diagnostic> {
    let needed = crate::templates::needs(template)?;
    let (_, scopes) = VALUES.iter().find(|(value, _)| *value == needed)?;
    if scopes.iter().any(|s| open.contains(s)) {
        return None;
    }
    let inside: Vec<String> = scopes.iter().map(|s| format!("`each {s}`")).collect();
    Some(
        Diagnostic::error("E224", format!("template `{template}` is rendered for one {needed}, and this file stands outside its `each`"))
            .primary(span, "no item to render it for here")
            .help(format!("put the file inside {}", inside.join(" or "))),
    )
}

/// Whether a role's string names no value: what expansion makes of it is
/// known now.
fn literal(text: &str) -> bool {
    !text.contains(['{', '}'])
}

/// The first mistake in one string, as expansion would report it.
fn string(text: &str, span: crate::source::Span, open: &[&str]) -> Option<Diagnostic> {
    let Some(pieces) = pieces(text) else {
        return Some(lone_brace(span));
    };
    pieces.into_iter().find_map(|piece| match piece {
        Piece::Value(name) => {
            let given = VALUES.iter().any(|(value, scopes)| {
                *value == name && (scopes.is_empty() || scopes.iter().any(|s| open.contains(s)))
            });
            (!given).then(|| unknown_value(name, span))
        }
        Piece::Text(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use crate::source::SourceMap;

    /// The codes and help lines checking a spec gives for a role of
    /// `body`, which no host plays (so nothing expands it).
    fn lint_role(body: &str) -> Vec<(&'static str, String)> {
        let spec = format!(
            "provider p {{ kind = local }}\nhost h {{ provider = p  roles = [] }}\nrole r {{\n{body}\n}}\n"
        );
        let mut sources = SourceMap::new();
        let (_, diagnostics) =
            crate::compile::with_fleet_text(&mut sources, "t.site", &spec, |_, _| ());
        diagnostics
            .into_iter()
            .map(|d| (d.code, d.help.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn values_are_checked_against_the_scopes_around_them() {
        let clean = r#"
            file "/etc/{host}/{{literal}}" { content = "{not a value}" }
            each app {
              file "/srv/{app}/x" { owner = "{app.user}"  requires = ["file:/etc/{host}/{{literal}}"] }
              each worker { service "w-{app}-{worker}" {} }
              each leader { command "m-{app}" { run = "migrate {app.source}" } }
              each cluster { file "/{app}/{cluster.port}" {} }
            }
            each standby { file "/{cluster}" {} }
            each snapshot { file "/{backup}" {} }
        "#;
        assert_eq!(lint_role(clean), []);
        for (typo, meant) in [("app.name", "app"), ("app.uesr", "app.user")] {
            assert_eq!(
                lint_role(&format!("each app {{ file \"/srv/{{{typo}}}\" {{}} }}")),
                [("E221", format!("did you mean `{{{meant}}}`?"))]
            );
        }
    }

    /// A list value names every item: in a `notify` it names what
    /// `each worker` declares; a label can't name one.
    #[test]
    fn a_list_value_names_its_items_and_no_resource() {
        let clean = r#"
            each app {
              file "/srv/{app}/x" { notify = ["service:w-{app}-{app.workers}"] }
              each worker { service "w-{app}-{worker}" {} }
            }
        "#;
        assert_eq!(lint_role(clean), []);
        assert_eq!(
            lint_role(r#"each app { service "w-{app}-{app.workers}" {} }"#),
            [(
                "E221",
                "one resource per item: put it in `each worker` and name it by `{worker}`"
                    .to_string()
            )]
        );
        let found = lint_role(r#"each app { file "/srv/{app.drivers}" {} }"#);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "E221");
        // Outside `each app` it has no value.
        let found = lint_role(r#"file "/x" { notify = ["service:w-{app.workers}"] }"#);
        assert_eq!(found.first().map(|f| f.0), Some("E221"), "{found:?}");
    }

    #[test]
    fn content_values_are_checked_where_the_file_asks_for_them() {
        let asked = r#"file "/etc/motd" { values = true  content = "on {hots}" }
                       file "/etc/b" {
                         values = true
                         content = """
                           {app}
                           """
                       }"#;
        let found = lint_role(asked);
        let codes: Vec<_> = found.iter().map(|(code, _)| *code).collect();
        assert_eq!(codes, ["E221", "E221"], "{found:?}");
        assert_eq!(found[0].1, "did you mean `{host}`?");
        // Without `values`, braces are the file's own.
        assert_eq!(
            lint_role(r#"file "/etc/a.json" { content = "{\"a\": {app}}" }"#),
            []
        );
    }

    #[test]
    fn a_value_outside_its_scope_says_where_it_has_one() {
        assert_eq!(
            lint_role(r#"each app { each worker { file "/x" { owner = "{cluster}" } } }"#),
            [(
                "E221",
                "`{cluster}` has a value only inside `each cluster` or `each standby` or `each primary`"
                    .to_string()
            )]
        );
    }

    #[test]
    fn an_each_outside_the_scope_it_needs_and_a_lone_brace() {
        let found = lint_role(
            r#"each worker { package "x" {} }
               each leader { package "y" {} }
               file "/etc/{host" {}"#,
        );
        let codes: Vec<_> = found.iter().map(|(code, _)| *code).collect();
        assert_eq!(codes, ["E220", "E220", "E220"]);
        assert_eq!(found[0].1, "put it in an `each app` block");
    }

    #[test]
    fn literal_templates_and_paths_are_checked_values_left_to_expansion() {
        let found = lint_role(
            r#"file "etc/motd" { template = "runner/nginx-ap.conf" }
               service "x" { unit = "systemd/nope" }
               each app { file "{app.source}/x" { template = "{app}.conf" } }"#,
        );
        let codes: Vec<_> = found.iter().map(|(code, _)| *code).collect();
        assert_eq!(codes, ["E225", "E223", "E223"]);
        assert_eq!(found[1].1, "did you mean `runner/nginx-app.conf`?");
    }

    /// A file of the user's written without its `./` is told how to write it.
    #[test]
    fn a_template_path_without_its_dot_slash_gets_the_fix() {
        let found = lint_role(
            r#"file "/etc/motd" { template = "templates/motd.hbs" }
               file "/etc/issue" { template = "/srv/issue.hbs" }"#,
        );
        let codes: Vec<_> = found.iter().map(|(code, _)| *code).collect();
        assert_eq!(codes, ["E223", "E223"]);
        assert!(found[0].1.ends_with("`./templates/motd.hbs`"), "{found:?}");
        assert!(
            found[1].1.contains("starting with `./` or `../`"),
            "{found:?}"
        );
    }
}
