//! `sitec host apply`: converges the host to its desired state, printing one
//! JSON event per line as it goes (the operator's progress display reads
//! them). In order: refuse if a saved plan no longer matches; switch the
//! binary; remove what the spec dropped; then each resource in graph order.
//! A service is handled at its place in the order, after every input that
//! notifies it: its config is validated first, and when validation fails the
//! inputs are put back as they were, so the running service never reads a
//! config its program rejected. The state file is written last.

use super::assess::{self, assess, is_enabled, unit_state};
use super::converge::{self, converge};
use super::nofollow::{self, Dir};
use super::state::{Managed, Pending, State};
use super::system::{self, ok_or, program, sh, write_atomic};
use super::watch::{came_up, Asked};
use super::wire::{
    notified_among, runs_sitec, Assessment, Desired, Event, Item, Notified, Status, BINARY_DIR,
};
use crate::resources::unit_name;
use crate::resources::Kind;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Prints events as they happen and counts them.
struct Log {
    changed: usize,
    failed: usize,
}

impl Log {
    fn emit(&mut self, event: &Event) {
        match event {
            Event::Changed { .. } | Event::Service { .. } => self.changed += 1,
            Event::Failed { .. } => self.failed += 1,
            _ => {}
        }
        crate::outln!("{}", event.line());
    }
}

/// A file's content before this apply replaced it: `None` if it did not exist.
type Backup = Option<Vec<u8>>;

struct Run<'d> {
    desired: &'d Desired,
    state: State,
    /// What the state file said before this apply began.
    previous: Vec<Managed>,
    log: Log,
    /// Ids that failed or were skipped: what depends on them waits.
    broken: HashSet<String>,
    /// Service id -> the ids whose change asks it to reload or restart.
    notified: BTreeMap<String, Vec<String>>,
    /// The same debts, on disk (see [`Pending`]).
    pending: Pending,
    backups: HashMap<String, (String, Backup)>,
    /// A unit file changed since systemd last re-read them.
    units_dirty: bool,
    /// A unit was enabled without a daemon-reload (`--no-reload`): systemd
    /// still says "disabled" of it (`UnitFileState`, what the next plan
    /// reads) until one, which the apply's end does.
    enabled_unreloaded: bool,
    /// Services started without waiting: `(item, the start, why)`.
    starting: Vec<(Item, Asked, String)>,
}

/// What [`Run::service`] did to a unit.
enum Serviced {
    /// It was as the spec wants.
    Nothing,
    /// An action (`started`, `reloaded`...) and why.
    Done(String, String),
    /// A start under way (see `Run::starting`), and why.
    Starting(Asked, String),
}

pub fn apply(desired: &Desired) -> i32 {
    let mut log = Log {
        changed: 0,
        failed: 0,
    };
    let _lock = match lock() {
        Ok(lock) => lock,
        Err(error) => {
            log.emit(&Event::Refused { error });
            return 1;
        }
    };
    let state = match State::load() {
        Ok(state) => state,
        Err(error) => {
            log.emit(&Event::Refused { error });
            return 1;
        }
    };
    if let Some(claim) = &desired.lease {
        if let Err(error) = super::lease::record(claim) {
            log.emit(&Event::Refused { error });
            return 1;
        }
    }
    if let Some(expected) = &desired.expect {
        let facts = super::facts(desired, &state);
        if &facts.fingerprint != expected {
            log.emit(&Event::Refused {
                error: "the host changed since the plan was made; make a new plan".into(),
            });
            return 1;
        }
    }
    // A user that cannot have its fixed uid here: nothing changes, since
    // every file, folder and service of that user would take the wrong one.
    if let Some(error) = (desired.items.iter()).find_map(|item| match &item.kind {
        Kind::User {
            name,
            uid: Some(uid),
            ..
        } => super::converge::uid_problem(name, *uid),
        _ => None,
    }) {
        log.emit(&Event::Refused { error });
        return 1;
    }
    let mut run = Run {
        desired,
        previous: state.managed.clone(),
        state,
        log,
        broken: HashSet::new(),
        notified: BTreeMap::new(),
        pending: Pending::default(),
        backups: HashMap::new(),
        units_dirty: false,
        enabled_unreloaded: false,
        starting: Vec::new(),
    };
    if !desired.prepare.is_empty() {
        for item in (desired.items.iter()).filter(|i| desired.prepare.contains(&i.id)) {
            run.item(item);
        }
        run.wait_for_starts();
        return run.finish();
    }
    // Reloads an interrupted apply owed (it changed a file, then was killed).
    for (service, cause) in Pending::load().owed {
        run.owe(&[service], &cause);
    }
    run.switch_binary();
    run.remove_dropped(false);
    for item in &desired.items {
        run.item(item);
    }
    // A dropped virtualenv may be what the running app server runs (the
    // layout before one per release): it goes once everything converged.
    if run.broken.is_empty() {
        run.remove_dropped(true);
    }
    run.wait_for_starts();
    if run.units_dirty || run.enabled_unreloaded {
        let _ = program("systemctl", &["daemon-reload"]);
    }
    run.finish()
}

