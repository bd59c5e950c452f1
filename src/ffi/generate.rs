//! One-call streaming generation: prompt in, a token callback out.

use std::ffi::{c_char, c_void};
use std::mem::size_of;
use std::sync::Arc;

use super::args::{self, OutStruct, SizedStruct};
use super::boundary::{fail, FfiResult};
use super::model::strata_model;
use super::sampler::strata_sampler_params;
use super::session::strata_session;
use super::status::strata_status::{self, *};
use super::tokenize::{check_tokens, STRATA_TOKENIZE_ADD_SPECIAL, STRATA_TOKENIZE_PARSE_SPECIAL};
use crate::draft::{Draft, DraftModel};
use crate::generate::{GenerateParams, StopReason, TokenStream};
use crate::receipt::ReceiptBuilder;
use crate::sampler::SamplerParams;

/// A UTF-8 string given by pointer and length (no NUL needed).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct strata_str {
    /// The bytes (NULL allowed when len is 0).
    pub data: *const c_char,
    /// Their count.
    pub len: usize,
}

/// Called for every generated token, on the generating thread. `text` is
/// the text the token completes (NUL-terminated, `text_len` bytes without
/// the NUL; often empty while a multi-byte character or a possible stop
/// string is pending), valid only during the call. Return true to go on,
/// false to stop: generation then ends with STRATA_STOP_CALLBACK and the
/// call still returns STRATA_OK. Calls on the same session from inside the
/// callback return STRATA_BUSY.
pub type strata_token_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        token: u32,
        text: *const c_char,
        text_len: usize,
    ) -> bool,
>;

/// Why generation ended (strata_completion.stop_reason).
pub type strata_stop_reason = u32;
/// The model produced an end-of-generation token.
pub const STRATA_STOP_EOG: strata_stop_reason = 1;
/// max_tokens tokens were generated.
pub const STRATA_STOP_MAX_TOKENS: strata_stop_reason = 2;
/// A stop string appeared (the text delivered ends before it).
pub const STRATA_STOP_STRING: strata_stop_reason = 3;
/// The token callback returned false.
pub const STRATA_STOP_CALLBACK: strata_stop_reason = 4;
/// The session's context is full.
pub const STRATA_STOP_CONTEXT_FULL: strata_stop_reason = 5;

/// What to generate. Set struct_size to sizeof(strata_generate_options) and
/// start from strata_generate_options_default(); NULL options mean the
/// defaults (128 tokens, default sampler, no callback).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct strata_generate_options {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// Most tokens to generate. Default 128.
    pub max_tokens: u32,
    /// Sampling parameters; NULL = strata_sampler_params_default(). Read
    /// during the call only.
    pub sampler: *const strata_sampler_params,
    /// Stop strings (`n_stop` of them; NULL when 0): generation stops when
    /// the text contains one, and the text delivered ends before it.
    pub stop: *const strata_str,
    /// Number of stop strings.
    pub n_stop: usize,
    /// STRATA_TOKENIZE_* flags for the prompt. Default ADD_SPECIAL |
    /// PARSE_SPECIAL (as the command-line tool).
    pub flags: u32,
    /// Called for each token; NULL = none.
    pub on_token: strata_token_fn,
    /// Passed to `on_token` unchanged.
    pub user_data: *mut c_void,
    /// Speculative decoding by prompt lookup: up to this many tokens (1..=64)
    /// drafted from n-gram matches in the text so far and checked in one
    /// pass. 0 (the default): plain decoding. The output is bit-identical
    /// to plain decoding on a model loaded with STRATA_NUMERICS_BATCH_INVARIANT.
    /// (Appended in 0.1: callers built without it and the two fields after
    /// it are accepted.)
    pub lookup_max_draft: u32,
    /// Speculative decoding with a draft model: a whole model (not a shard)
    /// with the same vocabulary, token for token, that drafts greedily in a
    /// session of its own; NULL (the default): none. Not with
    /// lookup_max_draft. Used during the call only (the handle must stay
    /// valid until it returns).
    pub draft_model: *const strata_model,
    /// Most tokens draft_model drafts per pass (1..=64); 0 (the default): 8.
    pub draft_model_max: u32,
}

