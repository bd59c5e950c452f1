//! Causal multi-head attention with grouped-query heads over an f16 KV cache.
//!
//! Arithmetic follows ggml's non-fused attention: the query is rounded to f16
//! before `q·k`, the softmax sums in f64, and the probabilities are rounded
//! to f16 before weighting the values.

use half::f16;
use rayon::prelude::*;

/// Shape and options of one attention layer.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    /// Length of a query/key head.
    pub k_dim: usize,
    /// Length of a value head.
    pub v_dim: usize,
    /// Factor on `q·k` before the softmax (usually 1/sqrt(k_dim)).
    pub scale: f32,
    /// Attend only to the last `window` positions (sliding-window layers).
    pub window: Option<usize>,
    /// `cap * tanh(s / cap)` on the scaled scores, if set.
    pub softcap: Option<f32>,
}

/// `out[t][h*v_dim..]` = attention of query `q[t][h*k_dim..]` over cache
/// positions `0..=positions[t]` (restricted to the window, if any).
/// `keys`/`values` are `[position][n_kv_head * dim]`.
pub fn attention(
    shape: &AttentionShape,
    q: &[f32],
    keys: &[f16],
    values: &[f16],
    positions: &[usize],
    out: &mut [f32],
) {
    let s = shape;
    let group = s.n_head / s.n_kv_head;
    let (kw, vw) = (s.n_kv_head * s.k_dim, s.n_kv_head * s.v_dim);
    out.par_chunks_mut(s.v_dim).enumerate().for_each(|(i, o)| {
        let (t, h) = (i / s.n_head, i % s.n_head);
        let kvh = h / group;
        let pos = positions[t];
        let first = match s.window {
            Some(w) => (pos + 1).saturating_sub(w),
            None => 0,
        };
        let qh: Vec<f32> = q[t * s.n_head * s.k_dim + h * s.k_dim..][..s.k_dim]
            .iter()
            .map(|&x| f16::from_f32(x).to_f32())
            .collect();
        let mut scores: Vec<f32> = (first..=pos)
            .map(|j| {
                let k = &keys[j * kw + kvh * s.k_dim..][..s.k_dim];
                let mut acc = 0f32;
                for (a, b) in qh.iter().zip(k) {
                    acc += a * b.to_f32();
                }
                let mut x = acc * s.scale;
                if let Some(cap) = s.softcap {
                    x = cap * (x / cap).tanh();
                }
                x
            })
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f64;
        for x in scores.iter_mut() {
            *x = (*x - max).exp();
            sum += *x as f64;
        }
        let inv = (1.0 / sum) as f32;
        o.fill(0.0);
        for (j, p) in (first..=pos).zip(&scores) {
            let p = f16::from_f32(p * inv).to_f32();
            let v = &values[j * vw + kvh * s.v_dim..][..s.v_dim];
            for (acc, x) in o.iter_mut().zip(v) {
                *acc += p * x.to_f32();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[f32]) -> Vec<f16> {
        v.iter().map(|&x| f16::from_f32(x)).collect()
    }

    #[test]
    fn single_position_returns_its_value_and_gqa_shares_heads() {
        let shape = AttentionShape {
            n_head: 2,
            n_kv_head: 1,
            k_dim: 2,
            v_dim: 2,
            scale: 1.0,
            window: None,
            softcap: None,
        };
        let mut out = vec![0.0; 4];
        attention(
            &shape,
            &[1.0, 0.0, 0.0, 1.0],
            &h(&[1.0, 1.0]),
            &h(&[3.0, -1.0]),
            &[0],
            &mut out,
        );
        assert_eq!(out, vec![3.0, -1.0, 3.0, -1.0]);
    }

    #[test]
    fn causal_mask_and_window() {
        let shape = AttentionShape {
            n_head: 1,
            n_kv_head: 1,
            k_dim: 1,
            v_dim: 1,
            scale: 1.0,
            window: None,
            softcap: None,
        };
        let keys = h(&[0.0, 0.0, 0.0]);
        let values = h(&[1.0, 2.0, 6.0]);
        let mut out = vec![0.0; 3];
        attention(
            &shape,
            &[1.0, 1.0, 1.0],
            &keys,
            &values,
            &[0, 1, 2],
            &mut out,
        );
        assert_eq!(out, vec![1.0, 1.5, 3.0]);
        let windowed = AttentionShape {
            window: Some(2),
            ..shape
        };
        attention(
            &windowed,
            &[1.0, 1.0, 1.0],
            &keys,
            &values,
            &[0, 1, 2],
            &mut out,
        );
        assert_eq!(out, vec![1.0, 1.5, 4.0]);
    }
}