/// One apply at a time per host: a second waits, up to two minutes.
pub(super) fn lock() -> Result<std::fs::File, String> {
    let dir = Dir::make(Path::new(super::wire::STATE_DIR), None)?;
    let file = dir.lock_file(std::ffi::OsStr::new("apply.lock"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(_) => {
                return Err(
                    "another apply has held this host for two minutes; try again when it is done"
                        .into(),
                )
            }
        }
    }
}

impl Run<'_> {
    /// Points `/usr/local/lib/sitec/sitec` at the binary running now (the
    /// operator's version, shipped by hash); services started from it restart.
    fn switch_binary(&mut self) {
        let Some(me) = binary_switch() else { return };
        let link = Path::new(BINARY_DIR).join("sitec");
        let id = format!("file:{}", link.display());
        let owed: Vec<String> = self
            .desired
            .items
            .iter()
            .filter(|i| runs_sitec(i))
            .flat_map(|i| i.notifies.clone())
            .collect();
        self.owe(&owed, &id);
        let switched = Dir::existing(Path::new(BINARY_DIR))
            .and_then(|dir| dir.symlink(std::ffi::OsStr::new("sitec"), &me));
        match switched {
            Ok(()) => {
                self.log.emit(&Event::Changed {
                    id: id.clone(),
                    action: format!("now {}", me.display()),
                });
                prune_binaries(&me);
            }
            Err(e) => self.fail(&id, format!("cannot switch the sitec binary: {e}")),
        }
    }

    /// Removes what sitec managed here before and the spec no longer has,
    /// newest first (services stop before their files go): the virtualenvs
    /// only, or all but them.
    fn remove_dropped(&mut self, virtualenvs: bool) {
        let wanted: HashSet<&str> = self.desired.items.iter().map(|i| i.id.as_str()).collect();
        let dropped: Vec<Managed> = self
            .state
            .managed
            .iter()
            .rev()
            .filter(|m| !wanted.contains(m.id.as_str()))
            .filter(|m| matches!(m.kind, Kind::Virtualenv { .. }) == virtualenvs)
            .cloned()
            .collect();
        for managed in dropped {
            // What it notified has restarted by now (onto what replaced it).
            if !virtualenvs {
                self.owe(&managed.notifies, &managed.id);
            }
            match converge::remove(&managed) {
                Ok(action) => {
                    if let Kind::File { path, .. } = &managed.kind {
                        self.units_dirty |= path.starts_with("/etc/systemd/system/");
                    }
                    self.state.managed.retain(|m| m.id != managed.id);
                    self.log.emit(&Event::Changed {
                        id: managed.id.clone(),
                        action,
                    });
                }
                Err(error) => self.fail(&managed.id, error),
            }
        }
    }

    fn fail(&mut self, id: &str, error: String) {
        self.broken.insert(id.to_string());
        self.log.emit(&Event::Failed {
            id: id.to_string(),
            error,
        });
    }

    /// The failed resource this one depends on, if any: one it requires,
    /// the folder or release it lives in, its owner, or a notifier of a service.
    fn blocked_by(&self, item: &Item) -> Option<String> {
        if let Some(id) = item.requires.iter().find(|r| self.broken.contains(*r)) {
            return Some(id.clone());
        }
        let key = item.kind.key();
        let owner = match &item.kind {
            Kind::Directory { owner, .. }
            | Kind::File { owner, .. }
            | Kind::Tree { owner, .. }
            | Kind::Virtualenv { owner, .. } => Some(owner.as_str()),
            _ => None,
        };
        self.broken
            .iter()
            .find(|b| {
                let (word, broken_key) = b.split_once(':').unwrap_or(("", b));
                (matches!(word, "directory" | "tree") && key.starts_with(&format!("{broken_key}/")))
                    || (word == "user" && owner == Some(broken_key))
                    || self.notified.get(&item.id).is_some_and(|n| n.contains(b))
            })
            .cloned()
    }

    fn item(&mut self, item: &Item) {
        if let Some(because) = self.blocked_by(item) {
            self.broken.insert(item.id.clone());
            self.log.emit(&Event::Skipped {
                id: item.id.clone(),
                because,
            });
            return;
        }
        if let Kind::Service { .. } = item.kind {
            return self.service(item);
        }
        let found = assess(item, &self.state);
        let notified = self.notified.contains_key(&item.id);
        if found.status == Status::Ok && !(notified && matches!(item.kind, Kind::Command { .. })) {
            return self.record(item);
        }
        if let Kind::File {
            path,
            absent: false,
            ..
        } = &item.kind
        {
            if found
                .differences
                .iter()
                .any(|d| d == "content" || d == assess::MISSING)
            {
                // Never through a link: a planted one is refused by converge.
                let before = nofollow::read(Path::new(path), u64::MAX).ok().flatten();
                self.backups.insert(item.id.clone(), (path.clone(), before));
            }
        }
        // Owed before the change: a kill right after it must not lose the reload.
        self.owe(&item.notifies, &item.id);
        match converge(item, found.status == Status::Add) {
            Ok(action) => {
                // systemd loads a new unit file by itself when it is first
                // started; only a changed one needs a daemon-reload (~0.3 s),
                // and so does a new drop-in (its unit may be loaded already).
                if let Kind::File { path, .. } = &item.kind {
                    self.units_dirty |= path.starts_with("/etc/systemd/system/")
                        && (found.status == Status::Change || path.contains(".d/"));
                }
                self.settle(&item.id);
                let action = if found.differences.is_empty() {
                    action
                } else {
                    format!("{action} ({})", found.differences.join(", "))
                };
                self.log.emit(&Event::Changed {
                    id: item.id.clone(),
                    action,
                });
                self.record(item);
            }
            Err(error) => self.fail(&item.id, error),
        }
    }

    /// Records that `services` owe a reload (or a run) because `cause`
    /// changed, on disk first.
    fn owe(&mut self, services: &[String], cause: &str) {
        if services.is_empty() {
            return;
        }
        for service in services {
            let causes = self.notified.entry(service.clone()).or_default();
            if !causes.iter().any(|c| c == cause) {
                causes.push(cause.to_string());
            }
            let debt = (service.clone(), cause.to_string());
            if !self.pending.owed.contains(&debt) {
                self.pending.owed.push(debt);
            }
        }
        if let Err(error) = self.pending.save() {
            self.log.emit(&Event::Failed {
                id: "file:/var/lib/sitec/pending.json".into(),
                error,
            });
        }
    }

    /// `id` (a service or command) took what it was owed.
    fn settle(&mut self, id: &str) {
        let before = self.pending.owed.len();
        self.pending.owed.retain(|(service, _)| service != id);
        if self.pending.owed.len() != before {
            let _ = self.pending.save();
        }
    }

    /// Remembers that `item` is in place as desired.
    fn record(&mut self, item: &Item) {
        let managed = Managed {
            id: item.id.clone(),
            digest: item.digest.clone(),
            kind: item.kind.clone(),
            notifies: item.notifies.clone(),
        };
        match self.state.managed.iter_mut().find(|m| m.id == item.id) {
            Some(slot) => *slot = managed,
            None => self.state.managed.push(managed),
        }
    }

    fn service(&mut self, item: &Item) {
        let Kind::Service {
            name,
            enabled,
            running,
            reload,
            restart,
            validate,
        } = &item.kind
        else {
            return;
        };
        let unit = unit_name(name);
        if self.units_dirty {
            let _ = program("systemctl", &["daemon-reload"]);
            self.units_dirty = false;
        }
        let why = self.notified.get(&item.id).cloned().unwrap_or_default();
        if !why.is_empty() {
            if let Some(check) = validate {
                let ran = sh(check, None);
                if !ran.ok {
                    return self.reject(item, check, &why, &ran.output);
                }
            }
        }
        // Nothing after it needs it running: start it and go on; the end
        // of the apply waits for it (services start side by side).
        let defer = !self
            .desired
            .items
            .iter()
            .any(|i| i.requires.contains(&item.id));
        let result = (|| -> Result<Serviced, String> {
            let (load, mut file_state, active) = unit_state(&unit);
            if load == "masked" || file_state == "masked" {
                ok_or(
                    program("systemctl", &["unmask", &unit]),
                    &format!("systemctl unmask {unit}"),
                )?;
                // Unmasked, it has the state its unit file gives it.
                file_state = unit_state(&unit).1;
            }
            // `--no-reload`: enabling only adds the `WantedBy` links, which
            // matter at boot; the daemon-reload `enable` does by default
            // costs ~0.4 s per unit and the start below needs none.
            if *enabled && !is_enabled(&file_state) {
                ok_or(
                    program("systemctl", &["enable", "--no-reload", &unit]),
                    &format!("systemctl enable {unit}"),
                )?;
                self.enabled_unreloaded = true;
            }
            if !*running {
                if active == "active" {
                    ok_or(
                        program("systemctl", &["stop", &unit]),
                        &format!("systemctl stop {unit}"),
                    )?;
                    return Ok(Serviced::Done(
                        "stopped".into(),
                        "the spec says not running".into(),
                    ));
                }
                return Ok(Serviced::Nothing);
            }
            let because = why.join(", ");
            if active == "failed" {
                // systemd refuses to start a unit that hit its start limit
                // until told to forget its failures; the spec wants it running.
                let _ = program("systemctl", &["reset-failed", &unit]);
            }
            if active != "active" && defer {
                let asked = Asked::start(&unit);
                ok_or(
                    program("systemctl", &["--no-block", "restart", &unit]),
                    &format!("starting {unit}"),
                )?;
                return Ok(Serviced::Starting(asked, because));
            }
            if active != "active" {
                let asked = Asked::start(&unit);
                ok_or(
                    program("systemctl", &["restart", &unit]),
                    &format!("starting {unit}"),
                )?;
                still_up(asked)?;
                return Ok(Serviced::Done(
                    "started".into(),
                    if because.is_empty() {
                        format!("it was {active}")
                    } else {
                        because
                    },
                ));
            }
            if why.is_empty() {
                return Ok(Serviced::Nothing);
            }
            let service = (unit.as_str(), reload.as_deref(), restart.as_deref());
            let notified = notified_among(&self.desired.items, service, &why);
            let command = notified.command(&unit);
            let asked = match &notified {
                Notified::SystemdRestart => Asked::start(&unit),
                Notified::Restart(_) => Asked::command(&unit, true, &command),
                Notified::Reload(_) => Asked::command(&unit, false, &command),
            };
            ok_or(sh(&command, None), &format!("`{command}`"))?;
            still_up(asked)?;
            Ok(Serviced::Done(format!("{}ed", notified.word()), because))
        })();
        match result {
            Ok(Serviced::Starting(asked, why)) => self.starting.push((item.clone(), asked, why)),
            Ok(Serviced::Done(action, why)) => self.service_done(item, Some((action, why))),
            Ok(Serviced::Nothing) => self.service_done(item, None),
            Err(error) => self.service_failed(item, &unit, error),
        }
    }

    /// A service took what it was owed: say what happened (if anything).
    fn service_done(&mut self, item: &Item, happened: Option<(String, String)>) {
        if let Some((action, why)) = happened {
            self.log.emit(&Event::Service {
                id: item.id.clone(),
                action,
                why,
            });
        }
        self.settle(&item.id);
        self.record(item);
    }

    /// A service did not start or reload: the error, with its journal.
    fn service_failed(&mut self, item: &Item, unit: &str, error: String) {
        let detail = journal_tail(unit);
        let error = if detail.is_empty() {
            error
        } else {
            format!("{error}\n{detail}")
        };
        self.fail(&item.id, error);
    }

    /// Waits for the services started without waiting to come up (or
    /// fail), all at once: one watch covers every unit.
    fn wait_for_starts(&mut self) {
        let starting = std::mem::take(&mut self.starting);
        let asked: Vec<Asked> = starting.iter().map(|(_, a, _)| a.clone()).collect();
        let outcomes = came_up(&asked);
        for ((item, Asked { unit, .. }, why), outcome) in starting.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    let why = if why.is_empty() {
                        "it was not running".to_string()
                    } else {
                        why.clone()
                    };
                    self.service_done(item, Some(("started".into(), why)));
                }
                Err(error) => self.service_failed(item, unit, error),
            }
        }
    }

    /// The service's validation rejected its new inputs: put them back as
    /// they were, so what runs and what is on disk stay the last good config.
    fn reject(&mut self, item: &Item, check: &str, why: &[String], output: &str) {
        let mut restored = Vec::new();
        for id in why {
            let Some((path, before)) = self.backups.remove(id) else {
                continue;
            };
            let put_back = match (&before, self.desired.items.iter().find(|i| &i.id == id)) {
                (
                    Some(bytes),
                    Some(Item {
                        kind: Kind::File { owner, group, .. },
                        ..
                    }),
                ) => {
                    let mode = system::meta(Path::new(&path))
                        .ok()
                        .flatten()
                        .map_or("0644".to_string(), |m| format!("{:04o}", m.mode));
                    write_atomic(Path::new(&path), bytes, owner, group, &mode)
                }
                _ => nofollow::existing_parent(Path::new(&path))
                    .and_then(|(dir, name)| dir.remove_file(&name).map(|_| ())),
            };
            if put_back.is_ok() {
                restored.push(path.clone());
            }
            self.state.managed.retain(|m| &m.id != id);
            if let Some(previous) = self.previous.iter().find(|m| &m.id == id) {
                self.state.managed.push(previous.clone());
            }
            self.broken.insert(id.clone());
        }
        let error = format!(
            "`{check}` rejected the new config, so it was not loaded; {} put back as before and the service keeps running its last good config:\n{}",
            if restored.is_empty() { "nothing was".to_string() } else { restored.join(", ") + " was" },
            system::last_lines(output, 12)
        );
        // Nothing changed in the end: no reload is owed.
        self.settle(&item.id);
        self.fail(&item.id, error);
    }

    fn finish(mut self) -> i32 {
        let complete = self.log.failed == 0;
        // A prepare applied part of the generation only.
        if complete && self.desired.prepare.is_empty() {
            super::converge::prune_blobs(&self.desired.items);
        }
        if self.desired.prepare.is_empty() {
            self.state.generation = complete.then(|| self.desired.generation.clone());
            self.state.spec = self.desired.spec.clone();
            self.state.applied_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
        }
        // Keep the apply order: the desired order, then older entries.
        let order: HashMap<&str, usize> = self
            .desired
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.id.as_str(), i))
            .collect();
        self.state
            .managed
            .sort_by_key(|m| order.get(m.id.as_str()).copied().unwrap_or(usize::MAX));
        if let Err(error) = self.state.save() {
            self.log.emit(&Event::Failed {
                id: "file:/var/lib/sitec/state.json".into(),
                error,
            });
        }
        let done = Event::Done {
            changed: self.log.changed,
            failed: self.log.failed,
            generation: self.desired.generation.clone(),
        };
        self.log.emit(&done);
        i32::from(self.log.failed > 0)
    }
}

