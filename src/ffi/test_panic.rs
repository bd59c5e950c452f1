//! A test-only export that panics inside the boundary, so that the C test
//! suite can check that a panic reaches C as STRATA_PANIC, with a message,
//! and that the library keeps working afterwards. Compiled only with the
//! `ffi-test-panic` feature (release builds leave it off) and kept out of
//! `include/strata.h` (`cbindgen.toml` excludes it); `bindings/c/test_panic.c`
//! declares the prototype itself.

use super::args::Out;
use super::status::strata_status;

/// `how` = 0: no panic, `*out` = 42 and STRATA_OK. 1: a panic with a static
/// message; 2: with a formatted one; 3: with a payload that is not text.
/// `*out` is checked (NULL gives STRATA_NULL_POINTER) but written only on
/// success. Any other `how` panics too (a bad argument to a test hook is a
/// bug in the test).
#[no_mangle]
pub unsafe extern "C" fn strata_test_panic(how: i32, out: *mut u32) -> strata_status {
    ffi_guard!({
        let out = Out::new(out, "out")?;
        match how {
            0 => {}
            1 => panic!("strata_test_panic: a static message"),
            2 => panic!("strata_test_panic: a formatted message, how = {how}"),
            3 => std::panic::panic_any(how),
            _ => panic!("strata_test_panic: unknown how {how}"),
        }
        out.write(42);
        Ok(())
    })
}
