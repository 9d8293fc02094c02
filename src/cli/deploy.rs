//! `sitec plan` and `sitec apply`: compile the spec, build each host's
//! desired state, survey the hosts, print the plan, ask, apply. Glue only:
//! the work is in `plan`, `apply` and (on the hosts) `host`.

use crate::apply::{self as applying, Progress};
use crate::plan::desired::{self, HostDesired};
use crate::plan::{self, Plan, SavedPlan};
use crate::transport::Kex;
use clap::{Args, ValueEnum};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The spec
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// Print the plan as JSON (documented in lang/plan.md)
    #[arg(long)]
    pub json: bool,
    /// Also save the plan, for `sitec apply FILE` (holds secrets: written 0600)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A spec, or a plan saved by `sitec plan --out`
    #[arg(value_name = "SPEC|PLAN")]
    pub target: PathBuf,
    /// Apply without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// At most this many hosts at once
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub parallel: usize,
    /// At most this many runners of an app change at once (after its leader)
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub batch: usize,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Hosts the caller already found unreachable in this run, with why:
    /// not tried again (`sitec failover`'s dead primary).
    #[arg(skip)]
    pub down: Vec<(String, String)>,
    /// Only these hosts, when any (`sitec failover` repoints the apps'
    /// hosts first); the rest wait for a later apply.
    #[arg(skip)]
    pub only: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SshArgs {
    /// The SSH key exchange: curve25519 (fast) or what the system's ssh offers by default
    #[arg(long, value_enum, default_value_t = KexArg::Curve25519)]
    pub kex: KexArg,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum KexArg {
    Curve25519,
    Default,
}

impl SshArgs {
    pub fn kex(&self) -> Kex {
        match self.kex {
            KexArg::Curve25519 => Kex::Curve25519,
            KexArg::Default => Kex::SystemDefault,
        }
    }
}

/// A compiled spec ready to survey: each host's desired state, the order
/// between hosts, and where each resource was declared.
struct Prepared {
    spec: String,
    hosts: Vec<HostDesired>,
    order: Vec<(String, String, String)>,
    origins: HashMap<(String, String), String>,
    redactor: crate::secrets::Redactor,
}

fn prepare(spec: &Path, kex: Kex) -> Result<Prepared, ExitCode> {
    crate::trace::mark(|| format!("compiling {}", spec.display()));
    let rendered =
        super::compile(spec, &crate::compile::SecretSource::File, true).ok_or(ExitCode::FAILURE)?;
    crate::trace::mark(|| "compiled".into());
    // A package without a wheel is built on a host of the fleet, reached
    // as plan reaches every host (plan::build).
    let builds = crate::plan::build::Ssh::new(spec, kex);
    let built = desired::build(&rendered, spec, &|line| crate::errln!("{line}"), &builds);
    drop(builds);
    let hosts = built.map_err(|e| {
        crate::errln!("error: {e}");
        ExitCode::FAILURE
    })?;
    crate::trace::mark(|| format!("desired state of {} hosts built", hosts.len()));
    let origins = rendered
        .hosts
        .iter()
        .flat_map(|h| {
            h.resources
                .iter()
                .map(move |r| ((h.name.clone(), r.id.clone()), r.origin.clone()))
        })
        .collect();
    Ok(Prepared {
        spec: spec.display().to_string(),
        hosts,
        order: rendered.host_order,
        origins,
        redactor: rendered.redactor,
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            crate::errln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

async fn survey(
    p: &Prepared,
    down: &[(String, String)],
    kex: Kex,
) -> Result<(Plan, Arc<plan::remote::Connections>), ExitCode> {
    let origin = |host: &str, id: &str| p.origins.get(&(host.to_string(), id.to_string())).cloned();
    plan::survey(&p.spec, &p.hosts, down, kex, &origin, &p.redactor)
        .await
        .map_err(|e| {
            crate::errln!("error: {e}");
            ExitCode::FAILURE
        })
}

pub fn plan(args: &PlanArgs) -> ExitCode {
    let prepared = match prepare(&args.spec, args.ssh.kex()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        let (plan, connections) = survey(&prepared, &[], args.ssh.kex()).await?;
        if let Ok(c) = Arc::try_unwrap(connections) {
            c.close().await;
        }
        Ok::<_, ExitCode>(plan)
    });
    let plan = match result {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    if args.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        );
    } else {
        crate::out!("{}", plan.human());
    }
    if let Some(out) = &args.out {
        let saved = SavedPlan {
            plan: plan.clone(),
            spec_path: std::path::absolute(&args.spec).unwrap_or_else(|_| args.spec.clone()),
            hosts: prepared.hosts,
            host_order: prepared.order,
        };
        if let Err(e) = save(out, &saved) {
            crate::errln!("error: {e}");
            return ExitCode::FAILURE;
        }
        crate::errln!(
            "Saved the plan to {}; `sitec apply {}` applies exactly it.",
            out.display(),
            out.display()
        );
    }
    if plan.unreachable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes a saved plan (0600: it holds every file's content, secrets too).
fn save(path: &Path, saved: &SavedPlan) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string(saved).map_err(|e| e.to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A saved plan, or `None` when `path` is a spec.
fn load_saved(path: &Path) -> Result<Option<SavedPlan>, String> {
    if path.extension().is_some_and(|e| e == "site") {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !text.trim_start().starts_with('{') {
        return Ok(None);
    }
    serde_json::from_str(&text).map(Some).map_err(|e| {
        format!(
            "{} is not a plan saved by `sitec plan --out` ({e})",
            path.display()
        )
    })
}

pub fn apply(args: &ApplyArgs) -> ExitCode {
    let saved = match load_saved(&args.target) {
        Ok(saved) => saved,
        Err(e) => {
            crate::errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match saved {
        Some(saved) => {
            let around = around(saved.spec_path.clone());
            rt.block_on(apply_saved(args, saved, around))
        }
        None => {
            let mut prepared = match prepare(&args.target, args.ssh.kex()) {
                Ok(p) => p,
                Err(code) => return code,
            };
            if !args.only.is_empty() {
                prepared.hosts.retain(|h| args.only.contains(&h.name));
            }
            let around = around(args.target.clone());
            rt.block_on(apply_spec(args, prepared, around))
        }
    }
}

/// What `around` hands over: the lock and drains and each app's runners,
/// or why not.
type Arounds = std::thread::JoinHandle<Result<(applying::Around, applying::Rolling), String>>;

/// Takes the fleet lock (and makes the drainer) on a thread of its own, so
/// it goes on while the hosts are surveyed: the agents of a new fleet never
/// answer, and their silence should not add to the apply's time.
fn around(spec: PathBuf) -> Arounds {
    std::thread::spawn(move || {
        let fleet = super::ops::load(&spec)?;
        let agents = fleet.agents()?;
        let what = format!("apply {}", spec.display());
        let lock =
            crate::ops::lock::Lock::take(&fleet, &agents, &what).map_err(|e| e.to_string())?;
        if let Some(whose) = &lock.taken_over {
            crate::errln!("note: took over the fleet lock of {whose}: that process is gone");
        }
        let (who, from) = crate::ops::operator_identity();
        let drainer = crate::ops::drain::Drainer::new(
            &fleet,
            &agents,
            &format!("sitec apply by {who} on {from}"),
        );
        let rolling = applying::Rolling {
            apps: (fleet.apps.iter())
                .map(|a| (a.name.clone(), a.runners.clone()))
                .collect(),
            batch: 1,
        };
        Ok((applying::Around { lock, drainer }, rolling))
    })
}

async fn apply_spec(args: &ApplyArgs, prepared: Prepared, around: Arounds) -> ExitCode {
    let (plan, connections) = match survey(&prepared, &args.down, args.ssh.kex()).await {
        Ok(found) => found,
        Err(code) => return code,
    };
    carry_out(
        args,
        &plan,
        &prepared.hosts,
        &prepared.order,
        connections,
        false,
        around,
    )
    .await
}

async fn apply_saved(args: &ApplyArgs, saved: SavedPlan, around: Arounds) -> ExitCode {
    let spec = saved.spec_path.as_path();
    let (connections, unreachable) =
        match plan::remote::Connections::open(&saved.hosts, spec, args.ssh.kex()).await {
            Ok(found) => found,
            Err(e) => {
                crate::errln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
    let mut plan = saved.plan.clone();
    plan.unreachable.extend(
        unreachable
            .into_iter()
            .map(|(host, error)| plan::Unreachable { host, error }),
    );
    carry_out(
        args,
        &plan,
        &saved.hosts,
        &saved.host_order,
        Arc::new(connections),
        true,
        around,
    )
    .await
}

/// Shows the plan, asks, applies, reports. The fleet lock is held from
/// before the plan is shown until the apply ends.
async fn carry_out(
    args: &ApplyArgs,
    plan: &Plan,
    hosts: &[HostDesired],
    order: &[(String, String, String)],
    connections: Arc<plan::remote::Connections>,
    saved: bool,
    around: Arounds,
) -> ExitCode {
    let (around, rolling) = match tokio::task::spawn_blocking(move || around.join()).await {
        Ok(Ok(Ok((around, rolling)))) => (
            Arc::new(around),
            applying::Rolling {
                batch: args.batch,
                ..rolling
            },
        ),
        Ok(Ok(Err(e))) => {
            crate::errln!("error: {e}");
            if let Ok(c) = Arc::try_unwrap(connections) {
                c.close().await;
            }
            return ExitCode::FAILURE;
        }
        _ => {
            crate::errln!("error: the fleet lock could not be taken");
            return ExitCode::FAILURE;
        }
    };
    crate::out!("{}", plan.human());
    crate::trace::mark(|| "plan shown".into());
    let code = if plan.is_empty() {
        if plan.unreachable.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    } else if !args.yes && !confirmed() {
        crate::errln!("Nothing applied.");
        ExitCode::FAILURE
    } else {
        let progress = Arc::new(Progress::new(plan, std::io::stderr().is_terminal()));
        let outcomes = applying::run(
            plan,
            hosts,
            order,
            connections.clone(),
            args.parallel,
            saved,
            progress,
            &rolling,
            Some(around.clone()),
        )
        .await;
        crate::trace::mark(|| "applied".into());
        let late = applying::wait_serving(&around, &rolling, plan, &outcomes).await;
        let (text, ok) = applying::report(&outcomes);
        crate::out!("{text}");
        for late in late {
            crate::outln!("note: {late} (after {} s)", applying::SERVING.as_secs());
        }
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    };
    if let Ok(c) = Arc::try_unwrap(connections) {
        c.close().await;
    }
    code
}

/// Asks on the terminal; without one, says to pass `--yes`.
fn confirmed() -> bool {
    confirmed_to("Apply these changes?", "apply")
}

/// Asks `question` on the terminal (only `yes` does `verb`); without a
/// terminal, says to pass `--yes`.
pub(super) fn confirmed_to(question: &str, verb: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        crate::errln!(
            "error: not on a terminal, so nobody can confirm; pass --yes to {verb} without asking"
        );
        return false;
    }
    crate::err!("{question} Only `yes` {verb}s: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim() == "yes"
}
