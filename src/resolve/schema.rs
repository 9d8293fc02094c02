//! The schema: what each keyword of the language may hold.
//!
//! Plain data, read by `resolve` to check every entry and by the docs tests
//! to keep `lang/` true. A block kind lists its fields (with their types),
//! the nested blocks it allows, and what labels it takes.

use crate::syntax::units::{show, Measure};

/// The kinds of things a spec declares by name; each has its own namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Provider,
    Host,
    Role,
    Database,
    App,
    Backup,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Provider => "provider",
            Kind::Host => "host",
            Kind::Role => "role",
            Kind::Database => "database",
            Kind::App => "app",
            Kind::Backup => "backup",
        }
    }

    pub fn article(self) -> &'static str {
        match self {
            Kind::App => "an",
            _ => "a",
        }
    }
}

/// The type a field's value must have.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    /// A string of one line.
    Str,
    /// A string or a `"""` text block.
    Text,
    /// An integer from the first to the second, both included.
    IntIn(i64, i64),
    Bool,
    /// A duration, in milliseconds within these bounds.
    Duration(Bounds),
    /// A size, in bytes within these bounds.
    Size(Bounds),
    /// The name of a declared thing of this kind.
    Ref(Kind),
    /// One of these bare words.
    OneOf(&'static [&'static str]),
    List(&'static Ty),
    /// A string or `secret("name")`.
    Secret,
    /// A settings value: anything but a bare name.
    Setting,
    /// A string of a given shape, handed to another program as it is.
    Shaped(Shape),
}

/// What a duration (in milliseconds) or a size (in bytes) may be: what
/// the program that reads it takes (a systemd timer counts whole seconds,
/// the balancer wants a body limit of a byte at least).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
    /// The amount is a whole number of these (1000: whole seconds).
    pub step: u64,
}

impl Bounds {
    /// Whether `amount` is in bounds.
    pub fn holds(self, amount: u64) -> bool {
        (self.min..=self.max).contains(&amount) && amount % self.step == 0
    }
}

/// A timer's interval: systemd counts whole seconds, and a schedule
/// of more than a year is no schedule.
pub const EVERY: Bounds = Bounds {
    min: 1_000,
    max: 52 * 604_800_000,
    step: 1_000,
};

/// An HTTP body limit: the balancer takes a byte at least, and a terabyte
/// is beyond any request a web app takes.
pub const BODY: Bounds = Bounds {
    min: 1,
    max: 1 << 40,
    step: 1,
};

/// A gunicorn timeout: gunicorn counts whole seconds, and a request that
/// may run longer than an hour belongs in a worker.
pub const SERVER_SECONDS: Bounds = Bounds {
    min: 1_000,
    max: 3_600_000,
    step: 1_000,
};

/// The shapes a [`Ty::Shaped`] string may need (see `crate::names`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Every [`Ty::Str`]: one line.
    OneLine,
    Domain,
    Address,
    Wsgi,
    Python,
    UrlPrefix,
    Folder,
    Mode,
    User,
    PythonPath,
    /// A Debian package's name (`libpq-dev`).
    Package,
    /// A media store's name: the folder it lives in (`uploads`).
    MediaName,
}

impl Shape {
    /// What is wrong with `text` in this shape, and the fix. Every shape
    /// is one line first.
    pub fn problem(self, text: &str) -> Option<crate::names::Problem> {
        crate::names::one_line_problem(text).or_else(|| match self {
            Shape::OneLine => None,
            Shape::Domain => crate::names::domain_problem(text),
            Shape::Address => crate::names::ip_address_problem(text),
            Shape::Wsgi => crate::names::wsgi_problem(text),
            Shape::Python => crate::names::python_problem(text),
            Shape::UrlPrefix => crate::names::url_prefix_problem(text),
            Shape::Folder => crate::names::folder_problem(text),
            Shape::Mode => crate::names::mode_problem(text),
            Shape::User => crate::names::user_problem(text),
            Shape::PythonPath => crate::names::python_path_problem(text),
            Shape::Package => crate::names::package_problem(text),
            Shape::MediaName => crate::names::media_name_problem(text),
        })
    }
}

