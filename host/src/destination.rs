//! Where the host may send a request at all. A base URL typed by an end
//! user (Gong's regional API host) or named by a remote (gong-oauth's
//! `api_base_url_for_customer`) must not turn the host into a way into its
//! own network: loopback, private, link-local and other non-public
//! addresses are refused, after DNS resolution, unless the operator allows
//! them (tests against a local fake, on-premise providers).
//!
//! The check happens in the resolver the HTTP client connects through, so
//! the addresses checked are the addresses dialled: nothing resolves the
//! name again between the check and the connect (no DNS-rebinding window).
//! IP literals never reach a resolver, so `HttpClient::check_url` refuses
//! those before the request is built. Redirects are never followed and
//! environment proxies are not used: a proxy would resolve names itself.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

/// The operator's egress rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Allow loopback, private (RFC 1918, ULA), link-local and other
    /// non-public addresses, and plain `http://` to loopback. Off by
    /// default; on for tests against a local fake and for on-premise
    /// setups (`--allow-private-egress`, `TERAPI_ALLOW_PRIVATE_EGRESS=1`).
    pub allow_private: bool,
    /// Names resolved to these addresses instead of by DNS (split-horizon
    /// setups, tests). The addresses are checked like any other.
    pub dns_overrides: BTreeMap<String, Vec<IpAddr>>,
    /// Certificate authorities trusted beside the system's (PEM): a
    /// provider on a private CA (an on-premise Jira, a test's fake).
    pub extra_root_certificates: Vec<Vec<u8>>,
}

impl EgressPolicy {
    /// The policy for talking to services on this machine (tests, a local
    /// fake provider).
    pub fn allow_private() -> EgressPolicy {
        EgressPolicy { allow_private: true, ..EgressPolicy::default() }
    }

    /// Why `ip` may not be dialled, or `None` when it may.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow_private { None } else { non_public(ip) }
    }

    /// Refuses a URL whose scheme or IP-literal host the policy forbids;
    /// names are checked when they are resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), DestinationRefused> {
        let host = url.host_str().unwrap_or_default().to_string();
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            "http" => {
                return Err(DestinationRefused {
                    host,
                    reason: "plain http is only allowed to this machine when the operator allows private egress",
                });
            }
            _ => return Err(DestinationRefused { host, reason: "only http(s) URLs are sent" }),
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err(DestinationRefused { host, reason: "it has no host" }),
        };
        match self.refusal(ip) {
            Some(reason) => Err(DestinationRefused { host, reason }),
            None => Ok(()),
        }
    }
}

/// A destination the egress policy refuses. Names the host (never a
/// credential) and the kind of address; says how an operator allows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{host}` is not a destination this host sends to ({reason}); use the provider's public API host, or, on a \
     private network, start terapi with --allow-private-egress"
)]
pub struct DestinationRefused {
    pub host: String,
    pub reason: &'static str,
}

/// Why an address is not a public unicast one, or `None` if it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "an unspecified address",
        (127, _, _) => "a loopback address",
        (10, _, _) | (192, 168, _) => "a private address",
        (172, 16..=31, _) => "a private address",
        (169, 254, _) => "a link-local address",
        (100, 64..=127, _) => "a shared (carrier-grade NAT) address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved or broadcast address",
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (192, 88, 99) => "a reserved address",
        (198, 18..=19, _) => "a reserved (benchmarking) address",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    // Forms that carry an IPv4 address are judged by it: mapped
    // (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d)
    // and 6to4 (2002:aabb:ccdd::).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    if segments[..6] == [0; 6] {
        return non_public_v4(embedded(segments[6], segments[7])).or(Some("a reserved address"));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return non_public_v4(embedded(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return non_public_v4(embedded(segments[1], segments[2]));
    }
    Some(match segments[0] {
        s if s & 0xfe00 == 0xfc00 => "a private (unique local) address",
        s if s & 0xffc0 == 0xfe80 => "a link-local address",
        s if s & 0xffc0 == 0xfec0 => "a site-local address",
        s if s & 0xff00 == 0xff00 => "a multicast address",
        0x0064 if segments[1] == 0xff9b => "a reserved (local NAT64) address",
        0x0100 if segments[1..4] == [0, 0, 0] => "a reserved (discard) address",
        0x2001 if segments[1] == 0x0db8 => "a reserved (documentation) address",
        // Teredo tunnels hide the real destination.
        0x2001 if segments[1] == 0 => "a reserved (Teredo) address",
        _ => return None,
    })
}

