//! Reading arguments from C and writing results back: every pointer,
//! length, alignment, UTF-8 string and `struct_size` is checked here before
//! any work is done, and out-parameters are only written through [`Out`] /
//! [`OutBuf`] at the end of a successful call.

use std::ffi::{c_char, CStr};
use std::mem::{align_of, size_of};
use std::path::PathBuf;
use std::ptr;

use super::boundary::{fail, Failure, FfiResult};
use super::status::strata_status::{self, *};

fn null(name: &str) -> Failure {
    fail(STRATA_NULL_POINTER, format!("'{name}' is NULL"))
}

fn check_align<T>(p: *const T, name: &str) -> FfiResult {
    if (p as usize) % align_of::<T>() != 0 {
        return Err(fail(
            STRATA_INVALID_ARGUMENT,
            format!("'{name}' is not aligned to {} bytes", align_of::<T>()),
        ));
    }
    Ok(())
}

fn check_len<T>(len: usize, name: &str) -> FfiResult {
    if len
        .checked_mul(size_of::<T>().max(1))
        .map_or(true, |b| b > isize::MAX as usize)
    {
        return Err(fail(
            STRATA_INVALID_ARGUMENT,
            format!("'{name}' length {len} is too large"),
        ));
    }
    Ok(())
}

/// A required pointer to one value.
pub(crate) unsafe fn nonnull<'a, T>(p: *const T, name: &str) -> FfiResult<&'a T> {
    if p.is_null() {
        return Err(null(name));
    }
    check_align(p, name)?;
    Ok(&*p)
}

/// A buffer of `len` values; NULL is accepted only when `len` is 0.
pub(crate) unsafe fn in_slice<'a, T>(p: *const T, len: usize, name: &str) -> FfiResult<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(fail(
            STRATA_NULL_POINTER,
            format!("'{name}' is NULL but its length is {len}"),
        ));
    }
    check_align(p, name)?;
    check_len::<T>(len, name)?;
    Ok(std::slice::from_raw_parts(p, len))
}

/// An output buffer of `len` values; NULL is accepted only when `len` is 0.
pub(crate) unsafe fn out_slice<'a, T>(p: *mut T, len: usize, name: &str) -> FfiResult<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(fail(
            STRATA_NULL_POINTER,
            format!("'{name}' is NULL but its length is {len}"),
        ));
    }
    check_align(p, name)?;
    check_len::<T>(len, name)?;
    Ok(std::slice::from_raw_parts_mut(p, len))
}

/// Fail unless the input buffer `a` (`a_len` values) and the output buffer
/// `b` (`b_len` values) are disjoint: Rust may not read memory it is
/// writing through another reference, so overlapping buffers are refused
/// rather than given a meaning.
pub(crate) fn disjoint<A, B>(
    a: *const A,
    a_len: usize,
    b: *const B,
    b_len: usize,
    what: &str,
) -> FfiResult {
    let (a0, b0) = (a as usize, b as usize);
    let a1 = a0.saturating_add(a_len.saturating_mul(size_of::<A>()));
    let b1 = b0.saturating_add(b_len.saturating_mul(size_of::<B>()));
    if a_len > 0 && b_len > 0 && a0 < b1 && b0 < a1 {
        return Err(fail(
            STRATA_INVALID_ARGUMENT,
            format!("{what}: the input and output buffers overlap"),
        ));
    }
    Ok(())
}

