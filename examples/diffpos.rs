//! Scratch tool: per-position max |logit difference| between Strata and
//! llama.cpp.
//!
//! `P="prompt" diffpos MODEL [fa]`: the prompt as one batch in both, through
//! `strata::reference::Reference`.
//! `P="prompt" diffpos MODEL steps`: the prompt fed one token at a time in
//! both (llama.cpp through llama-cpp-2 directly, with Reference's settings,
//! since its backend can be initialised once per process), also printing how
//! far llama.cpp's own single-token steps are from its batch rows.
//! `Q=1` prints only the summary line.
#[cfg(feature = "llama-cpp")]
mod with_llama_cpp {
    use std::num::NonZeroU32;
    use std::sync::Arc;
    use strata::reference::{RefOptions, Reference};
    use strata::*;

    fn maxdiff(o: &[f32], t: &[f32]) -> f32 {
        o.iter()
            .zip(t)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    }

    pub fn run() {
        let path = std::env::args().nth(1).unwrap();
        let mode = std::env::args().nth(2).unwrap_or_default();
        let quiet = std::env::var("Q").is_ok();
        let model = Arc::new(
            Model::load(
                &path,
                &LoadOptions {
                    n_threads: Some(2),
                    layers: None,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let prompt = std::env::var("P").unwrap_or(
            "Strata runs quantized language models on every node of a network. Each node loads"
                .into(),
        );
        let ids = model.tokenizer().encode(&prompt, true, true).unwrap();
        let nv = model.config().n_vocab;
        if mode == "steps" {
            return steps(&path, &model, &ids, quiet);
        }
        let r = Reference::load(
            &path,
            RefOptions {
                flash_attention: mode == "fa",
                ..Default::default()
            },
        )
        .unwrap();
        let theirs = r.logits_all(&ids).unwrap();
        let mut s = Session::new(Arc::clone(&model), &SessionOptions { n_ctx: Some(512) }).unwrap();
        let ours = s.feed_all(&ids).unwrap();
        let mut worst = 0f32;
        let mut first_bad = None;
        for (i, t) in theirs.iter().enumerate() {
            let o = &ours[i * nv..(i + 1) * nv];
            let d = maxdiff(o, t);
            if d > 0.0 && first_bad.is_none() {
                first_bad = Some(i);
            }
            worst = worst.max(d);
            if !quiet {
                println!(
                    "pos {i}: maxdiff {d:.5} ours[0..3] {:?} theirs {:?}",
                    &o[..3],
                    &t[..3]
                );
            }
        }
        println!(
            "batch, {} tokens: max diff {worst:.5}, first nonzero at {first_bad:?}",
            ids.len()
        );
    }

    fn steps(path: &str, model: &Arc<Model>, ids: &[u32], quiet: bool) {
        use llama_cpp_2::context::params::LlamaContextParams;
        use llama_cpp_2::llama_backend::LlamaBackend;
        use llama_cpp_2::llama_batch::LlamaBatch;
        use llama_cpp_2::model::params::LlamaModelParams;
        use llama_cpp_2::model::LlamaModel;
        use llama_cpp_2::token::LlamaToken;

        llama_cpp_2::send_logs_to_tracing(
            llama_cpp_2::LogOptions::default().with_logs_enabled(false),
        );
        let backend = LlamaBackend::init().unwrap();
        let lm = LlamaModel::load_from_file(&backend, path, &LlamaModelParams::default()).unwrap();
        let params = || {
            LlamaContextParams::default()
                .with_n_ctx(NonZeroU32::new(2048))
                .with_n_batch(2048)
                .with_n_ubatch(512)
                .with_n_threads(2)
                .with_n_threads_batch(2)
                .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED)
        };
        // llama.cpp: the whole prompt as one batch, then one token at a time.
        let mut ctx = lm.new_context(&backend, params()).unwrap();
        let mut batch = LlamaBatch::new(ids.len(), 1);
        for (i, &t) in ids.iter().enumerate() {
            batch
                .add(LlamaToken(t as i32), i as i32, &[0], true)
                .unwrap();
        }
        ctx.decode(&mut batch).unwrap();
        let batch_rows: Vec<Vec<f32>> = (0..ids.len())
            .map(|i| ctx.get_logits_ith(i as i32).to_vec())
            .collect();
        drop(ctx);
        let mut ctx = lm.new_context(&backend, params()).unwrap();
        let mut step_rows = Vec::new();
        for (i, &t) in ids.iter().enumerate() {
            batch.clear();
            batch
                .add(LlamaToken(t as i32), i as i32, &[0], true)
                .unwrap();
            ctx.decode(&mut batch).unwrap();
            step_rows.push(ctx.get_logits_ith(0).to_vec());
        }

        let mut s = Session::new(Arc::clone(model), &SessionOptions { n_ctx: Some(512) }).unwrap();
        let (mut worst, mut worst_vs_batch, mut llama_self) = (0f32, 0f32, 0f32);
        let mut first_bad = None;
        for (i, &tok) in ids.iter().enumerate() {
            let o = s.feed(&[tok]).unwrap();
            let d = maxdiff(&o, &step_rows[i]);
            let db = maxdiff(&o, &batch_rows[i]);
            let dl = maxdiff(&step_rows[i], &batch_rows[i]);
            if d > 0.0 && first_bad.is_none() {
                first_bad = Some(i);
            }
            worst = worst.max(d);
            worst_vs_batch = worst_vs_batch.max(db);
            llama_self = llama_self.max(dl);
            if !quiet {
                println!("step {i}: vs llama.cpp steps {d:.5}, vs llama.cpp batch rows {db:.5} (llama.cpp steps vs its batch {dl:.5})");
            }
        }
        println!(
            "token-by-token, {} tokens: max diff vs llama.cpp steps {worst:.5} (first nonzero at {first_bad:?}); vs llama.cpp batch rows {worst_vs_batch:.5}; llama.cpp's own steps vs batch {llama_self:.5}",
            ids.len()
        );
    }
}

#[cfg(feature = "llama-cpp")]
fn main() {
    with_llama_cpp::run();
}

#[cfg(not(feature = "llama-cpp"))]
fn main() {
    eprintln!("diffpos needs --features llama-cpp");
}
