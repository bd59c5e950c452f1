//! Samplers: greedy, temperature, top-k/p, min-p and penalties, seeded and
//! reproducible across runs and platforms (see `crate::sampler`).

use std::mem::size_of;
use std::sync::{Mutex, MutexGuard, TryLockError};

use super::args::{self, Out, OutStruct, SizedStruct};
use super::boundary::{fail, FfiResult};
use super::session::strata_session;
use super::status::strata_status::{self, *};
use crate::sampler::{Sampler, SamplerParams};

/// Sampling parameters. Set struct_size to sizeof(strata_sampler_params) and
/// start from strata_sampler_params_default() (the llama.cpp defaults) or
/// strata_sampler_params_greedy(). The steps run in this order: penalties,
/// top-k, top-p, min-p, temperature, one seeded draw.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct strata_sampler_params {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// Softmax temperature; <= 0 samples greedily (argmax). Default 0.8.
    pub temperature: f32,
    /// Keep the top_k most likely tokens; 0 = off. Default 40.
    pub top_k: u32,
    /// Nucleus threshold in [0, 1]; 1 = off. Default 0.95.
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the best; [0, 1], 0 = off.
    /// Default 0.05.
    pub min_p: f32,
    /// Repetition penalty, > 0; 1 = off. Default 1.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at; 0 = off. Default 64.
    pub repeat_last_n: u32,
    /// Subtracted per occurrence in the window; 0 = off. Default 0.
    pub frequency_penalty: f32,
    /// Subtracted once if the token is in the window; 0 = off. Default 0.
    pub presence_penalty: f32,
    /// RNG seed; the same seed, parameters and logits give the same tokens
    /// on every run and platform. Default 42.
    pub seed: u64,
}

impl From<&SamplerParams> for strata_sampler_params {
    fn from(p: &SamplerParams) -> Self {
        strata_sampler_params {
            struct_size: size_of::<Self>() as u32,
            temperature: p.temperature,
            top_k: p.top_k.min(u32::MAX as usize) as u32,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            repeat_last_n: p.repeat_last_n.min(u32::MAX as usize) as u32,
            frequency_penalty: p.frequency_penalty,
            presence_penalty: p.presence_penalty,
            seed: p.seed,
        }
    }
}

impl Default for strata_sampler_params {
    fn default() -> Self {
        (&SamplerParams::default()).into()
    }
}

unsafe impl SizedStruct for strata_sampler_params {
    const NAME: &'static str = "strata_sampler_params";
    const MIN_SIZE: usize = size_of::<Self>();
}

impl strata_sampler_params {
    /// The library's parameters, validated.
    pub(crate) fn to_params(self) -> FfiResult<SamplerParams> {
        let p = SamplerParams {
            temperature: self.temperature,
            top_k: self.top_k as usize,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n as usize,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            seed: self.seed,
        };
        p.validate()?;
        Ok(p)
    }
}

/// A sampler for one sequence: parameters, RNG state, and the recent tokens
/// the penalties look at. Use it from one thread at a time (a call while it
/// is in use returns STRATA_BUSY).
pub struct strata_sampler {
    sampler: Mutex<Sampler>,
}

impl strata_sampler {
    unsafe fn lock<'a>(p: *const strata_sampler) -> FfiResult<MutexGuard<'a, Sampler>> {
        let s: &'a strata_sampler = args::nonnull(p, "sampler")?;
        match s.sampler.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(fail(STRATA_BUSY, "the sampler is in use")),
        }
    }
}

/// Fill `*params` with the defaults (llama.cpp's, seed 42). Set
/// params->struct_size first.
#[no_mangle]
pub unsafe extern "C" fn strata_sampler_params_default(
    params: *mut strata_sampler_params,
) -> strata_status {
    ffi_guard!({
        OutStruct::new(params, "params")?.write(strata_sampler_params::default());
        Ok(())
    })
}

/// Fill `*params` for plain argmax: temperature 0, every filter and
/// penalty off. Set params->struct_size first.
#[no_mangle]
pub unsafe extern "C" fn strata_sampler_params_greedy(
    params: *mut strata_sampler_params,
) -> strata_status {
    ffi_guard!({
        OutStruct::new(params, "params")?.write((&SamplerParams::greedy()).into());
        Ok(())
    })
}

/// Create a sampler. STRATA_INVALID_ARGUMENT names the first bad parameter
/// (a non-finite value, top_p or min_p outside [0, 1], repeat_penalty <= 0).
/// Free it with strata_sampler_free.
#[no_mangle]
pub unsafe extern "C" fn strata_sampler_new(
    params: *const strata_sampler_params,
    sampler: *mut *mut strata_sampler,
) -> strata_status {
    ffi_guard!({
        let p = args::read_struct(params, "params")?.to_params()?;
        let out = Out::new(sampler, "sampler")?;
        let s = Sampler::new(p)?;
        out.write(Box::into_raw(Box::new(strata_sampler {
            sampler: Mutex::new(s),
        })));
        Ok(())
    })
}

/// Free a sampler (NULL is accepted).
#[no_mangle]
pub unsafe extern "C" fn strata_sampler_free(sampler: *mut strata_sampler) {
    ffi_guard!(@value (), {
        if !sampler.is_null() {
            drop(Box::from_raw(sampler));
        }
    })
}

/// Pick a token from `n_logits` logits (NaN counts as -inf) and accept it
/// (it enters the penalty window); `*token` receives it.
/// STRATA_INVALID_ARGUMENT for empty logits.
#[no_mangle]
pub unsafe extern "C" fn strata_sampler_sample(
    sampler: *mut strata_sampler,
    logits: *const f32,
    n_logits: usize,
    token: *mut u32,
) -> strata_status {
    ffi_guard!({
        let logits = args::in_slice(logits, n_logits, "logits")?;
        let out = Out::new(token, "token")?;
        if logits.is_empty() {
            return Err(fail(
                STRATA_INVALID_ARGUMENT,
                "no logits to sample from (n_logits is 0)",
            ));
        }
        let mut s = strata_sampler::lock(sampler)?;
        let id = s.sample(logits);
        s.accept(id);
        out.write(id);
        Ok(())
    })
}

/// As strata_sampler_sample, from the session's last logits (no copy).
/// STRATA_INVALID_STATE when the session has none (see
/// strata_session_logits).
#[no_mangle]
pub unsafe extern "C" fn strata_sampler_sample_session(
    sampler: *mut strata_sampler,
    session: *const strata_session,
    token: *mut u32,
) -> strata_status {
    ffi_guard!({
        let st = strata_session::get(session)?.lock()?;
        let out = Out::new(token, "token")?;
        let mut s = strata_sampler::lock(sampler)?;
        let logits = args::required(
            st.logits.as_deref(),
            STRATA_INVALID_STATE,
            "the session has no logits: feed tokens first",
        )?;
        let id = s.sample(logits);
        s.accept(id);
        out.write(id);
        Ok(())
    })
}

/// Put a token the sampler did not pick (e.g. a prompt token) into its
/// penalty window.
#[no_mangle]
pub unsafe extern "C" fn strata_sampler_accept(
    sampler: *mut strata_sampler,
    token: u32,
) -> strata_status {
    ffi_guard!({
        strata_sampler::lock(sampler)?.accept(token);
        Ok(())
    })
}

/// Forget the penalty window and restart the RNG from the seed.
#[no_mangle]
pub unsafe extern "C" fn strata_sampler_reset(sampler: *mut strata_sampler) -> strata_status {
    ffi_guard!({
        strata_sampler::lock(sampler)?.reset();
        Ok(())
    })
}
