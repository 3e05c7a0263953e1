//! Links the system libjpeg-turbo found by pkg-config (Debian: `libturbojpeg0-dev`).
//!
//! `ATELIER_TURBOJPEG` says what the build expects:
//! - `auto` (the default): link it when pkg-config finds it, otherwise build the fallback (every call
//!   answers "unavailable" and the engine keeps its pure-Rust path) and print a warning;
//! - `required`: stop the build when it is missing, so a suite meant to test the linked path cannot
//!   quietly test the fallback instead;
//! - `off`: build the fallback even where the library is installed, so the fallback is compiled and
//!   tested on every machine.
//!
//! The value is passed on to the crate (`option_env!`), whose tests check the build did what was asked.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ATELIER_TURBOJPEG");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");
    let mode = std::env::var("ATELIER_TURBOJPEG").unwrap_or_else(|_| "auto".into());
    println!("cargo:rustc-env=ATELIER_TURBOJPEG_MODE={mode}");
    match mode.as_str() {
        "off" => {
            println!(
                "cargo:warning=ATELIER_TURBOJPEG=off: building the fallback without libjpeg-turbo"
            );
            return;
        }
        "auto" | "required" => {}
        other => panic!("ATELIER_TURBOJPEG={other}: expected auto, required or off"),
    }
    match pkg_config::Config::new()
        .atleast_version("2.0")
        .probe("libturbojpeg")
    {
        Ok(_) => println!("cargo:rustc-cfg=atelier_turbojpeg"),
        Err(e) if mode == "required" => panic!(
            "ATELIER_TURBOJPEG=required but libturbojpeg was not found ({e}). Install \
             libturbojpeg0-dev (Debian), or build with ATELIER_TURBOJPEG=auto."
        ),
        Err(e) => println!(
            "cargo:warning=libturbojpeg not found ({e}); the turbojpeg feature falls back to the \
             pure-Rust decoder. Install libturbojpeg0-dev (Debian) to use it."
        ),
    }
}