/// UTF-8 text given as bytes and a length.
pub(crate) unsafe fn text<'a>(p: *const c_char, len: usize, name: &str) -> FfiResult<&'a str> {
    let bytes = in_slice(p as *const u8, len, name)?;
    std::str::from_utf8(bytes).map_err(|e| {
        fail(
            STRATA_INVALID_UTF8,
            format!("'{name}' is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// A NUL-terminated file path (bytes on Unix, UTF-8 elsewhere).
pub(crate) unsafe fn path(p: *const c_char, name: &str) -> FfiResult<PathBuf> {
    if p.is_null() {
        return Err(null(name));
    }
    let c = CStr::from_ptr(p);
    if c.is_empty() {
        return Err(fail(
            STRATA_INVALID_ARGUMENT,
            format!("'{name}' is an empty path"),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(c.to_bytes())))
    }
    #[cfg(not(unix))]
    {
        c.to_str()
            .map(PathBuf::from)
            .map_err(|_| fail(STRATA_INVALID_UTF8, format!("'{name}' is not valid UTF-8")))
    }
}

/// Reject flag bits outside `known`.
pub(crate) fn flags(value: u32, known: u32, name: &str) -> FfiResult<u32> {
    if value & !known != 0 {
        return Err(fail(
            STRATA_INVALID_ARGUMENT,
            format!("'{name}' has unknown bits {:#x}", value & !known),
        ));
    }
    Ok(value)
}

/// An out-parameter for one value, checked up front, written on success.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// A required out-parameter.
    pub(crate) unsafe fn new(p: *mut T, name: &str) -> FfiResult<Out<T>> {
        if p.is_null() {
            return Err(null(name));
        }
        check_align(p, name)?;
        Ok(Out(p))
    }

    /// An out-parameter the caller may leave NULL.
    pub(crate) unsafe fn optional(p: *mut T, name: &str) -> FfiResult<Option<Out<T>>> {
        if p.is_null() {
            return Ok(None);
        }
        check_align(p, name)?;
        Ok(Some(Out(p)))
    }

    pub(crate) fn write(self, v: T) {
        // SAFETY: checked non-NULL and aligned; the caller owns the memory.
        unsafe { ptr::write(self.0, v) }
    }
}

/// An output buffer with its capacity and the out-parameter that receives
/// the length: the convention of every copy-out function.
pub(crate) struct OutBuf<'a, T> {
    buf: &'a mut [T],
    len_out: Out<usize>,
}

impl<'a, T: Copy> OutBuf<'a, T> {
    pub(crate) unsafe fn new(
        buf: *mut T,
        cap: usize,
        len_out: *mut usize,
        name: &str,
    ) -> FfiResult<OutBuf<'a, T>> {
        let len_name = format!("{name}'s length out-parameter");
        Ok(OutBuf {
            buf: out_slice(buf, cap, name)?,
            len_out: Out::new(len_out, &len_name)?,
        })
    }

    /// Fail with STRATA_BUFFER_TOO_SMALL (writing `needed` to the length
    /// out-parameter) unless `needed` values fit. Call it before doing
    /// anything that changes state.
    pub(crate) fn reserve(&mut self, needed: usize) -> FfiResult {
        if self.buf.len() < needed {
            // SAFETY: checked in `new`; the needed length is the one value
            // written on this failure (the documented exception).
            unsafe { ptr::write(self.len_out.0, needed) };
            return Err(fail(
                STRATA_BUFFER_TOO_SMALL,
                format!(
                    "the buffer holds {} values, {needed} are needed",
                    self.buf.len()
                ),
            ));
        }
        Ok(())
    }

    /// Copy `data` out and write its length.
    pub(crate) fn fill(mut self, data: &[T]) -> FfiResult {
        self.reserve(data.len())?;
        self.buf[..data.len()].copy_from_slice(data);
        self.len_out.write(data.len());
        Ok(())
    }
}

impl OutBuf<'_, c_char> {
    /// As [`OutBuf::reserve`] for text of `len` bytes plus its NUL (the
    /// length written on failure excludes the NUL).
    pub(crate) fn reserve_text(&mut self, len: usize) -> FfiResult {
        if self.buf.len() < len + 1 {
            // SAFETY: as in `reserve`.
            unsafe { ptr::write(self.len_out.0, len) };
            return Err(fail(
                STRATA_BUFFER_TOO_SMALL,
                format!(
                    "the buffer holds {} bytes, {} are needed (with the NUL)",
                    self.buf.len(),
                    len + 1
                ),
            ));
        }
        Ok(())
    }

    /// Copy text out with a terminating NUL; the length written excludes it.
    pub(crate) fn fill_text(mut self, s: &[u8]) -> FfiResult {
        self.reserve_text(s.len())?;
        for (d, &b) in self.buf.iter_mut().zip(s) {
            *d = b as c_char;
        }
        self.buf[s.len()] = 0;
        self.len_out.write(s.len());
        Ok(())
    }
}

/// Largest struct_size accepted (larger is surely a bug, not a newer header).
pub(crate) const MAX_STRUCT_SIZE: usize = 65536;

/// A `#[repr(C)]` option or info struct that starts with `u32 struct_size`.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, start with a `u32` struct_size, and
/// have no field for which some bit pattern is invalid (no `bool`, no Rust
/// enum, no reference): bytes copied from C are taken as they are.
pub(crate) unsafe trait SizedStruct: Copy + Default {
    /// The C name, for messages.
    const NAME: &'static str;
    /// sizeof the first published version; smaller struct_size is rejected.
    const MIN_SIZE: usize;
}

unsafe fn struct_size<T: SizedStruct>(p: *const T) -> FfiResult<usize> {
    check_align(p, T::NAME)?;
    let size = ptr::read(p as *const u32) as usize;
    if !(T::MIN_SIZE..=MAX_STRUCT_SIZE).contains(&size) {
        return Err(fail(
            STRATA_STRUCT_SIZE,
            format!(
                "{}.struct_size is {size}; set it to sizeof({}) (this library's is {}, the smallest accepted {})",
                T::NAME,
                T::NAME,
                size_of::<T>(),
                T::MIN_SIZE
            ),
        ));
    }
    Ok(size)
}

/// Read an input struct: fields the caller's (smaller) struct lacks keep
/// their defaults; bytes past what this library knows must be zero.
pub(crate) unsafe fn read_struct<T: SizedStruct>(p: *const T, name: &str) -> FfiResult<T> {
    if p.is_null() {
        return Err(null(name));
    }
    let size = struct_size(p)?;
    let known = size_of::<T>();
    let mut v = T::default();
    ptr::copy_nonoverlapping(p as *const u8, &mut v as *mut T as *mut u8, size.min(known));
    if size > known {
        let extra = std::slice::from_raw_parts((p as *const u8).add(known), size - known);
        if let Some(i) = extra.iter().position(|&b| b != 0) {
            return Err(fail(
                STRATA_STRUCT_SIZE,
                format!(
                    "{} is {size} bytes and byte {} is not zero; this library knows only the first {known} \
                     (the caller was built against a newer strata.h and sets a field this library cannot honour)",
                    T::NAME,
                    known + i
                ),
            ));
        }
    }
    Ok(v)
}

/// As [`read_struct`], with NULL meaning "all defaults".
pub(crate) unsafe fn read_struct_or_default<T: SizedStruct>(
    p: *const T,
    name: &str,
) -> FfiResult<T> {
    if p.is_null() {
        Ok(T::default())
    } else {
        read_struct(p, name)
    }
}

/// An output struct, checked up front.
pub(crate) struct OutStruct<T> {
    p: *mut T,
    size: usize,
}

impl<T: SizedStruct> OutStruct<T> {
    pub(crate) unsafe fn new(p: *mut T, name: &str) -> FfiResult<OutStruct<T>> {
        if p.is_null() {
            return Err(null(name));
        }
        Ok(OutStruct {
            p,
            size: struct_size(p)?,
        })
    }

    pub(crate) unsafe fn optional(p: *mut T, name: &str) -> FfiResult<Option<OutStruct<T>>> {
        if p.is_null() {
            Ok(None)
        } else {
            Self::new(p, name).map(Some)
        }
    }

    /// Write every field the caller's struct has room for (its struct_size
    /// is left as it is) and zero the bytes this library does not know.
    pub(crate) fn write(self, v: T) {
        let known = size_of::<T>();
        let n = self.size.min(known);
        let src = &v as *const T as *const u8;
        let dst = self.p as *mut u8;
        // SAFETY: the caller declared `size` bytes at `p`; struct_size
        // (the first 4 bytes) is not touched.
        unsafe {
            ptr::copy_nonoverlapping(src.add(4), dst.add(4), n - 4);
            if self.size > known {
                ptr::write_bytes(dst.add(known), 0, self.size - known);
            }
        }
    }
}

/// Map `Option<T>` to a required argument with a clear message.
pub(crate) fn required<T>(
    v: Option<T>,
    status: strata_status,
    message: impl Into<String>,
) -> FfiResult<T> {
    v.ok_or_else(|| fail(status, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Opts {
        struct_size: u32,
        a: u32,
        b: u64,
    }

    impl Default for Opts {
        fn default() -> Self {
            Opts {
                struct_size: size_of::<Self>() as u32,
                a: 7,
                b: 9,
            }
        }
    }

    unsafe impl SizedStruct for Opts {
        const NAME: &'static str = "opts";
        const MIN_SIZE: usize = 8;
    }

    /// A caller's struct: ours plus two trailing words.
    #[repr(C)]
    struct Bigger {
        o: Opts,
        extra: [u64; 2],
    }

    #[test]
    fn input_structs_follow_the_struct_size_rules() {
        let status = |r: FfiResult<Opts>| r.map_err(|f| f.status);
        let v = Opts {
            struct_size: 16,
            a: 1,
            b: 2,
        };
        assert_eq!(status(unsafe { read_struct(&v, "v") }), Ok(v));
        // An older, smaller caller: fields it lacks keep their defaults.
        let old = Opts {
            struct_size: 8,
            a: 1,
            b: 2,
        };
        assert_eq!(
            status(unsafe { read_struct(&old, "v") }),
            Ok(Opts {
                struct_size: 8,
                a: 1,
                b: 9
            })
        );
        for size in [0, 4, 7, MAX_STRUCT_SIZE as u32 + 1] {
            let bad = Opts {
                struct_size: size,
                ..v
            };
            assert_eq!(
                status(unsafe { read_struct(&bad, "v") }),
                Err(STRATA_STRUCT_SIZE),
                "size {size}"
            );
        }
        // A newer caller: accepted only when the unknown bytes are zero.
        let mut big = Bigger {
            o: Opts {
                struct_size: size_of::<Bigger>() as u32,
                a: 3,
                b: 4,
            },
            extra: [0, 0],
        };
        assert_eq!(
            status(unsafe { read_struct(&big.o, "v") }).map(|o| o.a),
            Ok(3)
        );
        big.extra[1] = 1;
        assert_eq!(
            status(unsafe { read_struct(&big.o, "v") }),
            Err(STRATA_STRUCT_SIZE)
        );
        assert_eq!(
            status(unsafe { read_struct(ptr::null::<Opts>(), "v") }),
            Err(STRATA_NULL_POINTER)
        );
        assert_eq!(
            status(unsafe { read_struct_or_default(ptr::null::<Opts>(), "v") }),
            Ok(Opts::default())
        );
    }

    #[test]
    fn output_structs_fill_what_fits_and_zero_the_rest() {
        let mut big = Bigger {
            o: Opts {
                struct_size: size_of::<Bigger>() as u32,
                a: 0,
                b: 0,
            },
            extra: [u64::MAX; 2],
        };
        unsafe { OutStruct::new(&mut big.o, "o") }
            .unwrap()
            .write(Opts {
                struct_size: 1,
                a: 5,
                b: 6,
            });
        assert_eq!(
            (big.o.struct_size as usize, big.o.a, big.o.b, big.extra),
            (size_of::<Bigger>(), 5, 6, [0, 0])
        );
        let mut old = Opts {
            struct_size: 8,
            a: 0,
            b: 0,
        };
        unsafe { OutStruct::new(&mut old, "o") }
            .unwrap()
            .write(Opts {
                struct_size: 1,
                a: 5,
                b: 6,
            });
        assert_eq!(
            old,
            Opts {
                struct_size: 8,
                a: 5,
                b: 0
            }
        );
    }

    #[test]
    fn buffers_report_the_length_needed_and_nothing_else() {
        let mut buf = [0u32; 2];
        let mut n = 99usize;
        let out = unsafe { OutBuf::new(buf.as_mut_ptr(), 2, &mut n, "buf") }.unwrap();
        assert_eq!(
            out.fill(&[1, 2, 3]).map_err(|f| f.status),
            Err(STRATA_BUFFER_TOO_SMALL)
        );
        assert_eq!((n, buf), (3, [0, 0]));
        let out = unsafe { OutBuf::new(buf.as_mut_ptr(), 2, &mut n, "buf") }.unwrap();
        out.fill(&[4, 5]).unwrap();
        assert_eq!((n, buf), (2, [4, 5]));
        let mut text = [1 as c_char; 4];
        let out = unsafe { OutBuf::new(text.as_mut_ptr(), 4, &mut n, "t") }.unwrap();
        assert_eq!(
            out.fill_text(b"abcd").map_err(|f| f.status),
            Err(STRATA_BUFFER_TOO_SMALL)
        );
        assert_eq!(n, 4);
        let out = unsafe { OutBuf::new(text.as_mut_ptr(), 4, &mut n, "t") }.unwrap();
        out.fill_text(b"abc").unwrap();
        assert_eq!(
            (n, text),
            (3, [b'a' as c_char, b'b' as c_char, b'c' as c_char, 0])
        );
        assert!(unsafe { OutBuf::new(ptr::null_mut::<u32>(), 0, &mut n, "b") }.is_ok());
        assert!(unsafe { OutBuf::new(ptr::null_mut::<u32>(), 1, &mut n, "b") }.is_err());
        assert!(unsafe { OutBuf::new(buf.as_mut_ptr(), 2, ptr::null_mut(), "b") }.is_err());
    }

    #[test]
    fn overlapping_buffers_are_refused() {
        let buf = [0u8; 16];
        let p = buf.as_ptr();
        assert!(disjoint(p, 8, unsafe { p.add(8) }, 8, "x").is_ok());
        assert!(disjoint(p, 9, unsafe { p.add(8) }, 8, "x").is_err());
        assert!(disjoint(p, 0, p, 8, "x").is_ok());
        assert!(disjoint(p as *const u32, 2, unsafe { p.add(4) }, 1, "x").is_err());
    }

    #[test]
    fn text_and_slices_are_checked() {
        let bad = [0xffu8, 0xfe];
        fn st(r: FfiResult<&str>) -> Result<&str, strata_status> {
            r.map_err(|f| f.status)
        }
        assert_eq!(
            st(unsafe { text(bad.as_ptr() as *const c_char, 2, "t") }),
            Err(STRATA_INVALID_UTF8)
        );
        assert_eq!(st(unsafe { text(ptr::null(), 0, "t") }), Ok(""));
        assert_eq!(
            st(unsafe { text(ptr::null(), 1, "t") }),
            Err(STRATA_NULL_POINTER)
        );
        let words = [0u32; 4];
        let odd = unsafe { (words.as_ptr() as *const u8).add(1) } as *const u32;
        assert_eq!(
            unsafe { in_slice(odd, 1, "w") }.map_err(|f| f.status).err(),
            Some(STRATA_INVALID_ARGUMENT)
        );
        assert_eq!(flags(3, 3, "f").ok(), Some(3));
        assert!(flags(4, 3, "f").is_err());
    }
}
