//! How a service's tools, prompts and resources are named on an aggregated
//! endpoint, and back.
//!
//! Tools and prompts: `<service><delimiter><name>` (`github_list_repos`).
//! Resources: `<service>+<uri>` (`files+file:///a.txt`): reversible, and a
//! resource template stays a template (`files+file:///{path}` expands to a URI
//! that maps back). The configuration refuses service names where one's
//! prefix starts another's, so a name maps back to exactly one service.

/// MCP tool names: 1-128 of `A-Z a-z 0-9 _ - .` (SEP-986).
pub fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

pub fn prefixed(service: &str, delimiter: &str, name: &str) -> String {
    format!("{service}{delimiter}{name}")
}

/// The service-local name, if `full` is one of `service`'s.
pub fn strip<'a>(service: &str, delimiter: &str, full: &'a str) -> Option<&'a str> {
    full.strip_prefix(service)?
        .strip_prefix(delimiter)
        .filter(|n| !n.is_empty())
}

pub fn prefixed_uri(service: &str, uri: &str) -> String {
    format!("{service}+{uri}")
}

/// `(service, original URI)` of an aggregated resource URI.
pub fn split_uri(full: &str) -> Option<(&str, &str)> {
    full.split_once('+')
        .filter(|(s, u)| !s.is_empty() && !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let full = prefixed("github", "_", "list_repos");
        assert_eq!(full, "github_list_repos");
        assert_eq!(strip("github", "_", &full), Some("list_repos"));
        assert_eq!(strip("git", "_", &full), None);
        assert_eq!(strip("github", "_", "github_"), None);
        let uri = prefixed_uri("files", "git+ssh://x/{path}");
        assert_eq!(split_uri(&uri), Some(("files", "git+ssh://x/{path}")));
        assert!(valid_tool_name("a.b-c_d"));
        assert!(!valid_tool_name("a b"));
        assert!(!valid_tool_name(&"x".repeat(129)));
    }
}
