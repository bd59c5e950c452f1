//! Perplexity and KL-divergence over a text, computed the way llama.cpp's
//! `llama-perplexity` does, so the two engines' figures compare directly.
//!
//! The procedure:
//! - The text is tokenized once, with the BOS token if the model adds one.
//! - It is cut into `n_chunk = n_tokens / n_ctx` non-overlapping chunks of
//!   `n_ctx` tokens (the tail that does not fill a chunk is dropped); at
//!   least two chunks' worth of tokens are required.
//! - Each chunk is evaluated from an empty cache, its first token replaced
//!   by BOS when the model adds one, in forward calls of `n_batch` tokens.
//! - Only the second half is scored: the logits of positions
//!   `n_ctx/2 ..= n_ctx-2` predict the tokens after them
//!   (`n_ctx - n_ctx/2 - 1` tokens per chunk, 255 for `n_ctx = 512`).
//! - Each token's negative log-likelihood is a log-softmax in double:
//!   the maximum logit `m` in f32, `Σ exp(lᵢ − m)` with each term in f32
//!   and the sum in f64, `nll = −((l_tok − m) − ln Σ)`.
//! - The estimate after any chunk is `exp(mean nll)`; the final value
//!   comes with the error `ppl · sqrt((mean(nll²) − mean(nll)²) / (n − 1))`.
//!
//! KL-divergence: a run can save, for every scored position, the model's
//! log-probabilities quantized to 16 bits ([`KlBaseWriter`], format below);
//! a later run (another quantization of the same model, say) reads them
//! back ([`KlBase`]) and reports the mean `KL(base ‖ this)` over the
//! positions, as llama.cpp's `--kl-divergence` does: terms whose base
//! log-probability is below −16 are left out.
//!
//! # The base file (little-endian)
//! | bytes | field |
//! |---|---|
//! | 8 | magic `STRATAKL` |
//! | 4 | u32 version (1) |
//! | 4 | u32 `n_ctx` |
//! | 4 | u32 `n_vocab` |
//! | 4 | u32 `n_chunk` |
//! | 4·n_chunk·n_ctx | u32 token ids of the chunks, in order (as tokenized, before BOS replacement) |
//! | per chunk, per scored position (`n_ctx − n_ctx/2 − 1` rows) | f32 `scale`, f32 `min`, u16 `q[n_vocab]` |
//!
//! A row holds `log p(i) ≈ min + scale·q[i]`: `min` is the lowest
//! log-probability kept (at most 16 below the top one), `scale` spreads
//! the window over 0..=65535, and ids whose logit falls below the window
//! have `q = 0`. The file's length must be exactly what its header says.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::{Input, Logits};
use crate::{Error, Model, Result, Session, SessionOptions};

/// How a perplexity run cuts and feeds the text.
#[derive(Debug, Clone)]
pub struct PerplexityOptions {
    /// Tokens per chunk (`-c`, llama-perplexity's default 512).
    pub n_ctx: usize,
    /// Tokens per forward call (`-b`); `n_ctx` feeds a chunk at once.
    pub n_batch: usize,
    /// Score at most this many chunks (`--chunks`); `None`: all of them.
    pub max_chunks: Option<usize>,
}

impl Default for PerplexityOptions {
    fn default() -> Self {
        PerplexityOptions {
            n_ctx: 512,
            n_batch: 512,
            max_chunks: None,
        }
    }
}

/// Running sums of negative log-likelihoods.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NllSums {
    pub nll: f64,
    pub nll2: f64,
    pub count: usize,
}

impl NllSums {
    pub fn add(&mut self, v: f64) {
        self.nll += v;
        self.nll2 += v * v;
        self.count += 1;
    }

    /// `exp(mean nll)`.
    pub fn ppl(&self) -> f64 {
        (self.nll / self.count as f64).exp()
    }

    /// The standard error of [`ppl`](Self::ppl) (`None` with fewer than
    /// two tokens or a non-positive variance).
    pub fn ppl_error(&self) -> Option<f64> {
        let n = self.count as f64;
        let mean = self.nll / n;
        let var = self.nll2 / n - mean * mean;
        (self.count > 1 && var > 0.0).then(|| (var / (n - 1.0)).sqrt() * self.ppl())
    }
}

