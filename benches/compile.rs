//! How fast the whole compile is: parse, load modules, resolve, build the
//! fleet model, expand roles, build the resource graph and render every
//! host's files to memory (placeholder secrets, no override file), on
//! generated specs of four sizes up to 200 hosts and 2,000 apps (`cargo test`
//! runs the smallest once). Run with `cargo bench --bench compile`; figures
//! in `benches/README.md`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sitec::compile::{render_text, SecretSource};
use sitec::source::SourceMap;

mod spec_gen;

const SIZES: [(usize, usize); 4] = [(20, 200), (200, 200), (20, 2000), (200, 2000)];

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for &(hosts, apps) in spec_gen::sizes(&SIZES) {
        let text = spec_gen::spec(hosts, apps);
        // The generated spec must compile, or the benchmark measures errors.
        let mut sources = SourceMap::new();
        let rendered = render_text(
            &mut sources,
            "bench.site",
            &text,
            &SecretSource::Placeholders,
            &[],
        );
        assert_eq!(
            rendered.errors(),
            0,
            "generated spec has errors: {:?}",
            rendered.diagnostics
        );
        assert_eq!(rendered.hosts.len(), hosts);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{hosts}x{apps}")),
            &text,
            |b, text| {
                b.iter(|| {
                    let mut sources = SourceMap::new();
                    render_text(
                        &mut sources,
                        "bench.site",
                        text,
                        &SecretSource::Placeholders,
                        &[],
                    )
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, compile);
criterion_main!(benches);
