// Build script: records the target so `strata info` and bug reports can say
// what the library was built for.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=STRATA_BUILD_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
