//! Host names of endpoints resolve to public addresses only.
//!
//! A URL's literal address is judged when the endpoint is registered, but a name can
//! point anywhere, and can point elsewhere tomorrow (DNS rebinding): a seller could
//! register `hooks.example.com`, then aim it at `169.254.169.254` or a service on the
//! internal network. So the name is judged twice: at registration (a clear 400 for a
//! name that resolves to internal addresses only), and at every connection, by the
//! delivery client's resolver, which hands the client only the public addresses a name
//! resolves to. A name with none fails to connect, like a dead host, and is retried.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::endpoints::is_internal;

/// Longest a registration waits for a name's addresses.
const REGISTER_LOOKUP: Duration = Duration::from_secs(2);

/// The delivery client's resolver: the system's, minus internal addresses.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public = public_addresses(found);
            if public.is_empty() {
                let refused = io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{host} resolves to no public address"),
                );
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The addresses deliveries may reach, in the resolver's order.
fn public_addresses(found: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    found.into_iter().filter(|a| !is_internal(a.ip())).collect()
}

/// What a registration learns of a host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// It resolves to at least one public address (internal ones are skipped).
    Public,
    /// It resolves, to internal addresses only.
    InternalOnly,
    /// It does not resolve now (or not in time): it may later; deliveries will tell.
    Unresolved,
}

/// Resolve `host` for a registration, with the system's resolver.
pub async fn lookup(host: &str) -> Lookup {
    lookup_with(host, |host| async move {
        tokio::net::lookup_host((host.as_str(), 0))
            .await
            .map(|found| found.map(|a| a.ip()).collect())
    })
    .await
}

async fn lookup_with<F, Fut>(host: &str, resolve: F) -> Lookup
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = io::Result<Vec<IpAddr>>>,
{
    let resolving: Pin<Box<Fut>> = Box::pin(resolve(host.to_owned()));
    match tokio::time::timeout(REGISTER_LOOKUP, resolving).await {
        Ok(Ok(ips)) if ips.is_empty() => Lookup::Unresolved,
        Ok(Ok(ips)) if ips.iter().all(|ip| is_internal(*ip)) => Lookup::InternalOnly,
        Ok(Ok(_)) => Lookup::Public,
        Ok(Err(_)) | Err(_) => Lookup::Unresolved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_dropped_and_public_ones_kept_in_order() {
        let found = [
            SocketAddr::new(ip("10.0.0.7"), 0),
            SocketAddr::new(ip("93.184.215.14"), 0),
            SocketAddr::new(ip("169.254.169.254"), 0),
            SocketAddr::new(ip("2606:2800:21f:cb07:6820:80da:af6b:8b2c"), 0),
            SocketAddr::new(ip("::ffff:127.0.0.1"), 0),
        ];
        let kept: Vec<IpAddr> = public_addresses(found).iter().map(|a| a.ip()).collect();
        assert_eq!(
            kept,
            [
                ip("93.184.215.14"),
                ip("2606:2800:21f:cb07:6820:80da:af6b:8b2c")
            ]
        );
    }

    #[tokio::test]
    async fn a_registration_sees_what_a_name_resolves_to() {
        let answer = |ips: Vec<&'static str>| {
            move |_host: String| async move { Ok(ips.iter().map(|t| ip(t)).collect()) }
        };
        assert_eq!(
            lookup_with("a.test", answer(vec!["127.0.0.1", "10.1.2.3"])).await,
            Lookup::InternalOnly
        );
        assert_eq!(
            lookup_with("b.test", answer(vec!["10.1.2.3", "93.184.215.14"])).await,
            Lookup::Public
        );
        assert_eq!(
            lookup_with("c.test", answer(vec![])).await,
            Lookup::Unresolved
        );
        let failing =
            |_host: String| async move { Err::<Vec<IpAddr>, _>(io::Error::other("NXDOMAIN")) };
        assert_eq!(lookup_with("d.test", failing).await, Lookup::Unresolved);
    }
}
