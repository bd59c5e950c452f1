//! Model-level benchmarks on the real models (skipped with a note when the
//! files are absent; `scripts/fetch-models.sh` fetches them):
//!
//! - `memory/read`: streaming read of 512 MiB on 1 and 2 threads, the
//!   bandwidth the kernels' figures are compared with;
//! - `layer/<model>`: one transformer block (a one-layer shard of a middle
//!   layer) for one token after 511 cached positions (decode) and for a
//!   64-token chunk from position 0 (prompt);
//! - `decode/<model>`: the whole model, one token after 128 (and 512)
//!   cached positions, weight bytes per token as throughput;
//! - `prompt/<model>`: the whole model over 64 prompt tokens.
//!
//! Threads: `STRATA_BENCH_THREADS` (default 2).
//!
//! `cargo bench --bench model -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;
use strata::{Input, LoadOptions, Logits, Model};

fn threads() -> usize {
    std::env::var("STRATA_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

fn model_file(name: &str) -> Option<PathBuf> {
    let dir = strata::model_cache::dir();
    let p = dir.join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipping {name}: not in {} (run scripts/fetch-models.sh)",
            dir.display()
        );
        None
    }
}

const MODELS: [(&str, &str); 2] = [
    ("smollm2-q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("gemma3-q4_k_m", "gemma-3-270m-q4_k_m.gguf"),
];

fn memory(c: &mut Criterion) {
    let words = 64 << 20; // 512 MiB of u64
    let buf: Vec<u64> = (0..words as u64).collect();
    let mut g = c.benchmark_group("memory");
    g.throughput(Throughput::Bytes((words * 8) as u64));
    g.sample_size(10);
    for t in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .expect("pool");
        g.bench_with_input(BenchmarkId::new("read", format!("{t}t")), &t, |b, _| {
            b.iter(|| {
                pool.install(|| {
                    buf.par_chunks(1 << 20)
                        .map(|c| c.iter().fold(0u64, |a, &x| a.wrapping_add(x)))
                        .reduce(|| 0, u64::wrapping_add)
                })
            })
        });
    }
    g.finish();
}

fn load(path: &PathBuf, layers: Option<std::ops::Range<usize>>) -> Model {
    Model::load(
        path,
        &LoadOptions {
            n_threads: Some(threads()),
            layers,
            ..Default::default()
        },
    )
    .expect("model loads")
}

/// Token ids that are ordinary text for any vocabulary.
fn tokens(model: &Model, n: usize) -> Vec<u32> {
    let one = model
        .tokenizer()
        .encode(
            "Nodes pass hidden states along the pipeline. ",
            false,
            false,
        )
        .expect("tokenizes");
    one.iter().copied().cycle().take(n).collect()
}

fn layer(c: &mut Criterion) {
    for (id, file) in MODELS {
        let Some(path) = model_file(file) else {
            continue;
        };
        let full = load(&path, None);
        let mid = full.config().n_layer / 2;
        let n_embd = full.config().n_embd;
        drop(full);
        let shard = load(&path, Some(mid..mid + 1));
        let mut g = c.benchmark_group(format!("layer/{id}"));
        let hidden: Vec<f32> = (0..512 * n_embd)
            .map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 300.0)
            .collect();
        let mut cache = shard.new_cache(513);
        shard
            .forward(
                &mut cache,
                Input::Hidden(&hidden[..511 * n_embd]),
                0,
                Logits::Last,
            )
            .expect("fills the cache");
        g.bench_function("decode@511", |b| {
            b.iter(|| {
                shard
                    .forward(
                        &mut cache,
                        Input::Hidden(&hidden[511 * n_embd..]),
                        511,
                        Logits::Last,
                    )
                    .expect("forward")
            })
        });
        g.throughput(Throughput::Elements(64));
        let mut cache = shard.new_cache(64);
        g.bench_function("prompt64", |b| {
            b.iter(|| {
                shard
                    .forward(
                        &mut cache,
                        Input::Hidden(&hidden[..64 * n_embd]),
                        0,
                        Logits::Last,
                    )
                    .expect("forward")
            })
        });
        g.finish();
    }
}

fn whole(c: &mut Criterion) {
    for (id, file) in MODELS {
        let Some(path) = model_file(file) else {
            continue;
        };
        let model = load(&path, None);
        let weight_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let prompt = tokens(&model, 512);
        let mut g = c.benchmark_group(format!("decode/{id}"));
        g.throughput(Throughput::Bytes(weight_bytes));
        for ctx in [128, 512] {
            let mut cache = model.new_cache(ctx + 1);
            model
                .forward(&mut cache, Input::Tokens(&prompt[..ctx]), 0, Logits::Last)
                .expect("prompt");
            g.bench_with_input(
                BenchmarkId::new("token", format!("@{ctx}")),
                &ctx,
                |b, &ctx| {
                    b.iter(|| {
                        black_box(
                            model
                                .forward(
                                    &mut cache,
                                    Input::Tokens(&prompt[ctx..ctx + 1]),
                                    ctx,
                                    Logits::Last,
                                )
                                .expect("forward"),
                        )
                    })
                },
            );
        }
        g.finish();
        let mut g = c.benchmark_group(format!("prompt/{id}"));
        g.throughput(Throughput::Elements(64));
        g.sample_size(20);
        let mut cache = model.new_cache(64);
        g.bench_function("tokens64", |b| {
            b.iter(|| {
                black_box(
                    model
                        .forward(&mut cache, Input::Tokens(&prompt[..64]), 0, Logits::Last)
                        .expect("forward"),
                )
            })
        });
        g.finish();
    }
}

criterion_group!(benches, memory, layer, whole);
criterion_main!(benches);
