//! The last error of each thread: the full message of the most recent
//! failed call on that thread, copied out by `strata_last_error`.

use std::cell::RefCell;
use std::ffi::c_char;

use super::args::{self, Out};
use super::boundary::fail;
use super::status::strata_status;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Replace the calling thread's last error.
pub(crate) fn set(message: &str) {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.clear();
        e.push_str(message);
    });
}

/// The calling thread's last error.
pub(crate) fn get() -> String {
    LAST_ERROR.with(|e| e.borrow().clone())
}

/// Copy the message of the last failed call on this thread into `buf`
/// (`len` bytes), NUL-terminated; `*written` receives the bytes copied
/// without the NUL. The message is "" when no call on this thread has failed.
/// A call that succeeds does not clear it; this call never changes it.
///
/// Unlike other copy-out functions this one truncates: when the message does
/// not fit, as much as fits (cut at a UTF-8 character boundary) is copied,
/// NUL-terminated, and STRATA_BUFFER_TOO_SMALL is returned with `*written`
/// set to the bytes copied; strata_last_error_length() gives the full length.
/// `buf` may be NULL only if `len` is 0; `written` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn strata_last_error(
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> strata_status {
    let saved = get();
    let msg = &saved;
    let status = ffi_guard!({
        let buf = args::out_slice(buf as *mut u8, len, "buf")?;
        let written = Out::optional(written, "written")?;
        let mut n = msg.len().min(buf.len().saturating_sub(1));
        while !msg.is_char_boundary(n) {
            n -= 1;
        }
        if !buf.is_empty() {
            buf[..n].copy_from_slice(&msg.as_bytes()[..n]);
            buf[n] = 0;
        }
        if let Some(w) = written {
            w.write(n);
        }
        if n < msg.len() {
            return Err(fail(strata_status::STRATA_BUFFER_TOO_SMALL, msg.clone()));
        }
        Ok(())
    });
    // Reporting the last error must not replace it with "buffer too small".
    set(&saved);
    status
}

/// Length in bytes (without the NUL) of the calling thread's last error.
#[no_mangle]
pub extern "C" fn strata_last_error_length() -> usize {
    ffi_guard!(@value 0, { LAST_ERROR.with(|e| e.borrow().len()) })
}
