//! IPv6 addresses that carry an IPv4 address: a translator or relay delivers packets for them to that
//! IPv4 address, so the guard judges them by it.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The IPv4 addresses an IPv6 address embeds or is routed to, each with the name of its form.
pub fn embedded_v4(ip: Ipv6Addr) -> Vec<(Ipv4Addr, &'static str)> {
    let s = ip.segments();
    let o = ip.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    let mut found = Vec::new();
    match s {
        // ::a.b.c.d (deprecated, RFC 4291 §2.5.5.1); :: and ::1 are ranges of their own.
        [0, 0, 0, 0, 0, 0, ..] => found.push((last, "IPv4-compatible")),
        // ::ffff:0:a.b.c.d (SIIT, RFC 2765).
        [0, 0, 0, 0, 0xffff, 0, ..] => found.push((last, "IPv4-translated")),
        // The well-known NAT64 prefix 64:ff9b::/96 (RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => found.push((last, "NAT64")),
        // 2002:AABB:CCDD::/48 routes to AA.BB.CC.DD through a 6to4 relay (RFC 3056).
        [0x2002, ..] => found.push((Ipv4Addr::new(o[2], o[3], o[4], o[5]), "6to4")),
        // 2001:0:server:flags:port:client (RFC 4380): the client address is stored inverted.
        [0x2001, 0, ..] => {
            found.push((Ipv4Addr::new(o[4], o[5], o[6], o[7]), "Teredo server"));
            found.push((!last, "Teredo client"));
        }
        _ => {}
    }
    // Any prefix with the interface identifier 0:5efe:a.b.c.d or 200:5efe:a.b.c.d (RFC 5214).
    if s[4] & 0xfdff == 0 && s[5] == 0x5efe {
        found.push((last, "ISATAP"));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teredo_addresses_decode_as_rfc_4380_writes_them() {
        // The example of RFC 4380 §4 (and of every Teredo explainer since).
        assert_eq!(
            embedded_v4("2001:0:4136:e378:8000:63bf:3fff:fdd2".parse().expect("v6")),
            [
                ("65.54.227.120".parse().expect("v4"), "Teredo server"),
                ("192.0.2.45".parse().expect("v4"), "Teredo client"),
            ]
        );
    }

    #[test]
    fn every_form_gives_back_its_ipv4_address() {
        let v4: Ipv4Addr = "192.0.2.33".parse().expect("v4");
        for (v6, form) in [
            ("::192.0.2.33", "IPv4-compatible"),
            ("::ffff:0:192.0.2.33", "IPv4-translated"),
            ("64:ff9b::192.0.2.33", "NAT64"),
            ("2002:c000:221::1", "6to4"),
            ("2001:db8:1:2:0:5efe:192.0.2.33", "ISATAP"),
            ("2001:db8:1:2:200:5efe:192.0.2.33", "ISATAP"),
        ] {
            let ip: Ipv6Addr = v6.parse().expect("v6");
            assert_eq!(embedded_v4(ip), [(v4, form)], "{v6}");
        }
        for plain in ["2001:db8::1", "::ffff:192.0.2.33", "64:ff9b:0:1::c000:221"] {
            let ip: Ipv6Addr = plain.parse().expect("v6");
            assert_eq!(embedded_v4(ip), [], "{plain}");
        }
    }
}
