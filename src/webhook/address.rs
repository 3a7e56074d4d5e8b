//! Which addresses a callback may reach, enforced when the org is saved and again when each
//! delivery connects.
//!
//! The check is an allow-list built from the IANA special-purpose address registries
//! (<https://www.iana.org/assignments/iana-ipv4-special-registry/>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry/>): IPv4 outside every
//! non-global block; IPv6 only inside `2000::/3` (global unicast) and outside its
//! special-purpose blocks, with IPv4-mapped, IPv4-compatible and NAT64 (`64:ff9b::/96`)
//! addresses judged by the IPv4 address they carry. `std`'s `is_global` is still unstable
//! and no maintained crate offers this classification, so it lives here, with its tests.
//!
//! The callback client resolves names through [`PublicOnlyResolver`], which fails the
//! lookup if *any* address of the host is refused, so a name that resolves to a public
//! address when the org is saved and to `127.0.0.1` or `169.254.169.254` at delivery (DNS
//! rebinding) reaches nothing. Hosts written as IP literals skip resolvers, so
//! [`check_target`] checks them before the request is sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether an IPv4 address is globally reachable (not loopback, private, link-local — which
/// holds the cloud metadata address 169.254.169.254 —, shared/CGNAT, benchmarking,
/// documentation, IETF protocol assignments, the 6to4 relay anycast, multicast, reserved,
/// broadcast or "this network").
pub fn is_public_ipv4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(a == 0
        || v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_documentation()
        || v4.is_multicast()
        || v4.is_broadcast()
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (18..20).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 88 && c == 99))
}

/// Whether an IPv6 address is globally reachable: inside `2000::/3`, outside `2001::/23`
/// (IETF protocol assignments: Teredo, benchmarking, ORCHID…), `2001:db8::/32` and
/// `3fff::/20` (documentation) and `2002::/16` (6to4, which reaches whatever IPv4 address it
/// embeds). IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`) and NAT64
/// well-known-prefix (`64:ff9b::a.b.c.d`) addresses count as the IPv4 address they carry;
/// the local-use NAT64 prefix `64:ff9b:1::/48` is refused.
pub fn is_public_ipv6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    let compatible = s[..6] == [0; 6];
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4];
    if mapped || compatible || nat64 {
        return is_public_ipv4(embedded);
    }
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    let ietf_protocol = s[0] == 0x2001 && s[1] < 0x0200;
    let documentation = (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] & 0xfff0) == 0x3ff0;
    let six_to_four = s[0] == 0x2002;
    global_unicast && !ietf_protocol && !documentation && !six_to_four
}

/// Whether an address is one a callback may reach (see the module docs).
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_ipv4(v4),
        IpAddr::V6(v6) => is_public_ipv6(v6),
    }
}

/// The rule for one process: public addresses only, or (development, with
/// `HANDOFF_ALLOW_INSECURE_DYNAMICS`) loopback addresses too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    pub allow_loopback: bool,
}

impl AddressPolicy {
    /// Whether the policy lets a callback connect to `ip`.
    pub fn permits(self, ip: IpAddr) -> bool {
        is_public_ip(ip) || (self.allow_loopback && ip.to_canonical().is_loopback())
    }
}

/// A callback target refused by the address policy. Shows only the address class, never
/// the address or port, so a delivery error is no oracle for the internal network.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the callback host resolves to a loopback, private, link-local or reserved address")]
pub struct NonPublicAddress;

