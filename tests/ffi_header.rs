//! The committed C header `include/strata.h` must be exactly what cbindgen
//! generates from `src/ffi/` with `cbindgen.toml`, and its version macros
//! must match Cargo.toml.
//!
//! After changing `src/ffi/`, rewrite the header with
//! `STRATA_BLESS=1 cargo test --test ffi_header`.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate() -> String {
    let root = root();
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen fails on src/ffi/");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

fn header_path() -> PathBuf {
    root().join("include/strata.h")
}

#[test]
fn header_is_up_to_date() {
    let fresh = generate();
    let path = header_path();
    if std::env::var_os("STRATA_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/strata.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let first = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(fresh.lines().count()));
        panic!(
            "include/strata.h is out of date with src/ffi/ (first difference at line {}):\n  committed: {:?}\n  generated: {:?}\n\
             run `STRATA_BLESS=1 cargo test --test ffi_header` and commit the header",
            first + 1,
            committed.lines().nth(first).unwrap_or("<end of file>"),
            fresh.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}

fn macro_value(header: &str, name: &str) -> String {
    header
        .lines()
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some("#define") && parts.next() == Some(name))
                .then(|| parts.next().unwrap_or("").to_string())
        })
        .unwrap_or_else(|| panic!("{name} is not defined in include/strata.h"))
}

#[test]
fn header_version_macros_match_cargo_toml() {
    let header = std::fs::read_to_string(header_path()).expect("include/strata.h");
    assert_eq!(
        macro_value(&header, "STRATA_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert_eq!(
        macro_value(&header, "STRATA_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    assert_eq!(
        macro_value(&header, "STRATA_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION_PATCH")
    );
    assert_eq!(
        macro_value(&header, "STRATA_ABI_VERSION"),
        strata::ffi::STRATA_ABI_VERSION.to_string()
    );
    let v = unsafe { std::ffi::CStr::from_ptr(strata::ffi::strata_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

/// Every function, type, constant and struct field in the header carries a
/// comment.
#[test]
fn header_documents_everything() {
    let header = std::fs::read_to_string(header_path()).expect("include/strata.h");
    let lines: Vec<&str> = header.lines().collect();
    let is_fn = |l: &str| {
        [
            "enum strata_status strata_",
            "void strata_",
            "const char *strata_",
            "uint32_t strata_",
            "size_t strata_",
        ]
        .iter()
        .any(|p| l.starts_with(p))
    };
    let mut in_struct = false;
    let mut undocumented = Vec::new();
    let mut checked = 0;
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("typedef struct") && l.ends_with('{') || l.starts_with("typedef enum") {
            in_struct = true;
        } else if l.starts_with('}') {
            in_struct = false;
        }
        let field = in_struct
            && l.starts_with("    ")
            && !l.trim_start().starts_with(['/', '*'])
            && !l.trim().is_empty();
        let decl = l.starts_with("typedef ")
            || (l.starts_with("#define STRATA_") && !l.starts_with("#define STRATA_H"))
            || is_fn(l)
            || field;
        if !decl {
            continue;
        }
        checked += 1;
        let prev = lines[..i]
            .iter()
            .rev()
            .find(|p| !p.trim().is_empty())
            .copied()
            .unwrap_or("");
        if !prev.trim_end().ends_with("*/") {
            undocumented.push(l.to_string());
        }
    }
    assert!(
        checked > 150,
        "only {checked} declarations found: is the parser broken?"
    );
    assert!(
        undocumented.is_empty(),
        "undocumented declarations in include/strata.h:\n{}",
        undocumented.join("\n")
    );
}
