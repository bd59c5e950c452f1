//! Memory estimates and partition planning: how much a layer range needs
//! before loading it, and which contiguous ranges to give a set of nodes so
//! that each fits in memory and the slowest stage is as fast as possible.

use std::ops::Range;

use super::split::tensor_in_range;
use crate::gguf::GgufFile;
use crate::{Error, Result};

/// Memory a shard needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Bytes of weights mapped (and paged in as they are used).
    pub weight_bytes: u64,
    /// KV cache bytes per position of context (f16 keys and values).
    pub kv_bytes_per_token: u64,
    /// Weight bytes one decode step reads: `weight_bytes` less the experts
    /// a token does not use (equal to `weight_bytes` for a dense model).
    pub active_bytes: u64,
}

impl MemoryEstimate {
    /// Total for a context of `n_ctx` positions. It saturates at
    /// `u64::MAX` bytes, which no node has, rather than wrap to a small
    /// number that would fit.
    pub fn total(&self, n_ctx: usize) -> u64 {
        self.kv_bytes_per_token
            .saturating_mul(n_ctx as u64)
            .saturating_add(self.weight_bytes)
    }
}

/// Per-layer costs of a model, read from its header only.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCost {
    pub n_layer: usize,
    /// Weight bytes of each block.
    pub layer_bytes: Vec<u64>,
    /// Embedding bytes (first shard; also last when the head is tied).
    pub embed_bytes: u64,
    /// Output norm and head bytes (last shard; head excluded when tied).
    pub head_bytes: u64,
    pub tied: bool,
    pub kv_bytes_per_token_per_layer: u64,
    /// Mixture-of-experts models: bytes of each block's stacked expert
    /// tensors (`blk.N.ffn_*_exps`), all zero for a dense model.
    pub expert_layer_bytes: Vec<u64>,
    /// `{arch}.expert_count` (0: dense).
    pub n_expert: usize,
    /// `{arch}.expert_used_count`.
    pub n_expert_used: usize,
}

impl ModelCost {
    pub fn from_gguf(file: &GgufFile) -> Result<ModelCost> {
        let arch = file.get_str("general.architecture")?;
        let key = |k: &str| format!("{arch}.{k}");
        let n_layer = file.get_usize_max(&key("block_count"), 1 << 20)?;
        let n_embd = file.get_usize_max(&key("embedding_length"), 1 << 24)? as u64;
        let n_head = file
            .get_usize_max(&key("attention.head_count"), 1 << 20)?
            .max(1) as u64;
        let n_kv = file
            .get(&key("attention.head_count_kv"))
            .and_then(|v| v.as_u64())
            .unwrap_or(n_head);
        let kd = file
            .get(&key("attention.key_length"))
            .and_then(|v| v.as_u64())
            .unwrap_or(n_embd / n_head);
        let vd = file
            .get(&key("attention.value_length"))
            .and_then(|v| v.as_u64())
            .unwrap_or(kd);
        // Head counts and head sizes are unbounded metadata: their product
        // is checked, for one layer and for all of them, so that estimates
        // below cannot wrap.
        let kv_bytes_per_token_per_layer = kd
            .checked_add(vd)
            .and_then(|d| d.checked_mul(n_kv))
            .and_then(|v| v.checked_mul(2))
            .filter(|v| v.checked_mul(n_layer as u64).is_some())
            .ok_or_else(|| Error::Malformed {
                offset: 0,
                reason: format!(
                    "KV cache size overflows: {n_layer} layers of {n_kv} KV heads \
                     with keys of {kd} and values of {vd}"
                ),
            })?;
        let opt = |k: &str| file.get(&key(k)).and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        let (n_expert, n_expert_used) = (opt("expert_count"), opt("expert_used_count"));
        if n_expert_used > n_expert {
            return Err(Error::Malformed {
                offset: 0,
                reason: format!("{n_expert_used} experts used per token of {n_expert}"),
            });
        }
        let mut expert_layer_bytes = vec![0u64; n_layer];
        let tied = file.tensor("output.weight").is_none();
        // Tensor sizes need no check: the reader keeps tensors apart and
        // inside the file, so their sums are at most its length.
        let mut layer_bytes = vec![0u64; n_layer];
        let (mut embed_bytes, mut head_bytes) = (0, 0);
        for t in file.tensors() {
            let all = 0..n_layer;
            if t.name == "token_embd.weight" {
                embed_bytes = t.size;
            } else if tensor_in_range(
                &t.name,
                &(n_layer.saturating_sub(1)..n_layer),
                n_layer,
                tied,
            ) && !t.name.starts_with("blk.")
            {
                head_bytes += t.size;
            } else if let Some(i) = t
                .name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next())
                .and_then(|i| i.parse::<usize>().ok())
            {
                if all.contains(&i) {
                    layer_bytes[i] += t.size;
                    if n_expert > 0 && t.name.ends_with("_exps.weight") {
                        expert_layer_bytes[i] += t.size;
                    }
                }
            }
        }
        Ok(ModelCost {
            n_layer,
            layer_bytes,
            embed_bytes,
            head_bytes,
            tied,
            kv_bytes_per_token_per_layer,
            expert_layer_bytes,
            n_expert,
            n_expert_used,
        })
    }

    /// Bytes of the experts a token does not use in the layers `r`.
    fn idle_expert_bytes(&self, r: &Range<usize>) -> u64 {
        if self.n_expert == 0 {
            return 0;
        }
        let idle = (self.n_expert - self.n_expert_used.min(self.n_expert)) as u128;
        self.expert_layer_bytes
            .get(r.clone())
            .unwrap_or(&[])
            .iter()
            .map(|&b| (b as u128 * idle / self.n_expert as u128) as u64)
            .fold(0, u64::saturating_add)
    }

    /// Memory for the layer range `r`. Sums saturate (see
    /// [`MemoryEstimate::total`]): the fields are public, so a hand-made
    /// cost may hold anything.
    pub fn estimate(&self, r: &Range<usize>) -> MemoryEstimate {
        let sum = |a: u64, b: &u64| a.saturating_add(*b);
        let mut w: u64 = self.layer_bytes[r.clone()].iter().fold(0, sum);
        let (first, last) = (r.start == 0, r.end == self.n_layer);
        if first || (last && self.tied) {
            w = w.saturating_add(self.embed_bytes);
        }
        if last {
            w = w.saturating_add(self.head_bytes);
        }
        MemoryEstimate {
            active_bytes: w.saturating_sub(self.idle_expert_bytes(r)),
            weight_bytes: w,
            kv_bytes_per_token: self
                .kv_bytes_per_token_per_layer
                .saturating_mul(r.len() as u64),
        }
    }
}

