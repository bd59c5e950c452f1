//! Token sampling: one logits vector in, one token id out.
//!
//! # The chain
//!
//! [`Sampler::sample`] runs the steps of llama.cpp's default sampler chain
//! (`common_params_sampling::samplers` in `common/common.h`), leaving out
//! the ones that chain has switched off by default (DRY, top-n-sigma,
//! typical-p, XTC):
//!
//! 1. **penalties** over the last `repeat_last_n` accepted tokens: for each
//!    distinct token seen `count` times there, a positive logit is divided by
//!    `repeat_penalty` and a non-positive one multiplied by it (the CTRL
//!    penalty with the usual fix for negative logits), then
//!    `count * frequency_penalty + presence_penalty` is subtracted;
//! 2. **top-k**: keep the `top_k` highest logits;
//! 3. **top-p** (nucleus): softmax (at temperature 1) over what is left, keep
//!    the shortest prefix, best first, whose probability reaches `top_p`;
//! 4. **min-p**: keep the tokens whose probability (at temperature 1) is at
//!    least `min_p` times the best token's;
//! 5. **temperature**: divide the logits by `temperature`;
//! 6. **distribution**: softmax and one seeded draw.
//!
//! With `temperature <= 0` the sampler is greedy: step 1, then the argmax
//! (ties go to the lowest id). Steps 2–4 cannot change the argmax, so they
//! are skipped, and no random number is drawn. Otherwise exactly one random
//! number is drawn per call, whatever the number of candidates left.
//!
//! Every filter keeps at least one token (llama.cpp's `min_keep = 0`, which
//! behaves as 1).
//!
//! # Logits that are not finite
//!
//! NaN counts as -inf. If some logits are +inf, the draw is uniform among
//! them. If every logit is -inf (or NaN), the result is token 0, as with
//! [`argmax`]. Empty logits give token 0.
//!
//! # Reproducibility
//!
//! The same [`SamplerParams`] (seed included), the same accepted history and
//! the same logits give the same token on every run and every platform: the
//! RNG is xoshiro256** written out here, the uniform is the top 53 bits of a
//! `u64`, the candidates are always either in id order or in rank order
//! (logit descending, then id ascending: a total order, so no sort can
//! leave ties in a toolchain-dependent order), every sum and the final walk
//! run in that order, and `exp` is our own, built from correctly rounded
//! IEEE-754 operations (see `det.rs`) rather than the platform's `libm`.
//! The tokens do not match llama.cpp's for the same seed: its RNG is
//! `std::mt19937`.

mod det;
#[cfg(test)]
mod tests;

use std::collections::{BinaryHeap, VecDeque};

use crate::{Error, Result};
use det::Rng;

/// Sampling parameters.
///
/// [`Default`] follows llama.cpp's `common_params_sampling` defaults
/// (`common/common.h`) wherever it has the same knob; the seed is the
/// exception (see the field).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerParams {
    /// Softmax temperature; `<= 0` samples greedily (argmax).
    /// Default 0.8 (llama.cpp `temp`).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 = off.
    /// Default 40 (llama.cpp `top_k`, where `<= 0` is off).
    pub top_k: usize,
    /// Nucleus sampling threshold in `[0, 1]`; 1.0 = off.
    /// Default 0.95 (llama.cpp `top_p`).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the best one; in `[0, 1]`,
    /// 0.0 = off. Default 0.05 (llama.cpp `min_p`).
    pub min_p: f32,
    /// Repetition penalty, `> 0`; 1.0 = off. Default 1.0
    /// (llama.cpp `penalty_repeat`).
    pub repeat_penalty: f32,
    /// How many of the most recent accepted tokens the penalties look at;
    /// 0 = penalties off. Default 64 (llama.cpp `penalty_last_n`; its `-1`,
    /// "the whole context", has no equivalent here: pass the context size).
    pub repeat_last_n: usize,
    /// Subtracted once per occurrence in the window; 0.0 = off.
    /// Default 0.0 (llama.cpp `penalty_freq`).
    pub frequency_penalty: f32,
    /// Subtracted once if the token occurs in the window at all; 0.0 = off.
    /// Default 0.0 (llama.cpp `penalty_present`).
    pub presence_penalty: f32,
    /// RNG seed. Default 42. llama.cpp's default (`LLAMA_DEFAULT_SEED`)
    /// means "pick a random seed"; Strata is reproducible unless the caller
    /// passes a seed of their own.
    pub seed: u64,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 42,
        }
    }
}

