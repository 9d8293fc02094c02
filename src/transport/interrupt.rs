//! Closes every open master when the process is interrupted (Ctrl-C or
//! SIGTERM), so no `ssh -M` process outlives sitec. The handler runs on a
//! thread of its own with its own small runtime, so it keeps working after the
//! runtime that opened the connections is gone. It never touches a host.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, Once};

/// Control directories (each holding a `master` socket under a subdirectory)
/// of every live [`super::Transport`].
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// Remembers a transport's control directory until [`forget`].
pub(crate) fn remember(control_dir: &Path) {
    if let Ok(mut live) = LIVE.lock() {
        live.push(control_dir.to_owned());
    }
}

/// Forgets a control directory whose masters were closed normally.
pub(crate) fn forget(control_dir: &Path) {
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|d| d != control_dir);
    }
}

/// Installs the handler once per process. On SIGINT or SIGTERM it asks every
/// remembered master to exit, removes the control directories, and exits
/// with status 130 (SIGINT) or 143 (SIGTERM).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("sitec-interrupt".into())
            .spawn(|| {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let code = rt.block_on(wait_for_signal());
                close_all();
                std::process::exit(code);
            });
        // Without the thread the masters still close on drop; only Ctrl-C
        // loses its clean-up, so this is not worth failing a connection for.
        drop(spawned);
    });
}

async fn wait_for_signal() -> i32 {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return 130;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => 130,
        _ = term.recv() => 143,
    }
}

fn close_all() {
    let dirs = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
    for dir in dirs {
        for socket in master_sockets(&dir) {
            let _ = Command::new("ssh")
                .arg("-S")
                .arg(&socket)
                .args(["-O", "exit", "sitec-host"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Every `*/master` socket directly below `dir`.
fn master_sockets(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path().join("master"))
        .filter(|p| p.exists())
        .collect()
}
