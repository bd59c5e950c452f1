//! Normalisation.

/// RMSNorm of each `width`-wide row of `x` in place, then scaled by `w`:
/// `x = x / sqrt(mean(x^2) + eps) * w`. The sum of squares is accumulated in
/// f64, as ggml does.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    let width = w.len();
    for row in x.chunks_exact_mut(width) {
        let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let mean = (sum / width as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for (v, &g) in row.iter_mut().zip(w) {
            *v = (*v * scale) * g;
        }
    }
}

/// RMSNorm into a separate output buffer (`out` has the shape of `x`).
pub fn rms_norm_into(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    out.copy_from_slice(x);
    rms_norm(out, w, eps);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_rows_come_out_scaled_by_weight() {
        let mut x = vec![2.0f32, -2.0, 2.0, -2.0, 1.0, 1.0, 1.0, 1.0];
        rms_norm(&mut x, &[1.0, 2.0, 3.0, 4.0], 0.0);
        assert_eq!(x, vec![1.0, -2.0, 3.0, -4.0, 1.0, 2.0, 3.0, 4.0]);
    }
}
