//! Which origins and addresses a plugin may reach.
//!
//! An origin is allowed when it is listed exactly (scheme, host, port). The
//! addresses its name resolves to must be public, unless they fall in a
//! range the operator listed (`outbound_addresses`), or the listed origin is
//! that very IP literal (`http://127.0.0.1:8080` names its address). So a
//! public name that resolves to 169.254.169.254 or 10.0.0.5 (DNS rebinding)
//! is refused.

use std::net::IpAddr;

use super::error::PolicyError;

/// `scheme://host:port`, lowercase, the port always explicit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin(String);

impl Origin {
    /// The origin of an absolute `http`/`https` URL.
    pub fn of(url: &url::Url) -> Option<Self> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let host = url.host_str()?.to_ascii_lowercase();
        let port = url.port_or_known_default()?;
        Some(Self(format!("{scheme}://{host}:{port}")))
    }

    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let fail = |reason: &str| PolicyError {
            value: text.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(text).map_err(|e| fail(&e.to_string()))?;
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return Err(fail("an origin is scheme://host[:port], without a path"));
        }
        Self::of(&url).ok_or_else(|| fail("only http and https origins"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The IP address this origin names literally, if it does.
    fn literal_ip(&self) -> Option<IpAddr> {
        let host = self.0.split("://").nth(1)?.rsplit_once(':')?.0;
        host.trim_matches(|c| c == '[' || c == ']').parse().ok()
    }
}

/// An address range, `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    net: IpAddr,
    prefix: u8,
}

impl Range {
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let fail = |reason: &str| PolicyError {
            value: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (ip, prefix) = text.split_once('/').unwrap_or((text, ""));
        let net: IpAddr = ip.parse().map_err(|_| fail("not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            "" => max,
            p => p
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| fail("bad prefix length"))?,
        };
        Ok(Self { net, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, bits) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (a >> shift) == (b >> shift)
    }
}

/// Whether an address is reachable on the public internet (not loopback,
/// private, link-local, CGNAT, unique-local, multicast, documentation...).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// What one plugin may reach.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    origins: Vec<Origin>,
    ranges: Vec<Range>,
}

impl Policy {
    pub fn new(origins: &[String], ranges: &[String]) -> Result<Self, PolicyError> {
        Ok(Self {
            origins: origins
                .iter()
                .map(|o| Origin::parse(o))
                .collect::<Result<_, _>>()?,
            ranges: ranges
                .iter()
                .map(|r| Range::parse(r))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    pub fn allows(&self, origin: &Origin) -> bool {
        self.origins.contains(origin)
    }

    /// Whether `origin` (allowed) may connect to `ip`.
    pub fn may_connect(&self, origin: &Origin, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        is_public(ip)
            || origin.literal_ip() == Some(ip)
            || self.ranges.iter().any(|r| r.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> Origin {
        Origin::of(&url::Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn origins_match_exactly_with_default_ports() {
        let p = Policy::new(
            &[
                "https://API.example.com".into(),
                "http://127.0.0.1:8080".into(),
            ],
            &[],
        )
        .unwrap();
        assert!(p.allows(&origin("https://api.example.com:443/v1?q=1")));
        assert!(!p.allows(&origin("http://api.example.com/")));
        assert!(!p.allows(&origin("https://api.example.com:8443/")));
        assert!(p.allows(&origin("http://127.0.0.1:8080/x")));
        assert!(Policy::new(&["https://a.com/path".into()], &[]).is_err());
        assert!(Policy::new(&["ftp://a.com".into()], &[]).is_err());
    }

    #[test]
    fn private_addresses_need_listing() {
        let p = Policy::new(&[], &["10.1.0.0/16".into()]).unwrap();
        let name = origin("https://api.example.com");
        for blocked in [
            "127.0.0.1",
            "10.2.0.1",
            "169.254.169.254",
            "192.168.1.1",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            assert!(!p.may_connect(&name, blocked.parse().unwrap()), "{blocked}");
        }
        assert!(p.may_connect(&name, "10.1.2.3".parse().unwrap()));
        assert!(p.may_connect(&name, "93.184.216.34".parse().unwrap()));
        let literal = origin("http://127.0.0.1:9000");
        assert!(p.may_connect(&literal, "127.0.0.1".parse().unwrap()));
        assert!(!p.may_connect(&literal, "127.0.0.2".parse().unwrap()));
        assert!(Range::parse("10.0.0.0/33").is_err());
    }
}