impl Ty {
    /// The type in the words of an error message.
    pub fn describe(self) -> String {
        match self {
            Ty::Str | Ty::Shaped(_) => "a string".into(),
            Ty::Text => "a string or a text block".into(),
            Ty::IntIn(min, max) => format!("an integer from {min} to {max}"),
            Ty::Bool => "`true` or `false`".into(),
            Ty::Duration(b) => {
                let seconds = if b.step == 1_000 {
                    ", in whole seconds"
                } else {
                    ""
                };
                format!(
                    "a duration from {} to {}{seconds}",
                    show(b.min, Measure::Duration),
                    show(b.max, Measure::Duration)
                )
            }
            Ty::Size(b) => format!(
                "a size from {} to {}",
                show(b.min, Measure::Size),
                show(b.max, Measure::Size)
            ),
            Ty::Ref(kind) => format!("the name of {} {}", kind.article(), kind.word()),
            Ty::OneOf(words) => {
                let words: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
                match words.split_last() {
                    Some((last, init)) if !init.is_empty() => {
                        format!("{} or {last}", init.join(", "))
                    }
                    _ => words.join(""),
                }
            }
            Ty::List(item) => format!("a list of {}", plural(item)),
            Ty::Secret => "a string or `secret(\"name\")`".into(),
            Ty::Setting => "a value".into(),
        }
    }
}

fn plural(ty: &Ty) -> String {
    match ty {
        Ty::Str | Ty::Shaped(_) => "strings".into(),
        Ty::Ref(kind) => format!("{} names", kind.word()),
        other => format!("values ({})", other.describe()),
    }
}

/// One `key = value` a block may hold.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    /// Takes one quoted label of this shape and may repeat:
    /// `static "/static/" = "dir"`.
    pub label: Option<Shape>,
    pub doc: &'static str,
    /// Where the field means something: beside a sibling's word.
    pub only: Option<&'static Only>,
    /// A required field another one may stand in for (`asgi` for `wsgi`):
    /// one of the two, never both.
    pub or: Option<&'static str>,
}

/// A field that means something only beside a word of a sibling field
/// (`standby` beside `engine = postgres`); written elsewhere it would be
/// ignored, so it is an error (E117) that says where it belongs.
#[derive(Clone, Copy, Debug)]
pub struct Only {
    pub field: &'static str,
    pub is: &'static str,
    /// The sibling's word when it is left out.
    pub default: Option<&'static str>,
    /// Only this value of the field is out of place; `None`: any.
    pub value: Option<&'static str>,
    /// What to write instead: the help line.
    pub instead: &'static str,
}

impl Field {
    const fn only(self, only: &'static Only) -> Field {
        Field {
            only: Some(only),
            ..self
        }
    }

    const fn or(self, other: &'static str) -> Field {
        Field {
            or: Some(other),
            ..self
        }
    }
}

/// What labels a block takes after its keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    /// `keep { ... }`
    None,
    /// `host lb1 { ... }`: one name, which declares the block.
    Name,
    /// `file "/etc/x" { ... }`: one quoted path.
    Path,
    /// `settings base`, `settings host H`, `settings app A`, `settings app A host H`.
    SettingsTarget,
    /// A resource's name or path: one label, bare or quoted (quoted when it
    /// holds `{...}` or a `/`).
    Resource,
    /// `each app`: one of the scope words in [`SCOPES`].
    Scope,
}

/// What a block may hold.
#[derive(Debug)]
pub struct Schema {
    pub keyword: &'static str,
    pub labels: Labels,
    pub fields: &'static [Field],
    pub blocks: &'static [&'static Schema],
    /// Any key may be set, with values of this type (`settings`, `databases`).
    pub open: Option<Ty>,
    /// The kind this block declares, when it declares a name.
    pub declares: Option<Kind>,
    pub doc: &'static str,
}

impl Schema {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn block(&self, keyword: &str) -> Option<&'static Schema> {
        self.blocks.iter().copied().find(|b| b.keyword == keyword)
    }

    /// Every word that may stand at the start of an entry here.
    pub fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.fields
            .iter()
            .map(|f| f.name)
            .chain(self.blocks.iter().map(|b| b.keyword))
    }
}

const fn field(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        label: None,
        doc,
        only: None,
        or: None,
    }
}

const fn required(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: true,
        label: None,
        doc,
        only: None,
        or: None,
    }
}

const fn block(
    keyword: &'static str,
    labels: Labels,
    fields: &'static [Field],
    doc: &'static str,
) -> Schema {
    Schema {
        keyword,
        labels,
        fields,
        blocks: &[],
        open: None,
        declares: None,
        doc,
    }
}

