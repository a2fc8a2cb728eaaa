//! A source's `allow_ips`: the addresses it takes requests from, each an address or a CIDR
//! range (`10.0.0.0/8`, as the stack's own parameters write them). A caller outside them is
//! answered exactly like a wrong credential, so a probe learns nothing of which check failed;
//! the server's log says which, with the caller's address.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowIps(Vec<IpNet>);

impl AllowIps {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `peer` may call: any peer when the list is empty, else one inside a range. An
    /// IPv4 peer seen as IPv6 (`::ffff:a.b.c.d`, a dual-stack listener's way) is the IPv4 one.
    pub fn permits(&self, peer: Option<IpAddr>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Some(peer) = peer else { return false };
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&peer))
    }
}

impl fmt::Display for AllowIps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self.0.iter().map(|n| n.trunc().to_string()).collect();
        f.write_str(&all.join(", "))
    }
}

/// One entry: a CIDR range, or an address alone (a range of one).
fn parse(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("{entry:?} is neither an IP address nor a CIDR range (like 203.0.113.0/24)")
        })
}

impl<'de> Deserialize<'de> for AllowIps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(d)?;
        entries
            .iter()
            .map(|e| parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map(AllowIps)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for AllowIps {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AllowIps".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "array",
            "items": { "type": "string", "description": "an IP address or a CIDR range" }
        })
    }
}

#[cfg(test)]
impl From<Vec<IpAddr>> for AllowIps {
    fn from(addresses: Vec<IpAddr>) -> Self {
        AllowIps(addresses.into_iter().map(IpNet::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Result<AllowIps, String> {
        let toml = format!(
            "allow = [{}]",
            entries
                .iter()
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        #[derive(Deserialize)]
        struct T {
            allow: AllowIps,
        }
        toml::from_str::<T>(&toml)
            .map(|t| t.allow)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn addresses_and_ranges_are_taken_and_anything_else_is_said() {
        let allow = list(&["198.51.100.20", "10.0.0.0/8", "2001:db8::/32"]).unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(allow.permits(ip("198.51.100.20")));
        assert!(!allow.permits(ip("198.51.100.21")));
        assert!(allow.permits(ip("10.200.3.4")));
        assert!(allow.permits(ip("::ffff:10.1.2.3")), "IPv4 seen as IPv6");
        assert!(allow.permits(ip("2001:db8::1")));
        assert!(!allow.permits(None), "an unknown caller is outside");
        assert!(AllowIps::default().permits(None), "empty: anyone");
        assert_eq!(
            allow.to_string(),
            "198.51.100.20/32, 10.0.0.0/8, 2001:db8::/32"
        );
        let e = list(&["10.0.0.0/33"]).unwrap_err();
        assert!(e.contains("CIDR range"), "{e}");
        assert!(list(&["gateway.example"]).is_err());
    }
}
