//! The library's log: a tiny facility that the C interface emits through
//! (model loads, shard setup, failed calls) and that a host receives with
//! `strata_set_log_callback`. One callback per loaded library; setting it is
//! thread-safe, and once `strata_set_log_callback` returns, the previous
//! callback is never called again (calls in flight on other threads finish
//! first), so its `user_data` may then be freed.

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::RwLock;

use super::boundary::fail;
use super::status::strata_status;

/// Severity of a log message; a lower number is more severe.
pub type strata_log_level = u32;
/// Something failed and the library could not do what it was asked.
pub const STRATA_LOG_ERROR: strata_log_level = 1;
/// Something unexpected that the library worked around.
pub const STRATA_LOG_WARN: strata_log_level = 2;
/// Milestones: a model loaded, a shard created, files written.
pub const STRATA_LOG_INFO: strata_log_level = 3;
/// Details: load stages, every failed call with its message.
pub const STRATA_LOG_DEBUG: strata_log_level = 4;

/// Receives log messages. `message` is NUL-terminated UTF-8 of
/// `message_len` bytes (without the NUL), valid only during the call.
/// Called on whichever thread produced the message, possibly on several
/// threads at once: it must be thread-safe. It must not call
/// strata_set_log_callback (that returns STRATA_BUSY); messages the library
/// produces while the callback runs on the same thread are dropped.
pub type strata_log_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: strata_log_level,
        message: *const c_char,
        message_len: usize,
    ),
>;

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, strata_log_level, *const c_char, usize),
    /// The caller's pointer, kept as an address: the caller promised the
    /// callback is thread-safe.
    user_data: usize,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
/// Messages up to this level are delivered (0: no callback).
static MAX_LEVEL: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Whether a message of `level` would be delivered (cheap; check it before
/// formatting anything costly).
pub(crate) fn enabled(level: strata_log_level) -> bool {
    level <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Deliver a message to the callback, if one is set and wants `level`.
pub(crate) fn emit(level: strata_log_level, args: fmt::Arguments) {
    if !enabled(level) || IN_CALLBACK.with(|c| c.get()) {
        return;
    }
    let guard = SINK.read().unwrap_or_else(|e| e.into_inner());
    let Some(sink) = guard.as_ref() else { return };
    if !enabled(level) {
        return;
    }
    let mut msg = fmt::format(args).into_bytes();
    // An interior NUL would cut the message short for C readers.
    for b in msg.iter_mut().filter(|b| **b == 0) {
        *b = b' ';
    }
    let len = msg.len();
    msg.push(0);
    IN_CALLBACK.with(|c| c.set(true));
    // SAFETY: the caller gave us this function and promised it can be
    // called from any thread with this user_data until it is replaced.
    unsafe {
        (sink.callback)(
            sink.user_data as *mut c_void,
            level,
            msg.as_ptr() as *const c_char,
            len,
        )
    };
    IN_CALLBACK.with(|c| c.set(false));
}

/// Set (or, with `callback` NULL, remove) the library's log callback.
/// Messages with a level up to `max_level` (STRATA_LOG_ERROR ..
/// STRATA_LOG_DEBUG) are delivered. The library logs nothing until a
/// callback is set. Thread-safe; when it returns, the previous callback will
/// not be called again. Returns STRATA_INVALID_ARGUMENT for a level outside
/// 1..4 (ignored when removing), STRATA_BUSY when called from inside the log
/// callback.
#[no_mangle]
pub unsafe extern "C" fn strata_set_log_callback(
    callback: strata_log_fn,
    user_data: *mut c_void,
    max_level: strata_log_level,
) -> strata_status {
    ffi_guard!({
        if IN_CALLBACK.with(|c| c.get()) {
            return Err(fail(
                strata_status::STRATA_BUSY,
                "strata_set_log_callback was called from inside the log callback",
            ));
        }
        if callback.is_some() && !(STRATA_LOG_ERROR..=STRATA_LOG_DEBUG).contains(&max_level) {
            return Err(fail(
                strata_status::STRATA_INVALID_ARGUMENT,
                format!("log level {max_level} is not one of 1 (error) .. 4 (debug)"),
            ));
        }
        let mut sink = SINK.write().unwrap_or_else(|e| e.into_inner());
        *sink = callback.map(|callback| Sink {
            callback,
            user_data: user_data as usize,
        });
        MAX_LEVEL.store(
            if sink.is_some() { max_level } else { 0 },
            Ordering::Relaxed,
        );
        Ok(())
    })
}