const STRINGS: Ty = Ty::List(&Ty::Str);
const PORT: Ty = Ty::IntIn(1, 65535);
const KEPT: Ty = Ty::IntIn(0, 100_000);
const HOSTS: Ty = Ty::List(&Ty::Ref(Kind::Host));

/// What only a provider reached over SSH uses.
const OVER_SSH: Only = Only {
    field: "kind",
    is: "ssh",
    default: Some("ssh"),
    value: None,
    instead: "a `kind = local` provider's hosts are reached as root, with the local fleet's own key and known hosts: remove it",
};

pub static PROVIDER: Schema = Schema {
    keyword: "provider",
    labels: Labels::Name,
    fields: &[
        field("kind", Ty::OneOf(&["ssh", "local"]), "`ssh` (default): hosts reached over SSH; `local`: systemd-nspawn containers on this machine"),
        field("user", Ty::Shaped(Shape::User), "the SSH user (default `root`)").only(&OVER_SSH),
        field("port", PORT, "the SSH port (default 22)").only(&OVER_SSH),
        field("known_hosts", Ty::Str, "a known_hosts file that pins these hosts' keys").only(&OVER_SSH),
        field("identity", Ty::Str, "the SSH private key to log in with").only(&OVER_SSH),
    ],
    blocks: &[],
    open: None,
    declares: Some(Kind::Provider),
    doc: "where hosts live; providers are failure domains for redundancy checks",
};

pub static HOST: Schema = Schema {
    keyword: "host",
    labels: Labels::Name,
    fields: &[
        required(
            "provider",
            Ty::Ref(Kind::Provider),
            "the provider this host lives at",
        ),
        field(
            "address",
            Ty::Shaped(Shape::Address),
            "its IP address (optional for `local` providers)",
        ),
        field(
            "private_address",
            Ty::Shaped(Shape::Address),
            "the IP address the host's services bind to when `address` is not on any of its interfaces (EC2's public IPs, NAT); others still dial `address`",
        ),
        field(
            "roles",
            Ty::List(&Ty::Ref(Kind::Role)),
            "the roles this host plays",
        ),
    ],
    blocks: &[],
    open: None,
    declares: Some(Kind::Host),
    doc: "one machine of the fleet",
};

pub static SETTINGS: Schema = Schema {
    keyword: "settings",
    labels: Labels::SettingsTarget,
    fields: &[],
    blocks: &[&ENV],
    open: Some(Ty::Setting),
    declares: None,
    doc: "a layer of Django settings: base, per host, per app, per app on one host",
};

pub static DATABASE: Schema = Schema {
    keyword: "database",
    labels: Labels::Name,
    fields: &[
        required(
            "engine",
            Ty::OneOf(&["postgres", "redis"]),
            "the database server",
        ),
        field(
            "tier",
            Ty::OneOf(&["shared", "dedicated"]),
            "`shared` (default): one server for many apps; `dedicated`: its own",
        )
        .only(&Only {
            field: "engine",
            is: "postgres",
            default: None,
            value: Some("shared"),
            instead:
                "every Redis database is a server of its own: remove `tier`, or write `dedicated`",
        }),
        required(
            "primary",
            Ty::Ref(Kind::Host),
            "the host that holds the primary",
        ),
        field(
            "standby",
            Ty::Ref(Kind::Host),
            "a Postgres warm standby, by streaming replication",
        )
        .only(&Only {
            field: "engine",
            is: "postgres",
            default: None,
            value: None,
            instead: "Redis keeps its copy on a replica: write `replica = HOST`",
        }),
        field(
            "replica",
            Ty::Ref(Kind::Host),
            "a Redis replica (`replicaof`)",
        )
        .only(&Only {
            field: "engine",
            is: "redis",
            default: None,
            value: None,
            instead: "Postgres keeps its copy on a standby: write `standby = HOST`",
        }),
        field(
            "port",
            Ty::IntIn(1024, 65535),
            "the server's port (the server runs as its own user, which can't listen below 1024)",
        ),
    ],
    blocks: &[],
    open: None,
    declares: Some(Kind::Database),
    doc: "a database an app can use",
};

static APP_DATABASES: Schema = Schema {
    keyword: "databases",
    labels: Labels::None,
    fields: &[],
    blocks: &[],
    open: Some(Ty::Ref(Kind::Database)),
    declares: None,
    doc: "Django database aliases to declared databases: `default = main`",
};

