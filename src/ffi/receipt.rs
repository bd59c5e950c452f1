//! Receipts: generate with one, encode it, check one against a model
//! (`docs/receipts.md`).

use std::ffi::c_char;
use std::mem::size_of;

use super::args::{self, Out, OutBuf, OutStruct, SizedStruct};
use super::boundary::{fail, FfiResult};
use super::generate::{request, run, strata_completion, strata_generate_options};
use super::model::{digest_out, strata_model};
use super::session::strata_session;
use super::status::strata_status::{self, *};
use crate::receipt::{self, DivergenceReason, Inconsistency, Receipt, Verification, VerifyOptions};

/// A generation's receipt (opaque). Made by strata_generate_with_receipt;
/// free it with strata_receipt_free. Immutable: any thread may read it.
pub struct strata_receipt {
    receipt: Receipt,
}

/// strata_receipt_encode: the binary form.
pub const STRATA_RECEIPT_BINARY: u32 = 0;
/// strata_receipt_encode: the JSON form (UTF-8, no NUL written).
pub const STRATA_RECEIPT_JSON: u32 = 1;

/// What strata_receipt_verify found (strata_receipt_result.verdict).
pub type strata_receipt_verdict = u32;
/// Every commitment and token was reproduced.
pub const STRATA_RECEIPT_HOLDS: strata_receipt_verdict = 0;
/// A generated token differs: see index, position and reason.
pub const STRATA_RECEIPT_DIFFERS: strata_receipt_verdict = 1;
/// The receipt cannot be checked against this model and engine: see reason.
pub const STRATA_RECEIPT_INCONSISTENT: strata_receipt_verdict = 2;

/// Why (strata_receipt_result.reason).
pub type strata_receipt_reason = u32;
/// The receipt holds.
pub const STRATA_RECEIPT_REASON_NONE: strata_receipt_reason = 0;
/// DIFFERS: the recomputed logits are not the ones committed to.
pub const STRATA_RECEIPT_REASON_COMMITMENT: strata_receipt_reason = 1;
/// DIFFERS: the logits match, the replayed sampler picks replayed_token.
pub const STRATA_RECEIPT_REASON_TOKEN: strata_receipt_reason = 2;
/// INCONSISTENT: made with another numerics version.
pub const STRATA_RECEIPT_REASON_NUMERICS_VERSION: strata_receipt_reason = 3;
/// INCONSISTENT: made with another model (digest).
pub const STRATA_RECEIPT_REASON_MODEL: strata_receipt_reason = 4;
/// INCONSISTENT: made with another tokenizer.
pub const STRATA_RECEIPT_REASON_TOKENIZER: strata_receipt_reason = 5;
/// INCONSISTENT: its sampler settings are invalid.
pub const STRATA_RECEIPT_REASON_SAMPLER: strata_receipt_reason = 6;
/// INCONSISTENT: token `index` (prompt, then generated) is outside the
/// vocabulary.
pub const STRATA_RECEIPT_REASON_TOKEN_OUT_OF_RANGE: strata_receipt_reason = 7;
/// INCONSISTENT: more positions than the verifier's bound.
pub const STRATA_RECEIPT_REASON_TOO_MANY_POSITIONS: strata_receipt_reason = 8;

/// The verdict of strata_receipt_verify. Set struct_size to
/// sizeof(strata_receipt_result).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct strata_receipt_result {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// A STRATA_RECEIPT_HOLDS / DIFFERS / INCONSISTENT value.
    pub verdict: strata_receipt_verdict,
    /// A STRATA_RECEIPT_REASON_* value.
    pub reason: strata_receipt_reason,
    /// REASON_TOKEN: the receipt's token; REASON_TOKEN_OUT_OF_RANGE: the id.
    pub recorded_token: u32,
    /// REASON_TOKEN: the token the replayed sampler picks.
    pub replayed_token: u32,
    /// Always 0.
    pub reserved: u32,
    /// DIFFERS: index of the first differing generated token;
    /// REASON_TOKEN_OUT_OF_RANGE: index of the token (prompt, then
    /// generated).
    pub index: u64,
    /// DIFFERS: the position whose logits that token was sampled from.
    pub position: u64,
    /// Generated tokens the receipt holds.
    pub n_tokens: u64,
    /// Prompt tokens the receipt holds.
    pub n_prompt_tokens: u64,
    /// The receipt's fingerprint.
    pub fingerprint: [u8; 32],
}