impl Default for strata_generate_options {
    fn default() -> Self {
        strata_generate_options {
            struct_size: size_of::<Self>() as u32,
            max_tokens: 128,
            sampler: std::ptr::null(),
            stop: std::ptr::null(),
            n_stop: 0,
            flags: STRATA_TOKENIZE_ADD_SPECIAL | STRATA_TOKENIZE_PARSE_SPECIAL,
            on_token: None,
            user_data: std::ptr::null_mut(),
            lookup_max_draft: 0,
            draft_model: std::ptr::null(),
            draft_model_max: 0,
        }
    }
}

unsafe impl SizedStruct for strata_generate_options {
    const NAME: &'static str = "strata_generate_options";
    const MIN_SIZE: usize = std::mem::offset_of!(Self, lookup_max_draft);
}

/// What a generation did. Set struct_size to sizeof(strata_completion).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct strata_completion {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// A STRATA_STOP_* value.
    pub stop_reason: strata_stop_reason,
    /// Tokens of the prompt (after tokenization).
    pub n_prompt_tokens: u64,
    /// Tokens generated (including an end-of-generation token that ended it).
    pub n_tokens: u64,
    /// Time to evaluate the prompt, in milliseconds.
    pub prompt_ms: f64,
    /// Time to generate the tokens, in milliseconds.
    pub generation_ms: f64,
    /// Tokens drafted by speculative decoding (0 without it).
    pub n_drafted: u64,
    /// Drafted tokens that were accepted.
    pub n_accepted: u64,
}

unsafe impl SizedStruct for strata_completion {
    const NAME: &'static str = "strata_completion";
    const MIN_SIZE: usize = std::mem::offset_of!(Self, n_drafted);
}

/// Fill `*options` with the defaults. Set options->struct_size first.
#[no_mangle]
pub unsafe extern "C" fn strata_generate_options_default(
    options: *mut strata_generate_options,
) -> strata_status {
    ffi_guard!({
        OutStruct::new(options, "options")?.write(strata_generate_options::default());
        Ok(())
    })
}

pub(super) struct Request {
    pub(super) params: GenerateParams,
    on_token: strata_token_fn,
    user_data: *mut c_void,
}

pub(super) unsafe fn request(options: *const strata_generate_options) -> FfiResult<Request> {
    let o = args::read_struct_or_default(options, "options")?;
    let sampler = if o.sampler.is_null() {
        SamplerParams::default()
    } else {
        args::read_struct(o.sampler, "options->sampler")?.to_params()?
    };
    let flags = args::flags(
        o.flags,
        STRATA_TOKENIZE_ADD_SPECIAL | STRATA_TOKENIZE_PARSE_SPECIAL,
        "options->flags",
    )?;
    let mut stop = Vec::new();
    for (i, s) in args::in_slice(o.stop, o.n_stop, "options->stop")?
        .iter()
        .enumerate()
    {
        stop.push(args::text(s.data, s.len, &format!("options->stop[{i}]"))?.to_string());
    }
    let draft = match (o.lookup_max_draft, o.draft_model.is_null()) {
        (0, true) => Draft::None,
        (n, true) => Draft::lookup(n as usize),
        (0, false) => Draft::Model(DraftModel {
            model: Arc::clone(&strata_model::get(o.draft_model)?.model),
            max_draft: match o.draft_model_max {
                0 => crate::draft::DEFAULT_MAX_DRAFT,
                n => n as usize,
            },
        }),
        (_, false) => {
            return Err(fail(
                STRATA_INVALID_ARGUMENT,
                "options: set lookup_max_draft or draft_model, not both",
            ))
        }
    };
    Ok(Request {
        params: GenerateParams {
            max_tokens: o.max_tokens as usize,
            sampler,
            stop,
            add_special: flags & STRATA_TOKENIZE_ADD_SPECIAL != 0,
            parse_special: flags & STRATA_TOKENIZE_PARSE_SPECIAL != 0,
            draft,
        },
        on_token: o.on_token,
        user_data: o.user_data,
    })
}

