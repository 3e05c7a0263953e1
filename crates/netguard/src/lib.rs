//! Guards for calls Atelier makes to addresses its callers name: source downloads (processor) and
//! webhook deliveries (orchestrator). Loopback, private, link-local, CGNAT, multicast and unspecified
//! addresses, and the IPv6 forms that carry them (NAT64, 6to4, Teredo, ...), are refused at connect time through a resolver that drops them, IP literals are checked
//! before the call, and redirects are never followed by the client itself. `localhost` and the names
//! under it, in any spelling (`localhost.`, `LOCALHOST..`), are loopback without asking a resolver.

mod address;
pub mod download;
mod embedded;
mod name;
mod resolver;

use std::sync::Arc;

pub use address::{non_public_reason, AddressPolicy, IpNet, Reason};
pub use resolver::{BlockedHost, GuardedResolver};
use url::{Host, Url};

/// Why a URL may not be called.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("only http and https URLs are allowed, not {0}")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("{addr} is {reason}, which may not be reached")]
    Address { addr: String, reason: Reason },
}

/// Scheme and IP-literal checks; reqwest skips the resolver for IP literals, so they are checked here.
pub fn check_url(policy: &AddressPolicy, url: &Url) -> Result<(), Refused> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(Refused::Scheme(other.to_string())),
    }
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => std::net::IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => std::net::IpAddr::V6(v6),
        Some(Host::Domain(host)) => return check_name(policy, host),
        None => return Err(Refused::NoHost),
    };
    policy.check(ip).map_err(|reason| Refused::Address {
        addr: ip.to_string(),
        reason,
    })
}

/// Host names are resolved (and checked) at connect time, except loopback names, refused here unless
/// the policy allows a loopback address: the resolver would answer them with nothing else.
fn check_name(policy: &AddressPolicy, host: &str) -> Result<(), Refused> {
    if name::bare(host).is_empty() {
        return Err(Refused::NoHost);
    }
    if name::is_loopback_name(host) && name::LOOPBACK.iter().all(|ip| policy.check(*ip).is_err()) {
        return Err(Refused::Address {
            addr: host.to_string(),
            reason: Reason::range("loopback"),
        });
    }
    Ok(())
}

/// A client builder that resolves through `policy`, follows no redirects and ignores proxies.
pub fn client_builder(policy: Arc<AddressPolicy>) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver::new(policy)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_checked_and_allow_lists_apply() {
        let strict = AddressPolicy::new(Vec::new());
        for url in [
            "http://127.0.0.1/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://169.254.169.254/latest",
            "http://2130706433/",
            "http://0177.0.0.1/",
        ] {
            let parsed = Url::parse(url).expect("url");
            assert!(
                matches!(check_url(&strict, &parsed), Err(Refused::Address { .. })),
                "{url}"
            );
        }
        let parsed = Url::parse("ftp://example.com/").expect("url");
        assert_eq!(
            check_url(&strict, &parsed),
            Err(Refused::Scheme("ftp".into()))
        );
        let loopback: IpNet = "127.0.0.1/32".parse().expect("net");
        let relaxed = AddressPolicy::new(vec![loopback]);
        let parsed = Url::parse("http://127.0.0.1:8080/hook").expect("url");
        assert_eq!(check_url(&relaxed, &parsed), Ok(()));
    }

    #[test]
    fn ipv6_literals_carrying_refused_ipv4_addresses_are_refused() {
        let strict = AddressPolicy::new(Vec::new());
        for url in [
            "http://[64:ff9b::7f00:1]/x",
            "http://[64:ff9b::a9fe:a9fe]/latest",
            "http://[64:ff9b:1::7f00:1]/x",
            "http://[2002:7f00:1::]/x",
            "http://[2001:0:808:808::80ff:fffe]/x",
            "http://[::127.0.0.1]/x",
            "http://[::ffff:127.0.0.1]/x",
        ] {
            let parsed = Url::parse(url).expect("url");
            assert!(
                matches!(check_url(&strict, &parsed), Err(Refused::Address { .. })),
                "{url}"
            );
        }
        let parsed = Url::parse("http://[64:ff9b::7f00:1]:8080/x").expect("url");
        assert_eq!(
            check_url(&strict, &parsed).map_err(|e| e.to_string()),
            Err(
                "64:ff9b::7f00:1 is the NAT64 form of 127.0.0.1, a loopback address, which may not be reached"
                    .to_string()
            )
        );
    }

    #[test]
    fn trailing_dot_spellings_of_loopback_are_refused_like_localhost() {
        let strict = AddressPolicy::new(Vec::new());
        for url in [
            "http://localhost:8080/x",
            "http://localhost.:8080/x",
            "http://localhost../x",
            "http://LOCALHOST./x",
            "https://api.localhost./x",
            "http://127.0.0.1./x",
            "http://0x7f.1./x",
        ] {
            let parsed = Url::parse(url).expect("url");
            assert!(
                matches!(
                    check_url(&strict, &parsed),
                    Err(Refused::Address {
                        reason: Reason {
                            range: "loopback",
                            embedded: None
                        },
                        ..
                    })
                ),
                "{url}: {:?}",
                check_url(&strict, &parsed)
            );
        }
        // Other names are left to the resolver, which checks what they resolve to.
        let parsed = Url::parse("http://localhost.example.com./x").expect("url");
        assert_eq!(check_url(&strict, &parsed), Ok(()));
        // Allowing loopback allows its names too, as it always allowed `localhost`.
        let relaxed = AddressPolicy::new(vec!["127.0.0.1/32".parse().expect("net")]);
        let parsed = Url::parse("http://localhost.:8080/x").expect("url");
        assert_eq!(check_url(&relaxed, &parsed), Ok(()));
    }
}
