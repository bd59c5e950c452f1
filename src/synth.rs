//! Synthetic models: GGUF files of any shape and weight type of the
//! supported architectures (`llama`, `qwen2`, `qwen3`, `gemma3`, `gemma2`,
//! `phi3` with fused Q/K/V and gate/up tensors, `qwen3moe`, and
//! Mixtral-style `llama` with experts), filled
//! with seeded random weights. Unit tests use them (no download needed),
//! parity tests run them through llama.cpp for the families no real model
//! here has, and speed work uses them for shapes no real model here has.
//!
//! The tokenizer is copied from a real model when one is given; otherwise a
//! minimal byte-level BPE vocabulary is written (256 byte tokens, BOS, EOS,
//! padding up to `n_vocab`).

use crate::gguf::{GgufFile, GgufWriter, TensorData, Value, ValueType};
use crate::quant::{self, GgmlType};
use crate::{Error, Result};

/// Shape and types of a synthetic model.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    /// `general.architecture`, a name in the architecture registry. The
    /// family's block decides the extra tensors written (per-head Q/K
    /// norms, post-attention and post-MLP norms).
    pub arch: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Ignored when a tokenizer is copied (the copied vocabulary decides).
    pub n_vocab: usize,
    pub n_ctx: usize,
    pub rope_base: f32,
    /// Type of the attention and MLP matrices.
    pub weight_type: GgmlType,
    /// Type of the token embedding (and tied output head).
    pub embedding_type: GgmlType,
    /// Write a separate `output.weight` instead of tying it to the embedding.
    pub separate_output: bool,
    pub seed: u64,
    /// Length of a query/key/value head (`{arch}.attention.key_length` and
    /// `value_length`); `None`: `n_embd / n_head`, keys not written.
    pub head_dim: Option<usize>,
    /// Write `blk.N.attn_{q,k,v}.bias` (as Qwen 2 has).
    pub qkv_bias: bool,
    /// `{arch}.attention.sliding_window` (for the families that read it).
    pub sliding_window: Option<usize>,
    /// Mixture-of-experts MLPs instead of dense ones (`qwen3moe`, or a
    /// Mixtral-style `llama`).
    pub moe: Option<SynthMoe>,
}

/// The experts of a synthetic mixture-of-experts model: every layer gets
/// a router `blk.N.ffn_gate_inp` and stacked `blk.N.ffn_{gate,up,down}_exps`
/// in the weight type, and no dense MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthMoe {
    /// `{arch}.expert_count`.
    pub n_expert: usize,
    /// `{arch}.expert_used_count`.
    pub n_expert_used: usize,
    /// Rows of one expert's gate and up matrices; written as
    /// `{arch}.expert_feed_forward_length` except for `llama`, whose experts
    /// are `feed_forward_length` wide (then it must equal `n_ff`).
    pub n_ff_exp: usize,
}

impl SynthSpec {
    /// A tiny model for unit tests: 2 layers, width 64.
    pub fn tiny(weight_type: GgmlType) -> SynthSpec {
        SynthSpec {
            arch: "llama".into(),
            n_layer: 2,
            n_embd: 64,
            n_ff: 128,
            n_head: 4,
            n_head_kv: 2,
            n_vocab: 320,
            n_ctx: 256,
            rope_base: 10_000.0,
            weight_type,
            embedding_type: GgmlType::Q8_0,
            separate_output: false,
            seed: 1,
            head_dim: None,
            qkv_bias: false,
            sliding_window: None,
            moe: None,
        }
    }

    /// [`tiny`](Self::tiny) for architecture `arch`, with what the family
    /// has beyond the Llama block: Q/K/V biases for `qwen2`; a sliding
    /// window of 8 positions for `gemma3` and `gemma2`; 20 experts of width
    /// 64, 4 used per token, for `qwen3moe` (more than 16, so the router's
    /// sort runs the full introsort).
    pub fn tiny_arch(arch: &str, weight_type: GgmlType) -> SynthSpec {
        SynthSpec {
            arch: arch.to_string(),
            qkv_bias: arch == "qwen2",
            sliding_window: matches!(arch, "gemma3" | "gemma2").then_some(8),
            moe: (arch == "qwen3moe").then_some(SynthMoe {
                n_expert: 20,
                n_expert_used: 4,
                n_ff_exp: 64,
            }),
            ..SynthSpec::tiny(weight_type)
        }
    }

    /// A Mixtral-style `llama` model: [`tiny`](Self::tiny) with 8 experts
    /// of width `n_ff`, 2 used per token.
    pub fn tiny_mixtral(weight_type: GgmlType) -> SynthSpec {
        let s = SynthSpec::tiny(weight_type);
        SynthSpec {
            moe: Some(SynthMoe {
                n_expert: 8,
                n_expert_used: 2,
                n_ff_exp: s.n_ff,
            }),
            ..s
        }
    }