unsafe impl SizedStruct for strata_receipt_result {
    const NAME: &'static str = "strata_receipt_result";
    const MIN_SIZE: usize = size_of::<Self>();
}

impl strata_receipt {
    unsafe fn get<'a>(p: *const strata_receipt) -> FfiResult<&'a strata_receipt> {
        args::nonnull(p, "receipt")
    }
}

/// As strata_generate, and make a receipt of the generation: `*receipt`
/// receives a new strata_receipt (free it with strata_receipt_free). Its
/// prompt is every token the session held before the call followed by the
/// prompt's. The session's model must be loaded with
/// STRATA_NUMERICS_BATCH_INVARIANT (STRATA_INVALID_ARGUMENT otherwise,
/// before anything runs). The first call on a whole-model file computes
/// the model digest (reads every tensor once).
#[no_mangle]
pub unsafe extern "C" fn strata_generate_with_receipt(
    session: *mut strata_session,
    prompt: *const c_char,
    prompt_len: usize,
    options: *const strata_generate_options,
    completion: *mut strata_completion,
    receipt: *mut *mut strata_receipt,
) -> strata_status {
    ffi_guard!({
        let s = strata_session::get(session)?;
        let prompt = args::text(prompt, prompt_len, "prompt")?;
        let req = request(options)?;
        let out = OutStruct::optional(completion, "completion")?;
        let receipt_out = Out::new(receipt, "receipt")?;
        let mut guard = s.lock()?;
        let st = &mut *guard;
        let tok = st.session.model().tokenizer();
        let ids = tok.encode(prompt, req.params.add_special, req.params.parse_special)?;
        let mut builder = st.session.receipt_builder(&ids, &req.params.sampler)?;
        let stream = st.session.generate_from_tokens(&ids, &req.params)?;
        st.logits = None;
        let c = run(stream, &req, Some(&mut builder))?;
        if let Some(out) = out {
            out.write(c);
        }
        let r = Box::new(strata_receipt {
            receipt: builder.finish(),
        });
        receipt_out.write(Box::into_raw(r));
        Ok(())
    })
}

/// Free a receipt (NULL is accepted and does nothing).
#[no_mangle]
pub unsafe extern "C" fn strata_receipt_free(receipt: *mut strata_receipt) {
    ffi_guard!(@value (), {
        if !receipt.is_null() {
            drop(Box::from_raw(receipt));
        }
    })
}

/// Encode a receipt as STRATA_RECEIPT_BINARY or STRATA_RECEIPT_JSON into
/// `buf` (`cap` bytes); `*len` receives the length.
/// STRATA_BUFFER_TOO_SMALL sets `*len` to the length needed.
#[no_mangle]
pub unsafe extern "C" fn strata_receipt_encode(
    receipt: *const strata_receipt,
    format: u32,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let r = &strata_receipt::get(receipt)?.receipt;
        let out = OutBuf::new(buf, cap, len, "buf")?;
        let bytes = match format {
            STRATA_RECEIPT_BINARY => r.to_bytes(),
            STRATA_RECEIPT_JSON => r.to_json().into_bytes(),
            other => {
                return Err(fail(
                    STRATA_INVALID_ARGUMENT,
                    format!(
                    "format is {other}; use STRATA_RECEIPT_BINARY (0) or STRATA_RECEIPT_JSON (1)"
                ),
                ))
            }
        };
        out.fill(&bytes)
    })
}

/// The receipt's fingerprint (STRATA_DIGEST_LEN = 32 bytes) into `out`
/// (`out_len` at least 32).
#[no_mangle]
pub unsafe extern "C" fn strata_receipt_fingerprint(
    receipt: *const strata_receipt,
    out: *mut u8,
    out_len: usize,
) -> strata_status {
    ffi_guard!({
        let r = &strata_receipt::get(receipt)?.receipt;
        let buf = digest_out(out, out_len)?;
        buf.copy_from_slice(&r.fingerprint().0);
        Ok(())
    })
}