impl SamplerParams {
    /// Plain argmax: temperature 0, every filter and penalty off.
    pub fn greedy() -> Self {
        SamplerParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            ..SamplerParams::default()
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        fn finite(name: &'static str, v: f32) -> Result<()> {
            if v.is_finite() {
                Ok(())
            } else {
                Err(Error::invalid(
                    name,
                    format!("must be a finite number, got {v}"),
                ))
            }
        }
        fn unit(name: &'static str, v: f32) -> Result<()> {
            finite(name, v)?;
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(name, format!("must be in [0, 1], got {v}")))
            }
        }
        finite("temperature", self.temperature)?;
        unit("top_p", self.top_p)?;
        unit("min_p", self.min_p)?;
        finite("repeat_penalty", self.repeat_penalty)?;
        if self.repeat_penalty <= 0.0 {
            return Err(Error::invalid(
                "repeat_penalty",
                format!("must be > 0 (1.0 = off), got {}", self.repeat_penalty),
            ));
        }
        finite("frequency_penalty", self.frequency_penalty)?;
        finite("presence_penalty", self.presence_penalty)?;
        Ok(())
    }

    fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    fn penalties_on(&self) -> bool {
        self.repeat_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.frequency_penalty != 0.0
                || self.presence_penalty != 0.0)
    }
}

/// A sampler for one sequence: parameters, RNG state and the recent tokens
/// the penalties look at.
pub struct Sampler {
    params: SamplerParams,
    rng: Rng,
    /// The last `repeat_last_n` accepted tokens, oldest first.
    history: VecDeque<u32>,
    // Scratch, kept between calls so that sampling does not allocate.
    /// [n_vocab] logits, NaN-cleaned and penalised.
    logits: Vec<f32>,
    /// [n_vocab] by token id: unnormalised probabilities of the candidates.
    weights: Vec<f64>,
    /// [<= n_vocab] the tokens still in the running, as rank keys.
    cand: Vec<u64>,
    /// [top_k] rank keys of the best tokens seen so far, worst on top.
    heap: BinaryHeap<u64>,
    /// [<= repeat_last_n] a sorted copy of `history`.
    counts: Vec<u32>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("params", &self.params)
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl Sampler {
    /// A sampler with empty history; fails if `params` do not validate.
    pub fn new(params: SamplerParams) -> Result<Sampler> {
        params.validate()?;
        let window = params.repeat_last_n.min(4096);
        Ok(Sampler {
            rng: Rng::new(params.seed),
            history: VecDeque::with_capacity(window),
            logits: Vec::new(),
            weights: Vec::new(),
            cand: Vec::new(),
            heap: BinaryHeap::new(),
            counts: Vec::with_capacity(window),
            params,
        })
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// Records `token` as generated, for the penalties. [`Sampler::sample`]
    /// does not do this itself, so the caller can also feed prompt tokens or
    /// replace the sampled token.
    pub fn accept(&mut self, token: u32) {
        let n = self.params.repeat_last_n;
        if n == 0 {
            return;
        }
        if self.history.len() >= n {
            self.history.pop_front();
        }
        self.history.push_back(token);
    }

    /// Forgets the history and re-seeds the RNG: the sampler behaves as if
    /// it had just been created.
    pub fn reset(&mut self) {
        self.history.clear();
        self.rng = Rng::new(self.params.seed);
    }

    /// Picks the next token from `logits` ([n_vocab]); see the module docs
    /// for the chain. Does not record the token (see [`Sampler::accept`]).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if logits.is_empty() {
            return 0;
        }
        let penalties = self.params.penalties_on() && !self.history.is_empty();
        if self.params.is_greedy() && !penalties {
            return argmax(logits);
        }

        self.logits.clear();
        self.logits.extend(logits.iter().map(|&l| clean(l)));
        if penalties {
            self.apply_penalties();
        }
        if self.params.is_greedy() {
            return argmax(&self.logits);
        }
        if !pin_infinities(&mut self.logits) {
            return 0; // every logit is -inf
        }

        let p = &self.params;
        let cand = &mut self.cand;
        cand.clear();
        self.weights.resize(self.logits.len(), 0.0);
        // From here `cand` is either in id order or in rank order (a total
        // order): both are fixed, so the sums below are reproducible.
        let mut sorted = false;
        if p.top_k > 0 && p.top_k < self.logits.len() {
            top_k(&self.logits, p.top_k, &mut self.heap, cand);
            sorted = true;
        } else {
            let keys = self.logits.iter().enumerate();
            cand.extend(keys.map(|(i, &l)| rank_key(i as u32, l)));
        }
        if p.top_p < 1.0 {
            top_p(cand, &mut self.weights, p.top_p, p.min_p, sorted);
        }
        if p.min_p > 0.0 {
            min_p(cand, p.min_p);
        }
        let u = self.rng.next_f64();
        draw(cand, &mut self.weights, p.temperature, u)
    }

