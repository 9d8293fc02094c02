//! Not a test: the child process of `tests/fleet.rs`'s interrupt test
//! (`interrupt_closes_every_master`). It opens an ssh master to every host
//! of the fleet whose state directory it is given, says so by creating
//! `held` there, and waits to be interrupted; the test then checks that
//! SIGINT left no master behind. Not interrupted within 60 s, it fails.
//!
//! `cargo build --example hold_masters`; `hold_masters FLEET_STATE_DIR`.

use sitec::fleet;
use sitec::transport::Transport;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .ok_or("usage: hold_masters FLEET_STATE_DIR")?;
    let layout = fleet::Layout { dir: dir.into() };
    let state = fleet::FleetState::load(&layout)?.ok_or("no fleet.json")?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let ssh = state.ssh_options(sitec::transport::Kex::default());
        let transport = Transport::connect(&state.targets(), &ssh).await?;
        std::fs::write(layout.dir.join("held"), "")?;
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(transport);
        Err("not interrupted within 60 s".into())
    })
}
