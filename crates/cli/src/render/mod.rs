//! Output: JSON for `--json`, short human lines otherwise. Printing never panics: a closed stdout
//! (`atelier list | head -1`) just drops the rest.

use std::io::Write;

pub mod human;
pub mod json;
pub mod names;

/// Prints one JSON value on one line of stdout.
pub fn print_json(value: &serde_json::Value) {
    print_text(&format!("{value}\n"));
}

/// Prints text on stdout as is.
pub fn print_text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Prints one line on stdout.
pub fn print_line(line: &str) {
    print_text(&format!("{line}\n"));
}

/// Prints a note for people on stderr.
pub fn note(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}
