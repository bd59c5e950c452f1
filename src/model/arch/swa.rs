//! Which layers use sliding-window attention, read as llama.cpp's
//! `load_swa_pattern` reads it: `{arch}.attention.sliding_window_pattern`
//! is either one boolean per layer, or a period `p` in which the last layer
//! of every period is global (layer `i` slides unless `i % p == p - 1`;
//! `p = 0`: every layer slides). Shared by the families with interleaved
//! sliding and global layers.

use crate::model::config::Hparams;
use crate::{Error, Result};

/// Per layer: whether it is a sliding-window layer; `default_period` when
/// the key is absent.
pub fn sliding_layers(h: &Hparams, n_layer: usize, default_period: usize) -> Result<Vec<bool>> {
    let key = h.key("attention.sliding_window_pattern");
    if let Some(items) = h.file.get(&key).and_then(|v| v.as_array()) {
        let flags: Option<Vec<bool>> = items.iter().map(|x| x.as_bool()).collect();
        return match flags {
            Some(f) if f.len() >= n_layer => Ok(f[..n_layer].to_vec()),
            _ => Err(Error::Malformed {
                offset: 0,
                reason: format!("{key} is not {n_layer} booleans"),
            }),
        };
    }
    let period = h
        .opt_usize("attention.sliding_window_pattern")?
        .unwrap_or(default_period);
    Ok((0..n_layer)
        .map(|il| period == 0 || il % period < period - 1)
        .collect())
}
