//! Models: loading (whole or a layer range, with progress and cancel), and
//! what a model says about itself (info, metadata, architecture, digest).

use std::ffi::{c_char, c_void};
use std::fmt::Write as _;
use std::mem::size_of;
use std::sync::Arc;
use std::time::Instant;

use super::args::{self, Out, OutBuf, OutStruct, SizedStruct};
use super::boundary::{fail, FfiResult};
use super::status::strata_status::{self, *};
use crate::gguf::{GgufFile, Value};
use crate::{LoadOptions, Model, Numerics};

/// A loaded model, or a contiguous range of its layers (a shard). Immutable
/// and thread-safe: any number of threads may call functions that take a
/// `const strata_model *` at once, and sessions and shards created from it
/// keep it alive (they may outlive strata_model_free of their model).
pub struct strata_model {
    pub(crate) model: Arc<Model>,
}

/// A stage of strata_model_load, reported to the progress callback in this
/// order.
pub type strata_load_stage = u32;
/// The file is open, mapped, and its header, metadata and tensor table are
/// parsed and checked.
pub const STRATA_LOAD_OPENED: strata_load_stage = 1;
/// The configuration is read and the weights of the requested layers are
/// bound (viewed in the mapped file, not copied).
pub const STRATA_LOAD_LAYERS_BOUND: strata_load_stage = 2;
/// The tokenizer is built. (Today the library binds layers and builds the
/// tokenizer in one step, so this stage follows the previous one at once.)
pub const STRATA_LOAD_TOKENIZER_LOADED: strata_load_stage = 3;
/// The model is ready; returning false here still cancels.
pub const STRATA_LOAD_DONE: strata_load_stage = 4;

/// Called during strata_model_load on the loading thread. `progress` is in
/// [0, 1]. Return true to go on, false to cancel: the load then frees
/// everything and returns STRATA_CANCELLED.
pub type strata_progress_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, stage: strata_load_stage, progress: f32) -> bool,
>;

/// How a model sums where the order matters (strata_load_options.numerics,
/// strata_model_info.numerics). A plain integer, not a C enum, so that any
/// value a caller passes can be checked; values other than the
/// STRATA_NUMERICS_* constants give STRATA_INVALID_ARGUMENT.
pub type strata_numerics = u32;
/// Bit for bit what llama.cpp's CPU backend computes (the default). As in
/// llama.cpp, a prompt fed in one call sums attention in another order than
/// the same tokens fed one at a time, so results depend on how a prompt is
/// split into calls (low bits of the logits only).
pub const STRATA_NUMERICS_LLAMA_CPP: strata_numerics = 0;
/// Every token is computed as llama.cpp computes a single token, whatever
/// the batch: results do not depend on how a prompt is split into calls or
/// across shards. Decode steps equal llama.cpp's; the logits of a prompt fed
/// in one call differ from llama.cpp's in low bits.
pub const STRATA_NUMERICS_BATCH_INVARIANT: strata_numerics = 1;

fn numerics_from_c(v: strata_numerics) -> FfiResult<Numerics> {
    match v {
        STRATA_NUMERICS_LLAMA_CPP => Ok(Numerics::LlamaCpp),
        STRATA_NUMERICS_BATCH_INVARIANT => Ok(Numerics::BatchInvariant),
        other => Err(fail(
            STRATA_INVALID_ARGUMENT,
            format!(
                "numerics is {other}; use STRATA_NUMERICS_LLAMA_CPP (0) or \
                 STRATA_NUMERICS_BATCH_INVARIANT (1)"
            ),
        )),
    }
}

fn numerics_to_c(n: Numerics) -> strata_numerics {
    match n {
        Numerics::LlamaCpp => STRATA_NUMERICS_LLAMA_CPP,
        Numerics::BatchInvariant => STRATA_NUMERICS_BATCH_INVARIANT,
    }
}

/// How to load a model. Set struct_size to sizeof(strata_load_options) and
/// start from strata_load_options_default(); NULL options mean the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct strata_load_options {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// Worker threads for this model's compute; 0 (default) = one per core.
    pub n_threads: u32,
    /// First layer to load. With layer_end 0 (default) the whole model (or
    /// the whole range a shard file holds) is loaded and layer_start must be 0.
    pub layer_start: u32,
    /// One past the last layer to load; 0 = all. Loading a range gives a
    /// shard: only the first layer range takes tokens, only the last one
    /// gives logits.
    pub layer_end: u32,
    /// Optional progress callback (NULL: none).
    pub progress: strata_progress_fn,
    /// Passed to `progress` unchanged.
    pub progress_user_data: *mut c_void,
    /// STRATA_NUMERICS_LLAMA_CPP (default) or STRATA_NUMERICS_BATCH_INVARIANT.
    /// Sessions and shards of the model use it. (Added after the first
    /// version: a caller's struct without it gets the default.)
    pub numerics: strata_numerics,
}