/// `env { NAME = "value" }`: environment variables of an app's processes
/// (its server, workers and management commands), in an app or a settings
/// layer, layered as settings are.
static ENV: Schema = Schema {
    keyword: "env",
    labels: Labels::None,
    fields: &[],
    blocks: &[],
    open: Some(Ty::Secret),
    declares: None,
    doc: "environment variables of the app's processes: `NAME = \"value\"` or `NAME = secret(\"name\")`",
};

static APP_SETTINGS: Schema = Schema {
    keyword: "settings",
    labels: Labels::None,
    fields: &[],
    blocks: &[],
    open: Some(Ty::Setting),
    declares: None,
    doc: "the app's own settings layer",
};

static WORKER: Schema = block(
    "worker",
    Labels::Name,
    &[
        required(
            "command",
            Ty::Str,
            "the command line, run in the app's virtualenv",
        ),
        field(
            "once",
            Ty::Bool,
            "`true`: it runs on the app's leader only, never on two runners at once: a scheduler such as `celery beat`, whose periodic tasks would otherwise be sent once per runner (default `false`: one on each runner)",
        ),
    ],
    "a background process of the app (celery, rq)",
);

/// What only gunicorn's threaded worker uses.
const GTHREAD: Only = Only {
    field: "worker_class",
    is: "gthread",
    default: Some("gthread"),
    value: None,
    instead: "the `sync` worker runs one request at a time in each process: remove `threads`, or write `worker_class = gthread`",
};

/// `gunicorn { workers = 4 ... }`: the app server, under gunicorn's names.
static GUNICORN: Schema = block(
    "gunicorn",
    Labels::None,
    &[
        field(
            "workers",
            Ty::IntIn(1, 256),
            "worker processes on each runner (default: 2 per CPU of the runner, plus 1)",
        ),
        field(
            "threads",
            Ty::IntIn(1, 256),
            "threads per worker process (default 4)",
        )
        .only(&GTHREAD),
        field(
            "timeout",
            Ty::Duration(SERVER_SECONDS),
            "a request still running after this is killed with its worker (default 30s); the runner's nginx waits as long",
        ),
        field(
            "graceful_timeout",
            Ty::Duration(SERVER_SECONDS),
            "what requests in flight get to finish when the server stops or restarts (default 30s)",
        ),
        field(
            "max_requests",
            Ty::IntIn(0, 1_000_000_000),
            "a worker process is replaced after this many requests, 0 never (default 2000)",
        ),
        field(
            "max_requests_jitter",
            Ty::IntIn(0, 1_000_000_000),
            "up to this many more, at random, so the workers are not replaced all at once (default a tenth of `max_requests`)",
        ),
        field(
            "worker_class",
            Ty::OneOf(&["gthread", "sync"]),
            "`gthread` (default): threads in each process, keep-alive kept; `sync`: one request at a time per process",
        ),
    ],
    "the app server's settings (gunicorn's, by their names)",
);

