//! The client's address, for per-client limits: the peer of the connection, or — only
//! when that peer is a configured trusted proxy — the nearest untrusted address in
//! `X-Forwarded-For`.
//!
//! Without trusted proxies the header is ignored: anyone can send it, so believing it
//! would let a client pick its own rate-limit bucket.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;

/// The networks whose connections may state the client's address in `X-Forwarded-For`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<Vec<IpNet>>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(Arc::new(networks))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The client's address given the connection's `peer` and the request's headers.
    ///
    /// `X-Forwarded-For` is read right to left (each proxy appends the address it was
    /// called from): trusted proxies are skipped and the first other address is the
    /// client. A header that is malformed where it matters is ignored and the last
    /// trusted hop answers for the request.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = canonical(peer?);
        if !self.trusts(client) {
            return Some(client);
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.into_iter().rev() {
            let Some(addr) = parse_hop(hop) else {
                return Some(client);
            };
            client = canonical(addr);
            if !self.trusts(client) {
                return Some(client);
            }
        }
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, from dual-stack listeners) as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client's address (`None` when the server was started without connection info,
/// as in-memory tests do).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S> FromRequestParts<S> for ClientIp
where
    S: Send + Sync,
    TrustedProxies: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let trusted = TrustedProxies::from_ref(state);
        Ok(ClientIp(trusted.client_ip(peer, &parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let none = TrustedProxies::default();
        let got = none.client_ip(Some(ip("10.0.0.5")), &headers(&["1.2.3.4"]));
        assert_eq!(got, Some(ip("10.0.0.5")));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let got = trusted.client_ip(Some(ip("192.0.2.7")), &headers(&["1.2.3.4"]));
        assert_eq!(got, Some(ip("192.0.2.7")));
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        // A client-forged first entry, then the real client, then an inner proxy.
        let got = trusted.client_ip(
            Some(ip("10.0.0.2")),
            &headers(&["6.6.6.6, 198.51.100.9", "10.1.2.3"]),
        );
        assert_eq!(got, Some(ip("198.51.100.9")));
        // Only trusted hops: the outermost one is the client.
        let got = trusted.client_ip(Some(ip("::1")), &headers(&["10.9.9.9"]));
        assert_eq!(got, Some(ip("10.9.9.9")));
        // No header: the proxy itself.
        let got = trusted.client_ip(Some(ip("10.0.0.2")), &HeaderMap::new());
        assert_eq!(got, Some(ip("10.0.0.2")));
        // Garbage stops the walk at the last trusted hop.
        let got = trusted.client_ip(Some(ip("10.0.0.2")), &headers(&["1.2.3.4, nonsense"]));
        assert_eq!(got, Some(ip("10.0.0.2")));
        // Ports and IPv4-mapped addresses.
        let got = trusted.client_ip(Some(ip("::ffff:10.0.0.2")), &headers(&["203.0.113.4:5555"]));
        assert_eq!(got, Some(ip("203.0.113.4")));
    }
}