/// The log-softmax pieces of one row: max logit and `ln Σ exp(lᵢ − max)`.
fn log_sum_exp(logits: &[f32]) -> (f32, f64) {
    let max = logits.iter().copied().fold(logits[0], f32::max);
    let sum: f64 = logits.iter().map(|&l| (l - max).exp() as f64).sum();
    (max, sum.ln())
}

/// The negative log-likelihood of token `tok` under `logits` (llama.cpp's
/// order: f32 differences and exponentials, f64 sum and log).
pub fn token_nll(logits: &[f32], tok: u32) -> f64 {
    let (max, lse) = log_sum_exp(logits);
    -(((logits[tok as usize] - max) as f64) - lse)
}

/// The first scored position of a chunk of `n_ctx` tokens.
pub fn first_scored(n_ctx: usize) -> usize {
    n_ctx / 2
}

/// Scored positions per chunk.
pub fn scored_per_chunk(n_ctx: usize) -> usize {
    n_ctx - first_scored(n_ctx) - 1
}

/// The chunks of `tokens` a run scores, each `n_ctx` tokens with the first
/// replaced by `bos` when given. Errors if fewer than `2·n_ctx` tokens.
pub fn chunks(tokens: &[u32], opts: &PerplexityOptions, bos: Option<u32>) -> Result<Vec<Vec<u32>>> {
    let n_ctx = opts.n_ctx;
    if n_ctx < 4 {
        return Err(Error::PerplexityInput {
            reason: format!("a context of {n_ctx} tokens is too short (at least 4)"),
        });
    }
    if opts.n_batch == 0 {
        return Err(Error::PerplexityInput {
            reason: "the batch size must be at least 1".into(),
        });
    }
    if tokens.len() < 2 * n_ctx {
        return Err(Error::PerplexityInput {
            reason: format!(
                "the text tokenizes to {} tokens; a context of {n_ctx} needs at least {}",
                tokens.len(),
                2 * n_ctx
            ),
        });
    }
    let mut n = tokens.len() / n_ctx;
    if let Some(m) = opts.max_chunks {
        n = n.min(m.max(1));
    }
    Ok((0..n)
        .map(|i| {
            let mut c = tokens[i * n_ctx..(i + 1) * n_ctx].to_vec();
            if let Some(b) = bos {
                c[0] = b;
            }
            c
        })
        .collect())
}

/// One chunk's contribution: the scored tokens' negative log-likelihoods
/// from the chunk's logits (`logits(j)`: the row of position `j`).
pub fn score_chunk<'a>(chunk: &[u32], logits: impl Fn(usize) -> &'a [f32], sums: &mut NllSums) {
    let n_ctx = chunk.len();
    for j in first_scored(n_ctx)..n_ctx - 1 {
        sums.add(token_nll(logits(j), chunk[j + 1]));
    }
}

