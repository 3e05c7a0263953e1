//! Which addresses an outbound call (source download, webhook delivery) may reach: public ones, plus
//! private ranges the operator allowed.
//!
//! An IPv6 address that carries an IPv4 address (NAT64, 6to4, Teredo, ISATAP, IPv4-compatible,
//! IPv4-translated) reaches that IPv4 address through a translator or relay, so it is refused when the
//! IPv4 address would be. An IPv4 entry of the allow-list covers the IPv4 address and its IPv4-mapped
//! spelling (`::ffff:a.b.c.d`, the same host over the same IPv4 socket), not the translated forms:
//! those go through a translator or relay the guard cannot see, and a caller who may reach the IPv4
//! address can name it. An operator who does route through a translator allows its IPv6 prefix.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::embedded::embedded_v4;

/// A network in CIDR form (`10.0.0.0/8`, `::1/128`); a bare address is a single-host network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The network of `addr` with the first `prefix` bits fixed; `None` when the prefix is too long.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` lies in this network (IPv4-mapped IPv6 addresses count as their IPv4 address;
    /// other IPv6 forms of an IPv4 address are matched as the IPv6 addresses they are).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR network"))?;
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| format!("`{s}` has a bad prefix length"))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, prefix).ok_or_else(|| format!("`{s}` has a prefix longer than the address"))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// Why an address may not be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reason {
    /// The kind of range: "loopback", "private", "link-local", ...
    pub range: &'static str,
    /// For an IPv6 address that carries an IPv4 address: that address and the name of the form.
    pub embedded: Option<(Ipv4Addr, &'static str)>,
}

impl Reason {
    /// An address in a refused range of its own.
    pub const fn range(range: &'static str) -> Self {
        Self {
            range,
            embedded: None,
        }
    }
}

/// "a loopback address", "the NAT64 form of 127.0.0.1, a loopback address".
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let article = if self.range.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        match self.embedded {
            None => write!(f, "{article} {} address", self.range),
            Some((v4, form)) => write!(
                f,
                "the {form} form of {v4}, {article} {} address",
                self.range
            ),
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4: a socket connecting to one connects to the
/// IPv4 address itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Why an address is not public, or `None` when it is.
pub fn non_public_reason(ip: IpAddr) -> Option<Reason> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_reason(v4).map(Reason::range),
        IpAddr::V6(v6) => v6_reason(v6).map(Reason::range).or_else(|| {
            embedded_v4(v6).into_iter().find_map(|(v4, form)| {
                v4_reason(v4).map(|range| Reason {
                    range,
                    embedded: Some((v4, form)),
                })
            })
        }),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if a == 0 {
        Some("unspecified")
    } else {
        None
    }
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if s[0] & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if s[..3] == [0x64, 0xff9b, 1] {
        // 64:ff9b:1::/48 (RFC 8215) is not globally reachable, and where its translator puts the IPv4
        // address depends on a prefix length only the local network knows: the whole range is refused.
        Some("local-use NAT64")
    } else {
        None
    }
}

