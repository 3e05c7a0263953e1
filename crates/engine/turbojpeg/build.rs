//! Links the system libjpeg-turbo found by pkg-config (Debian: `libturbojpeg0-dev`).
//!
//! When it is missing the crate still builds (so `cargo clippy --all-features` and `make test` work
//! on any machine) but every decode answers "unavailable" and the engine keeps its pure-Rust path;
//! the build prints a warning saying so.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    match pkg_config::Config::new()
        .atleast_version("2.0")
        .probe("libturbojpeg")
    {
        Ok(_) => println!("cargo:rustc-cfg=atelier_turbojpeg"),
        Err(e) => println!(
            "cargo:warning=libturbojpeg not found ({e}); the turbojpeg feature falls back to the \
             pure-Rust decoder. Install libturbojpeg0-dev (Debian) to use it."
        ),
    }
}
