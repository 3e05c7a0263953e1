# Sourced by the test and CI scripts: what the build should do with libjpeg-turbo (see
# crates/engine/turbojpeg/build.rs). Where pkg-config sees the library the suite must link it
# (`required`), so a broken probe cannot quietly test the fallback; elsewhere `auto`. Every cargo
# command of one run uses the same value, so the build script's answer is never invalidated.
if [ -z "${ATELIER_TURBOJPEG:-}" ]; then
    if pkg-config --exists libturbojpeg 2>/dev/null; then
        ATELIER_TURBOJPEG=required
    else
        ATELIER_TURBOJPEG=auto
    fi
fi
export ATELIER_TURBOJPEG
