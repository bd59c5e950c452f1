//! Log-probabilities of sampled tokens.

use super::Logprob;

/// The log-softmax of `logits` (at temperature 1) at `chosen`, and the `k`
/// most likely tokens with theirs, best first (ties to the lower id).
/// Tokens with no probability (`-inf` or NaN logits, e.g. masked by a
/// constraint) are never listed.
pub(super) fn logprob(logits: &[f32], chosen: u32, k: usize) -> Logprob {
    let max = logits
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        // No finite logit (or +inf ones): no meaningful distribution.
        return Logprob {
            logprob: 0.0,
            top: Vec::new(),
        };
    }
    let sum: f64 = logits
        .iter()
        .filter(|x| !x.is_nan())
        .map(|&x| f64::from(x - max).exp())
        .sum();
    let lse = f64::from(max) + sum.ln();
    let of = |x: f32| {
        if x.is_nan() {
            f32::NEG_INFINITY
        } else {
            (f64::from(x) - lse) as f32
        }
    };
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (t, &x) in logits.iter().enumerate() {
            if !(x > f32::NEG_INFINITY) {
                continue;
            }
            let worse = |a: &(u32, f32)| a.1 < x || (a.1 == x && a.0 > t as u32);
            if top.len() < k || top.last().is_some_and(worse) {
                let at = top.iter().position(worse).unwrap_or(top.len());
                top.insert(at, (t as u32, x));
                top.truncate(k);
            }
        }
    }
    Logprob {
        logprob: logits
            .get(chosen as usize)
            .map_or(f32::NEG_INFINITY, |&x| of(x)),
        top: top.into_iter().map(|(t, x)| (t, of(x))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_and_the_best_alternatives() {
        let l = [1.0f32, 3.0, f32::NEG_INFINITY, 3.0, 0.5];
        let p = logprob(&l, 4, 3);
        let z: f64 = l.iter().map(|&x| f64::from(x).exp()).sum();
        assert!((f64::from(p.logprob) - (0.5 - z.ln())).abs() < 1e-6);
        let ids: Vec<u32> = p.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, [1, 3, 0], "best first, ties to the lower id");
        let sum: f64 = (0..5)
            .map(|t| f64::from(logprob(&l, t, 0).logprob).exp())
            .sum();
        assert!((sum - 1.0).abs() < 1e-6, "probabilities sum to 1: {sum}");
        assert_eq!(logprob(&l, 2, 0).logprob, f32::NEG_INFINITY);
        assert_eq!(logprob(&l, 0, 10).top.len(), 4, "-inf is never listed");
    }
}