/// The HTTP client every request to a provider goes through: one pool of
/// keep-alive connections per process, with the egress policy applied to
/// every address it dials.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    policy: Arc<EgressPolicy>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl HttpClient {
    pub fn new(policy: EgressPolicy, connect_timeout: Duration) -> Result<HttpClient, reqwest::Error> {
        let mut roots = Vec::new();
        for pem in &policy.extra_root_certificates {
            roots.extend(reqwest::Certificate::from_pem_bundle(pem)?);
        }
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .tls_certs_merge(roots)
            // A redirect could carry the injected credential elsewhere; the
            // guest sees the 3xx instead.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy resolves names itself, past the policy.
            .no_proxy()
            .dns_resolver(GuardedResolver { policy: policy.clone() })
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("terapi/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpClient { client, policy })
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// A request to `url`, or why the policy refuses it. Names in `url` are
    /// checked again when the connection is made.
    pub fn request(&self, method: reqwest::Method, url: Url) -> Result<reqwest::RequestBuilder, DestinationRefused> {
        self.policy.check_url(&url)?;
        Ok(self.client.request(method, url))
    }

    /// The underlying client, for callers outside the provider path
    /// (benchmarks' native baselines). It keeps the resolver's checks but
    /// not the IP-literal check of `request`.
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }
}

/// Finds the policy's refusal in a request error's causes (the resolver's
/// error comes back wrapped by hyper and reqwest).
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a DestinationRefused> {
    let mut cause: Option<&'a (dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<DestinationRefused>() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}

struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            let resolved: Vec<IpAddr> = match policy.dns_overrides.get(&host) {
                Some(addresses) => addresses.clone(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect(),
            };
            // Of a name with public and non-public addresses only the public
            // ones are dialled; with none left, the request is refused.
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|ip| match policy.refusal(*ip) {
                    Some(reason) => {
                        refused.get_or_insert(reason);
                        false
                    }
                    None => true,
                })
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if allowed.is_empty() {
                let reason = refused.unwrap_or("the name has no address");
                tracing::warn!(target: "terapi::egress", "refused `{host}`: it resolves to {reason}");
                return Err(Box::new(DestinationRefused { host, reason: resolves_to(reason) }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn resolves_to(reason: &'static str) -> &'static str {
    match reason {
        "a loopback address" => "the name resolves to a loopback address",
        "a private address" => "the name resolves to a private address",
        "a private (unique local) address" => "the name resolves to a private (unique local) address",
        "a link-local address" => "the name resolves to a link-local address",
        "the name has no address" => reason,
        _ => "the name resolves to an address that is not public",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_unicast_addresses_pass() {
        for bad in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "fd00::1",
            "fc12::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(non_public(ip).is_some(), "{bad} is refused");
            assert!(EgressPolicy::allow_private().refusal(ip).is_none(), "{bad} is allowed when private egress is");
        }
        for good in ["8.8.8.8", "35.1.2.3", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert_eq!(non_public(good.parse().unwrap()), None, "{good}");
        }
    }

    #[test]
    fn ip_literals_and_plain_http_are_checked_in_the_url() {
        let strict = EgressPolicy::default();
        for bad in [
            "http://api.gong.io",
            "http://127.0.0.1:8080",
            "https://127.0.0.1:8080",
            "https://2130706433/",
            "https://0x7f.1/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00::1]/",
            "https://169.254.169.254/latest",
        ] {
            let url = Url::parse(bad).unwrap();
            let error = strict.check_url(&url).unwrap_err().to_string();
            assert!(error.contains("--allow-private-egress"), "{bad}: {error}");
        }
        strict.check_url(&Url::parse("https://us-44392.api.gong.io").unwrap()).unwrap();
        EgressPolicy::allow_private().check_url(&Url::parse("http://127.0.0.1:8080").unwrap()).unwrap();
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_by_the_resolver() {
        use reqwest::dns::Resolve as _;
        let policy = EgressPolicy {
            dns_overrides: BTreeMap::from([("gong.internal.example".into(), vec!["127.0.0.1".parse().unwrap()])]),
            ..EgressPolicy::default()
        };
        let resolver = GuardedResolver { policy: Arc::new(policy.clone()) };
        for name in ["localhost", "gong.internal.example"] {
            let error = match resolver.resolve(name.parse().unwrap()).await {
                Ok(_) => panic!("{name} resolved"),
                Err(e) => e,
            };
            let refused = refusal_in(error.as_ref()).expect("the policy's refusal");
            assert!(refused.reason.contains("loopback"), "{name}: {refused}");
        }
        let open = GuardedResolver { policy: Arc::new(EgressPolicy { allow_private: true, ..policy }) };
        let addrs: Vec<_> = open.resolve("gong.internal.example".parse().unwrap()).await.unwrap().collect();
        assert_eq!(addrs, vec!["127.0.0.1:0".parse::<SocketAddr>().unwrap()]);
    }
}
