//! Sessions: one conversation's KV cache over a shared model; feeding
//! tokens, reading logits, rolling back.

use std::mem::size_of;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use super::args::{self, Out, OutBuf, SizedStruct};
use super::boundary::{fail, FfiResult};
use super::model::strata_model;
use super::status::strata_status::{self, *};
use super::tokenize::check_tokens;
use crate::{Session, SessionOptions};

/// One conversation over a model: its KV cache, the tokens it holds and the
/// logits of the last token fed. Use it from one thread at a time (a call
/// while it is in use returns STRATA_BUSY). Independent of every other
/// session, including those on the same model.
pub struct strata_session {
    pub(crate) state: Mutex<SessionState>,
}

pub(crate) struct SessionState {
    pub(crate) session: Session,
    /// `[n_vocab]` logits of the last token fed, until the next change.
    pub(crate) logits: Option<Vec<f32>>,
}

impl strata_session {
    pub(crate) unsafe fn get<'a>(p: *const strata_session) -> FfiResult<&'a strata_session> {
        args::nonnull(p, "session")
    }

    /// Take the session for one call; STRATA_BUSY if it is in use.
    pub(crate) fn lock(&self) -> FfiResult<MutexGuard<'_, SessionState>> {
        match self.state.try_lock() {
            Ok(g) => Ok(g),
            // A panic inside an earlier call was caught at the boundary; the
            // session's cache is only ever extended after a forward
            // completes, so its state is still consistent.
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(fail(
                STRATA_BUSY,
                "the session is in use (by another thread, or this call came from its own callback)",
            )),
        }
    }
}

/// How to create a session. Set struct_size to sizeof(strata_session_options);
/// NULL options mean the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct strata_session_options {
    /// sizeof(this struct), set by the caller (see the conventions).
    pub struct_size: u32,
    /// Most positions (prompt + generated tokens) the session may hold;
    /// 0 (default) = the model's training context, capped at 4096. The KV
    /// cache grows on demand up to this.
    pub n_ctx: u32,
}

impl Default for strata_session_options {
    fn default() -> Self {
        strata_session_options {
            struct_size: size_of::<Self>() as u32,
            n_ctx: 0,
        }
    }
}

unsafe impl SizedStruct for strata_session_options {
    const NAME: &'static str = "strata_session_options";
    const MIN_SIZE: usize = size_of::<Self>();
}

/// Open a session on a model that holds both the token embedding and the
/// output head (a whole model, or a single shard covering every layer);
/// STRATA_WRONG_SHARD otherwise (use strata_shard for layer ranges). The
/// session keeps the model alive. Free it with strata_session_free.
#[no_mangle]
pub unsafe extern "C" fn strata_session_new(
    model: *const strata_model,
    options: *const strata_session_options,
    session: *mut *mut strata_session,
) -> strata_status {
    ffi_guard!({
        let m = &strata_model::get(model)?.model;
        let opts = args::read_struct_or_default(options, "options")?;
        let out = Out::new(session, "session")?;
        if !m.takes_tokens() || !m.gives_logits() {
            return Err(fail(
                STRATA_WRONG_SHARD,
                format!(
                    "the model holds layers {}..{} of {} without the {}; sessions need both ends (use strata_shard)",
                    m.layers().start,
                    m.layers().end,
                    m.config().n_layer,
                    if m.takes_tokens() { "output head" } else { "token embedding" }
                ),
            ));
        }
        let s = Session::new(
            Arc::clone(m),
            &SessionOptions {
                n_ctx: (opts.n_ctx > 0).then_some(opts.n_ctx as usize),
            },
        )?;
        log_debug!("session opened with a context of {} positions", s.n_ctx());
        out.write(Box::into_raw(Box::new(strata_session {
            state: Mutex::new(SessionState {
                session: s,
                logits: None,
            }),
        })));
        Ok(())
    })
}

/// Free a session and its KV cache (NULL is accepted). Must not race with
/// another call on the same session; if the session is still in use (it is
/// freed from inside its own generate callback) it is leaked rather than
/// freed under the running call, and a warning is logged.
#[no_mangle]
pub unsafe extern "C" fn strata_session_free(session: *mut strata_session) {
    ffi_guard!(@value (), {
        if session.is_null() {
            return;
        }
        if matches!((*session).state.try_lock(), Err(TryLockError::WouldBlock)) {
            log_warn!("strata_session_free on a session that is in use: leaked instead of freed");
            return;
        }
        drop(Box::from_raw(session));
    })
}