/// The operator's exceptions to the public-only rule.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// A policy that also allows the given private networks.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// `Err(reason)` when a source may not be fetched from `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Reason> {
        match non_public_reason(ip) {
            None => Ok(()),
            Some(_) if self.allowed.iter().any(|net| net.contains(ip)) => Ok(()),
            Some(reason) => Err(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn non_public_ranges_are_refused() {
        let policy = AddressPolicy::default();
        for blocked in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(
                policy.check(ip(blocked)).is_err(),
                "{blocked} should be refused"
            );
        }
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
        ] {
            assert!(
                policy.check(ip(public)).is_ok(),
                "{public} should be allowed"
            );
        }
    }

    #[test]
    fn allow_list_opens_exact_networks() {
        let policy = AddressPolicy::new(vec![
            "127.0.0.1/32".parse().expect("cidr"),
            "10.0.0.0/8".parse().expect("cidr"),
        ]);
        assert!(policy.check(ip("127.0.0.1")).is_ok());
        assert!(policy.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(policy.check(ip("127.0.0.2")).is_err());
        assert!(policy.check(ip("10.200.0.1")).is_ok());
        assert!(policy.check(ip("192.168.0.1")).is_err());
        assert!(policy.check(ip("::1")).is_err());
    }

    fn embedded(range: &'static str, v4: &str, form: &'static str) -> Reason {
        Reason {
            range,
            embedded: Some((v4.parse().expect("test address"), form)),
        }
    }

    #[test]
    fn ipv6_forms_of_refused_ipv4_addresses_are_refused() {
        let policy = AddressPolicy::default();
        for (blocked, reason) in [
            // NAT64, well-known prefix (RFC 6052): the last 32 bits.
            (
                "64:ff9b::7f00:1",
                embedded("loopback", "127.0.0.1", "NAT64"),
            ),
            (
                "64:ff9b::169.254.169.254",
                embedded("link-local", "169.254.169.254", "NAT64"),
            ),
            ("64:ff9b::a00:1", embedded("private", "10.0.0.1", "NAT64")),
            // 6to4 (RFC 3056): bits 16..48, whatever follows.
            ("2002:7f00:1::", embedded("loopback", "127.0.0.1", "6to4")),
            (
                "2002:c0a8:101:5::1",
                embedded("private", "192.168.1.1", "6to4"),
            ),
            // Teredo (RFC 4380): the server in bits 32..64, the client inverted in the last 32 bits.
            (
                "2001:0:7f00:1::f7f7:f7f7",
                embedded("loopback", "127.0.0.1", "Teredo server"),
            ),
            (
                "2001:0:808:808:0:0:80ff:fffe",
                embedded("loopback", "127.0.0.1", "Teredo client"),
            ),
            (
                "2001:0:808:808:8000:ffff:f5ff:fffe",
                embedded("private", "10.0.0.1", "Teredo client"),
            ),
            // IPv4-compatible (RFC 4291) and IPv4-translated (SIIT, RFC 2765).
            (
                "::7f00:1",
                embedded("loopback", "127.0.0.1", "IPv4-compatible"),
            ),
            (
                "::169.254.169.254",
                embedded("link-local", "169.254.169.254", "IPv4-compatible"),
            ),
            (
                "::ffff:0:7f00:1",
                embedded("loopback", "127.0.0.1", "IPv4-translated"),
            ),
            // ISATAP (RFC 5214): any prefix, interface identifier 0:5efe or 200:5efe.
            (
                "2600::5efe:7f00:1",
                embedded("loopback", "127.0.0.1", "ISATAP"),
            ),
            (
                "2600:1:2:3:200:5efe:a00:1",
                embedded("private", "10.0.0.1", "ISATAP"),
            ),
            // IPv4-mapped: the IPv4 address itself.
            ("::ffff:127.0.0.1", Reason::range("loopback")),
            // Local-use NAT64 (RFC 8215): not globally reachable, so refused whatever it embeds.
            ("64:ff9b:1::7f00:1", Reason::range("local-use NAT64")),
            ("64:ff9b:1:7f00:0:100::", Reason::range("local-use NAT64")),
            ("64:ff9b:1::808:808", Reason::range("local-use NAT64")),
        ] {
            assert_eq!(policy.check(ip(blocked)), Err(reason), "{blocked}");
        }
        for public in [
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:0:808:808::f7f7:f7f7",
            "::808:808",
            "::ffff:0:808:808",
            "2600::5efe:808:808",
            "64:ff9c::7f00:1",
            "2003:7f00:1::",
            "2001:1:7f00:1::",
        ] {
            assert_eq!(policy.check(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn reasons_name_the_form_and_the_address_inside() {
        assert_eq!(
            embedded("loopback", "127.0.0.1", "NAT64").to_string(),
            "the NAT64 form of 127.0.0.1, a loopback address"
        );
        assert_eq!(
            Reason::range("unspecified").to_string(),
            "an unspecified address"
        );
    }

    /// An IPv4 entry covers the address and its IPv4-mapped spelling (the same host over the same
    /// socket); forms that reach it through a translator or relay need their own IPv6 entry.
    #[test]
    fn an_ipv4_entry_covers_the_mapped_spelling_not_translated_forms() {
        let policy = AddressPolicy::new(vec![
            "127.0.0.1/32".parse().expect("cidr"),
            "10.0.0.0/8".parse().expect("cidr"),
        ]);
        for allowed in ["127.0.0.1", "::ffff:127.0.0.1", "::ffff:10.1.2.3"] {
            assert_eq!(policy.check(ip(allowed)), Ok(()), "{allowed}");
        }
        for refused in [
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001:0:808:808:8000:ffff:f5ff:fffe",
            "::7f00:1",
            "::ffff:0:a00:1",
            "2600::5efe:a00:1",
            "64:ff9b:1::a00:1",
        ] {
            assert!(policy.check(ip(refused)).is_err(), "{refused}");
        }
        let translator = AddressPolicy::new(vec!["64:ff9b::a00:0/104".parse().expect("cidr")]);
        assert_eq!(translator.check(ip("64:ff9b::a01:203")), Ok(()));
        assert!(translator.check(ip("64:ff9b::7f00:1")).is_err());
        assert!(translator.check(ip("10.1.2.3")).is_err());
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            "10.0.0.0/8".parse::<IpNet>().map(|n| n.to_string()),
            Ok("10.0.0.0/8".to_string())
        );
        assert_eq!(
            "::1".parse::<IpNet>().map(|n| n.to_string()),
            Ok("::1/128".to_string())
        );
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("fe80::/129".parse::<IpNet>().is_err());
        assert!("example.com".parse::<IpNet>().is_err());
        let net: IpNet = "172.16.0.0/12".parse().expect("cidr");
        assert!(net.contains(ip("172.20.1.1")));
        assert!(!net.contains(ip("172.32.0.1")));
        assert!(IpNet::new(ip("0.0.0.0"), 0).is_some_and(|n| n.contains(ip("8.8.8.8"))));
    }
}
