//! A DNS resolver for reqwest that hands out only addresses the [`AddressPolicy`] allows, so a host name
//! that points at a private network is refused at connect time (and again on every redirect hop).

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::address::{AddressPolicy, Reason};
use crate::name;

/// A host resolved only to refused addresses.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {addr}, {reason}, which Atelier may not call")]
pub struct BlockedHost {
    /// The host name that was looked up.
    pub host: String,
    /// The first refused address.
    pub addr: std::net::IpAddr,
    /// Which kind of non-public range it is in.
    pub reason: Reason,
}

/// Resolves with the system resolver and drops refused addresses.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    /// A resolver applying `policy`.
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> = if name::is_loopback_name(&host) {
                name::LOOPBACK
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, 0))
                    .collect()
            } else {
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
            };
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check(addr.ip()) {
                    Ok(()) => true,
                    Err(reason) => {
                        refused.get_or_insert((addr.ip(), reason));
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some((addr, reason))) => {
                    Err(Box::new(BlockedHost { host, addr, reason }) as _)
                }
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::address::IpNet;

    async fn resolve(policy: AddressPolicy, host: &str) -> Result<Vec<SocketAddr>, String> {
        let resolver = GuardedResolver::new(Arc::new(policy));
        let name = Name::from_str(host).map_err(|e| e.to_string())?;
        match resolver.resolve(name).await {
            Ok(addrs) => Ok(addrs.collect()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[tokio::test]
    async fn loopback_names_resolve_to_loopback_without_a_lookup() {
        for host in ["localhost.", "LOCALHOST..", "api.localhost."] {
            let refused = resolve(AddressPolicy::default(), host)
                .await
                .expect_err("refused");
            assert!(refused.contains("loopback"), "{host}: {refused}");
        }
        let loopback: IpNet = "127.0.0.1/32".parse().expect("net");
        let allowed = resolve(AddressPolicy::new(vec![loopback]), "localhost.")
            .await
            .expect("allowed");
        assert_eq!(allowed, [SocketAddr::from(([127, 0, 0, 1], 0))]);
    }
}