/// Resolves callback hosts with the system resolver and refuses the whole lookup if any
/// address is refused by the policy.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnlyResolver(pub AddressPolicy);

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if addrs.is_empty() || addrs.iter().any(|a| !policy.permits(a.ip())) {
                return Err(Box::new(NonPublicAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Why [`check_target`] refused a callback URL; reads after "callback_url".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefused {
    #[error("has no host")]
    NoHost,
    #[error("must start with https://")]
    NotHttps,
    #[error("is a loopback, private, link-local or reserved address")]
    NonPublic,
}

/// Checks what the resolver cannot see before a delivery: the scheme (`https`, or `http` to
/// loopback under the development policy) and a host written as an IP literal.
pub fn check_target(url: &reqwest::Url, policy: AddressPolicy) -> Result<(), TargetRefused> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(TargetRefused::NoHost),
    };
    if ip.is_some_and(|ip| !policy.permits(ip)) {
        return Err(TargetRefused::NonPublic);
    }
    let loopback_dev = policy.allow_loopback && crate::domain::is_loopback_host(url);
    if url.scheme() != "https" && !(loopback_dev && url.scheme() == "http") {
        return Err(TargetRefused::NotHttps);
    }
    Ok(())
}

/// An org's `callback_url`, checked when it was saved: no credentials, the scheme and any IP
/// literal per [`check_target`], and every address its host resolved to then permitted by
/// the policy. Each delivery checks again when it connects ([`PublicOnlyResolver`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackUrl(reqwest::Url);

impl CallbackUrl {
    /// Parses and checks `raw` (resolving its host now). The error reads after
    /// "callback_url", e.g. "must start with https://".
    pub async fn check(raw: &str, policy: AddressPolicy) -> Result<Self, String> {
        let url = reqwest::Url::parse(raw.trim()).map_err(|e| format!("is not a URL ({e})"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain credentials".into());
        }
        check_target(&url, policy).map_err(|why| why.to_string())?;
        let host = url.host_str().ok_or("has no host")?.to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("host '{host}' could not be resolved ({e})"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("host '{host}' has no address"));
        }
        if let Some(bad) = addrs.iter().find(|a| !policy.permits(a.ip())) {
            return Err(format!(
                "host '{host}' resolves to {}, a loopback, private, link-local or reserved address",
                bad.ip()
            ));
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// The HTTP client that delivers callbacks (and calls OpenCX, whose base URL an admin
/// sets): its own connection pool, the address policy at
/// connect time, `timeout` per request, no redirects, no proxy from the environment (a
/// proxy would resolve the name itself, out of the policy's reach).
pub fn callback_client(timeout: Duration, policy: AddressPolicy) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(PublicOnlyResolver(policy)))
        .user_agent(concat!("handoff-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the TLS backend initialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn special_ranges_are_refused() {
        for refused in [
            // IPv4 (IANA IPv4 special-purpose registry)
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "192.0.0.1",
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6 (IANA IPv6 special-purpose registry)
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:a9fe:a9fe",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::10.0.0.1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "2002:808:808::1",
            "3fff::1",
            "fc00::1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public_ip(ip(refused)), "{refused} must be refused");
        }
    }

    #[test]
    fn global_addresses_pass() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.0.1",
            "100.128.0.1",
            "172.32.0.1",
            "198.20.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2001:200::1",
        ] {
            assert!(is_public_ip(ip(public)), "{public} must pass");
        }
    }

    #[test]
    fn the_development_policy_adds_loopback_only() {
        let dev = AddressPolicy {
            allow_loopback: true,
        };
        assert!(dev.permits(ip("127.0.0.1")));
        assert!(dev.permits(ip("::1")));
        assert!(dev.permits(ip("::ffff:127.0.0.1")));
        assert!(!dev.permits(ip("10.0.0.1")));
        assert!(!dev.permits(ip("169.254.169.254")));
        let strict = AddressPolicy {
            allow_loopback: false,
        };
        assert!(!strict.permits(ip("127.0.0.1")));
    }

    #[test]
    fn ip_literal_targets_and_schemes_are_checked() {
        let strict = AddressPolicy {
            allow_loopback: false,
        };
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert_eq!(
            check_target(&url("https://[::127.0.0.1]/hook"), strict),
            Err(TargetRefused::NonPublic)
        );
        assert_eq!(
            check_target(&url("https://127.1/hook"), strict),
            Err(TargetRefused::NonPublic)
        );
        assert_eq!(
            check_target(&url("http://8.8.8.8/hook"), strict),
            Err(TargetRefused::NotHttps)
        );
        assert!(check_target(&url("https://8.8.8.8/hook"), strict).is_ok());
        assert!(check_target(&url("https://hooks.example.com/x"), strict).is_ok());
        let dev = AddressPolicy {
            allow_loopback: true,
        };
        assert!(check_target(&url("http://127.0.0.1:9/hook"), dev).is_ok());
        assert!(check_target(&url("http://localhost:9/hook"), dev).is_ok());
        assert!(check_target(&url("http://8.8.8.8/hook"), dev).is_err());
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_with_any_refused_address() {
        let strict = PublicOnlyResolver(AddressPolicy {
            allow_loopback: false,
        });
        let name: Name = "localhost".parse().unwrap();
        let err = strict.resolve(name).await.err().expect("refused");
        assert!(err.is::<NonPublicAddress>(), "{err}");
        let dev = PublicOnlyResolver(AddressPolicy {
            allow_loopback: true,
        });
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<_> = dev.resolve(name).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