impl Default for strata_load_options {
    fn default() -> Self {
        strata_load_options {
            struct_size: size_of::<Self>() as u32,
            n_threads: 0,
            layer_start: 0,
            layer_end: 0,
            progress: None,
            progress_user_data: std::ptr::null_mut(),
            numerics: STRATA_NUMERICS_LLAMA_CPP,
        }
    }
}

unsafe impl SizedStruct for strata_load_options {
    const NAME: &'static str = "strata_load_options";
    // The first version ended with progress_user_data.
    const MIN_SIZE: usize = std::mem::offset_of!(strata_load_options, numerics);
}

/// No token: used in strata_model_info fields for a special token the model lacks.
pub const STRATA_TOKEN_NONE: u32 = u32::MAX;

/// strata_model_info.flags: the model holds the token embedding (it takes
/// token ids).
pub const STRATA_MODEL_TAKES_TOKENS: u32 = 1;
/// strata_model_info.flags: the model holds the output head (it gives logits).
pub const STRATA_MODEL_GIVES_LOGITS: u32 = 2;
/// strata_model_info.flags: the model was loaded from a shard file written
/// by strata_split.
pub const STRATA_MODEL_SHARD_FILE: u32 = 4;
/// strata_model_info.flags: tokenizing with STRATA_TOKENIZE_ADD_SPECIAL adds BOS.
pub const STRATA_MODEL_ADD_BOS: u32 = 8;

/// What a model is. Set struct_size to sizeof(strata_model_info) before
/// calling strata_model_get_info().
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct strata_model_info {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// Layers of the whole model.
    pub n_layer: u32,
    /// The layers this handle holds: [layer_start, layer_end).
    pub layer_start: u32,
    /// One past the last layer this handle holds.
    pub layer_end: u32,
    /// Width of the hidden states (values per row of a hidden-state frame).
    pub n_embd: u32,
    /// Vocabulary size (values per row of logits).
    pub n_vocab: u32,
    /// Context length the model was trained with.
    pub n_ctx_train: u32,
    /// Attention (query) heads.
    pub n_head: u32,
    /// Key/value heads (fewer than n_head with grouped-query attention).
    pub n_head_kv: u32,
    /// Worker threads of this model.
    pub n_threads: u32,
    /// Beginning-of-sequence token, or STRATA_TOKEN_NONE.
    pub bos: u32,
    /// End-of-sequence token, or STRATA_TOKEN_NONE.
    pub eos: u32,
    /// End-of-turn token, or STRATA_TOKEN_NONE.
    pub eot: u32,
    /// STRATA_MODEL_* bits.
    pub flags: u32,
    /// The STRATA_NUMERICS_* value the model was loaded with. (Added after
    /// the first version: a caller's smaller struct does not receive it.)
    pub numerics: strata_numerics,
}

unsafe impl SizedStruct for strata_model_info {
    const NAME: &'static str = "strata_model_info";
    // The first version ended with flags.
    const MIN_SIZE: usize = std::mem::offset_of!(strata_model_info, numerics);
}

impl strata_model {
    pub(crate) unsafe fn get<'a>(p: *const strata_model) -> FfiResult<&'a strata_model> {
        args::nonnull(p, "model")
    }
}

/// Fill `*options` with the defaults. Set options->struct_size first.
#[no_mangle]
pub unsafe extern "C" fn strata_load_options_default(
    options: *mut strata_load_options,
) -> strata_status {
    ffi_guard!({
        OutStruct::new(options, "options")?.write(strata_load_options::default());
        Ok(())
    })
}

fn stage_name(stage: strata_load_stage) -> &'static str {
    match stage {
        STRATA_LOAD_OPENED => "opened",
        STRATA_LOAD_LAYERS_BOUND => "layers bound",
        STRATA_LOAD_TOKENIZER_LOADED => "tokenizer loaded",
        _ => "done",
    }
}

fn report(opts: &strata_load_options, stage: strata_load_stage, progress: f32) -> FfiResult {
    log_debug!("load: {}", stage_name(stage));
    if let Some(cb) = opts.progress {
        // SAFETY: the caller's callback, called as documented.
        if !unsafe { cb(opts.progress_user_data, stage, progress) } {
            log_info!(
                "load cancelled by the progress callback at stage '{}'",
                stage_name(stage)
            );
            return Err(fail(
                STRATA_CANCELLED,
                format!(
                    "loading was cancelled by the progress callback at stage '{}'",
                    stage_name(stage)
                ),
            ));
        }
    }
    Ok(())
}

