//! Point-IoC helpers, ported from Threat Bus' `threatbus/stix2_helpers.py`.
//!
//! Both functions reproduce the Python behaviour exactly, including its
//! quirks (documented on each function), because app plugins use them to
//! decide which indicators they forward (e.g. to Zeek).

use super::pattern;

/// Whether `pattern` is a STIX 2.1 pattern for a single "point" indicator,
/// such as `[domain-name:value = 'evil.com']`.
///
/// Mirrors the Python helper, which looks at
/// `stix2patterns.v21.pattern.Pattern(p).inspect()`: true iff the pattern
/// parses, uses no observation operator (`AND`, `OR`, `FOLLOWEDBY` between
/// observations) and no qualifier, all comparisons concern exactly one object
/// type, and the first comparison's operator is written exactly `=` (so `==`
/// and `NOT =` do not count).
///
/// Quirk kept from the original: only the *first* comparison is checked, so
/// `[ipv4-addr:value = '1.1.1.1' OR ipv4-addr:value = '2.2.2.2']` counts as a
/// point IoC. A negative list index (which makes the Python inspector raise)
/// yields `false`.
///
/// ```
/// use threatbus_stix::ioc::is_point_equality_ioc;
/// assert!(is_point_equality_ioc("[ipv4-addr:value = '6.6.6.6']"));
/// assert!(!is_point_equality_ioc("[ipv4-addr:value == '6.6.6.6']"));
/// ```
pub fn is_point_equality_ioc(pattern: &str) -> bool {
    let Ok(parsed) = pattern::parse(pattern) else {
        return false;
    };
    if parsed.has_observation_ops_or_qualifiers() {
        return false;
    }
    let mut object_type: Option<&str> = None;
    let mut first_is_eq = false;
    let mut single_type = true;
    parsed.for_each_comparison(&mut |c| match object_type {
        None => {
            object_type = Some(c.path.object_type);
            first_is_eq = !c.negated && c.operator_text == "=";
        }
        Some(t) if t != c.path.object_type => single_type = false,
        Some(_) => {}
    });
    // The Python inspector raises on negative list indexes.
    if parsed.first_negative_index_path().is_some() {
        return false;
    }
    object_type.is_some() && single_type && first_is_eq
}

