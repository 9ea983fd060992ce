//! How `csirtg_indicator` (1.0.13, what the original's `cifsdk` 3 uses)
//! types and normalises an indicator value: the indicator type (`itype`) is
//! inferred from the lower-cased value in the library's order (url, hash,
//! ipv4, ipv6, email, fqdn, asn); URLs keep their case but lose trailing
//! slashes and empty `?`/`#`/`;` parts; everything else is lower-cased;
//! IPv4 octets lose leading zeros. Values the library cannot type, or on
//! which it fails, are not submitted.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use regex::Regex;

/// A typed, normalised value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typed {
    /// The normalised value.
    pub indicator: String,
    /// `url`, `md5`, `ipv4`, `fqdn`, …
    pub itype: &'static str,
}

struct Patterns {
    ipv4: Regex,
    ipv4_cidr: Regex,
    fqdn: Regex,
    email: Regex,
    asn: Regex,
    hashes: [(&'static str, Regex); 5],
    ipv4_padding: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("valid pattern");
        Patterns {
            ipv4: re(r"^(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(\d{1,3})$"),
            ipv4_cidr: re(
                r"^((25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)(/\d{1,2})$",
            ),
            // The library's expression starts with `(?!-)`; the first
            // character is checked separately.
            fqdn: re(
                r"^(xn--)?[a-z0-9][a-z0-9_.\-]{0,245}[a-z0-9]?\.(xn--)?([a-z0-9\-]{1,61}|[a-z0-9\-]{1,30}\.[a-z]{2,})$",
            ),
            email: re(r"^[\-\w+.!#$%&'*/=?^_`{|}~;]+@[\-.0-9a-zA-Z][\-.0-9a-zA-Z]*[a-zA-Z]{2,}$"),
            asn: re(r"^(AS|as)[0-9]{1,6}$"),
            hashes: [
                ("uuid", re(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
                ("md5", re(r"^[a-fA-F0-9]{32}$")),
                ("sha1", re(r"^[a-fA-F0-9]{40}$")),
                ("sha256", re(r"^[a-fA-F0-9]{64}$")),
                ("sha512", re(r"^[a-fA-F0-9]{128}$")),
            ],
            ipv4_padding: re(r"(^|\.)0+([^/.])"),
        }
    })
}

/// Python's `re.match(r"…$", s)`: `$` also matches before one trailing
/// newline.
fn py_match(re: &Regex, s: &str) -> bool {
    re.is_match(s) || s.strip_suffix('\n').is_some_and(|t| re.is_match(t))
}

/// Why a value is not submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untyped(pub String);

/// `socket.inet_pton(AF_INET6, s)` or `ipaddress.IPv6Network(s)`; an
/// `Err` where the library raised (a network with host bits set, a bad
/// prefix length), which drops the indicator.
fn is_ipv6(s: &str) -> Result<bool, Untyped> {
    if s.parse::<Ipv6Addr>().is_ok() {
        return Ok(true);
    }
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let Ok(addr) = addr.parse::<Ipv6Addr>() else {
        return Ok(false);
    };
    let Some(prefix) = prefix else { return Ok(true) };
    let bits: u32 = prefix
        .parse()
        .ok()
        .filter(|b| *b <= 128 && prefix.bytes().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| Untyped(format!("'{s}' has an invalid IPv6 prefix length")))?;
    let host = if bits == 0 { u128::MAX } else { u128::MAX >> bits };
    if bits < 128 && u128::from(addr) & host != 0 {
        return Err(Untyped(format!("'{s}' has host bits set")));
    }
    Ok(true)
}

/// `socket.inet_pton(AF_INET, s)` or the library's IPv4 expression.
fn is_ipv4(s: &str) -> bool {
    s.parse::<Ipv4Addr>().is_ok() || py_match(&patterns().ipv4, s)
}

/// The library's CIDR expression and `ipaddress.ip_network(s)` (strict:
/// no leading zeros, no host bits).
fn is_ipv4_cidr(s: &str) -> bool {
    if !py_match(&patterns().ipv4_cidr, s) {
        return false;
    }
    let Some((addr, bits)) = s.trim_end_matches('\n').split_once('/') else { return false };
    let (Ok(addr), Ok(bits)) = (addr.parse::<Ipv4Addr>(), bits.parse::<u32>()) else { return false };
    bits <= 32 && (bits == 32 || u32::from(addr) & (u32::MAX >> bits) == 0)
}

fn is_fqdn(s: &str) -> bool {
    !s.starts_with('-') && py_match(&patterns().fqdn, s)
}

/// The parts of a URL `urllib.parse.urlparse` yields that matter here.
struct Url<'a> {
    scheme: String,
    netloc: Option<&'a str>,
    rest: &'a str,
}

/// Characters `urllib.parse` removes anywhere in a URL.
fn strip_unsafe(s: &str) -> String {
    s.trim_start_matches(|c: char| c <= ' ').chars().filter(|c| !matches!(c, '\t' | '\r' | '\n')).collect()
}

fn split_url(url: &str) -> Url<'_> {
    let mut scheme = String::new();
    let mut rest = url;
    if let Some(i) = url.find(':') {
        let s = &url[..i];
        if !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            scheme = s.to_ascii_lowercase();
            rest = &url[i + 1..];
        }
    }
    let netloc = rest.strip_prefix("//").map(|r| {
        let end = r.find(['/', '?', '#']).unwrap_or(r.len());
        &r[..end]
    });
    if let Some(n) = netloc {
        rest = &rest[2 + n.len()..];
    }
    Url { scheme, netloc, rest }
}