pub static APP: Schema = Schema {
    keyword: "app",
    labels: Labels::Name,
    fields: &[
        required(
            "source",
            Ty::Str,
            "the app's code: a local folder, relative to the spec",
        ),
        field(
            "python",
            Ty::Shaped(Shape::Python),
            "the Python version (default \"3.11\")",
        ),
        required(
            "wsgi",
            Ty::Shaped(Shape::Wsgi),
            "the WSGI callable, `module:name`",
        )
        .or("asgi"),
        field(
            "asgi",
            Ty::Shaped(Shape::Wsgi),
            "in place of `wsgi`, an ASGI callable, `module:name`: gunicorn runs it with uvicorn's worker (`uvicorn-worker`), and WebSockets pass through nginx",
        ),
        required(
            "domains",
            Ty::List(&Ty::Shaped(Shape::Domain)),
            "the domains the balancers route to this app",
        ),
        field(
            "replicas",
            Ty::IntIn(1, 1000),
            "how many runners run it (default 1, or as many as its `runners`)",
        ),
        field("runners", HOSTS, "pin the app to these runners"),
        field(
            "paths",
            Ty::List(&Ty::Shaped(Shape::PythonPath)),
            "Python path entries, relative to the app's source: `.` or folders inside it",
        ),
        field(
            "requirements",
            Ty::Str,
            "the pip requirements file (default \"requirements.txt\"); its `-r`/`-c` includes are followed",
        ),
        field(
            "settings_module",
            Ty::Str,
            "the project's Django settings module (default: `PACKAGE.settings`, PACKAGE the one `wsgi` names); sitec's settings import it, then apply the spec's layers",
        ),
        field(
            "build_packages",
            Ty::List(&Ty::Shaped(Shape::Package)),
            "Debian packages building its packages that have no wheel needs on the build host, beside a compiler and the Python headers (`[\"libpq-dev\"]`)",
        ),
        field(
            "max_body",
            Ty::Size(BODY),
            "the largest request body accepted (default 10MB)",
        ),
        field(
            "releases",
            Ty::IntIn(1, 100),
            "how many releases each runner keeps for `sitec rollback`, the live one among them (default 5)",
        ),
        Field {
            name: "static",
            ty: Ty::Shaped(Shape::Folder),
            required: false,
            label: Some(Shape::UrlPrefix),
            doc: "`static \"/url/\" = \"dir\"`: files nginx serves from a folder of the release",
            only: None,
            or: None,
        },
        Field {
            name: "media",
            ty: Ty::Shaped(Shape::MediaName),
            required: false,
            label: Some(Shape::UrlPrefix),
            doc: "`media \"/url/\" = \"name\"`: uploads (Django's `MEDIA_ROOT`), kept across deploys in /srv/sitec/apps/APP/media/NAME, served by nginx",
            only: None,
            or: None,
        },
    ],
    blocks: &[
        &APP_DATABASES,
        &APP_SETTINGS,
        &ENV,
        &WORKER,
        &APP_TLS,
        &GUNICORN,
    ],
    open: None,
    declares: Some(Kind::App),
    doc: "a Python/Django web app",
};

/// `tls { cert = "..."  key = "..." }`: the balancers serve the app's
/// domains over HTTPS with this certificate.
static APP_TLS: Schema = block(
    "tls",
    Labels::None,
    &[
        required(
            "cert",
            Ty::Str,
            "the certificate chain, PEM, leaf first: a file relative to the spec",
        ),
        required(
            "key",
            Ty::Str,
            "its private key, PEM: a file relative to the spec (shipped as a secret)",
        ),
        field(
            "redirect",
            Ty::Bool,
            "plain-HTTP requests get a 301 to https (default false)",
        ),
    ],
    "HTTPS at the balancers, with a certificate from files beside the spec",
);

static KEEP: Schema = block(
    "keep",
    Labels::None,
    &[
        field("hourly", KEPT, "hourly snapshots kept"),
        field("daily", KEPT, "daily snapshots kept"),
        field("weekly", KEPT, "weekly snapshots kept"),
        field("monthly", KEPT, "monthly snapshots kept"),
    ],
    "how many historical snapshots to keep",
);

pub static BACKUP: Schema = Schema {
    keyword: "backup",
    labels: Labels::Name,
    fields: &[
        required("from", HOSTS, "the hosts whose data is snapshotted"),
        required(
            "to",
            Ty::Ref(Kind::Host),
            "the backup host that pulls the snapshots",
        ),
        required(
            "every",
            Ty::Duration(EVERY),
            "how often a snapshot is taken and pulled",
        ),
    ],
    blocks: &[&KEEP],
    open: None,
    declares: Some(Kind::Backup),
    doc: "snapshots of database hosts, pulled to a backup host",
};

const OWNER: Field = field("owner", Ty::Str, "owning user (default root)");
const GROUP: Field = field("group", Ty::Str, "owning group (default the owner's)");
const MODE: Field = field(
    "mode",
    Ty::Shaped(Shape::Mode),
    "permissions, octal in quotes: \"0644\"",
);
const NOTIFY: Field = field(
    "notify",
    STRINGS,
    "ids of services to reload (or commands to run) when this changes: \"service:nginx\"",
);
const REQUIRES: Field = field(
    "requires",
    STRINGS,
    "ids of resources that must be in place first",
);

