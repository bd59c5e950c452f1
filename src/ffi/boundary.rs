//! The panic boundary. Every `extern "C"` function's body runs inside
//! [`ffi_guard!`]: a returned [`Failure`] becomes its status and the
//! thread's last error; a panic is caught and becomes `STRATA_PANIC` (with
//! the panic message as the last error), so no input can abort the host.
//! `panic = "unwind"` in every Cargo profile the library ships with is what
//! makes the catch possible.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::status::strata_status;
use crate::Error;

/// Why a call failed: the status it returns and the message kept as the
/// thread's last error.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: strata_status,
    pub(crate) message: String,
}

/// What a guarded body returns.
pub(crate) type FfiResult<T = ()> = Result<T, Failure>;

/// A failure with a status and a message.
pub(crate) fn fail(status: strata_status, message: impl Into<String>) -> Failure {
    Failure {
        status,
        message: message.into(),
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            status: strata_status::of(&e),
            message: e.to_string(),
        }
    }
}

impl Failure {
    /// Keep the message as the last error, log it, return the status.
    fn record(self) -> strata_status {
        log_debug!("call failed ({}): {}", self.status.name(), self.message);
        super::error::set(&self.message);
        self.status
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

fn record_panic(payload: Box<dyn Any + Send>) {
    let msg = format!(
        "internal error (a Rust panic, caught): {}",
        panic_message(&*payload)
    );
    // Dropping the payload could itself panic; never let that escape.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
    log_error!("{msg}");
    super::error::set(&msg);
}

/// Run a status-returning body. Used through [`ffi_guard!`].
pub(crate) fn guard_status(f: impl FnOnce() -> FfiResult) -> strata_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => strata_status::STRATA_OK,
        Ok(Err(e)) => e.record(),
        Err(payload) => {
            record_panic(payload);
            strata_status::STRATA_PANIC
        }
    }
}

/// Run a body that returns a plain value (`on_panic` if it panics).
pub(crate) fn guard_value<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            record_panic(payload);
            on_panic
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let st = ffi_guard!({
            if std::hint::black_box(true) {
                panic!("boom {}", 7);
            }
            Ok(())
        });
        assert_eq!(st, strata_status::STRATA_PANIC);
        assert!(super::super::error::get().contains("boom 7"));
        let v = ffi_guard!(@value 5u32, {
            if std::hint::black_box(true) {
                panic!("again");
            }
            1
        });
        assert_eq!(v, 5);
    }

    #[test]
    fn a_failure_becomes_its_status() {
        let st = ffi_guard!({ Err(fail(strata_status::STRATA_BUSY, "in use")) });
        assert_eq!(st, strata_status::STRATA_BUSY);
        assert_eq!(super::super::error::get(), "in use");
        assert_eq!(ffi_guard!({ Ok(()) }), strata_status::STRATA_OK);
    }
}
