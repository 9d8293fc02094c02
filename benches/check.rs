//! How fast `sitec check` is: parse, load modules, resolve names and types,
//! on generated specs of three sizes (the largest about 1 MB: 200 hosts and
//! 2,000 apps). Run with `cargo bench --bench check`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sitec::source::SourceMap;

mod spec_gen;

fn check(c: &mut Criterion) {
    let mut group = c.benchmark_group("check");
    group.sample_size(20);
    for (hosts, apps) in [(20, 200), (100, 1000), (200, 2000)] {
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
                b.iter(|| {
                    let mut sources = SourceMap::new();
                    sitec::compile::check_text(&mut sources, "bench.site", text)
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