/// A node offered to the planner.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    /// Memory available for the shard (bytes).
    pub free_bytes: u64,
    /// Relative speed: bytes of weights the node streams per second (decode
    /// is bound by weight reads), any consistent unit.
    pub speed: f64,
}

/// One node's part of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub node: String,
    pub layers: Range<usize>,
    pub memory: MemoryEstimate,
    /// Bytes a decode step reads (`memory.active_bytes`) / speed: the
    /// stage's relative time per token.
    pub stage_time: f64,
}

/// Contiguous ranges for `nodes`, in the given pipeline order, that fit each
/// node's memory (weights plus a context of `n_ctx`) and minimise the
/// slowest stage's time. Nodes may be left without layers.
pub fn plan(cost: &ModelCost, nodes: &[NodeSpec], n_ctx: usize) -> Result<Vec<Assignment>> {
    if nodes.is_empty() {
        return Err(Error::invalid("nodes", "at least one node is needed"));
    }
    if let Some(n) = nodes
        .iter()
        .find(|n| !(n.speed > 0.0 && n.speed.is_finite()))
    {
        return Err(Error::invalid(
            "speed",
            format!("node {} has speed {}", n.name, n.speed),
        ));
    }
    // Greedy fill under a bound on stage time; binary search the bound.
    let assign = |bound: f64| -> Option<Vec<Assignment>> {
        let mut out = Vec::new();
        let mut start = 0;
        for n in nodes {
            if start == cost.n_layer {
                break;
            }
            let mut end = start;
            while end < cost.n_layer {
                let m = cost.estimate(&(start..end + 1));
                if m.total(n_ctx) > n.free_bytes || m.active_bytes as f64 / n.speed > bound {
                    break;
                }
                end += 1;
            }
            if end > start {
                let m = cost.estimate(&(start..end));
                out.push(Assignment {
                    node: n.name.clone(),
                    layers: start..end,
                    memory: m,
                    stage_time: m.active_bytes as f64 / n.speed,
                });
                start = end;
            }
        }
        (start == cost.n_layer).then_some(out)
    };
    let total: u64 = cost.estimate(&(0..cost.n_layer)).active_bytes;
    let slowest = nodes.iter().map(|n| n.speed).fold(f64::INFINITY, f64::min);
    let (mut lo, mut hi) = (0.0, total as f64 / slowest * 1.0001 + 1.0);
    let mut best = assign(hi).ok_or_else(|| {
        Error::invalid(
            "nodes",
            "the nodes' memory cannot hold the model with this context",
        )
    })?;
    for _ in 0..64 {
        let mid = (lo + hi) / 2.0;
        match assign(mid) {
            Some(p) => {
                best = p;
                hi = mid;
            }
            None => lo = mid,
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost() -> ModelCost {
        ModelCost {
            n_layer: 12,
            layer_bytes: vec![100; 12],
            embed_bytes: 50,
            head_bytes: 10,
            tied: true,
            kv_bytes_per_token_per_layer: 1,
            expert_layer_bytes: vec![0; 12],
            n_expert: 0,
            n_expert_used: 0,
        }
    }

    fn node(name: &str, free: u64, speed: f64) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            free_bytes: free,
            speed,
        }
    }

    /// Experts a token does not use count for memory, not for stage time.
    #[test]
    fn idle_experts_are_memory_but_not_time() {
        let mut c = cost();
        c.expert_layer_bytes = vec![80; 12];
        (c.n_expert, c.n_expert_used) = (8, 2);
        let m = c.estimate(&(2..4));
        assert_eq!(m.weight_bytes, 200);
        assert_eq!(m.active_bytes, 200 - 2 * 60);
        let p = plan(&c, &[node("a", 10_000, 1.0)], 16).unwrap();
        assert_eq!(p[0].memory.weight_bytes, 1260);
        assert_eq!(p[0].stage_time, (1260 - 12 * 60) as f64);
    }

    #[test]
    fn equal_nodes_get_equal_ranges() {
        let p = plan(
            &cost(),
            &[
                node("a", 10_000, 1.0),
                node("b", 10_000, 1.0),
                node("c", 10_000, 1.0),
            ],
            0,
        )
        .unwrap();
        let lens: Vec<usize> = p.iter().map(|a| a.layers.len()).collect();
        assert_eq!(lens.iter().sum::<usize>(), 12);
        assert!(lens.iter().all(|&l| (3..=5).contains(&l)), "{lens:?}");
    }

    #[test]
    fn faster_node_gets_more_and_memory_is_respected() {
        let p = plan(
            &cost(),
            &[node("fast", 10_000, 3.0), node("slow", 10_000, 1.0)],
            0,
        )
        .unwrap();
        assert!(p[0].layers.len() > p[1].layers.len());
        let p = plan(
            &cost(),
            &[node("small", 360, 100.0), node("big", 10_000, 1.0)],
            10,
        )
        .unwrap();
        assert!(p[0].memory.total(10) <= 360);
        assert!(plan(&cost(), &[node("tiny", 100, 1.0)], 0).is_err());
    }

    /// A tensor-less llama header with the given KV metadata.
    fn header(n_kv: u64, key_length: u64) -> GgufFile {
        use crate::gguf::{GgufWriter, Value};
        let mut w = GgufWriter::new();
        w.set("general.architecture", Value::String("llama".into()));
        w.set("llama.block_count", Value::U32(30));
        w.set("llama.embedding_length", Value::U32(576));
        w.set("llama.attention.head_count", Value::U32(9));
        w.set("llama.attention.head_count_kv", Value::U64(n_kv));
        w.set("llama.attention.key_length", Value::U64(key_length));
        GgufFile::from_bytes(w.to_bytes()).unwrap()
    }

    #[test]
    fn absurd_kv_metadata_is_an_error_not_a_wrapped_size() {
        let c = ModelCost::from_gguf(&header(3, 64)).unwrap();
        assert_eq!(c.kv_bytes_per_token_per_layer, 3 * (64 + 64) * 2);
        // 2^62 heads × 128 wraps to 0 in u64; 2^63 + 2^63 wraps too; a
        // per-layer size that fits may still overflow over 30 layers.
        for (n_kv, kd) in [(1 << 62, 64), (1, 1 << 63), (1 << 55, 64)] {
            match ModelCost::from_gguf(&header(n_kv, kd)) {
                Err(Error::Malformed { reason, .. }) => {
                    assert!(reason.contains("KV cache size overflows"), "{reason}")
                }
                other => panic!("{n_kv} heads of {kd}: {other:?}"),
            }
        }
    }

    #[test]
    fn huge_sizes_saturate_instead_of_wrapping() {
        let mut c = cost();
        c.kv_bytes_per_token_per_layer = u64::MAX / 4;
        assert_eq!(c.estimate(&(0..12)).kv_bytes_per_token, u64::MAX);
        assert_eq!(c.estimate(&(0..1)).total(usize::MAX), u64::MAX);
        assert!(plan(&c, &[node("a", u64::MAX - 1, 1.0)], 8).is_err());
    }

    #[test]
    fn estimate_counts_embedding_and_head() {
        let c = cost();
        assert_eq!(c.estimate(&(0..12)).weight_bytes, 1200 + 50 + 10);
        assert_eq!(c.estimate(&(4..8)).weight_bytes, 400);
        assert_eq!(c.estimate(&(4..8)).kv_bytes_per_token, 4);
    }
}
