//! Rotary position embeddings, in the two layouts GGUF models use, with
//! linear position scaling, per-pair frequency factors and YaRN.

/// How the rotated pairs are laid out inside a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Adjacent pairs `(x[2i], x[2i+1])` (llama.cpp's "normal" mode).
    Normal,
    /// Halves `(x[i], x[i + n_rot/2])` (GPT-NeoX style).
    Neox,
}

/// RoPE parameters of one attention layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    pub layout: RopeLayout,
    /// Number of leading dimensions of each head that are rotated.
    pub n_rot: usize,
    pub freq_base: f32,
    /// Positions are multiplied by this (1.0 = no linear scaling).
    pub freq_scale: f32,
    /// Optional per-pair frequency divisors (`rope_freqs.weight`), `n_rot/2`.
    pub freq_factors: Option<Vec<f32>>,
    /// YaRN's ramp and magnitude scaling (ggml's `ext_factor`,
    /// `attn_factor`, `beta_fast`, `beta_slow`, `n_ctx_orig`); `None`: plain
    /// RoPE (ggml's `ext_factor = 0`, `attn_factor = 1`).
    pub yarn: Option<Yarn>,
}

/// The YaRN parameters of ggml's `rope_ext`. With `ext_factor = 0` only
/// `attn_factor` acts (cos and sin are multiplied by it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yarn {
    /// Weight of the extrapolated angle in the ramp's mix (1 for YaRN).
    pub ext_factor: f32,
    /// Multiplies cos and sin (llama.cpp's `yarn_attn_factor`).
    pub attn_factor: f32,
    /// Rotations over the original context above which a pair keeps its
    /// extrapolated angle (default 32).
    pub beta_fast: f32,
    /// Rotations below which a pair takes its interpolated angle
    /// (default 1).
    pub beta_slow: f32,
    /// The context length the model was trained with before scaling.
    pub n_ctx_orig: usize,
}

impl Yarn {
    /// The first and last pair dimensions of the ramp, as
    /// `ggml_rope_yarn_corr_dims` computes them.
    pub fn corr_dims(&self, n_rot: usize, freq_base: f32) -> [f32; 2] {
        let dim = |beta: f32| {
            n_rot as f32 * (self.n_ctx_orig as f32 / (beta * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * freq_base.ln())
        };
        let start = dim(self.beta_fast).floor();
        let end = dim(self.beta_slow).ceil();
        [start.max(0.0), end.min((n_rot - 1) as f32)]
    }

    /// cos and sin of pair `i` (element `2i` of the head) whose unscaled
    /// angle is `extrap`, in the steps of ggml's `rope_yarn` as its x86-64
    /// build compiles them (the first product of a sum fused with it).
    fn cos_sin(&self, extrap: f32, freq_scale: f32, corr: [f32; 2], i: usize) -> (f32, f32) {
        let interp = freq_scale * extrap;
        let mut theta = interp;
        let mut mscale = self.attn_factor;
        if self.ext_factor != 0.0 {
            let y = (i as f32 - corr[0]) / (corr[1] - corr[0]).max(0.001);
            let ramp = 1.0 - y.clamp(0.0, 1.0);
            let mix = ramp * self.ext_factor;
            theta = interp.mul_add(1.0 - mix, extrap * mix);
            mscale *= 0.1f32.mul_add((1.0 / freq_scale).ln(), 1.0);
        }
        (theta.cos() * mscale, theta.sin() * mscale)
    }
}

impl Rope {
    /// cos/sin for every rotated pair at position `pos`, into `cs`
    /// (`n_rot` values: cos, sin, cos, sin, ...). The angle for pair `i` is
    /// built by repeated multiplication, in f32, as ggml builds it.
    pub fn angles(&self, pos: usize, cs: &mut [f32]) {
        let theta_scale = self.freq_base.powf(-2.0 / self.n_rot as f32);
        let corr = self
            .yarn
            .map_or([0.0; 2], |y| y.corr_dims(self.n_rot, self.freq_base));
        let mut theta = pos as f32;
        for i in 0..self.n_rot / 2 {
            let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
            let (c, s) = match &self.yarn {
                None => {
                    let t = self.freq_scale * (theta / ff);
                    (t.cos(), t.sin())
                }
                Some(y) => y.cos_sin(theta / ff, self.freq_scale, corr, i),
            };
            cs[2 * i] = c;
            cs[2 * i + 1] = s;
            theta *= theta_scale;
        }
    }

    /// Rotate every head of every token in place. `x` is
    /// `[n_tokens][n_heads * head_dim]`; `positions[t]` is token t's position.
    pub fn apply(&self, x: &mut [f32], n_heads: usize, head_dim: usize, positions: &[usize]) {
        // cos/sin of one position: on the stack for every head size in use.
        let mut stack = [0f32; 512];
        let mut heap = Vec::new();
        let cs: &mut [f32] = if self.n_rot <= stack.len() {
            &mut stack[..self.n_rot]
        } else {
            heap.resize(self.n_rot, 0.0);
            &mut heap
        };
        let width = n_heads * head_dim;
        for (row, &pos) in x.chunks_exact_mut(width).zip(positions) {
            self.angles(pos, cs);
            for head in row.chunks_exact_mut(head_dim) {
                self.rotate(head, cs);
            }
        }
    }

    fn rotate(&self, head: &mut [f32], cs: &[f32]) {
        let half = self.n_rot / 2;
        for i in 0..half {
            let (c, s) = (cs[2 * i], cs[2 * i + 1]);
            let (a, b) = match self.layout {
                RopeLayout::Normal => (2 * i, 2 * i + 1),
                RopeLayout::Neox => (i, i + half),
            };
            let (x0, x1) = (head[a], head[b]);
            // ggml's `rotate_pairs`, `x0*c - x1*s` and `x0*s + x1*c`, as its
            // x86-64 build compiles them: the first product fused with the
            // subtraction / addition of the (rounded) second one.
            head[a] = x0.mul_add(c, -(x1 * s));
            head[b] = x0.mul_add(s, x1 * c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(layout: RopeLayout) -> Rope {
        Rope {
            layout,
            n_rot: 4,
            freq_base: 10000.0,
            freq_scale: 1.0,
            freq_factors: None,
            yarn: None,
        }
    }

    #[test]
    fn position_zero_is_identity_and_norm_is_kept() {
        for layout in [RopeLayout::Normal, RopeLayout::Neox] {
            let r = rope(layout);
            let mut x = vec![1.0, 2.0, 3.0, 4.0, 5.0];
            r.apply(&mut x, 1, 5, &[0]);
            assert_eq!(x, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
            r.apply(&mut x, 1, 5, &[7]);
            let n: f32 = x[..4].iter().map(|v| v * v).sum();
            assert!((n - 30.0).abs() < 1e-4);
            assert_eq!(x[4], 5.0, "dimensions past n_rot are not rotated");
        }
    }

    #[test]
    fn layouts_pair_different_elements() {
        let mut a = vec![1.0, 0.0, 0.0, 0.0];
        rope(RopeLayout::Normal).apply(&mut a, 1, 4, &[1]);
        assert!(a[1].abs() > 0.5 && a[2] == 0.0);
        let mut b = vec![1.0, 0.0, 0.0, 0.0];
        rope(RopeLayout::Neox).apply(&mut b, 1, 4, &[1]);
        assert!(b[2].abs() > 0.5 && b[1] == 0.0);
    }
}