static PACKAGE: Schema = block(
    "package",
    Labels::Resource,
    &[field("version", Ty::Str, "a version to pin"), REQUIRES],
    "a Debian package",
);
static USER: Schema = block(
    "user",
    Labels::Resource,
    &[
        field("home", Ty::Str, "home directory"),
        field("shell", Ty::Str, "login shell"),
        field("system", Ty::Bool, "a system account"),
        field("groups", STRINGS, "supplementary groups"),
        field("uid", Ty::Str, "a fixed uid, also the gid of its own group: `\"{app.uid}\"`; a host where the user has another is an apply error naming the fix"),
        REQUIRES,
    ],
    "a Unix user",
);
static DIRECTORY: Schema = block(
    "directory",
    Labels::Resource,
    &[OWNER, GROUP, MODE, REQUIRES],
    "a directory",
);
static FILE: Schema = block(
    "file",
    Labels::Resource,
    &[
        field(
            "template",
            Ty::Str,
            "one of sitec's templates (under templates/, without `.hbs`), or a handlebars file of your own: a path starting `./` or `../`, relative to this file, rendered per host with its host, the fleet and the `each` item (no secrets unless `secrets = true`)",
        ),
        field(
            "secrets",
            Ty::Bool,
            "a template of your own may read the app's secret settings (`app.settings.NAME` of a `secret(...)`); the file is then readable by no other user (its mode's last digit 0) and its content is never shown in a plan; default false",
        ),
        field("content", Ty::Text, "the file's literal content"),
        field(
            "values",
            Ty::Bool,
            "`content` holds `{values}` as the role's other strings do (`{{` for a literal brace); default false: written as it is",
        ),
        field("absent", Ty::Bool, "remove the file instead"),
        OWNER,
        GROUP,
        MODE,
        NOTIFY,
        REQUIRES,
    ],
    "a file, from a template or literal content",
);
static SYMLINK: Schema = block(
    "symlink",
    Labels::Resource,
    &[
        required("target", Ty::Str, "where the link points"),
        NOTIFY,
        REQUIRES,
    ],
    "a symbolic link",
);
static SERVICE: Schema = block(
    "service",
    Labels::Resource,
    &[
        field(
            "unit",
            Ty::Str,
            "the unit file's template: one of sitec's, or a handlebars file of your own (a path starting `./` or `../`, relative to this file, rendered with the same context as a file's); the unit is written to /etc/systemd/system",
        ),
        field("enabled", Ty::Bool, "started at boot (default true)"),
        field("running", Ty::Bool, "kept running (default true)"),
        field("reload", Ty::Str, "the command that reloads it"),
        field("restart", Ty::Str, "the command that restarts it"),
        field(
            "validate",
            Ty::Str,
            "a command that checks its config before a reload or restart",
        ),
        REQUIRES,
    ],
    "a systemd service",
);
static VIRTUALENV: Schema = block(
    "virtualenv",
    Labels::Resource,
    &[
        field("python", Ty::Str, "interpreter version"),
        field(
            "requirements",
            Ty::Str,
            "the requirements file, on the operator's machine",
        ),
        field(
            "packages",
            STRINGS,
            "packages installed too unless the requirements name them (`name==version`, space-separated within a string)",
        ),
        field(
            "build_packages",
            STRINGS,
            "Debian packages a build of a package without a wheel needs on the build host, beside a compiler and the Python headers (space-separated within a string)",
        ),
        OWNER,
        NOTIFY,
        REQUIRES,
    ],
    "a Python virtualenv",
);
static TREE: Schema = block(
    "tree",
    Labels::Resource,
    &[
        required("source", Ty::Str, "a folder on the operator's machine"),
        field(
            "keep",
            Ty::Str,
            "how many releases stay on the host, the live one among them (default 5)",
        ),
        field(
            "check",
            Ty::Str,
            "a shell command run in a new release (its folder in `SITEC_RELEASE`) before it goes live; a failure leaves the live release serving",
        ),
        field(
            "user",
            Ty::Str,
            "who runs `check` (default root); the release stays the owner's, read-only to them but for `output`",
        ),
        field(
            "output",
            Ty::Str,
            "a path in each release that `check` may write, such as collectstatic's folder: a link to a folder of `user`'s, `output/ID` beside the releases",
        ),
        field(
            "migrate",
            Ty::Str,
            "a shell command run as `user` in a new release after `check`, before it goes live (database migrations); a failure leaves the live release serving; not run by `sitec rollback`",
        ),
        field(
            "migrate_on",
            Ty::Str,
            "the host that runs `migrate` (default every host), such as `{app.leader}`: migrations run once per app",
        ),
        field(
            "venv",
            Ty::Str,
            "the path of a `virtualenv` (a folder of virtualenvs, one per content) each release runs: a new release links `venv` to the one built for the spec's requirements, so the switch moves code and virtualenv together",
        ),
        OWNER,
        NOTIFY,
        REQUIRES,
    ],
    "an app's releases: the path is a link to the live one, each a folder copied from the operator's machine into `releases/` beside it",
);
static COMMAND: Schema = block(
    "command",
    Labels::Resource,
    &[
        required("run", Ty::Str, "the command line"),
        field("unless", Ty::Str, "skip when this command succeeds"),
        field("creates", Ty::Str, "skip when this path exists"),
        field("user", Ty::Str, "run as this user (default root)"),
        REQUIRES,
    ],
    "a command with a guard",
);
static SUBVOLUME: Schema = block(
    "subvolume",
    Labels::Resource,
    &[REQUIRES],
    "a btrfs subvolume",
);
static TIMER: Schema = block(
    "timer",
    Labels::Resource,
    &[
        required("every", Ty::Duration(EVERY), "the interval"),
        required("command", Ty::Str, "what runs"),
        field(
            "user",
            Ty::Str,
            "run as this user: inside `each app` the app's user unless written; elsewhere required (`root` only when written)",
        ),
        REQUIRES,
    ],
    "a systemd timer",
);

