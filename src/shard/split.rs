//! Shard files: GGUF files that hold only one layer range's tensors plus the
//! metadata a node needs to use and verify them.
//!
//! A shard file keeps the parent's metadata unchanged (so `block_count` is
//! still the whole model's) and adds:
//!
//! | key | value |
//! |---|---|
//! | `strata.shard.layer_start`, `strata.shard.layer_end` | the range `[start, end)` |
//! | `strata.shard.n_layer` | the parent's layer count |
//! | `strata.shard.parent_digest` | the parent's model digest (hex) |
//! | `strata.shard.metadata_hash` | hash of the parent's identity metadata (hex) |
//! | `strata.shard.tensor_names`, `strata.shard.tensor_hashes` | every parent tensor's name and hash |
//!
//! From the last two, a node re-derives the parent digest and checks its own
//! tensors without any other shard. Loading a model from a shard file does
//! that check ([`ShardInfo::verified`]); [`super::verify`] remembers files
//! that passed it.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::digest::{self, Digest};
use super::verify::{self, Verified};
use crate::gguf::{GgufFile, GgufWriter, TensorData, TensorInfo, Value};
use crate::{Error, Result};

pub const KEY_START: &str = "strata.shard.layer_start";
pub const KEY_END: &str = "strata.shard.layer_end";
pub const KEY_N_LAYER: &str = "strata.shard.n_layer";
pub const KEY_PARENT: &str = "strata.shard.parent_digest";
pub const KEY_META: &str = "strata.shard.metadata_hash";
pub const KEY_NAMES: &str = "strata.shard.tensor_names";
pub const KEY_HASHES: &str = "strata.shard.tensor_hashes";

/// What a shard file says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardInfo {
    pub layers: Range<usize>,
    pub n_layer: usize,
    pub parent: Digest,
    metadata_hash: Digest,
    tensor_hashes: Vec<(String, Digest)>,
    /// How the file's tensors were checked, once they were.
    verification: Option<Verified>,
}

impl ShardInfo {
    /// The shard description of `file`, or `None` for a whole-model file.
    /// The recorded hashes must re-derive the recorded parent digest.
    pub fn from_gguf(file: &GgufFile) -> Result<Option<ShardInfo>> {
        if file.get(KEY_START).is_none() {
            return Ok(None);
        }
        let bad = |reason: String| Error::Malformed { offset: 0, reason };
        let start = file.get_usize_max(KEY_START, 1 << 20)?;
        let end = file.get_usize_max(KEY_END, 1 << 20)?;
        let n_layer = file.get_usize_max(KEY_N_LAYER, 1 << 20)?;
        if start >= end || end > n_layer {
            return Err(bad(format!(
                "shard range {start}..{end} is not inside 0..{n_layer}"
            )));
        }
        let parent = Digest::from_hex(file.get_str(KEY_PARENT)?)?;
        let metadata_hash = Digest::from_hex(file.get_str(KEY_META)?)?;
        let names = file.get_array(KEY_NAMES)?;
        let hashes = file.get_array(KEY_HASHES)?;
        if names.len() != hashes.len() {
            return Err(bad(format!(
                "{} tensor names but {} hashes",
                names.len(),
                hashes.len()
            )));
        }
        let mut tensor_hashes = Vec::with_capacity(names.len());
        for (n, h) in names.iter().zip(hashes) {
            let (Some(n), Some(h)) = (n.as_str(), h.as_str()) else {
                return Err(bad("tensor names and hashes must be strings".into()));
            };
            tensor_hashes.push((n.to_string(), Digest::from_hex(h)?));
        }
        if digest::combine(&metadata_hash, &tensor_hashes) != parent {
            return Err(bad(
                "the recorded tensor hashes do not re-derive the recorded parent digest".into(),
            ));
        }
        if digest::metadata_hash(file) != metadata_hash {
            return Err(bad("the file's metadata differs from the parent's".into()));
        }
        Ok(Some(ShardInfo {
            layers: start..end,
            n_layer,
            parent,
            metadata_hash,
            tensor_hashes,
            verification: None,
        }))
    }

    /// This description after checking `file`'s tensors against the
    /// recorded hashes ([`verify_tensors`](Self::verify_tensors)), unless a
    /// stamp says this unchanged file passed before (see [`super::verify`]).
    /// Only a verified shard may serve under the parent's digest.
    pub fn verified(mut self, file: &GgufFile) -> Result<ShardInfo> {
        let dir = verify::cache_dir();
        let how = verify::verify_cached(file, &self.parent, dir.as_deref(), || {
            self.verify_tensors(file)
        })?;
        self.verification = Some(how);
        Ok(self)
    }

    /// How the tensors were checked: `None` until [`verified`](Self::verified).
    pub fn verification(&self) -> Option<Verified> {
        self.verification
    }

    /// Hash this file's tensors and compare each with the parent's record.
    pub fn verify_tensors(&self, file: &GgufFile) -> Result<()> {
        for (name, d) in digest::tensor_hashes(file) {
            match self.tensor_hashes.iter().find(|(n, _)| *n == name) {
                Some((_, want)) if *want == d => {}
                Some(_) => return Err(Error::ShardTensorMismatch { tensor: name }),
                None => {
                    return Err(Error::BadTensor {
                        name,
                        reason: "the parent model has no such tensor".into(),
                    })
                }
            }
        }
        Ok(())
    }
}

