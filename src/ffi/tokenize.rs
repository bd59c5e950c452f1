//! Text to token ids and back, with the model's tokenizer.

use std::ffi::c_char;

use super::args::{self, Out, OutBuf};
use super::boundary::{fail, FfiResult};
use super::model::strata_model;
use super::status::strata_status::{self, *};
use crate::Model;

/// strata_tokenize flag: add BOS/EOS where the model's metadata asks for them.
pub const STRATA_TOKENIZE_ADD_SPECIAL: u32 = 1;
/// strata_tokenize flag: text spelling a control token (e.g. `<|im_start|>`)
/// becomes that token; without it such text is tokenized as plain text.
pub const STRATA_TOKENIZE_PARSE_SPECIAL: u32 = 2;
/// strata_token_to_piece / strata_detokenize flag: render control tokens as
/// their text (by default they produce no bytes).
pub const STRATA_DETOKENIZE_RENDER_SPECIAL: u32 = 1;

pub(crate) fn check_tokens(m: &Model, tokens: &[u32]) -> FfiResult {
    let n_vocab = m.tokenizer().n_vocab();
    if let Some(&t) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(fail(
            STRATA_TOKEN_OUT_OF_RANGE,
            format!("token id {t} is out of range (the vocabulary has {n_vocab} tokens)"),
        ));
    }
    Ok(())
}

/// Tokenize UTF-8 `text` (`text_len` bytes; NULL allowed when 0) with
/// STRATA_TOKENIZE_* `flags` into `tokens` (room for `max_tokens` ids);
/// `*n_tokens` receives the count. When the ids do not fit, returns
/// STRATA_BUFFER_TOO_SMALL with the count needed in `*n_tokens` (pass
/// max_tokens 0 to ask). Empty text gives 0 tokens (or just BOS).
#[no_mangle]
pub unsafe extern "C" fn strata_tokenize(
    model: *const strata_model,
    text: *const c_char,
    text_len: usize,
    flags: u32,
    tokens: *mut u32,
    max_tokens: usize,
    n_tokens: *mut usize,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        args::disjoint(text, text_len, tokens, max_tokens, "text and tokens")?;
        let text = args::text(text, text_len, "text")?;
        let flags = args::flags(
            flags,
            STRATA_TOKENIZE_ADD_SPECIAL | STRATA_TOKENIZE_PARSE_SPECIAL,
            "flags",
        )?;
        let out = OutBuf::new(tokens, max_tokens, n_tokens, "tokens")?;
        let ids = m.tokenizer().encode(
            text,
            flags & STRATA_TOKENIZE_ADD_SPECIAL != 0,
            flags & STRATA_TOKENIZE_PARSE_SPECIAL != 0,
        )?;
        out.fill(&ids)
    })
}

/// The bytes of one token into `buf` (`len` bytes; not NUL-terminated: a
/// piece can be part of a UTF-8 character); `*out_len` receives their
/// count. Control tokens give no bytes unless `flags` has
/// STRATA_DETOKENIZE_RENDER_SPECIAL. STRATA_TOKEN_OUT_OF_RANGE for an id
/// not below the vocabulary size.
#[no_mangle]
pub unsafe extern "C" fn strata_token_to_piece(
    model: *const strata_model,
    token: u32,
    flags: u32,
    buf: *mut u8,
    len: usize,
    out_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        let flags = args::flags(flags, STRATA_DETOKENIZE_RENDER_SPECIAL, "flags")?;
        let out = OutBuf::new(buf, len, out_len, "buf")?;
        check_tokens(m, &[token])?;
        out.fill(
            m.tokenizer()
                .token_bytes(token, flags & STRATA_DETOKENIZE_RENDER_SPECIAL != 0),
        )
    })
}

/// Token ids to text into `buf`, NUL-terminated (`*out_len` excludes the
/// NUL). Byte sequences that are not UTF-8 become U+FFFD. Flags as for
/// strata_token_to_piece. STRATA_TOKEN_OUT_OF_RANGE if any id is out of range.
#[no_mangle]
pub unsafe extern "C" fn strata_detokenize(
    model: *const strata_model,
    tokens: *const u32,
    n_tokens: usize,
    flags: u32,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        args::disjoint(tokens, n_tokens, buf, len, "tokens and buf")?;
        let tokens = args::in_slice(tokens, n_tokens, "tokens")?;
        let flags = args::flags(flags, STRATA_DETOKENIZE_RENDER_SPECIAL, "flags")?;
        let out = OutBuf::new(buf, len, out_len, "buf")?;
        check_tokens(m, tokens)?;
        let text = m
            .tokenizer()
            .decode(tokens, flags & STRATA_DETOKENIZE_RENDER_SPECIAL != 0);
        out.fill_text(text.as_bytes())
    })
}

/// Whether `token` ends generation (EOS, end of turn, ...): `*is_eog`
/// receives the answer. STRATA_TOKEN_OUT_OF_RANGE for an id out of range.
#[no_mangle]
pub unsafe extern "C" fn strata_token_is_eog(
    model: *const strata_model,
    token: u32,
    is_eog: *mut bool,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        let out = Out::new(is_eog, "is_eog")?;
        check_tokens(m, &[token])?;
        out.write(m.tokenizer().is_eog(token));
        Ok(())
    })
}
