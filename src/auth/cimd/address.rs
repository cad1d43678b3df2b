//! Which client ID URLs may be fetched at all, decided before anything is
//! sent: the draft's URL rules (https, a real path, no fragment, credentials or
//! dot segments, bounded length) and the addresses a fetch may connect to (only
//! globally routable unicast; IPv4-mapped and NAT64 forms judged by the IPv4
//! address they reach). The resolver in `fetch` applies the same address rule
//! to every name it resolves.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use super::MAX_URL_LEN;

/// Why a client ID URL is not fetched. The message follows
/// `client metadata document <url>: ` (see [`super::CimdError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("the URL is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("the URL must be plain ASCII without spaces or backslashes")]
    NotPlainAscii,
    #[error("the URL is not valid ({0})")]
    Invalid(url::ParseError),
    #[error("the URL must use https")]
    NotHttps,
    #[error("the URL must not contain a username or password")]
    Credentials,
    #[error("the URL must not contain a fragment")]
    Fragment,
    #[error("the URL needs a host")]
    NoHost,
    #[error("the URL must have a path, e.g. https://app.example.com/oauth/client.json")]
    NoPath,
    #[error("the URL must not contain \".\" or \"..\" path segments")]
    DotSegment,
    #[error("{NON_PUBLIC}")]
    NonPublic,
}

/// The draft's rules for the URL, before anything is sent.
pub fn check_url(text: &str, allow_private: bool) -> Result<Url, UrlRefused> {
    if text.len() > MAX_URL_LEN {
        return Err(UrlRefused::TooLong);
    }
    // Parsers disagree on spaces, backslashes and non-ASCII; a client ID that is
    // compared as a string must not mean different things to different parsers.
    if !text.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return Err(UrlRefused::NotPlainAscii);
    }
    let url = Url::parse(text).map_err(UrlRefused::Invalid)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(UrlRefused::NotHttps),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefused::Credentials);
    }
    if url.fragment().is_some() || text.contains('#') {
        return Err(UrlRefused::Fragment);
    }
    if url.host().is_none() {
        return Err(UrlRefused::NoHost);
    }
    if url.path().is_empty() || url.path() == "/" {
        return Err(UrlRefused::NoPath);
    }
    if has_dot_segment(text) {
        return Err(UrlRefused::DotSegment);
    }
    Ok(url)
}

/// Dot segments are looked for in the text as sent, since parsing removes them
/// (including their percent-encoded forms).
fn has_dot_segment(text: &str) -> bool {
    let Some((_, rest)) = text.split_once("://") else {
        return false;
    };
    let Some(start) = rest.find(['/', '?', '#']) else {
        return false;
    };
    let path = &rest[start..];
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path[..end].split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    })
}

/// Refuse hosts that are internal without asking DNS: IP literals (which the
/// resolver never sees) and `localhost` names (for a clear message; the
/// resolver would refuse them too).
pub fn check_host(url: &Url) -> Result<(), UrlRefused> {
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(UrlRefused::NonPublic);
            }
            return Ok(());
        }
        None => return Err(UrlRefused::NoHost),
    };
    if is_public_ip(ip) {
        Ok(())
    } else {
        tracing::info!(%ip, "client metadata URL names a non-public address");
        Err(UrlRefused::NonPublic)
    }
}

pub const NON_PUBLIC: &str =
    "the host is or resolves to a non-public address, which the gateway does not fetch from";

/// Whether a fetch may connect to `ip` (when private networks are not allowed):
/// only globally routable unicast addresses.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let internal = a == 0 // "this network", including 0.0.0.0
        || a == 10 // RFC 1918
        || a == 127 // loopback
        || (a == 100 && (64..=127).contains(&b)) // CGNAT, RFC 6598
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..=31).contains(&b)) // RFC 1918
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // RFC 1918
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224; // multicast, reserved, broadcast
    !internal
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // These reach an IPv4 address, so that address decides.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 well-known prefix: on IPv6-only hosts every public IPv4 site
        // resolves into it.
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    // Only 2000::/3 is global unicast; this refuses ::, ::1, IPv4-compatible
    // ::/96, discard 100::/64, unique-local fc00::/7, link-local fe80::/10,
    // site-local fec0::/10 and multicast ff00::/8 in one test.
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    let internal = match s[0] {
        // 2001::/23 IETF assignments (Teredo, ORCHID, ...), 2001:db8::/32 documentation
        0x2001 => s[1] < 0x0200 || s[1] == 0x0db8,
        // 6to4: tunnels to any IPv4 address
        0x2002 => true,
        // 3fff::/20 documentation (RFC 9637)
        0x3fff => s[1] < 0x1000,
        _ => false,
    };
    !internal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_inside_names_and_in_the_query_are_not_segments() {
        assert!(check_url("https://example.com/a/b..c/.d?x=../y", false).is_ok());
        assert_eq!(
            check_url("https://example.com/a/%2e/b", false),
            Err(UrlRefused::DotSegment)
        );
    }

    #[test]
    fn http_only_with_private_networks_allowed() {
        assert_eq!(
            check_url("http://example.com/x", false),
            Err(UrlRefused::NotHttps)
        );
        assert!(check_url("http://127.0.0.1:1/x", true).is_ok());
    }

    #[test]
    fn localhost_names_and_internal_literals_are_refused() {
        for url in [
            "https://localhost/x",
            "https://a.localhost./x",
            "https://10.0.0.1/x",
        ] {
            let url = Url::parse(url).unwrap();
            assert_eq!(check_host(&url), Err(UrlRefused::NonPublic), "{url}");
        }
        assert_eq!(
            check_host(&Url::parse("https://example.com/x").unwrap()),
            Ok(())
        );
    }

    #[test]
    fn only_public_addresses_are_allowed() {
        for (ip, public) in [
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("172.32.0.1", true),
            ("100.128.0.1", true),
            ("2606:4700::1111", true),
            ("2001:4860:4860::8888", true),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::808:808", true),
            ("0.0.0.0", false),
            ("127.0.0.1", false),
            ("127.255.0.9", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("100.127.255.255", false),
            ("192.0.0.8", false),
            ("192.0.2.1", false),
            ("198.51.100.7", false),
            ("203.0.113.9", false),
            ("198.18.0.1", false),
            ("224.0.0.1", false),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            ("::", false),
            ("::1", false),
            ("::127.0.0.1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("64:ff9b::a00:1", false),
            ("fe80::1", false),
            ("fec0::1", false),
            ("fc00::1", false),
            ("fd12:3456::1", false),
            ("ff02::1", false),
            ("2001:db8::1", false),
            ("2001::1", false),
            ("2002:7f00:1::1", false),
            ("3fff::1", false),
            ("100::1", false),
        ] {
            let addr: IpAddr = ip.parse().expect(ip);
            assert_eq!(is_public_ip(addr), public, "{ip}");
        }
    }
}