/// The layer index of a `blk.N.*` tensor name.
fn block_index(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// Whether the tensor `name` belongs in the shard `range` of an
/// `n_layer`-layer model whose output head is tied when `tied`.
pub fn tensor_in_range(name: &str, range: &Range<usize>, n_layer: usize, tied: bool) -> bool {
    let (first, last) = (range.start == 0, range.end == n_layer);
    match name {
        _ if name.starts_with("blk.") => block_index(name).is_some_and(|i| range.contains(&i)),
        "token_embd.weight" => first || (last && tied),
        "output_norm.weight" | "output.weight" | "output_norm.bias" | "output.bias" => last,
        // Anything else (e.g. rope frequency tables) every shard may need.
        _ => true,
    }
}

/// `n` contiguous ranges covering `0..n_layer` as evenly as possible.
pub fn even_ranges(n_layer: usize, n: usize) -> Result<Vec<Range<usize>>> {
    if n == 0 || n > n_layer {
        return Err(Error::invalid(
            "shards",
            format!("cannot cut {n_layer} layers into {n} shards"),
        ));
    }
    let (q, r) = (n_layer / n, n_layer % n);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for i in 0..n {
        let len = q + usize::from(i < r);
        out.push(start..start + len);
        start += len;
    }
    Ok(out)
}

/// Parse `"0..10,10..20,20..30"`.
pub fn parse_ranges(s: &str) -> Result<Vec<Range<usize>>> {
    s.split(',')
        .map(|part| {
            let bad = || Error::invalid("layers", format!("'{part}' is not a range like 0..10"));
            let (a, b) = part.trim().split_once("..").ok_or_else(bad)?;
            let (a, b): (usize, usize) =
                (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if a >= b {
                return Err(bad());
            }
            Ok(a..b)
        })
        .collect()
}

/// Write one shard file per range into `out_dir`, named
/// `{stem}.layers-{start}-{end}.gguf`. Returns the paths.
pub fn split(
    file: &GgufFile,
    ranges: &[Range<usize>],
    out_dir: &Path,
    stem: &str,
) -> Result<Vec<PathBuf>> {
    if ShardInfo::from_gguf(file)?.is_some() {
        return Err(Error::invalid(
            "model",
            "this file is already a shard; split the whole model",
        ));
    }
    let arch = file.get_str("general.architecture")?;
    let n_layer = file.get_usize_max(&format!("{arch}.block_count"), 1 << 20)?;
    for r in ranges {
        if r.start >= r.end || r.end > n_layer {
            return Err(Error::invalid(
                "layers",
                format!("{}..{} is not inside 0..{n_layer}", r.start, r.end),
            ));
        }
    }
    let hashes = digest::tensor_hashes(file);
    let meta = digest::metadata_hash(file);
    let parent = digest::combine(&meta, &hashes);
    let tied = file.tensor("output.weight").is_none();
    let mut paths = Vec::new();
    for r in ranges {
        let mut w = GgufWriter::new();
        for (k, v) in file.metadata() {
            w.set(k.clone(), v.clone());
        }
        w.set(KEY_START, Value::U32(r.start as u32));
        w.set(KEY_END, Value::U32(r.end as u32));
        w.set(KEY_N_LAYER, Value::U32(n_layer as u32));
        w.set(KEY_PARENT, Value::String(parent.to_hex()));
        w.set(KEY_META, Value::String(meta.to_hex()));
        let names: Vec<&str> = hashes.iter().map(|(n, _)| n.as_str()).collect();
        let hexes: Vec<String> = hashes.iter().map(|(_, d)| d.to_hex()).collect();
        w.set(KEY_NAMES, Value::str_array(&names));
        w.set(KEY_HASHES, Value::str_array(&hexes));
        for t in file
            .tensors()
            .iter()
            .filter(|t| tensor_in_range(&t.name, r, n_layer, tied))
        {
            add_borrowed(&mut w, file, t)?;
        }
        let path = out_dir.join(format!("{stem}.layers-{}-{}.gguf", r.start, r.end));
        w.write_file(&path)?;
        paths.push(path);
    }
    Ok(paths)
}

fn add_borrowed<'a>(w: &mut GgufWriter<'a>, file: &'a GgufFile, t: &TensorInfo) -> Result<()> {
    w.add_tensor(
        t.name.clone(),
        t.ty,
        &t.dims,
        TensorData::Borrowed(file.tensor_data(t)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(even_ranges(30, 3).unwrap(), vec![0..10, 10..20, 20..30]);
        assert_eq!(even_ranges(10, 3).unwrap(), vec![0..4, 4..7, 7..10]);
        assert!(even_ranges(2, 3).is_err());
        assert_eq!(parse_ranges("0..4, 4..9").unwrap(), vec![0..4, 4..9]);
        assert!(parse_ranges("4..4").is_err());
        assert!(parse_ranges("a..b").is_err());
    }

    #[test]
    fn tensor_membership() {
        let r = 10..20;
        assert!(tensor_in_range("blk.10.attn_q.weight", &r, 30, true));
        assert!(!tensor_in_range("blk.20.attn_q.weight", &r, 30, true));
        assert!(!tensor_in_range("token_embd.weight", &r, 30, true));
        assert!(tensor_in_range("token_embd.weight", &(20..30), 30, true));
        assert!(!tensor_in_range("token_embd.weight", &(20..30), 30, false));
        assert!(tensor_in_range("output_norm.weight", &(20..30), 30, true));
    }
}