/// What a role and its `each` blocks may hold: every resource kind, and
/// `each` itself.
static RESOURCE_BLOCKS: [&Schema; 12] = [
    &PACKAGE,
    &USER,
    &DIRECTORY,
    &FILE,
    &SYMLINK,
    &SERVICE,
    &VIRTUALENV,
    &TREE,
    &COMMAND,
    &SUBVOLUME,
    &TIMER,
    &EACH,
];

/// `each SCOPE { ... }`: resources repeated for every item of a scope.
static EACH: Schema = Schema {
    keyword: "each",
    labels: Labels::Scope,
    fields: &[],
    blocks: &RESOURCE_BLOCKS,
    open: None,
    declares: None,
    doc: "resources repeated for every app, worker, cluster, redis server or backup on the host",
};

/// What `each` can repeat over, and the scope it must sit in.
pub static SCOPES: [(&str, Option<&str>, &str); 13] = [
    ("app", None, "every app whose replicas run on the host"),
    (
        "tls",
        None,
        "every app with `tls`, whichever hosts run it (the balancers' certificates)",
    ),
    (
        "worker",
        Some("app"),
        "every worker of the app that runs on the host (a `once` worker on the app's leader only)",
    ),
    ("media", Some("app"), "every `media` store of the app"),
    (
        "volume",
        Some("media"),
        "once, when the app's media stores are GlusterFS volumes (media on two runners or more)",
    ),
    (
        "local",
        Some("media"),
        "once, when the app's media stores are each runner's own folder (media on one runner)",
    ),
    (
        "cluster",
        None,
        "every Postgres cluster on the host, primary or standby",
    ),
    (
        "standby",
        None,
        "every Postgres cluster the host runs as a standby",
    ),
    (
        "primary",
        None,
        "every Postgres cluster the host runs as the primary",
    ),
    (
        "leader",
        Some("app"),
        "once, on the app's first runner only (what runs once per app, such as migrations)",
    ),
    (
        "redis",
        None,
        "every Redis server on the host, primary or replica",
    ),
    ("backup", None, "every backup pulled to the host (its `to`)"),
    (
        "snapshot",
        None,
        "every backup that pulls from the host (one of its `from`)",
    ),
];

pub static ROLE: Schema = Schema {
    keyword: "role",
    labels: Labels::Name,
    fields: &[field("description", Ty::Str, "what the role is for")],
    blocks: &RESOURCE_BLOCKS,
    open: None,
    declares: Some(Kind::Role),
    doc: "a role a host can play, made of resources",
};

const LEVEL: Ty = Ty::OneOf(&["error", "warning", "off"]);