/// Drive `stream` to its end, calling the token callback; with `receipt`,
/// each token is recorded in it (strata_generate_with_receipt).
pub(super) fn run(
    mut stream: TokenStream<'_>,
    req: &Request,
    mut receipt: Option<&mut ReceiptBuilder>,
) -> FfiResult<strata_completion> {
    let mut text = Vec::new();
    loop {
        let ev = match receipt.as_deref_mut() {
            Some(b) => b.next_from(&mut stream),
            None => stream.next(),
        };
        let Some(ev) = ev else { break };
        let ev = ev?;
        if let Some(cb) = req.on_token {
            text.clear();
            text.extend_from_slice(ev.text.as_bytes());
            text.push(0);
            // SAFETY: the caller's callback, called as documented; `text`
            // lives until it returns.
            let go_on = unsafe {
                cb(
                    req.user_data,
                    ev.id,
                    text.as_ptr() as *const c_char,
                    ev.text.len(),
                )
            };
            if !go_on {
                stream.stop(StopReason::Callback);
            }
        }
    }
    let c = stream.finish();
    Ok(strata_completion {
        struct_size: 0,
        stop_reason: match c.stop_reason {
            StopReason::EndOfGeneration => STRATA_STOP_EOG,
            StopReason::MaxTokens => STRATA_STOP_MAX_TOKENS,
            StopReason::StopString => STRATA_STOP_STRING,
            StopReason::Callback => STRATA_STOP_CALLBACK,
            StopReason::ContextFull => STRATA_STOP_CONTEXT_FULL,
        },
        n_prompt_tokens: c.prompt_tokens.len() as u64,
        n_tokens: c.tokens.len() as u64,
        prompt_ms: c.timings.prompt_ms,
        generation_ms: c.timings.generation_ms,
        n_drafted: c.timings.draft.drafted as u64,
        n_accepted: c.timings.draft.accepted as u64,
    })
}

/// Tokenize `prompt` (UTF-8, `prompt_len` bytes), evaluate it after what
/// the session holds, and generate, calling options->on_token for each
/// token. `completion` may be NULL; when given (struct_size set) it receives
/// the summary. Stopping (end of generation, max_tokens, a stop string, the
/// callback, a full context) is success. Errors: STRATA_EMPTY_INPUT (no
/// prompt tokens), STRATA_CONTEXT_FULL (the prompt does not fit: the session
/// is unchanged), STRATA_INVALID_ARGUMENT (bad sampler parameters). If a
/// later step fails, the tokens already delivered stay in the session.
#[no_mangle]
pub unsafe extern "C" fn strata_generate(
    session: *mut strata_session,
    prompt: *const c_char,
    prompt_len: usize,
    options: *const strata_generate_options,
    completion: *mut strata_completion,
) -> strata_status {
    ffi_guard!({
        let s = strata_session::get(session)?;
        let prompt = args::text(prompt, prompt_len, "prompt")?;
        let req = request(options)?;
        let out = OutStruct::optional(completion, "completion")?;
        let mut guard = s.lock()?;
        let st = &mut *guard;
        let stream = st.session.generate_iter(prompt, &req.params)?;
        st.logits = None;
        let c = run(stream, &req, None)?;
        if let Some(out) = out {
            out.write(c);
        }
        Ok(())
    })
}

/// As strata_generate, with the prompt given as token ids (options->flags
/// is then ignored). STRATA_TOKEN_OUT_OF_RANGE for a bad id.
#[no_mangle]
pub unsafe extern "C" fn strata_generate_tokens(
    session: *mut strata_session,
    tokens: *const u32,
    n_tokens: usize,
    options: *const strata_generate_options,
    completion: *mut strata_completion,
) -> strata_status {
    ffi_guard!({
        let s = strata_session::get(session)?;
        let tokens = args::in_slice(tokens, n_tokens, "tokens")?;
        let req = request(options)?;
        let out = OutStruct::optional(completion, "completion")?;
        let mut guard = s.lock()?;
        let st = &mut *guard;
        if tokens.is_empty() {
            return Err(fail(STRATA_EMPTY_INPUT, "no prompt tokens (n_tokens is 0)"));
        }
        check_tokens(st.session.model(), tokens)?;
        let stream = st.session.generate_from_tokens(tokens, &req.params)?;
        st.logits = None;
        let c = run(stream, &req, None)?;
        if let Some(out) = out {
            out.write(c);
        }
        Ok(())
    })
}
