//! The payer's IP for `spbill_create_ip`: the connection's peer, or the first hop of
//! `X-Forwarded-For` when the peer is a configured trusted proxy (never otherwise: the header
//! is the client's to forge).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

pub fn payer_ip(peer: SocketAddr, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    if !trusted_proxies.iter().any(|net| net.contains(&peer_ip)) {
        return peer_ip;
    }
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|first| first.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .unwrap_or(peer_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.9:4000".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = headers("203.0.113.7, 10.0.0.5");
        assert_eq!(payer_ip(proxy, &h, &trusted).to_string(), "203.0.113.7");
        assert_eq!(payer_ip(stranger, &h, &trusted).to_string(), "198.51.100.9");
        assert_eq!(
            payer_ip(proxy, &headers("garbage"), &trusted).to_string(),
            "10.0.0.5"
        );
        assert_eq!(
            payer_ip(proxy, &HeaderMap::new(), &trusted).to_string(),
            "10.0.0.5"
        );
        assert_eq!(payer_ip(proxy, &h, &[]).to_string(), "10.0.0.5");
        let mapped: SocketAddr = "[::ffff:198.51.100.9]:1".parse().unwrap();
        assert_eq!(payer_ip(mapped, &h, &trusted).to_string(), "198.51.100.9");
    }
}