/// Progress after each chunk.
#[derive(Debug, Clone)]
pub struct ChunkDone {
    /// Chunks done so far, and in all.
    pub done: usize,
    pub total: usize,
    /// The running perplexity.
    pub ppl: f64,
    /// The running KL-divergence sums, when comparing against a base.
    pub kld: Option<KlSums>,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct PerplexityReport {
    pub chunks: usize,
    pub n_ctx: usize,
    /// Tokens of the whole text (BOS included).
    pub text_tokens: usize,
    pub sums: NllSums,
    /// KL-divergence against the base, when one was read.
    pub kld: Option<KlSums>,
}

/// What a run does with KL-divergence reference data.
pub enum KlMode<'a> {
    None,
    /// Save this run's log-probabilities as the base.
    Save(&'a mut KlBaseWriter),
    /// Compare this run's distributions with a saved base.
    Compare(&'a mut KlBase),
}

/// Perplexity of `model` over `text`. `on_chunk` is called after every
/// chunk (for a progress display).
pub fn perplexity(
    model: &Arc<Model>,
    text: &str,
    opts: &PerplexityOptions,
    mut kl: KlMode<'_>,
    mut on_chunk: impl FnMut(&ChunkDone),
) -> Result<PerplexityReport> {
    let tok = model.tokenizer();
    let tokens = tok.encode(text, true, false)?;
    let bos = if tok.add_bos() { tok.bos() } else { None };
    let chunks = chunks(&tokens, opts, bos)?;
    let n_vocab = model.config().n_vocab;
    match &mut kl {
        KlMode::Save(w) => w.begin(opts.n_ctx, n_vocab, &tokens[..chunks.len() * opts.n_ctx])?,
        KlMode::Compare(b) => b.check(opts.n_ctx, n_vocab, chunks.len(), &tokens)?,
        KlMode::None => {}
    }
    let mut sums = NllSums::default();
    let mut kld = matches!(kl, KlMode::Compare(_)).then(KlSums::default);
    let first = first_scored(opts.n_ctx);
    for (i, chunk) in chunks.iter().enumerate() {
        let mut s = Session::new(
            Arc::clone(model),
            &SessionOptions {
                n_ctx: Some(opts.n_ctx),
            },
        )?;
        // Logits of the scored half only are kept.
        let mut rows = Vec::with_capacity((opts.n_ctx - first) * n_vocab);
        for (b, part) in chunk.chunks(opts.n_batch).enumerate() {
            let start = b * opts.n_batch;
            if start + part.len() <= first {
                // No scored position: no output head either.
                s.forward(Input::Tokens(part), start, Logits::None)?;
                continue;
            }
            let l = s.feed_all(part)?;
            let from = first.saturating_sub(start);
            rows.extend_from_slice(&l[from * n_vocab..]);
        }
        let row = |j: usize| &rows[(j - first) * n_vocab..(j - first + 1) * n_vocab];
        score_chunk(chunk, row, &mut sums);
        match &mut kl {
            KlMode::Save(w) => {
                for j in first..opts.n_ctx - 1 {
                    w.push_row(row(j))?;
                }
            }
            KlMode::Compare(b) => {
                let k = kld.as_mut().expect("set for Compare");
                for j in first..opts.n_ctx - 1 {
                    b.compare_row(row(j), chunk[j + 1], k)?;
                }
            }
            KlMode::None => {}
        }
        on_chunk(&ChunkDone {
            done: i + 1,
            total: chunks.len(),
            ppl: sums.ppl(),
            kld,
        });
    }
    if let KlMode::Save(w) = &mut kl {
        w.finish()?;
    }
    Ok(PerplexityReport {
        chunks: chunks.len(),
        n_ctx: opts.n_ctx,
        text_tokens: tokens.len(),
        sums,
        kld,
    })
}

const MAGIC: &[u8; 8] = b"STRATAKL";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 * 4;
/// Log-probabilities more than this far below the top one are not kept.
const WINDOW: f32 = 16.0;

fn row_bytes(n_vocab: usize) -> usize {
    8 + 2 * n_vocab
}

/// Quantize one row of logits to the base file's row: (scale, min, q).
pub fn quantize_row(logits: &[f32]) -> (f32, f32, Vec<u16>) {
    let (max, lse) = log_sum_exp(logits);
    let lo = logits.iter().copied().fold(logits[0], f32::min);
    let lo = lo.max(max - WINDOW);
    let lse = lse as f32;
    let min_log_prob = lo - max - lse;
    let scale = (max - lo) / 65535.0;
    let q = if scale > 0.0 {
        let inv = 1.0 / scale;
        logits
            .iter()
            .map(|&l| {
                if l > lo {
                    (inv * (l - lo)).round().clamp(0.0, 65535.0) as u16
                } else {
                    0
                }
            })
            .collect()
    } else {
        vec![0; logits.len()]
    };
    (scale, min_log_prob, q)
}

/// Writes a base file as a run goes.
pub struct KlBaseWriter {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl KlBaseWriter {
    pub fn create(path: &Path) -> Result<KlBaseWriter> {
        let f = std::fs::File::create(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(KlBaseWriter {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(f),
        })
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn begin(&mut self, n_ctx: usize, n_vocab: usize, tokens: &[u32]) -> Result<()> {
        let mut h = Vec::with_capacity(HEADER + 4 * tokens.len());
        h.extend_from_slice(MAGIC);
        for v in [
            VERSION,
            n_ctx as u32,
            n_vocab as u32,
            (tokens.len() / n_ctx) as u32,
        ] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        for t in tokens {
            h.extend_from_slice(&t.to_le_bytes());
        }
        self.write(&h)
    }

    fn push_row(&mut self, logits: &[f32]) -> Result<()> {
        let (scale, min, q) = quantize_row(logits);
        let mut b = Vec::with_capacity(row_bytes(q.len()));
        b.extend_from_slice(&scale.to_le_bytes());
        b.extend_from_slice(&min.to_le_bytes());
        for v in q {
            b.extend_from_slice(&v.to_le_bytes());
        }
        self.write(&b)
    }

    fn finish(&mut self) -> Result<()> {
        self.out.flush().map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Running KL-divergence sums.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KlSums {
    pub kld: f64,
    pub kld2: f64,
    /// Positions where both distributions have the same most likely token.
    pub same_top: usize,
    pub count: usize,
    /// The base run's negative log-likelihoods (from the quantized rows).
    pub base: NllSums,
}

impl KlSums {
    pub fn mean(&self) -> f64 {
        self.kld / self.count as f64
    }

    /// The standard error of [`mean`](Self::mean).
    pub fn mean_error(&self) -> Option<f64> {
        let n = self.count as f64;
        let m = self.mean();
        let var = self.kld2 / n - m * m;
        (self.count > 1 && var > 0.0).then(|| (var / (n - 1.0)).sqrt())
    }

    /// Share of positions whose top token agrees with the base's.
    pub fn same_top_share(&self) -> f64 {
        self.same_top as f64 / self.count as f64
    }
}

/// A base file read back, its rows consumed in order.
pub struct KlBase {
    n_ctx: usize,
    n_vocab: usize,
    n_chunk: usize,
    tokens: Vec<u32>,
    rows: Vec<u8>,
    next: usize,
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::KlBaseMalformed {
        reason: reason.into(),
    }
}

impl KlBase {
    /// Read and check a base file.
    pub fn open(path: &Path) -> Result<KlBase> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let mut head = [0u8; HEADER];
        f.read_exact(&mut head)
            .map_err(|_| malformed(format!("{} bytes is shorter than the header", len)))?;
        if &head[..8] != MAGIC {
            return Err(malformed("not a Strata KL-divergence base (magic)"));
        }
        let u = |i: usize| u32::from_le_bytes(head[8 + 4 * i..12 + 4 * i].try_into().unwrap());
        if u(0) != VERSION {
            return Err(malformed(format!(
                "version {} (this build reads {VERSION})",
                u(0)
            )));
        }
        let (n_ctx, n_vocab, n_chunk) = (u(1) as usize, u(2) as usize, u(3) as usize);
        if n_ctx < 4 || n_vocab == 0 || n_chunk == 0 {
            return Err(malformed(format!(
                "context {n_ctx}, vocabulary {n_vocab}, chunks {n_chunk}"
            )));
        }
        let want = (n_chunk as u128) * (n_ctx as u128) * 4
            + (n_chunk as u128) * (scored_per_chunk(n_ctx) as u128) * row_bytes(n_vocab) as u128
            + HEADER as u128;
        if want != len as u128 {
            return Err(malformed(format!(
                "{len} bytes, but its header describes {want}"
            )));
        }
        let mut rest = Vec::with_capacity((len as usize) - HEADER);
        f.read_to_end(&mut rest).map_err(io)?;
        let tok_bytes = n_chunk * n_ctx * 4;
        let tokens = rest[..tok_bytes]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let rows = rest.split_off(tok_bytes);
        Ok(KlBase {
            n_ctx,
            n_vocab,
            n_chunk,
            tokens,
            rows,
            next: 0,
        })
    }

    /// Chunks and context the base was made with.
    pub fn n_chunk(&self) -> usize {
        self.n_chunk
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn check(&self, n_ctx: usize, n_vocab: usize, n_chunk: usize, tokens: &[u32]) -> Result<()> {
        if n_ctx != self.n_ctx || n_vocab != self.n_vocab {
            return Err(malformed(format!(
                "made with context {} and vocabulary {}; this run has {n_ctx} and {n_vocab}",
                self.n_ctx, self.n_vocab
            )));
        }
        if n_chunk > self.n_chunk {
            return Err(malformed(format!(
                "holds {} chunks; this run scores {n_chunk}",
                self.n_chunk
            )));
        }
        if tokens[..n_chunk * n_ctx] != self.tokens[..n_chunk * n_ctx] {
            return Err(malformed(
                "its tokens differ from this text's (another text or tokenizer)",
            ));
        }
        Ok(())
    }

    /// Compare the next base row with `logits` (`tok`: the scored token).
    fn compare_row(&mut self, logits: &[f32], tok: u32, k: &mut KlSums) -> Result<()> {
        let rb = row_bytes(self.n_vocab);
        let r = self
            .rows
            .get(self.next * rb..(self.next + 1) * rb)
            .ok_or_else(|| malformed("fewer rows than the run scores"))?;
        self.next += 1;
        let scale = f32::from_le_bytes(r[0..4].try_into().unwrap());
        let min = f32::from_le_bytes(r[4..8].try_into().unwrap());
        let q = |i: usize| u16::from_le_bytes([r[8 + 2 * i], r[9 + 2 * i]]);
        let base_log_p = |i: usize| scale * q(i) as f32 + min;
        let (max, lse) = log_sum_exp(logits);
        let norm = max as f64 + lse;
        let mut sum = 0f64;
        let (mut top, mut top_base) = (0usize, 0usize);
        for i in 0..self.n_vocab {
            if logits[i] > logits[top] {
                top = i;
            }
            let lb = base_log_p(i);
            if lb > base_log_p(top_base) {
                top_base = i;
            }
            if lb > -WINDOW {
                let lp = logits[i] as f64 - norm;
                sum += (lb.exp() as f64) * (lb as f64 - lp);
            }
        }
        k.kld += sum;
        k.kld2 += sum * sum;
        k.count += 1;
        k.same_top += usize::from(top == top_base);
        k.base.add(-(base_log_p(tok as usize) as f64));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_is_the_log_softmax() {
        let l = [1.0f32, 2.0, 3.0, 0.5];
        let z: f64 = l.iter().map(|&x| (x as f64).exp()).sum();
        for t in 0..4 {
            let want = -((l[t] as f64).exp() / z).ln();
            assert!((token_nll(&l, t as u32) - want).abs() < 1e-6);
        }
    }

    #[test]
    fn sums_give_ppl_and_error() {
        let mut s = NllSums::default();
        for v in [1.0, 2.0, 3.0] {
            s.add(v);
        }
        assert!((s.ppl() - 2f64.exp()).abs() < 1e-12);
        // Variance 2/3 over 2 degrees of freedom: sqrt(1/3) · e².
        let e = s.ppl_error().unwrap();
        assert!((e - (1.0f64 / 3.0).sqrt() * 2f64.exp()).abs() < 1e-9);
    }

    #[test]
    fn chunks_are_cut_and_checked() {
        let t: Vec<u32> = (0..25).collect();
        let o = PerplexityOptions {
            n_ctx: 8,
            n_batch: 3,
            max_chunks: None,
        };
        let c = chunks(&t, &o, Some(99)).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[1], [99, 9, 10, 11, 12, 13, 14, 15]);
        assert!(chunks(&t[..15], &o, None).is_err());
        let o2 = PerplexityOptions {
            max_chunks: Some(2),
            ..o.clone()
        };
        assert_eq!(chunks(&t, &o2, None).unwrap().len(), 2);
        assert_eq!(scored_per_chunk(512), 255);
    }

    #[test]
    fn quantized_rows_keep_log_probs() {
        let l: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        let (scale, min, q) = quantize_row(&l);
        let (max, lse) = log_sum_exp(&l);
        for i in 0..l.len() {
            let exact = l[i] as f64 - max as f64 - lse;
            let got = (scale * q[i] as f32 + min) as f64;
            assert!((exact - got).abs() < 1e-3, "{i}: {exact} vs {got}");
        }
    }
}