    /// Step 1 of the chain, on `self.logits`.
    fn apply_penalties(&mut self) {
        let p = &self.params;
        self.counts.clear();
        self.counts.extend(self.history.iter().copied());
        self.counts.sort_unstable();
        for run in self.counts.chunk_by(|a, b| a == b) {
            let Some(l) = self.logits.get_mut(run[0] as usize) else {
                continue; // out of this vocabulary: nothing to penalise
            };
            if *l <= 0.0 {
                *l *= p.repeat_penalty;
            } else {
                *l /= p.repeat_penalty;
            }
            *l -= run.len() as f32 * p.frequency_penalty + p.presence_penalty;
            *l = clean(*l);
        }
    }
}

/// Index of the largest logit; NaN counts as -inf, ties go to the lowest id,
/// and empty or all-NaN input gives 0.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0u32;
    let mut best_l = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        // NaN compares false, so it never wins.
        if l > best_l {
            best = i as u32;
            best_l = l;
        }
    }
    best
}

/// NaN -> -inf, -0.0 -> +0.0: every logit past this is a plain number.
fn clean(l: f32) -> f32 {
    if l.is_nan() {
        f32::NEG_INFINITY
    } else if l == 0.0 {
        0.0
    } else {
        l
    }
}

/// A candidate as one `u64` whose ascending order is rank order: logit
/// descending in the high half, id ascending in the low half. This is a
/// total order, so every sort by it gives the same permutation on every
/// platform and toolchain, and comparing two keys is one integer compare.
fn rank_key(id: u32, logit: f32) -> u64 {
    let b = logit.to_bits();
    // Map the float's order onto u32 order, then reverse it.
    let ascending = if b >> 31 == 1 { !b } else { b | 0x8000_0000 };
    ((!ascending as u64) << 32) | id as u64
}

fn key_id(key: u64) -> u32 {
    key as u32
}

fn key_logit(key: u64) -> f32 {
    let ascending = !((key >> 32) as u32);
    let b = if ascending >> 31 == 1 {
        ascending & 0x7FFF_FFFF
    } else {
        !ascending
    };
    f32::from_bits(b)
}

/// If any logit is +inf, those tokens share the draw evenly: they become 0
/// and every other logit -inf. Returns false if every logit is -inf.
fn pin_infinities(logits: &mut [f32]) -> bool {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l));
    if max == f32::INFINITY {
        for l in logits.iter_mut() {
            *l = if *l == f32::INFINITY {
                0.0
            } else {
                f32::NEG_INFINITY
            };
        }
    }
    max != f32::NEG_INFINITY
}

fn max_logit(cand: &[u64]) -> f32 {
    cand.iter()
        .fold(f32::NEG_INFINITY, |m, &k| m.max(key_logit(k)))
}

