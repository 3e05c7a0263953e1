//! The processor's path for untrusted bytes: `probe` with the real limits (as validation does), then,
//! for whatever passes, a small transform with tight pixel limits so one input cannot make the
//! fuzzer run out of memory. Any panic, abort, leak or timeout is a finding.

#![no_main]

use atelier_engine::{probe, transform, Fit, Format, Limits, Resize, TransformRecipe};
use libfuzzer_sys::fuzz_target;

/// Small enough that every decode stays cheap (and the fuzzer fast), big enough for real photos'
/// headers and the reduced JPEG decode (a 1 MP JPEG shrunk to 48 px decodes at 1/8).
const FUZZ_MAX_PIXELS: u64 = 1_000_000;

fuzz_target!(|data: &[u8]| {
    // Validation exactly as the processor does it.
    if probe(data, &Limits::default()).is_err() {
        return;
    }
    let tight = Limits {
        max_pixels: FUZZ_MAX_PIXELS,
        ..Limits::default()
    };
    // A thumbnail-sized JPEG: the scaled JPEG decode when it applies, the full decoders otherwise;
    // then resize, flatten, encode and the 256 px thumbnail.
    let small = TransformRecipe {
        resize: Some(Resize {
            width: 48,
            height: 0,
            fit: Fit::Inside,
        }),
        format: Some(Format::Jpeg),
        ..TransformRecipe::default()
    };
    let _ = transform(data, &small, &tight, &mut |_, _| {});
    // The full-size path in the source's own format (PNG keeps alpha, WebP is re-encoded).
    if data.len() % 4 == 0 {
        let as_is = TransformRecipe {
            auto_orient: data.len() % 8 == 0,
            ..TransformRecipe::default()
        };
        let _ = transform(data, &as_is, &tight, &mut |_, _| {});
    }
});
