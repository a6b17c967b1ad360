//! The address of the client, as far as it can be trusted.
//!
//! Behind the gateway every connection comes from the gateway, which appends
//! the address it saw to `X-Forwarded-For`. A service believes that header
//! only when the connection comes from a configured trusted proxy, and then
//! takes the rightmost address that is not itself a trusted proxy: entries to
//! the left of it were written by the client and can be anything.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// An IP network in CIDR form (`10.0.0.0/8`, `::1/128`); a bare address is
/// a network of one. An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`), as a
/// dual-stack listener reports IPv4 peers, counts as the IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet(ipnet::IpNet);

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }
}

/// `::ffff:1.2.3.4` is 1.2.3.4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        const EXPECTED: &str = "an IP address or network such as 10.0.0.0/8";
        let text = text.trim();
        let net = match text.parse::<ipnet::IpNet>() {
            Ok(net) => net,
            Err(_) => ipnet::IpNet::from(IpAddr::from_str(text).map_err(|_| EXPECTED.to_owned())?),
        };
        // A mapped IPv4 network is written as the IPv4 one it stands for.
        let net = match net {
            ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                    .map(ipnet::IpNet::V4)
                    .map_err(|_| EXPECTED.to_owned())?,
                None => net,
            },
            other => other,
        };
        Ok(Self(net.trunc()))
    }
}

impl crate::config::Setting for IpNet {
    fn parse_setting(text: &str) -> Result<Self, String> {
        text.parse()
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    /// Loopback only: the gateway of `dure up` runs on the same machine.
    pub fn loopback() -> Self {
        Self(vec![
            "127.0.0.0/8".parse().expect("valid"),
            "::1/128".parse().expect("valid"),
        ])
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client behind `peer`, given the request's headers.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.0.is_empty() {
            return canonical(peer);
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        self.client(peer, &forwarded)
    }

    /// The client behind `peer`, given the request's `X-Forwarded-For` values.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        if !self.trusts(peer) {
            return canonical(peer);
        }
        let hops: Vec<IpAddr> = forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .filter_map(|hop| IpAddr::from_str(hop.trim()).ok())
            .map(canonical)
            .collect();
        hops.iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or_else(|| canonical(peer))
    }
}

/// The client's address; `None` only when the server runs without connect
/// info (requests handed to a router in-process).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(Self(None));
        };
        let proxies = parts
            .extensions
            .get::<TrustedProxies>()
            .cloned()
            .unwrap_or_default();
        Ok(Self(Some(proxies.client_of(peer.ip(), &parts.headers))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(
            "0.0.0.0/0"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        assert!("::1".parse::<IpNet>().unwrap().contains(ip("::1")));
        assert!(
            "127.0.0.1"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("::ffff:127.0.0.1"))
        );
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        // Host bits are dropped; a mapped IPv4 network is the IPv4 one.
        assert!(
            "10.1.2.3/16"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("10.1.9.9"))
        );
        let mapped: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, "10.0.0.0/8".parse().unwrap());
        assert!(mapped.contains(ip("::ffff:10.2.3.4")));
        assert!(
            !"10.0.0.0/8"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("11.0.0.1"))
        );
    }

    #[test]
    fn untrusted_peers_cannot_spoof_forwarded_for() {
        let proxies = TrustedProxies::loopback();
        assert_eq!(
            proxies.client(ip("203.0.113.9"), &["1.2.3.4"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_proxy_yields_rightmost_untrusted_hop() {
        let proxies = TrustedProxies::loopback();
        // The client claimed 1.2.3.4; the gateway saw 198.51.100.7.
        assert_eq!(
            proxies.client(ip("127.0.0.1"), &["1.2.3.4, 198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(proxies.client(ip("127.0.0.1"), &[]), ip("127.0.0.1"));
    }
}