/// Waits for one unit the apply just started or reloaded (see
/// [`super::watch`]).
fn still_up(asked: Asked) -> Result<(), String> {
    came_up(&[asked]).remove(0)
}

/// The unit's last journal lines: why a start failed.
fn journal_tail(unit: &str) -> String {
    let ran = program(
        "journalctl",
        &["-u", unit, "-n", "8", "--no-pager", "-q", "-o", "cat"],
    );
    if ran.ok {
        ran.output
    } else {
        String::new()
    }
}

/// The running binary, when `/usr/local/lib/sitec/sitec` does not point at
/// it yet (and it is one of the shipped copies there).
pub fn binary_switch() -> Option<std::path::PathBuf> {
    let me = std::env::current_exe().ok()?;
    let link = Path::new(BINARY_DIR).join("sitec");
    let now = nofollow::read_link(&link).ok().flatten();
    (me.starts_with(BINARY_DIR) && now.as_deref() != Some(me.as_path())).then_some(me)
}

/// Removes sitec binaries other than the one running and the previous one.
fn prune_binaries(current: &Path) {
    let Ok(dir) = Dir::existing(Path::new(BINARY_DIR)) else {
        return;
    };
    let mut others: Vec<(i64, std::ffi::OsString)> = dir
        .entries()
        .unwrap_or_default()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| {
            Some(name.as_os_str()) != current.file_name()
                && name.to_string_lossy().starts_with("sitec-")
        })
        .filter_map(|name| {
            let meta = dir.meta(&name).ok()??;
            (meta.node == nofollow::Node::File).then_some((meta.modified, name))
        })
        .collect();
    others.sort();
    others.pop();
    for (_, name) in others {
        let _ = dir.remove_file(&name);
    }
}

/// The assessments of every desired item (for `facts`).
pub fn assess_all(desired: &Desired, state: &State) -> Vec<Assessment> {
    desired
        .items
        .iter()
        .map(|item| assess(item, state))
        .collect()
}
