//! The key/value cache of one session, for the layers a model (or shard)
//! holds. Entries are stored as f16, position-major, and grow on demand up to
//! the session's context limit, so an idle session costs little memory.

use half::f16;

use crate::{Error, Result};

/// Keys and values of past positions for each layer.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Width of one position's keys: n_kv_heads * key_length.
    k_width: usize,
    /// Width of one position's values: n_kv_heads * value_length.
    v_width: usize,
    /// Most positions this cache may hold.
    max_positions: usize,
    /// Positions filled, the same in every layer once a forward completes.
    len: usize,
    /// Per layer: `[position][k_width]`.
    k: Vec<Vec<f16>>,
    /// Per layer: `[position][v_width]`.
    v: Vec<Vec<f16>>,
}

/// Positions the cache grows by at a time.
pub(crate) const GROW_POSITIONS: usize = 256;

impl KvCache {
    pub fn new(n_layers: usize, k_width: usize, v_width: usize, max_positions: usize) -> KvCache {
        KvCache {
            k_width,
            v_width,
            max_positions,
            len: 0,
            k: vec![Vec::new(); n_layers],
            v: vec![Vec::new(); n_layers],
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Layers held.
    pub fn n_layers(&self) -> usize {
        self.k.len()
    }

    /// Width of one position's keys in one layer.
    pub fn k_width(&self) -> usize {
        self.k_width
    }

    /// Width of one position's values in one layer.
    pub fn v_width(&self) -> usize {
        self.v_width
    }

    /// The context limit.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Bytes one position costs across all layers.
    pub fn bytes_per_position(&self) -> usize {
        self.k.len() * (self.k_width + self.v_width) * std::mem::size_of::<f16>()
    }

    /// Bytes currently allocated.
    pub fn allocated_bytes(&self) -> usize {
        let k: usize = self.k.iter().map(|l| l.capacity()).sum();
        let v: usize = self.v.iter().map(|l| l.capacity()).sum();
        (k + v) * std::mem::size_of::<f16>()
    }

    /// Check that `n` more positions starting at `pos` fit.
    pub fn check_room(&self, pos: usize, n: usize) -> Result<()> {
        let needed = pos.saturating_add(n);
        if needed > self.max_positions {
            return Err(Error::ContextFull {
                needed,
                limit: self.max_positions,
            });
        }
        if pos > self.len {
            return Err(Error::invalid(
                "position",
                format!(
                    "position {pos} leaves a gap: the cache holds positions 0..{}",
                    self.len
                ),
            ));
        }
        Ok(())
    }

    /// Forget every position from `pos` on (rollback).
    pub fn truncate(&mut self, pos: usize) {
        if pos >= self.len {
            return;
        }
        for l in &mut self.k {
            l.truncate(pos * self.k_width);
        }
        for l in &mut self.v {
            l.truncate(pos * self.v_width);
        }
        self.len = pos;
    }

    /// Forget everything and release the memory.
    pub fn clear(&mut self) {
        for l in self.k.iter_mut().chain(self.v.iter_mut()) {
            *l = Vec::new();
        }
        self.len = 0;
    }

    /// Store keys and values (`[n][k_width]`, `[n][v_width]`) of layer `layer`
    /// for positions `pos..pos+n`. Room must have been checked.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let n = k.len() / self.k_width;
        debug_assert!(pos + n <= self.max_positions);
        let (kl, vl) = (&mut self.k[layer], &mut self.v[layer]);
        kl.truncate(pos * self.k_width);
        vl.truncate(pos * self.v_width);
        // Grow by whole chunks of positions (never past the limit), so that
        // decode steps between chunk boundaries allocate nothing.
        let want = (pos + n)
            .next_multiple_of(GROW_POSITIONS)
            .min(self.max_positions);
        for (l, width) in [(&mut *kl, self.k_width), (&mut *vl, self.v_width)] {
            if l.capacity() < (pos + n) * width {
                l.reserve_exact(want.max(pos + n) * width - l.len());
            }
        }
        kl.extend(k.iter().map(|&x| f16::from_f32(x)));
        vl.extend(v.iter().map(|&x| f16::from_f32(x)));
    }

    /// Mark positions up to `len` as filled in every layer.
    pub fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// Keys of one layer, `[positions][k_width]`.
    pub fn keys(&self, layer: usize) -> &[f16] {
        &self.k[layer]
    }

    /// Values of one layer, `[positions][v_width]`.
    pub fn values(&self, layer: usize) -> &[f16] {
        &self.v[layer]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_truncate_and_limits() {
        let mut c = KvCache::new(2, 4, 4, 3);
        c.check_room(0, 3).unwrap();
        assert!(matches!(c.check_room(0, 4), Err(Error::ContextFull { .. })));
        for l in 0..2 {
            c.store(l, 0, &[1.0; 8], &[2.0; 8]);
        }
        c.set_len(2);
        assert_eq!(c.keys(1).len(), 8);
        assert!(c.check_room(3, 0).is_err(), "a gap is refused");
        c.truncate(1);
        assert_eq!(c.len(), 1);
        assert_eq!(c.values(0).len(), 4);
        assert_eq!(c.bytes_per_position(), 2 * 8 * 2);
    }
}