/// Python's `str.strip()` whitespace (`str.isspace()`).
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Splits a point-IoC pattern into its object path and value:
/// `[domain-name:value = 'evil.com']` → `("domain-name:value", "evil.com")`.
/// Returns `None` unless [`is_point_equality_ioc`] holds.
///
/// Exactly like the Python helper this is plain string processing: drop the
/// first and last character, split at the first `=`, strip whitespace from
/// both parts and remove one pair of surrounding single quotes from the
/// value. Escapes inside the value (`\'`, `\\`) are *not* unescaped.
///
/// ```
/// use threatbus_stix::ioc::split_object_path_and_value;
/// assert_eq!(
///     split_object_path_and_value("[domain-name:value = 'evil.com']"),
///     Some(("domain-name:value".to_string(), "evil.com".to_string()))
/// );
/// assert_eq!(split_object_path_and_value("[]"), None);
/// ```
pub fn split_object_path_and_value(pattern: &str) -> Option<(String, String)> {
    if !is_point_equality_ioc(pattern) {
        return None;
    }
    // pattern_str[1:-1] (by characters)
    let mut chars = pattern.chars();
    chars.next();
    chars.next_back();
    let inner = chars.as_str();
    let (path, value) = inner.split_once('=')?;
    let path = path.trim_matches(is_py_space);
    let mut value = value.trim_matches(is_py_space);
    if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
        value = &value[1..value.len() - 1];
    } else if value == "'" {
        // Python: "'".startswith("'") and .endswith("'") → "'"[1:-1] == ""
        value = "";
    }
    Some((path.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // threatbus/test_stix2_helpers.py: test_is_point_equility_ioc
    #[test]
    fn is_point_equality_ioc_python_cases() {
        // negative test
        assert!(!is_point_equality_ioc("Some string"));
        assert!(!is_point_equality_ioc("6.6.6.6 = ipv4-addr:value"));
        // missing brackets
        assert!(!is_point_equality_ioc("ipv4-addr:value = '6.6.6.6'"));
        // double ==
        assert!(!is_point_equality_ioc("[ipv4-addr:value == '6.6.6.6']"));
        // missing closing bracket
        assert!(!is_point_equality_ioc("[ipv4-addr:value = '6.6.6.6'"));
        // missing opening bracket
        assert!(!is_point_equality_ioc("ipv4-addr:value = '6.6.6.6']"));
        // missing quotes
        assert!(!is_point_equality_ioc("[ipv4-addr:value = 6.6.6.6]"));
        // valid compound IoC
        assert!(!is_point_equality_ioc("[ipv4-addr:value = '6.6.6.6' AND domain-name:value = 'evil.com']"));
        assert!(!is_point_equality_ioc("[ipv4-addr:value = '6.6.6.6'] AND [domain-name:value = 'evil.com']"));

        // positive test
        assert!(is_point_equality_ioc("[ipv4-addr:value = '6.6.6.6']"));
        assert!(is_point_equality_ioc("[ipv6-addr:value = '::1']"));
        assert!(is_point_equality_ioc("[domain-name:value = 'evil.com']"));
        assert!(is_point_equality_ioc(
            "[x509-certificate:hashes.'SHA-1' = '6e6187d58483457f86eae49315a0a72d7543459a']"
        ));
    }

    // threatbus/test_stix2_helpers.py: test_split_object_path_and_value
    // (the None / 23 / True inputs of the Python test cannot be expressed in
    // Rust's type system; they are covered by the non-pattern strings.)
    #[test]
    fn split_object_path_and_value_python_cases() {
        assert_eq!(split_object_path_and_value(""), None);
        assert_eq!(split_object_path_and_value("[]"), None);
        assert_eq!(split_object_path_and_value("23"), None);
        assert_eq!(split_object_path_and_value("True"), None);
        assert_eq!(
            split_object_path_and_value("[ipv4-addr:value = '6.6.6.6' AND domain-name:value = 'evil.com']"),
            None
        );
        assert_eq!(
            split_object_path_and_value("[ipv4-addr:value = '6.6.6.6'] AND [domain-name:value = 'evil.com']"),
            None
        );
        assert_eq!(
            split_object_path_and_value("[ipv4-addr:value = '6.6.6.6']"),
            Some(("ipv4-addr:value".to_string(), "6.6.6.6".to_string()))
        );
        assert_eq!(
            split_object_path_and_value("[domain-name:value = 'evil.com']"),
            Some(("domain-name:value".to_string(), "evil.com".to_string()))
        );
    }

    #[test]
    fn more_point_iocs() {
        for p in [
            "[url:value = 'http://evil.com/a=b']",
            "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
            "([domain-name:value = 'evil.com'])",
            "  [domain-name:value='evil.com']  ",
            "[file:size = 5]",
            // quirks kept from the Python helper (only the first comparison counts)
            "[ipv4-addr:value = '1.1.1.1' OR ipv4-addr:value = '2.2.2.2']",
            "[ipv4-addr:value = '1.1.1.1' AND ipv4-addr:value != '2.2.2.2']",
        ] {
            assert!(is_point_equality_ioc(p), "{p}");
        }
        for p in [
            "[domain-name:value = 'evil.com'] WITHIN 5 SECONDS",
            "[domain-name:value = 'evil.com'] REPEATS 2 TIMES",
            "[domain-name:value != 'evil.com']",
            "[domain-name:value NOT = 'evil.com']",
            "[domain-name:value LIKE 'evil.com']",
            "[domain-name:value IN ('evil.com')]",
            "[EXISTS domain-name:value]",
            "[ipv4-addr:value = '1.1.1.1' OR ipv6-addr:value = '::1']",
            "[network-traffic:protocols[-1] = 'tcp']",
            "[domain-name:value = 'evil.com'] OR [domain-name:value = 'evil.org']",
        ] {
            assert!(!is_point_equality_ioc(p), "{p}");
        }
    }

    #[test]
    fn split_keeps_python_string_semantics() {
        assert_eq!(
            split_object_path_and_value("[url:value = 'http://evil.com/a=b']"),
            Some(("url:value".into(), "http://evil.com/a=b".into()))
        );
        // Escapes are not unescaped.
        assert_eq!(split_object_path_and_value("[file:name = 'it\\'s']"), Some(("file:name".into(), "it\\'s".into())));
        assert_eq!(split_object_path_and_value("[file:size = 5]"), Some(("file:size".into(), "5".into())));
        assert_eq!(
            split_object_path_and_value(
                "[x509-certificate:hashes.'SHA-1' = '6e6187d58483457f86eae49315a0a72d7543459a']"
            ),
            Some(("x509-certificate:hashes.'SHA-1'".into(), "6e6187d58483457f86eae49315a0a72d7543459a".into()))
        );
        assert_eq!(
            split_object_path_and_value("[domain-name:value = 'é']"),
            Some(("domain-name:value".into(), "é".into()))
        );
    }
}
