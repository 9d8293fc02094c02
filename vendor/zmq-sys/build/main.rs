//! Builds libzmq from the source zeromq-src carries, linked statically, with
//! CURVE on over the system's static libsodium (Debian: `libsodium-dev`).
//! The published zmq-sys passes no libsodium and so builds libzmq without
//! CURVE; this is its one change (vendor/README.md).

use std::path::PathBuf;
use std::process::Command;

/// The folder holding `libsodium.a` and the one holding `sodium.h`:
/// `SODIUM_LIB_DIR` and `SODIUM_INCLUDE_DIR` if set, else pkg-config's.
fn libsodium() -> (PathBuf, PathBuf) {
    let from = |var: &str, pkg_config: &str| -> PathBuf {
        println!("cargo:rerun-if-env-changed={}", var);
        if let Ok(dir) = std::env::var(var) {
            return PathBuf::from(dir);
        }
        let out = Command::new("pkg-config")
            .args([pkg_config, "libsodium"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .unwrap_or_else(|| {
                panic!("libsodium not found: install it (Debian: apt-get install libsodium-dev pkg-config) or set {}", var)
            });
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    };
    (
        from("SODIUM_LIB_DIR", "--variable=libdir"),
        from("SODIUM_INCLUDE_DIR", "--variable=includedir"),
    )
}

fn main() {
    println!("cargo:rerun-if-changed=build/main.rs");
    let (lib, include) = libsodium();
    let static_lib = lib.join("libsodium.a");
    if !static_lib.exists() {
        panic!(
            "{} is missing: sitec links libsodium statically (Debian: apt-get install libsodium-dev)",
            static_lib.display()
        );
    }
    // zeromq-src prints this search path quoted (`{:?}`), which the linker
    // cannot use; the plain one is printed here.
    println!("cargo:rustc-link-search=native={}", lib.display());
    zeromq_src::Build::new()
        .with_libsodium(Some(zeromq_src::LibLocation::new(lib, include)))
        .build();
}
