//! The SSH floor on a running local fleet, through sitec's own transport:
//! opening one master per host (all at once) with the system's default key
//! exchange and with curve25519-sha256, alternating, then `true` on every
//! host over the open masters. Run by `benches/fleet/run.sh`, which boots
//! the fleet: `cargo bench --bench fleet_transport -- --bench STATE_DIR`.
//! Under `cargo test` (no `--bench`) it does nothing.

use sitec::fleet::{FleetState, Layout};
use sitec::transport::{Kex, Transport};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return Ok(());
    }
    let dir = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .ok_or("usage: fleet_transport --bench STATE_DIR")?;
    let layout = Layout {
        dir: Path::new(dir).to_owned(),
    };
    let state = FleetState::load(&layout)?.ok_or("no fleet.json there")?;
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    tokio::runtime::Runtime::new()?.block_on(bench(&state, rounds))
}

async fn bench(state: &FleetState, rounds: usize) -> Result<()> {
    let targets = state.targets();
    let mut connect = [Vec::new(), Vec::new()];
    let mut over_masters = Vec::new();
    for round in 0..rounds {
        for (i, kex) in [Kex::SystemDefault, Kex::Curve25519]
            .into_iter()
            .enumerate()
        {
            // Alternate which goes first: the machine's speed drifts.
            let kex = if round % 2 == 0 {
                kex
            } else {
                [Kex::Curve25519, Kex::SystemDefault][i]
            };
            let slot = usize::from(kex == Kex::Curve25519);
            let t = Instant::now();
            let transport = Arc::new(Transport::connect(&targets, &state.ssh_options(kex)).await?);
            let mut set = tokio::task::JoinSet::new();
            for h in &targets {
                let (tr, name) = (transport.clone(), h.name.clone());
                set.spawn(async move { tr.run(&name, "true", b"").await.map(|o| o.success()) });
            }
            while let Some(r) = set.join_next().await {
                assert!(r??, "`true` failed");
            }
            connect[slot].push(t.elapsed());
            if kex == Kex::Curve25519 {
                for _ in 0..5 {
                    let t = Instant::now();
                    let mut set = tokio::task::JoinSet::new();
                    for h in &targets {
                        let (tr, name) = (transport.clone(), h.name.clone());
                        set.spawn(
                            async move { tr.run(&name, "true", b"").await.map(|o| o.success()) },
                        );
                    }
                    while let Some(r) = set.join_next().await {
                        assert!(r??, "`true` failed");
                    }
                    over_masters.push(t.elapsed());
                }
            }
            if let Ok(t) = Arc::try_unwrap(transport) {
                t.close().await;
            }
        }
    }
    let n = targets.len();
    println!("transport, {n} hosts, median of {rounds} (all hosts in parallel):");
    println!(
        "  new masters + `true`, default KEX:    {:>7.1} ms",
        ms(median(&mut connect[0]))
    );
    println!(
        "  new masters + `true`, curve25519:     {:>7.1} ms",
        ms(median(&mut connect[1]))
    );
    println!(
        "  `true` over open masters:             {:>7.1} ms",
        ms(median(&mut over_masters))
    );
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
