//! How fast `sitec check` is: parse, load modules, resolve names and types,
//! on generated specs of three sizes (the largest about 1 MB: 200 hosts and
//! 2,000 apps; `cargo test` runs the smallest once). Run with `cargo bench
//! --bench check`.
//!
//! `SITEC_WRITE_SPECS=DIR cargo bench --bench check` writes the three specs
//! to `DIR/HOSTSxAPPS.site` instead, for profiling the binary on them
//! (`valgrind --tool=callgrind target/release/sitec check DIR/200x2000.site`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sitec::source::SourceMap;

mod spec_gen;

const SIZES: [(usize, usize); 3] = [(20, 200), (100, 1000), (200, 2000)];

fn check(c: &mut Criterion) {
    if let Some(dir) = std::env::var_os("SITEC_WRITE_SPECS") {
        let dir = std::path::PathBuf::from(dir);
        for (hosts, apps) in SIZES {
            let path = dir.join(format!("{hosts}x{apps}.site"));
            std::fs::write(&path, spec_gen::spec(hosts, apps)).expect("write the spec");
            println!("wrote {}", path.display());
        }
        return;
    }
    let mut group = c.benchmark_group("check");
    group.sample_size(20);
    for &(hosts, apps) in spec_gen::sizes(&SIZES) {
        let text = spec_gen::spec(hosts, apps);
        // The generated spec must be valid, or the benchmark measures errors.
        let mut sources = SourceMap::new();
        let report = sitec::compile::check_text(&mut sources, "bench.site", &text);
        assert_eq!(report.errors(), 0, "generated spec has errors");
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{hosts}x{apps}")),
            &text,
            |b, text| {
                // The report (which holds the syntax trees) is freed outside
                // the timing, as `sitec check` never frees it (`Report::leak`).
                b.iter_with_large_drop(|| {
                    let mut sources = SourceMap::new();
                    let report = sitec::compile::check_text(&mut sources, "bench.site", text);
                    (sources, report)
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