/// Load a model from a GGUF file (NUL-terminated path). The weights are
/// memory-mapped, not copied. `options` may be NULL (defaults). On success
/// `*model` receives a handle to free with strata_model_free.
///
/// Errors: STRATA_IO (cannot open), STRATA_MALFORMED_MODEL,
/// STRATA_UNSUPPORTED (architecture, tensor type, tokenizer),
/// STRATA_INVALID_ARGUMENT (a layer range outside the model, an unknown
/// numerics value, ...),
/// STRATA_CANCELLED (the progress callback returned false).
#[no_mangle]
pub unsafe extern "C" fn strata_model_load(
    path: *const c_char,
    options: *const strata_load_options,
    model: *mut *mut strata_model,
) -> strata_status {
    ffi_guard!({
        let path = args::path(path, "path")?;
        let opts = args::read_struct_or_default(options, "options")?;
        let out = Out::new(model, "model")?;
        let layers = match (opts.layer_start, opts.layer_end) {
            (0, 0) => None,
            (s, 0) => {
                return Err(fail(
                    STRATA_INVALID_ARGUMENT,
                    format!("layer_start is {s} but layer_end is 0 (0 means all layers)"),
                ))
            }
            (s, e) => Some(s as usize..e as usize),
        };
        let numerics = numerics_from_c(opts.numerics)?;
        let t0 = Instant::now();
        log_info!("loading {}", path.display());
        let file = Arc::new(GgufFile::open(&path)?);
        log_debug!(
            "opened {}: GGUF v{}, {} tensors, {} metadata keys",
            path.display(),
            file.version(),
            file.tensors().len(),
            file.metadata().len()
        );
        report(&opts, STRATA_LOAD_OPENED, 0.25)?;
        let load = LoadOptions {
            n_threads: (opts.n_threads > 0).then_some(opts.n_threads as usize),
            layers,
            numerics,
        };
        let m = Model::from_file(file, &load)?;
        report(&opts, STRATA_LOAD_LAYERS_BOUND, 0.75)?;
        report(&opts, STRATA_LOAD_TOKENIZER_LOADED, 0.95)?;
        report(&opts, STRATA_LOAD_DONE, 1.0)?;
        let cfg = m.config();
        log_info!(
            "loaded {} ({}): layers {}..{} of {}, vocabulary {}, {} threads, in {:.1} ms",
            path.display(),
            cfg.arch,
            m.layers().start,
            m.layers().end,
            cfg.n_layer,
            cfg.n_vocab,
            m.n_threads(),
            t0.elapsed().as_secs_f64() * 1e3
        );
        out.write(Box::into_raw(Box::new(strata_model { model: Arc::new(m) })));
        Ok(())
    })
}

/// Free a model handle (NULL is accepted). Sessions and shards created from
/// it stay valid; the memory goes when the last of them is freed.
#[no_mangle]
pub unsafe extern "C" fn strata_model_free(model: *mut strata_model) {
    ffi_guard!(@value (), {
        if !model.is_null() {
            drop(Box::from_raw(model));
        }
    })
}

/// Describe the model. Set info->struct_size first.
#[no_mangle]
pub unsafe extern "C" fn strata_model_get_info(
    model: *const strata_model,
    info: *mut strata_model_info,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        let out = OutStruct::new(info, "info")?;
        let cfg = m.config();
        let tok = m.tokenizer();
        let id = |t: Option<u32>| t.unwrap_or(STRATA_TOKEN_NONE);
        let mut flags = 0;
        if m.takes_tokens() {
            flags |= STRATA_MODEL_TAKES_TOKENS;
        }
        if m.gives_logits() {
            flags |= STRATA_MODEL_GIVES_LOGITS;
        }
        if m.shard_info().is_some() {
            flags |= STRATA_MODEL_SHARD_FILE;
        }
        if tok.add_bos() {
            flags |= STRATA_MODEL_ADD_BOS;
        }
        out.write(strata_model_info {
            struct_size: 0,
            n_layer: cfg.n_layer as u32,
            layer_start: m.layers().start as u32,
            layer_end: m.layers().end as u32,
            n_embd: cfg.n_embd as u32,
            n_vocab: cfg.n_vocab as u32,
            n_ctx_train: cfg.n_ctx_train.min(u32::MAX as usize) as u32,
            n_head: cfg.n_head as u32,
            n_head_kv: cfg.n_head_kv as u32,
            n_threads: m.n_threads() as u32,
            bos: id(tok.bos()),
            eos: id(tok.eos()),
            eot: id(tok.eot()),
            flags,
            numerics: numerics_to_c(m.numerics()),
        });
        Ok(())
    })
}