/// Step 2: the `k` best tokens of `logits` into `cand`, in rank order.
///
/// One pass with a bounded heap: most tokens cost one float comparison
/// against the worst kept logit, and nothing of size n_vocab is built. A
/// later token with the same logit as the worst kept one has a higher id,
/// so it ranks lower and is rightly skipped.
fn top_k(logits: &[f32], k: usize, heap: &mut BinaryHeap<u64>, cand: &mut Vec<u64>) {
    heap.clear();
    let mut worst = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        if heap.len() < k {
            heap.push(rank_key(i as u32, l));
            if heap.len() == k {
                worst = heap.peek().map_or(worst, |&w| key_logit(w));
            }
        } else if l > worst {
            if let Some(mut top) = heap.peek_mut() {
                *top = rank_key(i as u32, l);
            }
            worst = heap.peek().map_or(worst, |&w| key_logit(w));
        }
    }
    cand.extend(heap.drain());
    cand.sort_unstable();
}

/// Sets `weights[id]` to `exp((logit - max) / temperature)` for each
/// candidate; returns their sum, added in `cand` order.
fn weigh(cand: &[u64], weights: &mut [f64], temperature: f64) -> f64 {
    let max = max_logit(cand) as f64;
    let mut sum = 0.0;
    for &k in cand {
        let w = det::exp((key_logit(k) as f64 - max) / temperature);
        weights[key_id(k) as usize] = w;
        sum += w;
    }
    sum
}

/// Step 3: the shortest best-first prefix whose probability reaches `p`.
fn top_p(cand: &mut Vec<u64>, weights: &mut [f64], p: f32, min_p: f32, sorted: bool) {
    let sum = weigh(cand, weights, 1.0);
    let target = p as f64 * sum;
    if !sorted {
        // Sort less. Weight-zero tokens can never be needed to reach `p`,
        // and min-p comes next: the two steps each keep a prefix of the same
        // ranking, at thresholds relative to the same best token, so
        // dropping min-p's rejects now changes nothing. `sum` stays the one
        // over every candidate, as top-p defines it.
        let floor = min_p as f64;
        cand.retain(|&k| {
            let w = weights[key_id(k) as usize];
            w > 0.0 && w >= floor
        });
        // Then sort only a best prefix, growing it until it holds the
        // nucleus (llama.cpp does the same). Rank order is total, so the
        // sorted prefix is the same whatever its length.
        let mut m = 256;
        while m < cand.len() {
            cand.select_nth_unstable(m - 1);
            cand[..m].sort_unstable();
            if let Some(keep) = nucleus(&cand[..m], weights, target) {
                cand.truncate(keep);
                return;
            }
            m *= 8;
        }
        cand.sort_unstable();
    }
    if let Some(keep) = nucleus(cand, weights, target) {
        cand.truncate(keep);
    }
}

/// Length of the shortest prefix of `sorted` whose weights reach `target`.
fn nucleus(sorted: &[u64], weights: &[f64], target: f64) -> Option<usize> {
    let mut cum = 0.0;
    for (i, &k) in sorted.iter().enumerate() {
        cum += weights[key_id(k) as usize];
        if cum >= target {
            return Some(i + 1);
        }
    }
    None
}

/// Step 4: keep tokens with probability >= `min_p` times the best one's.
fn min_p(cand: &mut Vec<u64>, min_p: f32) {
    let max = max_logit(cand) as f64;
    let floor = min_p as f64;
    cand.retain(|&k| det::exp(key_logit(k) as f64 - max) >= floor);
}

/// Steps 5 and 6: temperature, softmax, and the draw for `u` in `[0, 1)`.
/// `cand` must not be empty.
fn draw(cand: &[u64], weights: &mut [f64], temperature: f32, u: f64) -> u32 {
    let sum = weigh(cand, weights, temperature as f64);
    let target = u * sum;
    let mut cum = 0.0;
    let mut last = key_id(cand[0]);
    for &k in cand {
        let w = weights[key_id(k) as usize];
        if w > 0.0 {
            cum += w;
            last = key_id(k);
            if target < cum {
                return last;
            }
        }
    }
    // Only reachable if `u * sum` rounded up to `sum`.
    last
}