/// `checks { rule = level }`: the severity of each fleet check (`checks.rs`).
pub static CHECKS: Schema = block(
    "checks",
    Labels::None,
    &[
        field("balancer_redundancy", LEVEL, "fewer than two balancers, or all at one provider (default warning)"),
        field("replica_spread", LEVEL, "an app's replicas share a provider (or a runner) although they need not (default warning)"),
        field("standby_host", LEVEL, "a standby or replica on its primary's own host (default error)"),
        field("standby_provider", LEVEL, "a standby or replica at its primary's provider although another provider has a host for it (default warning)"),
        field("database_redundancy", LEVEL, "a database with neither a standby (or replica) nor a backup pulling from its host (default warning)"),
        field("backup_target", LEVEL, "a backup pulled to a host it backs up, that holds a copy, or that lacks the `backup` role (default error)"),
        field("domain_conflict", LEVEL, "one domain claimed twice (default error)"),
        field("port_conflict", LEVEL, "two services on one port of one host (default error)"),
        field("address_conflict", LEVEL, "two hosts at one address (default error)"),
        field("role_requirements", LEVEL, "a host lacks a role what it runs needs, or no host plays a role the apps need (default error)"),
        field("unused_settings", LEVEL, "a settings layer for a host no app runs on, or for an app on a host it does not run on (default warning)"),
        field("inline_secret", LEVEL, "a setting whose name or value says it is secret, written in the spec instead of `secret(\"app.name\")` (default warning)"),
        field("media_shared", LEVEL, "an app with `media` on two runners or more, which share no store: an upload is served by one runner only (default error)"),
        field("media_backup", LEVEL, "a shared media store (a GlusterFS volume, media on two runners or more) that no backup holds (default warning)"),
        field("scheduler_once", LEVEL, "a worker that starts a scheduler (`celery beat`, `celery worker -B`, `rqscheduler`) on each of two runners or more without `once = true`: each periodic task sent once per runner (default error)"),
    ],
    "the severity of each fleet check: `error`, `warning` or `off`",
);

/// Keys people write in a block that belong elsewhere, by the block's
/// keyword: what E102 says instead of a closest field, where that would
/// mislead.
pub static ELSEWHERE: &[(&str, &str, &str)] = &[
    ("host", "user", "the SSH user is the provider's: `provider NAME { user = \"deploy\" }`"),
    ("host", "port", "the SSH port is the provider's: `provider NAME { port = 2222 }`"),
    ("host", "identity", "the SSH key is the provider's: `provider NAME { identity = \"FILE\" }`"),
    ("host", "known_hosts", "the known hosts are the provider's: `provider NAME { known_hosts = \"FILE\" }`"),
    ("host", "apps", "an app picks its runners: `runners = [HOST]` in the app, or leave it to sitec"),
    ("provider", "address", "each host has its own: `host NAME { address = \"...\" }`"),
    ("provider", "roles", "roles are a host's: `host NAME { roles = [...] }`"),
    ("app", "port", "sitec gives each app a port on its runners; the balancers listen on 80 and 443"),
    ("app", "hosts", "pin an app to runners with `runners = [HOST]`"),
    ("app", "host", "pin an app to runners with `runners = [HOST]`"),
    ("database", "user", "sitec makes each app its own database role, with a generated password kept in the secrets file"),
    ("database", "password", "sitec generates each app's database password and keeps it in the secrets file"),
    ("database", "name", "a database's name is its label: `database NAME { ... }`"),
    ("database", "replicas", "a database has one copy: `standby = HOST` (Postgres) or `replica = HOST` (Redis)"),
    ("worker", "replicas", "a worker runs as one process on each of its app's runners: set its concurrency in `command`, such as `celery -A blog worker --concurrency 4`"),
    ("file", "path", "a file's path is its label: `file \"/etc/motd\" { ... }`"),
    ("file", "source", "a file holds `content = \"...\"` or comes from a `template`"),
    ("timer", "schedule", "a timer runs `every = 1h`"),
];

/// Every declaration a file may hold at its top level.
pub static TOP_LEVEL: [&Schema; 8] = [
    &PROVIDER, &HOST, &SETTINGS, &DATABASE, &APP, &BACKUP, &ROLE, &CHECKS,
];

pub fn top_level(keyword: &str) -> Option<&'static Schema> {
    TOP_LEVEL.iter().copied().find(|s| s.keyword == keyword)
}

/// Functions a value may call.
pub static FUNCTIONS: [&str; 1] = ["secret"];

#[cfg(test)]
mod tests {
    use super::Shape;

    #[test]
    fn every_shape_is_one_line_first() {
        // The wsgi shape alone would let a factory's argument hold a line
        // break, into gunicorn's config.
        for (shape, text) in [
            (Shape::Wsgi, "app:create_app('a\nb')"),
            (Shape::Domain, "a.com\n"),
            (Shape::Mode, "0644\n"),
        ] {
            let problem = shape.problem(text).map(|p| p.what).unwrap_or_default();
            assert!(
                problem.contains("holds a line break"),
                "{shape:?}: {problem}"
            );
        }
    }
}
