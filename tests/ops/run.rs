//! `sitec run` on the booted ops fleet: commands on a runner as the app's
//! user, in its release and environment, over the bus.

use super::{text_of, Fleet, SPEC_FILE};
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// `sitec run SPEC blog ARGS...` with `input` on its stdin: (exit code, stdout, stderr).
fn run(fleet: &Fleet, args: &[&str], input: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    let mut command = fleet.command(&["run", SPEC_FILE, "blog"]);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("sitec runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("sitec ends");
    let _ = feeder.join();
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn commands_run_as_the_app_over_the_bus(fleet: &Fleet) -> TestResult {
    // manage.py as the app's server runs it: its settings, its database.
    let (code, out, err) = run(
        fleet,
        &["--", "python", "manage.py", "shell", "-c", "from django.conf import settings; print(6*7, settings.DATABASES['default']['HOST'] != '')"],
        b"",
    );
    // (Django's shell may say first what it imported for you.)
    let out = String::from_utf8_lossy(&out);
    // What the README shows.
    eprintln!("$ sitec run {SPEC_FILE} blog -- python manage.py shell -c ...\n{out}{err}");
    assert_eq!(
        (code, out.lines().last()),
        (Some(0), Some("42 True")),
        "{out}{err}"
    );
    // The app's user, on the leader, stdout and stderr apart, the exit code back.
    let (code, out, err) = run(
        fleet,
        &[
            "--",
            "sh",
            "-c",
            "echo $(id -un) $(hostname) $VIRTUAL_ENV; echo oops >&2; exit 3",
        ],
        b"",
    );
    eprintln!(
        "$ sitec run {SPEC_FILE} blog -- sh -c ...\n{}{err}exit {code:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out).trim(),
        "app-blog oprun1 /srv/sitec/apps/blog/current/venv"
    );
    assert!(err.contains("oops"), "{err}");
    let (code, out, err) = run(fleet, &["--host", "oprun2", "--", "hostname"], b"");
    assert_eq!(
        (code, String::from_utf8_lossy(&out).trim()),
        (Some(0), "oprun2"),
        "{err}"
    );
    // Input both ways, past the agent's queues: a megabyte, byte for byte.
    let input: Vec<u8> = (0..1_048_576u32).map(|i| (i * 7 % 251) as u8).collect();
    let (code, out, err) = run(fleet, &["--", "sha256sum"], &input);
    assert_eq!(code, Some(0), "{err}");
    let here = std::process::Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(&input)?;
            c.wait_with_output()
        })?;
    assert_eq!(out, here.stdout, "the megabyte came through changed");
    // A command that is not there says so, with 255.
    let (code, _, err) = run(fleet, &["--", "no-such-program"], b"");
    assert_eq!(code, Some(255), "{err}");
    assert!(err.contains("cannot run `no-such-program`"), "{err}");
    a_reader_that_goes_hangs_the_command_up(fleet)?;
    a_terminal_is_a_terminal(fleet)?;
    ctrl_c_stops_a_long_command(fleet)?;
    only_the_agent_opens_sessions(fleet)?;
    Ok(())
}

/// `child`'s exit status, polled until `limit`; past it the test fails
/// with `why`.
pub fn ended_within(
    child: &mut std::process::Child,
    limit: Duration,
    why: &str,
) -> std::io::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `sitec run ... -- yes | head -1`: the endless command is hung up once
/// sitec's reader goes, and its status comes back.
fn a_reader_that_goes_hangs_the_command_up(fleet: &Fleet) -> TestResult {
    let mut child = fleet
        .command(&["run", SPEC_FILE, "blog", "--", "yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 2];
    stdout.read_exact(&mut first)?;
    assert_eq!(&first, b"y\n");
    drop(stdout);
    let status = ended_within(
        &mut child,
        Duration::from_secs(30),
        "sitec run went on after its reader went",
    )?;
    assert_eq!(status.code(), Some(129), "hung up there: 128 + 1");
    Ok(())
}

/// Under `script` (a terminal for sitec), the command gets one too.
fn a_terminal_is_a_terminal(fleet: &Fleet) -> TestResult {
    let sitec = env!("CARGO_BIN_EXE_sitec");
    let line = format!(
        "exec {sitec} run {SPEC_FILE} blog -- sh -c 'test -t 0 && test -t 1 && echo on-a-terminal $(stty size)'"
    );
    // `exec` and SHELL as in `status_watch_redraws_until_ctrl_c`: sitec is
    // the terminal's process, not a child of whichever shell the caller has.
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .current_dir(fleet.dir.path())
        .env("SITEC_CACHE", super::repo().join("target/sitec-test-cache"))
        .env("COLUMNS", "100")
        .env("LINES", "30")
        .stdin(Stdio::piped())
        .output()?;
    let text = text_of(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("on-a-terminal"), "{text}");
    Ok(())
}

/// Ctrl-C at the operator's end stops the command on the host.
fn ctrl_c_stops_a_long_command(fleet: &Fleet) -> TestResult {
    let mut child = fleet
        .command(&[
            "run",
            SPEC_FILE,
            "blog",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = [0u8; 8];
    stdout.read_exact(&mut seen)?;
    assert_eq!(&seen, b"started\n");
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT)?;
    let status = ended_within(
        &mut child,
        Duration::from_secs(20),
        "sitec run did not end after Ctrl-C",
    )?;
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)?;
    assert_eq!(
        status.code(),
        Some(130),
        "killed by SIGINT there (128 + 2): {err}"
    );
    let left = fleet.inside("oprun1", "pgrep -u app-blog -x sleep || true");
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "{}",
        text_of(&left)
    );
    Ok(())
}

/// The run socket is the agent's: the app's own user cannot open a session
/// (as any user, to run something as the app's user), nor can another.
fn only_the_agent_opens_sessions(fleet: &Fleet) -> TestResult {
    let connect =
        "import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/sitec-run/blog.sock')";
    for user in ["app-blog", "nobody", "www-data"] {
        let out = fleet.inside(
            "oprun1",
            &format!("runuser -u {user} -- python3 -c \"{connect}\""),
        );
        let text = text_of(&out);
        assert!(
            !out.status.success() && text.contains("Permission denied"),
            "{user}: {text}"
        );
    }
    // And no session unit is left behind by the runs above.
    assert!(
        super::common::eventually(Duration::from_secs(20), || {
            let units = fleet.inside(
                "oprun1",
                "systemctl list-units --all --no-legend 'sitec-app-blog-run@*'",
            );
            String::from_utf8_lossy(&units.stdout).trim().is_empty()
        }),
        "session units left behind"
    );
    Ok(())
}