/// Forget every position: the session is as new (same context limit).
#[no_mangle]
pub unsafe extern "C" fn strata_session_reset(session: *mut strata_session) -> strata_status {
    ffi_guard!({
        let mut st = strata_session::get(session)?.lock()?;
        st.session.reset();
        st.logits = None;
        Ok(())
    })
}

/// Roll back to `position` positions (forget everything from it on), for
/// replay or speculative decoding. STRATA_INVALID_ARGUMENT if `position` is
/// past what the session holds. The last logits are dropped unless
/// `position` equals the current position.
#[no_mangle]
pub unsafe extern "C" fn strata_session_truncate(
    session: *mut strata_session,
    position: usize,
) -> strata_status {
    ffi_guard!({
        let mut st = strata_session::get(session)?.lock()?;
        let held = st.session.position();
        if position > held {
            return Err(fail(
                STRATA_INVALID_ARGUMENT,
                format!("cannot truncate to position {position}: the session holds {held}"),
            ));
        }
        if position < held {
            st.session.truncate(position);
            st.logits = None;
        }
        Ok(())
    })
}

/// Positions the session holds (`*position`).
#[no_mangle]
pub unsafe extern "C" fn strata_session_position(
    session: *const strata_session,
    position: *mut usize,
) -> strata_status {
    ffi_guard!({
        let st = strata_session::get(session)?.lock()?;
        Out::new(position, "position")?.write(st.session.position());
        Ok(())
    })
}

/// The session's context limit in positions (`*n_ctx`).
#[no_mangle]
pub unsafe extern "C" fn strata_session_n_ctx(
    session: *const strata_session,
    n_ctx: *mut usize,
) -> strata_status {
    ffi_guard!({
        let st = strata_session::get(session)?.lock()?;
        Out::new(n_ctx, "n_ctx")?.write(st.session.n_ctx());
        Ok(())
    })
}

/// Evaluate `n_tokens` token ids after what the session holds and keep the
/// logits of the last one (read them with strata_session_logits or sample
/// with strata_sampler_sample_session). On failure the session is
/// unchanged: STRATA_EMPTY_INPUT (no tokens), STRATA_TOKEN_OUT_OF_RANGE,
/// STRATA_CONTEXT_FULL (the tokens do not fit in n_ctx).
#[no_mangle]
pub unsafe extern "C" fn strata_session_feed(
    session: *mut strata_session,
    tokens: *const u32,
    n_tokens: usize,
) -> strata_status {
    ffi_guard!({
        let s = strata_session::get(session)?;
        let tokens = args::in_slice(tokens, n_tokens, "tokens")?;
        let mut st = s.lock()?;
        if tokens.is_empty() {
            return Err(fail(
                STRATA_EMPTY_INPUT,
                "no tokens to feed (n_tokens is 0)",
            ));
        }
        check_tokens(st.session.model(), tokens)?;
        let logits = st.session.feed(tokens)?;
        st.logits = Some(logits);
        Ok(())
    })
}

/// Copy the logits of the last token fed (n_vocab floats) into `logits`
/// (room for `len`); `*out_len` receives n_vocab. A copy, so it stays valid
/// whatever happens to the session later. STRATA_INVALID_STATE when there
/// are none: nothing fed yet, or the session was reset, truncated or used
/// by strata_generate since.
#[no_mangle]
pub unsafe extern "C" fn strata_session_logits(
    session: *const strata_session,
    logits: *mut f32,
    len: usize,
    out_len: *mut usize,
) -> strata_status {
    ffi_guard!({
        let st = strata_session::get(session)?.lock()?;
        let out = OutBuf::new(logits, len, out_len, "logits")?;
        let l = args::required(
            st.logits.as_deref(),
            STRATA_INVALID_STATE,
            "no logits: feed tokens first (reset, truncate and generate drop them)",
        )?;
        out.fill(l)
    })
}

/// Copy the token ids the session holds (positions 0 .. position-1) into
/// `tokens`; `*n_tokens` receives the count.
#[no_mangle]
pub unsafe extern "C" fn strata_session_tokens(
    session: *const strata_session,
    tokens: *mut u32,
    max_tokens: usize,
    n_tokens: *mut usize,
) -> strata_status {
    ffi_guard!({
        let st = strata_session::get(session)?.lock()?;
        OutBuf::new(tokens, max_tokens, n_tokens, "tokens")?.fill(st.session.tokens())
    })
}

/// Fill `*options` with the defaults. Set options->struct_size first.
#[no_mangle]
pub unsafe extern "C" fn strata_session_options_default(
    options: *mut strata_session_options,
) -> strata_status {
    ffi_guard!({
        args::OutStruct::new(options, "options")?.write(strata_session_options::default());
        Ok(())
    })
}
