//! Splitting a model file into shard files, one per layer range.

use std::ffi::c_char;

use super::args::{self, OutBuf};
use super::boundary::fail;
use super::status::strata_status::{self, *};
use crate::gguf::GgufFile;

/// A layer range [start, end).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct strata_layer_range {
    /// First layer.
    pub start: u32,
    /// One past the last layer.
    pub end: u32,
}

/// Write one shard file per range of the model at `model_path` into the
/// existing directory `out_dir`, named `{stem}.layers-{start}-{end}.gguf`
/// where stem is the model file's name without its extension. Each file
/// holds only its layers' tensors (plus the embedding for the first range,
/// the output head for the last) and the digests a node needs to verify it;
/// loading one gives a model whose digest is the whole model's.
///
/// `paths`, `paths_cap` and `paths_len` are optional (all NULL/0 to skip):
/// when given, the written paths, each followed by a newline, are copied to
/// `paths` NUL-terminated. If they would not fit, nothing is written and
/// STRATA_BUFFER_TOO_SMALL returns the length needed in `*paths_len`.
/// Errors: STRATA_INVALID_ARGUMENT (no ranges, a range empty or past the
/// layer count, the file is already a shard), STRATA_IO,
/// STRATA_MALFORMED_MODEL.
#[no_mangle]
pub unsafe extern "C" fn strata_split(
    model_path: *const c_char,
    ranges: *const strata_layer_range,
    n_ranges: usize,
    out_dir: *const c_char,
    paths: *mut c_char,
    paths_cap: usize,
    paths_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let path = args::path(model_path, "model_path")?;
        let ranges = args::in_slice(ranges, n_ranges, "ranges")?;
        let dir = args::path(out_dir, "out_dir")?;
        let out = if paths_len.is_null() {
            if !paths.is_null() || paths_cap != 0 {
                return Err(fail(
                    STRATA_NULL_POINTER,
                    "'paths_len' is NULL but 'paths' is given",
                ));
            }
            None
        } else {
            Some(OutBuf::new(paths, paths_cap, paths_len, "paths")?)
        };
        if ranges.is_empty() {
            return Err(fail(
                STRATA_INVALID_ARGUMENT,
                "no layer ranges (n_ranges is 0)",
            ));
        }
        let ranges: Vec<_> = ranges
            .iter()
            .map(|r| r.start as usize..r.end as usize)
            .collect();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let names: Vec<u8> = ranges
            .iter()
            .flat_map(|r| {
                let p = dir.join(format!("{stem}.layers-{}-{}.gguf", r.start, r.end));
                let mut b = p.to_string_lossy().into_owned().into_bytes();
                b.push(b'\n');
                b
            })
            .collect();
        let mut out = out;
        if let Some(o) = out.as_mut() {
            o.reserve_text(names.len())?;
        }
        let file = GgufFile::open(&path)?;
        let written = crate::shard::split(&file, &ranges, &dir, &stem)?;
        for p in &written {
            log_info!("wrote shard file {}", p.display());
        }
        if let Some(o) = out {
            o.fill_text(&names)?;
        }
        Ok(())
    })
}