/// Check a receipt (`len` bytes, binary or JSON) against `model` in one
/// batched pass; `*result` receives the verdict. STRATA_OK means the check
/// ran: result->verdict says whether the receipt holds, where it first
/// differs, or why it is inconsistent with the model. Errors:
/// STRATA_RECEIPT_MALFORMED (the bytes are not a valid receipt; the last
/// error names the field), STRATA_INVALID_ARGUMENT (the model is not
/// loaded with STRATA_NUMERICS_BATCH_INVARIANT, or is a shard).
#[no_mangle]
pub unsafe extern "C" fn strata_receipt_verify(
    model: *const strata_model,
    receipt: *const u8,
    len: usize,
    result: *mut strata_receipt_result,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        let bytes = args::in_slice(receipt, len, "receipt")?;
        let out = OutStruct::new(result, "result")?;
        let r = Receipt::parse(bytes)?;
        let v = receipt::verify(m, &r, &VerifyOptions::default())?;
        let mut res = strata_receipt_result {
            n_tokens: r.tokens.len() as u64,
            n_prompt_tokens: r.prompt.len() as u64,
            fingerprint: r.fingerprint().0,
            ..Default::default()
        };
        match v {
            Verification::Holds(_) => res.verdict = STRATA_RECEIPT_HOLDS,
            Verification::Differs(d) => {
                res.verdict = STRATA_RECEIPT_DIFFERS;
                res.index = d.index as u64;
                res.position = d.position as u64;
                match d.reason {
                    DivergenceReason::Commitment { .. } => {
                        res.reason = STRATA_RECEIPT_REASON_COMMITMENT
                    }
                    DivergenceReason::Token { recorded, replayed } => {
                        res.reason = STRATA_RECEIPT_REASON_TOKEN;
                        res.recorded_token = recorded;
                        res.replayed_token = replayed;
                    }
                }
            }
            Verification::Inconsistent(i) => {
                res.verdict = STRATA_RECEIPT_INCONSISTENT;
                res.reason = match i {
                    Inconsistency::NumericsVersion { .. } => STRATA_RECEIPT_REASON_NUMERICS_VERSION,
                    Inconsistency::ModelDigest { .. } => STRATA_RECEIPT_REASON_MODEL,
                    Inconsistency::TokenizerDigest { .. } => STRATA_RECEIPT_REASON_TOKENIZER,
                    Inconsistency::Sampler(_) => STRATA_RECEIPT_REASON_SAMPLER,
                    Inconsistency::TokenOutOfRange { index, id, .. } => {
                        res.index = index as u64;
                        res.recorded_token = id;
                        STRATA_RECEIPT_REASON_TOKEN_OUT_OF_RANGE
                    }
                    Inconsistency::TooManyPositions { .. } => {
                        STRATA_RECEIPT_REASON_TOO_MANY_POSITIONS
                    }
                };
            }
        }
        out.write(res);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::ffi::session::SessionState;
    use crate::gguf::GgufFile;
    use crate::quant::GgmlType;
    use crate::synth::{synth_model, SynthSpec};
    use crate::{LoadOptions, Model, Numerics, Session, SessionOptions};

    fn model(numerics: Numerics) -> Arc<Model> {
        let w = synth_model(&SynthSpec::tiny(GgmlType::Q8_0), None).unwrap();
        let file = Arc::new(GgufFile::from_bytes(w.to_bytes()).unwrap());
        let opts = LoadOptions {
            n_threads: Some(1),
            layers: None,
            numerics,
        };
        Arc::new(Model::from_file(file, &opts).unwrap())
    }

    fn session(m: &Arc<Model>) -> strata_session {
        strata_session {
            state: Mutex::new(SessionState {
                session: Session::new(Arc::clone(m), &SessionOptions { n_ctx: Some(128) }).unwrap(),
                logits: None,
            }),
        }
    }

    fn result() -> strata_receipt_result {
        strata_receipt_result {
            struct_size: size_of::<strata_receipt_result>() as u32,
            ..Default::default()
        }
    }

    fn encode(r: *const strata_receipt, format: u32) -> Vec<u8> {
        let mut len = 0usize;
        unsafe {
            assert_eq!(
                strata_receipt_encode(r, format, std::ptr::null_mut(), 0, &mut len),
                STRATA_BUFFER_TOO_SMALL
            );
            let mut buf = vec![0u8; len];
            assert_eq!(
                strata_receipt_encode(r, format, buf.as_mut_ptr(), buf.len(), &mut len),
                STRATA_OK
            );
            assert_eq!(len, buf.len());
            buf
        }
    }

    /// An honest receipt holds through the ABI, an altered one differs at
    /// its index, garbage and NULLs are statuses, never crashes.
    #[test]
    fn receipts_through_the_c_abi() {
        let m = model(Numerics::BatchInvariant);
        let cm = strata_model {
            model: Arc::clone(&m),
        };
        let mut s = session(&m);
        let prompt = "hello world";
        let mut r: *mut strata_receipt = std::ptr::null_mut();
        let mut res = result();
        unsafe {
            assert_eq!(
                strata_generate_with_receipt(
                    &mut s,
                    prompt.as_ptr() as *const c_char,
                    prompt.len(),
                    std::ptr::null(),
                    std::ptr::null_mut(),
                    &mut r
                ),
                STRATA_OK
            );
            let bin = encode(r, STRATA_RECEIPT_BINARY);
            let json = encode(r, STRATA_RECEIPT_JSON);
            let mut fp = [0u8; 32];
            assert_eq!(
                strata_receipt_fingerprint(r, fp.as_mut_ptr(), 32),
                STRATA_OK
            );
            for bytes in [&bin, &json] {
                assert_eq!(
                    strata_receipt_verify(&cm, bytes.as_ptr(), bytes.len(), &mut res),
                    STRATA_OK
                );
                assert_eq!(res.verdict, STRATA_RECEIPT_HOLDS);
                assert_eq!(res.fingerprint, fp);
                assert_eq!(res.n_tokens, (*r).receipt.tokens.len() as u64);
            }
            let mut forged = Receipt::from_bytes(&bin).unwrap();
            forged.tokens[9] = (forged.tokens[9] + 1) % 320;
            let f = forged.to_bytes();
            assert_eq!(
                strata_receipt_verify(&cm, f.as_ptr(), f.len(), &mut res),
                STRATA_OK
            );
            assert_eq!(
                (res.verdict, res.reason, res.index, res.recorded_token),
                (
                    STRATA_RECEIPT_DIFFERS,
                    STRATA_RECEIPT_REASON_TOKEN,
                    9,
                    forged.tokens[9]
                )
            );
            // Garbage, truncation, NULLs, a bad format, a small struct.
            for bad in [&b"garbage"[..], &bin[..bin.len() - 1], &json[..10]] {
                assert_eq!(
                    strata_receipt_verify(&cm, bad.as_ptr(), bad.len(), &mut res),
                    STRATA_RECEIPT_MALFORMED
                );
            }
            assert_eq!(
                strata_receipt_verify(std::ptr::null(), bin.as_ptr(), bin.len(), &mut res),
                STRATA_NULL_POINTER
            );
            assert_eq!(
                strata_receipt_verify(&cm, std::ptr::null(), 5, &mut res),
                STRATA_NULL_POINTER
            );
            assert_eq!(
                strata_receipt_verify(&cm, bin.as_ptr(), bin.len(), std::ptr::null_mut()),
                STRATA_NULL_POINTER
            );
            let mut small = result();
            small.struct_size = 8;
            assert_eq!(
                strata_receipt_verify(&cm, bin.as_ptr(), bin.len(), &mut small),
                STRATA_STRUCT_SIZE
            );
            let mut len = 0;
            assert_eq!(
                strata_receipt_encode(r, 7, std::ptr::null_mut(), 0, &mut len),
                STRATA_INVALID_ARGUMENT
            );
            assert_eq!(
                strata_receipt_encode(std::ptr::null(), 0, std::ptr::null_mut(), 0, &mut len),
                STRATA_NULL_POINTER
            );
            strata_receipt_free(r);
            strata_receipt_free(std::ptr::null_mut());
            // llama.cpp's numerics: refused before anything runs.
            let lm = model(Numerics::LlamaCpp);
            let lcm = strata_model {
                model: Arc::clone(&lm),
            };
            let mut ls = session(&lm);
            let mut r2: *mut strata_receipt = std::ptr::null_mut();
            assert_eq!(
                strata_generate_with_receipt(
                    &mut ls,
                    prompt.as_ptr() as *const c_char,
                    prompt.len(),
                    std::ptr::null(),
                    std::ptr::null_mut(),
                    &mut r2
                ),
                STRATA_INVALID_ARGUMENT
            );
            assert!(r2.is_null());
            assert_eq!(ls.state.lock().unwrap().session.position(), 0);
            assert_eq!(
                strata_receipt_verify(&lcm, bin.as_ptr(), bin.len(), &mut res),
                STRATA_INVALID_ARGUMENT
            );
        }
    }
}
