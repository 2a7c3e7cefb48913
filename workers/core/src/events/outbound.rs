//! Where webhooks may go: never to a private, loopback, link-local or otherwise internal address
//! (the instance metadata service among them), checked on the address a name resolves to, at the
//! moment of connecting, for the first request and for every redirect; and only over `https`.
//!
//! The check is in the HTTP client itself: its resolver ([`Guarded`]) drops every address that is
//! not public and refuses a name that has none left, so what was checked is what is connected to
//! (a name that resolves to a public address when registered and to a private one later is
//! refused then); an address written in the URL, which no resolver sees, is checked before the
//! request ([`check_url`]) and by the redirect policy. Redirects are followed at most
//! [`MAX_REDIRECTS`] times.
//!
//! A local stack's receiver is on 127.0.0.1: with [`Outbound::allow_local`] (the local profile's
//! `QBILL_WEBHOOKS_ALLOW_LOCAL=true`, never set on AWS), `http` and loopback addresses are allowed,
//! and nothing else is: private and link-local addresses stay refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How long an endpoint has to answer: a 2xx within this counts as delivered.
pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_REDIRECTS: usize = 3;
/// The longest URL an endpoint may have.
pub const MAX_URL_CHARS: usize = 2048;

/// Why an address or URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Url(String),
    #[error("{host} resolves to {address}, which is not a public address")]
    Private { host: String, address: IpAddr },
    #[error("{0} does not resolve to any address")]
    Unresolved(String),
}

/// The HTTP client webhooks go out with, and the rule it keeps.
#[derive(Clone)]
pub struct Outbound {
    pub client: reqwest::Client,
    pub allow_local: bool,
}

impl Outbound {
    pub fn new(allow_local: bool) -> Self {
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match check_url(attempt.url(), allow_local) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(format!("a redirect to a refused address: {e}")),
            }
        });
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(policy)
            .dns_resolver(Arc::new(Guarded { allow_local }))
            .user_agent(concat!("qbill-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the webhook client builds");
        Self {
            client,
            allow_local,
        }
    }

    /// Checks `raw` as an endpoint's URL, resolving its name now: what registration and an
    /// update refuse at once (the sender checks again on every connection).
    pub async fn check_endpoint(&self, raw: &str) -> Result<Url, Refused> {
        if raw.chars().count() > MAX_URL_CHARS {
            return Err(Refused::Url(format!(
                "the url is longer than {MAX_URL_CHARS} characters"
            )));
        }
        let url = Url::parse(raw).map_err(|e| Refused::Url(format!("the url is not one: {e}")))?;
        check_url(&url, self.allow_local)?;
        if let Some(url::Host::Domain(name)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            resolve(name, port, self.allow_local).await?;
        }
        Ok(url)
    }
}

/// Checks a URL's scheme, credentials and, when its host is an address, that address.
pub fn check_url(url: &Url, allow_local: bool) -> Result<(), Refused> {
    match url.scheme() {
        "https" => {}
        "http" if allow_local => {}
        "http" => return Err(Refused::Url("the url must be https".into())),
        other => {
            return Err(Refused::Url(format!("the url must be https, not {other}")));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Url(
            "the url must not carry a user name or password".into(),
        ));
    }
    if url.fragment().is_some() {
        return Err(Refused::Url("the url must not have a fragment".into()));
    }
    let address = match url.host() {
        None => return Err(Refused::Url("the url has no host".into())),
        Some(url::Host::Domain(_)) => return Ok(()),
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
    };
    if allowed(address, allow_local) {
        Ok(())
    } else {
        Err(Refused::Private {
            host: address.to_string(),
            address,
        })
    }
}

/// Whether a webhook may connect to `address`: a public one, or (with `allow_local`) loopback.
pub fn allowed(address: IpAddr, allow_local: bool) -> bool {
    let address = match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    if address.is_loopback() {
        return allow_local;
    }
    match address {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(a: Ipv4Addr) -> bool {
    let [first, second, ..] = a.octets();
    !(a.is_private()
        || a.is_link_local()
        || a.is_unspecified()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || first == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (first == 100 && (64..128).contains(&second))
        // IETF protocol assignments, benchmarking, reserved.
        || (first == 192 && second == 0 && a.octets()[2] == 0)
        || (first == 198 && (18..20).contains(&second))
        || first >= 240)
}

fn public_v6(a: Ipv6Addr) -> bool {
    let first = a.segments()[0];
    !(a.is_unspecified()
        || a.is_multicast()
        // Unique local (fc00::/7: the EC2 metadata service's fd00:ec2::254 among them).
        || (first & 0xfe00) == 0xfc00
        // Link-local, fe80::/10.
        || (first & 0xffc0) == 0xfe80
        // Documentation, 2001:db8::/32.
        || (first == 0x2001 && a.segments()[1] == 0x0db8)
        // IPv4-compatible and NAT64 forms hide an IPv4 address.
        || first == 0
        || (first == 0x64 && a.segments()[1] == 0xff9b))
}

/// Resolves `name`, keeping only the addresses a webhook may connect to; refuses a name with
/// any address that is not (a name that answers with both is not trusted with either).
async fn resolve(name: &str, port: u16, allow_local: bool) -> Result<Vec<SocketAddr>, Refused> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|_| Refused::Unresolved(name.to_owned()))?
        .collect();
    if found.is_empty() {
        return Err(Refused::Unresolved(name.to_owned()));
    }
    if let Some(bad) = found.iter().find(|a| !allowed(a.ip(), allow_local)) {
        return Err(Refused::Private {
            host: name.to_owned(),
            address: bad.ip(),
        });
    }
    Ok(found)
}

/// The client's resolver: [`resolve`], on every connection.
struct Guarded {
    allow_local: bool,
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_local = self.allow_local;
        Box::pin(async move {
            let found = resolve(name.as_str(), 0, allow_local).await?;
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_and_public_ones_allowed() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            let address: IpAddr = refused.parse().unwrap();
            assert!(!allowed(address, false), "{refused} was allowed");
        }
        for public in ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"] {
            let address: IpAddr = public.parse().unwrap();
            assert!(allowed(address, false), "{public} was refused");
        }
        assert!(allowed("127.0.0.1".parse().unwrap(), true));
        assert!(allowed("::1".parse().unwrap(), true));
        assert!(!allowed("10.0.0.1".parse().unwrap(), true));
        assert!(!allowed("169.254.169.254".parse().unwrap(), true));
    }

    #[test]
    fn urls_must_be_https_without_credentials_unless_local() {
        let check = |raw: &str, local| check_url(&Url::parse(raw).unwrap(), local);
        assert!(check("https://hooks.example.com/in", false).is_ok());
        assert!(check("http://hooks.example.com/in", false).is_err());
        assert!(check("http://127.0.0.1:9000/in", true).is_ok());
        assert!(check("http://127.0.0.1:9000/in", false).is_err());
        assert!(check("https://user:pw@hooks.example.com/", false).is_err());
        assert!(check("https://169.254.169.254/latest/meta-data", true).is_err());
        assert!(check("https://[::ffff:a9fe:a9fe]/", false).is_err());
        assert!(check("ftp://hooks.example.com/", false).is_err());
        assert!(check("https://10.0.0.5/", true).is_err());
    }
}