    /// Length of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.n_embd / self.n_head.max(1))
    }

    fn validate(&self) -> Result<()> {
        let bad = |r: String| Err(Error::invalid("synth spec", r));
        if self.n_layer == 0
            || self.n_head == 0
            || self.n_head_kv == 0
            || self.n_head % self.n_head_kv != 0
        {
            return bad(format!(
                "layers {} / heads {} / kv heads {} are not valid",
                self.n_layer, self.n_head, self.n_head_kv
            ));
        }
        crate::model::arch::lookup(&self.arch)?;
        if let Some(m) = &self.moe {
            if m.n_expert == 0 || m.n_expert_used == 0 || m.n_expert_used > m.n_expert {
                return bad(format!(
                    "{} experts with {} used is not valid",
                    m.n_expert, m.n_expert_used
                ));
            }
            if self.arch == "llama" && m.n_ff_exp != self.n_ff {
                return bad("a llama model's experts are n_ff wide".into());
            }
            if m.n_ff_exp % self.weight_type.block_size() != 0 {
                return bad(format!(
                    "weight_type {} needs rows that are multiples of {}, not {}",
                    self.weight_type,
                    self.weight_type.block_size(),
                    m.n_ff_exp
                ));
            }
        } else if self.arch == "qwen3moe" {
            return bad("qwen3moe needs experts".into());
        }
        let hd = self.head_dim();
        if (self.head_dim.is_none() && self.n_embd % self.n_head != 0) || hd == 0 || hd % 2 != 0 {
            return bad(format!(
                "width {} does not split into {} even heads",
                self.n_embd, self.n_head
            ));
        }
        for (what, ty, n) in [
            ("weight_type", self.weight_type, self.n_embd),
            ("weight_type", self.weight_type, self.n_ff),
            ("weight_type", self.weight_type, self.n_head * hd),
            ("embedding_type", self.embedding_type, self.n_embd),
        ] {
            if n % ty.block_size() != 0 {
                return bad(format!(
                    "{what} {ty} needs rows that are multiples of {}, not {n}",
                    ty.block_size()
                ));
            }
        }
        Ok(())
    }
}

/// A splitmix64 stream: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

/// Random values of amplitude `amp` encoded as `ty`. Types Strata cannot
/// quantize to get random blocks with sane scales instead.
fn random_tensor(rng: &mut Rng, ty: GgmlType, n: usize, amp: f32) -> Result<Vec<u8>> {
    let bytes = ty.row_bytes(n as u64).unwrap_or(0) as usize;
    let mut out = vec![0u8; bytes];
    let vals: Vec<f32> = (0..n).map(|_| rng.uniform() * amp).collect();
    if quant::quantize(ty, &vals, &mut out).is_ok() {
        return Ok(out);
    }
    // Random bits, then the block's f16 scale fields set to small values.
    for b in out.iter_mut() {
        *b = rng.next() as u8;
    }
    // Offsets of (d, dmin) inside each block, per type.
    let (fields, scale): (&[usize], f32) = match ty {
        GgmlType::Q5_0 => (&[0], amp / 16.0),
        GgmlType::Q5_1 => (&[0, 2], amp / 16.0),
        GgmlType::Q2_K => (&[80, 82], amp / 32.0),
        GgmlType::Q3_K => (&[108], amp / 64.0),
        GgmlType::Q4_K | GgmlType::Q5_K => (&[0, 2], amp / 512.0),
        GgmlType::Q6_K => (&[208], amp / 1024.0),
        _ => {
            return Err(Error::UnsupportedTensorType {
                name: "synthetic tensor".into(),
                ty: ty.name(),
                context: "the synthetic model writer",
            })
        }
    };
    let d = half::f16::from_f32(scale).to_le_bytes();
    for block in out.chunks_exact_mut(ty.type_size()) {
        for &f in fields {
            block[f..f + 2].copy_from_slice(&d);
        }
    }
    Ok(out)
}

fn byte_level_vocab(n_vocab: usize) -> Result<(Vec<String>, Vec<i32>)> {
    if n_vocab < 258 {
        return Err(Error::invalid(
            "n_vocab",
            "a synthetic vocabulary needs at least 258 tokens",
        ));
    }
    // GPT-2's byte-to-character mapping: printable bytes map to themselves,
    // the rest to code points from 256 up.
    let mut tokens = Vec::with_capacity(n_vocab);
    let mut extra = 0u32;
    for b in 0u32..256 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            extra += 1;
            255 + extra
        };
        tokens.push(char::from_u32(c).unwrap_or('?').to_string());
    }
    let mut types = vec![1i32; 256];
    tokens.push("<s>".into());
    tokens.push("</s>".into());
    types.extend([3, 3]);
    while tokens.len() < n_vocab {
        tokens.push(format!("<unused{}>", tokens.len()));
        types.push(5);
    }
    Ok((tokens, types))
}

