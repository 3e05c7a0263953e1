//! Host names the guard answers itself. `localhost` and every name under it are loopback by definition
//! (RFC 6761 §6.3) in any spelling: `LOCALHOST`, the absolute `localhost.`, `a.localhost..`. They are
//! never handed to the system resolver, which would miss `/etc/hosts` for the dotted spellings and
//! turn a refusal into a failed lookup (or, with a resolver that answers them, into a connection).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The addresses a loopback name stands for.
pub const LOOPBACK: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// `name` without the trailing dots of its absolute spelling.
pub fn bare(name: &str) -> &str {
    name.trim_end_matches('.')
}

/// Whether `name` is `localhost` or a name under it, in any case and with or without trailing dots.
pub fn is_loopback_name(name: &str) -> bool {
    let name = bare(name).as_bytes();
    let suffix = b".localhost";
    name.eq_ignore_ascii_case(&suffix[1..])
        || (name.len() > suffix.len()
            && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_in_every_spelling_is_a_loopback_name() {
        for name in [
            "localhost",
            "localhost.",
            "localhost..",
            "LocalHost.",
            "api.localhost",
            "a.b.LOCALHOST.",
        ] {
            assert!(is_loopback_name(name), "{name}");
        }
        for name in [
            "notlocalhost",
            "localhost.example.com",
            "localhost.example.com.",
            "localhos",
            ".",
            "",
            "xn--localhost-",
        ] {
            assert!(!is_loopback_name(name), "{name}");
        }
    }
}