/// The architecture name (`general.architecture`, e.g. "llama") into `buf`
/// (`len` bytes), NUL-terminated; `*out_len` = its length without the NUL.
#[no_mangle]
pub unsafe extern "C" fn strata_model_architecture(
    model: *const strata_model,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        OutBuf::new(buf, len, out_len, "buf")?.fill_text(m.config().arch.as_bytes())
    })
}

/// Render a metadata value as text: strings as they are, numbers in
/// decimal, booleans as true/false, arrays as `[a, b, ...]` with string
/// elements quoted.
fn render(v: &Value, out: &mut String, top: bool) {
    match v {
        Value::String(s) if top => out.push_str(s),
        Value::String(s) => {
            let _ = write!(out, "{s:?}");
        }
        Value::Array(_, items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(x, out, false);
            }
            out.push(']');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// The metadata value of `key` (UTF-8, `key_len` bytes) rendered as text
/// into `buf`: strings as they are, numbers in decimal, booleans as
/// true/false, arrays as `[a, b, ...]` with string elements in double quotes
/// (the token list of a vocabulary is long: query the length first with
/// `len` 0). STRATA_NOT_FOUND when the key does not exist.
#[no_mangle]
pub unsafe extern "C" fn strata_model_meta(
    model: *const strata_model,
    key: *const c_char,
    key_len: usize,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        args::disjoint(key, key_len, buf, len, "key and buf")?;
        let key = args::text(key, key_len, "key")?;
        let out = OutBuf::new(buf, len, out_len, "buf")?;
        let v = args::required(
            m.file().get(key),
            STRATA_NOT_FOUND,
            format!("no metadata key '{key}'"),
        )?;
        let mut s = String::new();
        render(v, &mut s, true);
        out.fill_text(s.as_bytes())
    })
}

/// Number of metadata keys (for strata_model_meta_key).
#[no_mangle]
pub unsafe extern "C" fn strata_model_meta_count(
    model: *const strata_model,
    count: *mut usize,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        Out::new(count, "count")?.write(m.file().metadata().len());
        Ok(())
    })
}

/// The name of metadata key number `index` (0 .. count-1, in file order)
/// into `buf`, NUL-terminated. STRATA_INVALID_ARGUMENT for an index past
/// the end.
#[no_mangle]
pub unsafe extern "C" fn strata_model_meta_key(
    model: *const strata_model,
    index: usize,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        let out = OutBuf::new(buf, len, out_len, "buf")?;
        let meta = m.file().metadata();
        let (k, _) = args::required(
            meta.get(index),
            STRATA_INVALID_ARGUMENT,
            format!("metadata index {index} is past the {} keys", meta.len()),
        )?;
        out.fill_text(k.as_bytes())
    })
}

/// The model's identity digest (BLAKE3, STRATA_DIGEST_LEN = 32 bytes) into
/// `out` (`out_len` >= 32, else STRATA_BUFFER_TOO_SMALL). Two files with the
/// same digest compute the same outputs; frames carry it. For a shard file
/// it is the parent model's; for a whole model the first call reads every
/// tensor (about as long as reading the file) and later calls are instant.
#[no_mangle]
pub unsafe extern "C" fn strata_model_digest(
    model: *const strata_model,
    out: *mut u8,
    out_len: usize,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        let buf = digest_out(out, out_len)?;
        buf.copy_from_slice(&m.digest().0);
        Ok(())
    })
}

/// Check a digest output buffer (at least 32 bytes) and return its first 32.
pub(crate) unsafe fn digest_out<'a>(out: *mut u8, out_len: usize) -> FfiResult<&'a mut [u8]> {
    if out.is_null() {
        return Err(fail(STRATA_NULL_POINTER, "'out' is NULL"));
    }
    if out_len < 32 {
        return Err(fail(
            STRATA_BUFFER_TOO_SMALL,
            format!("a digest is 32 bytes, the buffer holds {out_len}"),
        ));
    }
    args::out_slice(out, 32, "out")
}

/// The digest as 64 lowercase hexadecimal digits into `buf` (65 bytes with
/// the NUL), as strata_model_digest.
#[no_mangle]
pub unsafe extern "C" fn strata_model_digest_hex(
    model: *const strata_model,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        let out = OutBuf::new(buf, len, out_len, "buf")?;
        out.fill_text(m.digest().to_hex().as_bytes())
    })
}