/// `urlparse(…).hostname`: the host of the netloc, lower-cased, without
/// user info, port or IPv6 brackets; `None` when there is none.
fn hostname(netloc: &str) -> Option<String> {
    let host = netloc.rsplit_once('@').map_or(netloc, |(_, h)| h);
    let host = if let Some(inner) = host.strip_prefix('[') {
        inner.split_once(']').map_or(inner, |(h, _)| h)
    } else {
        host.split_once(':').map_or(host, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_lowercase())
}

/// The library's URL test on the lower-cased value; `Err` where it raised.
fn is_url(s: &str) -> Result<bool, Untyped> {
    let cleaned = strip_unsafe(s);
    let u = split_url(&cleaned);
    if !matches!(u.scheme.as_str(), "http" | "https" | "ftp") {
        return Ok(false);
    }
    let Some(host) = u.netloc.and_then(hostname) else {
        return Err(Untyped(format!("'{s}' is a URL without a host")));
    };
    if is_ipv6(&host)? {
        return Ok(true);
    }
    Ok(is_fqdn(&host) || is_ipv4(&host))
}

/// `urlparse(url).geturl()`: the scheme lower-cased, empty query,
/// fragment and path parameters dropped.
fn geturl(url: &str) -> String {
    let cleaned = strip_unsafe(url);
    let u = split_url(&cleaned);
    let (rest, fragment) = match u.rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (u.rest, None),
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    // Parameters of the last path segment; an empty one disappears.
    let (head, last) = path.rsplit_once('/').map_or((None, path), |(a, b)| (Some(a), b));
    let path = match last.split_once(';') {
        Some((seg, "")) => head.map_or(seg.to_string(), |h| format!("{h}/{seg}")),
        _ => path.to_string(),
    };
    let mut out = String::new();
    if !u.scheme.is_empty() {
        out.push_str(&u.scheme);
        out.push(':');
    }
    if let Some(n) = u.netloc {
        out.push_str("//");
        out.push_str(n);
    }
    out.push_str(&path);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = fragment.filter(|f| !f.is_empty()) {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// `resolve_itype` of the library, on an already lower-cased value.
fn resolve_itype(s: &str) -> Result<&'static str, Untyped> {
    if is_url(s)? {
        return Ok("url");
    }
    if let Some((name, _)) = patterns().hashes.iter().find(|(_, re)| py_match(re, s)) {
        return Ok(name);
    }
    if is_ipv4(s) || is_ipv4_cidr(s) {
        return Ok("ipv4");
    }
    if is_ipv6(s)? {
        return Ok("ipv6");
    }
    if py_match(&patterns().email, s) {
        return Ok("email");
    }
    if is_fqdn(s) {
        return Ok("fqdn");
    }
    if py_match(&patterns().asn, s) {
        return Ok("asn");
    }
    Err(Untyped(format!("unknown itype for \"{s}\"")))
}

/// Types and normalises a value as `csirtg_indicator.Indicator(indicator=…)`.
pub fn type_value(value: &str) -> Result<Typed, Untyped> {
    if value.is_empty() {
        return Err(Untyped("empty value".into()));
    }
    let itype = resolve_itype(&value.to_lowercase())?;
    let indicator = match itype {
        "url" => geturl(value).trim_end_matches('/').to_string(),
        "ipv4" => patterns().ipv4_padding.replace_all(&value.to_lowercase(), "$1$2").into_owned(),
        _ => value.to_lowercase(),
    };
    Ok(Typed { indicator, itype })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(v: &str) -> Option<(String, &'static str)> {
        type_value(v).ok().map(|t| (t.indicator, t.itype))
    }

    /// Each case checked against csirtg_indicator 1.0.13.
    #[test]
    fn values_are_typed_and_normalised_as_the_library_does() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("6.6.6.6", Some(("6.6.6.6", "ipv4"))),
            ("010.001.2.3", Some(("10.1.2.3", "ipv4"))),
            ("10.0.0.0/8", Some(("10.0.0.0/8", "ipv4"))),
            ("1.2.3.999", Some(("1.2.3.999", "ipv4"))),
            ("EVIL.com", Some(("evil.com", "fqdn"))),
            ("localhost", None),
            ("-evil.com", None),
            ("HTTP://Evil.com/Path/", Some(("http://Evil.com/Path", "url"))),
            ("http://evil.com/a?", Some(("http://evil.com/a", "url"))),
            ("http://evil.com/a;", Some(("http://evil.com/a", "url"))),
            ("https://[2001:db8::1]:8443/x", Some(("https://[2001:db8::1]:8443/x", "url"))),
            ("http://user@1.2.3.4:81/", Some(("http://user@1.2.3.4:81", "url"))),
            ("evil.com/x", None),
            ("http:///x", None),
            ("A@B.com", Some(("a@b.com", "email"))),
            ("AB000000000000000000000000000000", Some(("ab000000000000000000000000000000", "md5"))),
            ("5e1f2787-fcfc-4718-a58a-00b4c0a82f06", Some(("5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "uuid"))),
            (&"a".repeat(40), Some((&"a".repeat(40), "sha1"))),
            (&"B".repeat(64), Some((&"b".repeat(64), "sha256"))),
            ("3:a:b", None),
            ("2001:DB8::1", Some(("2001:db8::1", "ipv6"))),
            ("2001:db8::/32", Some(("2001:db8::/32", "ipv6"))),
            ("2001:db8::1/32", None),
            ("AS1234", Some(("as1234", "asn"))),
            ("", None),
        ];
        for (value, want) in cases {
            let want = want.map(|(i, t)| (i.to_string(), t));
            assert_eq!(typed(value), want, "{value:?}");
        }
    }
}