/// Build a synthetic model. With `tokenizer_from`, every `tokenizer.*` key is
/// copied from that file and its vocabulary size is used.
pub fn synth_model(
    spec: &SynthSpec,
    tokenizer_from: Option<&GgufFile>,
) -> Result<GgufWriter<'static>> {
    spec.validate()?;
    let block = crate::model::arch::lookup(&spec.arch)?.block;
    let mut w = GgufWriter::new();
    let a = spec.arch.as_str();
    w.set("general.architecture", Value::String(a.into()));
    w.set("general.name", Value::String("strata-synthetic".into()));
    let u = |v: usize| Value::U32(v as u32);
    w.set(format!("{a}.block_count"), u(spec.n_layer));
    w.set(format!("{a}.context_length"), u(spec.n_ctx));
    w.set(format!("{a}.embedding_length"), u(spec.n_embd));
    w.set(format!("{a}.feed_forward_length"), u(spec.n_ff));
    w.set(format!("{a}.attention.head_count"), u(spec.n_head));
    w.set(format!("{a}.attention.head_count_kv"), u(spec.n_head_kv));
    w.set(format!("{a}.rope.freq_base"), Value::F32(spec.rope_base));
    w.set(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-5),
    );
    if let Some(hd) = spec.head_dim {
        w.set(format!("{a}.attention.key_length"), u(hd));
        w.set(format!("{a}.attention.value_length"), u(hd));
    }
    if let Some(n) = spec.sliding_window {
        w.set(format!("{a}.attention.sliding_window"), u(n));
    }
    if let Some(m) = &spec.moe {
        w.set(format!("{a}.expert_count"), u(m.n_expert));
        w.set(format!("{a}.expert_used_count"), u(m.n_expert_used));
        if a != "llama" {
            w.set(format!("{a}.expert_feed_forward_length"), u(m.n_ff_exp));
        }
    }
    let n_vocab = match tokenizer_from {
        Some(src) => {
            for (k, v) in src.metadata() {
                if k.starts_with("tokenizer.") {
                    w.set(k.clone(), v.clone());
                }
            }
            src.get_array("tokenizer.ggml.tokens")?.len()
        }
        None => {
            let (tokens, types) = byte_level_vocab(spec.n_vocab)?;
            w.set("tokenizer.ggml.model", Value::String("gpt2".into()));
            w.set("tokenizer.ggml.pre", Value::String("default".into()));
            w.set("tokenizer.ggml.tokens", Value::str_array(&tokens));
            w.set(
                "tokenizer.ggml.token_type",
                Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()),
            );
            w.set(
                "tokenizer.ggml.merges",
                Value::Array(ValueType::String, vec![]),
            );
            w.set("tokenizer.ggml.bos_token_id", Value::U32(256));
            w.set("tokenizer.ggml.eos_token_id", Value::U32(257));
            w.set("tokenizer.ggml.add_bos_token", Value::Bool(true));
            spec.n_vocab
        }
    };
    if n_vocab == 0 {
        return Err(Error::invalid(
            "tokenizer",
            "the copied vocabulary is empty",
        ));
    }

    let mut rng = Rng(spec.seed);
    let (e, f) = (spec.n_embd, spec.n_ff);
    let hd = spec.head_dim();
    let (q, kv) = (spec.n_head * hd, spec.n_head_kv * hd);
    let amp = 1.0 / (e as f32).sqrt();
    // Phi-3 stores Q/K/V as one `attn_qkv` and gate/up as one `ffn_up`.
    let fused = spec.arch == "phi3";
    let mut add = |w: &mut GgufWriter,
                   name: String,
                   ty: GgmlType,
                   cols: usize,
                   rows: usize,
                   amp: f32|
     -> Result<()> {
        let data = random_tensor(&mut rng, ty, cols * rows, amp)?;
        let dims: Vec<u64> = if rows == 1 {
            vec![cols as u64]
        } else {
            vec![cols as u64, rows as u64]
        };
        w.add_tensor(name, ty, &dims, TensorData::Owned(data))
    };
    add(
        &mut w,
        "token_embd.weight".into(),
        spec.embedding_type,
        e,
        n_vocab,
        1.0,
    )?;
    for i in 0..spec.n_layer {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        let wt = spec.weight_type;
        add(&mut w, p("attn_norm"), GgmlType::F32, e, 1, 0.0)?;
        if fused {
            add(&mut w, p("attn_qkv"), wt, e, q + 2 * kv, amp)?;
        } else {
            add(&mut w, p("attn_q"), wt, e, q, amp)?;
            add(&mut w, p("attn_k"), wt, e, kv, amp)?;
            add(&mut w, p("attn_v"), wt, e, kv, amp)?;
        }
        add(&mut w, p("attn_output"), wt, q, e, 1.0 / (q as f32).sqrt())?;
        add(&mut w, p("ffn_norm"), GgmlType::F32, e, 1, 0.0)?;
        if spec.moe.is_none() {
            if fused {
                add(&mut w, p("ffn_up"), wt, e, 2 * f, amp)?;
            } else {
                add(&mut w, p("ffn_gate"), wt, e, f, amp)?;
                add(&mut w, p("ffn_up"), wt, e, f, amp)?;
            }
            add(&mut w, p("ffn_down"), wt, f, e, 1.0 / (f as f32).sqrt())?;
        }
    }
    add(
        &mut w,
        "output_norm.weight".into(),
        GgmlType::F32,
        e,
        1,
        0.0,
    )?;
    if spec.separate_output {
        add(
            &mut w,
            "output.weight".into(),
            spec.embedding_type,
            e,
            n_vocab,
            amp,
        )?;
    }
    // Norm weights: 1 plus a little noise, so they are not all identical.
    let mut ones = |w: &mut GgufWriter, name: String| -> Result<()> {
        let v: Vec<u8> = (0..e)
            .flat_map(|_| (1.0 + 0.1 * rng.uniform()).to_le_bytes())
            .collect();
        w.replace_tensor_data(&name, TensorData::Owned(v))
    };
    for i in 0..spec.n_layer {
        ones(&mut w, format!("blk.{i}.attn_norm.weight"))?;
        ones(&mut w, format!("blk.{i}.ffn_norm.weight"))?;
    }
    ones(&mut w, "output_norm.weight".into())?;

    // The family's extra tensors (drawn after all of the above, so a llama
    // model's bytes do not depend on them).
    let mut extra = |w: &mut GgufWriter, name: String, n: usize, base: f32, amp: f32| {
        let v: Vec<u8> = (0..n)
            .flat_map(|_| (base + amp * rng.uniform()).to_le_bytes())
            .collect();
        w.add_tensor(name, GgmlType::F32, &[n as u64], TensorData::Owned(v))
    };
    for i in 0..spec.n_layer {
        let p = |s: &str| format!("blk.{i}.{s}");
        if spec.qkv_bias {
            extra(&mut w, p("attn_q.bias"), q, 0.0, 0.5)?;
            extra(&mut w, p("attn_k.bias"), kv, 0.0, 0.5)?;
            extra(&mut w, p("attn_v.bias"), kv, 0.0, 0.5)?;
        }
        if block.qk_norm {
            extra(&mut w, p("attn_q_norm.weight"), hd, 1.0, 0.1)?;
            extra(&mut w, p("attn_k_norm.weight"), hd, 1.0, 0.1)?;
        }
        if block.post_norms {
            extra(&mut w, p("post_attention_norm.weight"), e, 1.0, 0.1)?;
            extra(&mut w, p("post_ffw_norm.weight"), e, 1.0, 0.1)?;
        }
    }
    if let Some(m) = &spec.moe {
        add_experts(&mut w, &mut rng, spec, m)?;
    }
    Ok(w)
}

/// Every layer's router and stacked experts (drawn last, after every dense
/// tensor).
fn add_experts(w: &mut GgufWriter, rng: &mut Rng, spec: &SynthSpec, m: &SynthMoe) -> Result<()> {
    let (e, f, n, ty) = (spec.n_embd, m.n_ff_exp, m.n_expert, spec.weight_type);
    let amp = 1.0 / (e as f32).sqrt();
    for i in 0..spec.n_layer {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        // A wider router spread, so the experts' probabilities differ.
        let router = random_tensor(rng, ty, e * n, 4.0 * amp)?;
        w.add_tensor(
            p("ffn_gate_inp"),
            ty,
            &[e as u64, n as u64],
            TensorData::Owned(router),
        )?;
        for (name, cols, rows, amp) in [
            ("ffn_gate_exps", e, f, amp),
            ("ffn_up_exps", e, f, amp),
            ("ffn_down_exps", f, e, 1.0 / (f as f32).sqrt()),
        ] {
            let data = random_tensor(rng, ty, cols * rows * n, amp)?;
            w.add_tensor(
                p(name),
                ty,
                &[cols as u64, rows as u64, n as u64],
                TensorData::Owned(data),
            )?;
        }
    }
    Ok(())
}
