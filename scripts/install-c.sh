#!/usr/bin/env bash
# Build the C library in release mode and install it for C/C++ projects:
#
#   PREFIX/include/strata.h
#   PREFIX/lib/libstrata.so, PREFIX/lib/libstrata.a
#   PREFIX/lib/pkgconfig/strata.pc
#
# Usage: scripts/install-c.sh PREFIX      (e.g. /usr/local, or $HOME/.local)
# Then: cc app.c $(pkg-config --cflags --libs strata)            (shared)
#       cc app.c $(pkg-config --cflags --libs --static strata)   (static)
# with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig when PREFIX is not a system one.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:?usage: scripts/install-c.sh PREFIX}
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)

cargo build --release --lib
libdir=${CARGO_TARGET_DIR:-target}/release
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)

install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 include/strata.h "$prefix/include/strata.h"
install -m 755 "$libdir/libstrata.so" "$prefix/lib/libstrata.so"
install -m 644 "$libdir/libstrata.a" "$prefix/lib/libstrata.a"
# The system libraries a Rust static library needs (rustc's
# --print native-static-libs on Linux, minus libc itself).
cat > "$prefix/lib/pkgconfig/strata.pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: strata
Description: Strata, an embeddable LLM inference runtime (C interface)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lstrata
Libs.private: -lpthread -ldl -lm
PC
echo "installed strata $version into $prefix"
