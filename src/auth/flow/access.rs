//! Who may sign in: `proxy.auth.allowed*` (domains, emails, organisations,
//! groups) against the identity a provider vouched for. Pure, so every rule has
//! a unit test; checked at sign-in and again at every refresh.

use crate::auth::idp::Identity;
use crate::config::auth::AccessPolicy;

/// Why a signed-in person may not use the gateway. The message completes
/// `<email> is signed in, but ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenied {
    /// No `allowed*` list, and `allowAllKnownUsers` is off.
    #[error("no one is allowed in by the gateway's configuration")]
    NoOneAllowed,
    /// In none of the lists.
    #[error("this account is not in an allowed domain, organisation, group or email list")]
    NotListed,
    /// A local user removed from the configuration since signing in.
    #[error("this local user no longer exists")]
    LocalUserRemoved,
}

/// Who may sign in (`proxy.auth.allowed*`). `Err` says why not.
pub fn allowed(policy: &AccessPolicy, id: &Identity) -> Result<(), AccessDenied> {
    let any_list = !(policy.domains.is_empty()
        && policy.emails.is_empty()
        && policy.orgs.is_empty()
        && policy.groups.is_empty());
    if !any_list {
        return if policy.allow_all_known_users {
            Ok(())
        } else {
            Err(AccessDenied::NoOneAllowed)
        };
    }
    let email = id.email.to_ascii_lowercase();
    if policy.emails.contains(&email) {
        return Ok(());
    }
    // Google: the verified Workspace domain (`hd`), never the email's text.
    // Others: the domain of the provider-verified email.
    let domain = if id.provider == "google" {
        id.domain.clone()
    } else {
        email.rsplit_once('@').map(|(_, d)| d.to_string())
    };
    if domain.is_some_and(|d| policy.domains.contains(&d.to_ascii_lowercase())) {
        return Ok(());
    }
    if id
        .orgs
        .iter()
        .any(|o| policy.orgs.contains(&o.to_ascii_lowercase()))
    {
        return Ok(());
    }
    if id.groups.iter().any(|g| policy.groups.contains(g)) {
        return Ok(());
    }
    Err(AccessDenied::NotListed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(provider: &str, email: &str) -> Identity {
        Identity {
            provider: provider.into(),
            subject: "1".into(),
            email: email.into(),
            name: None,
            domain: None,
            groups: Vec::new(),
            orgs: Vec::new(),
        }
    }

    #[test]
    fn no_list_allows_no_one_unless_all_known_users() {
        let id = person("local", "ann@example.com");
        let policy = AccessPolicy::default();
        assert_eq!(allowed(&policy, &id), Err(AccessDenied::NoOneAllowed));
        let policy = AccessPolicy {
            allow_all_known_users: true,
            ..AccessPolicy::default()
        };
        assert_eq!(allowed(&policy, &id), Ok(()));
    }

    #[test]
    fn emails_match_without_case() {
        let policy = AccessPolicy {
            emails: vec!["ann@example.com".into()],
            ..AccessPolicy::default()
        };
        assert_eq!(allowed(&policy, &person("oidc", "Ann@Example.com")), Ok(()));
        assert_eq!(
            allowed(&policy, &person("oidc", "bob@example.com")),
            Err(AccessDenied::NotListed)
        );
    }

    #[test]
    fn google_domain_is_the_verified_hd_never_the_email() {
        let policy = AccessPolicy {
            domains: vec!["example.com".into()],
            ..AccessPolicy::default()
        };
        // A consumer Google account with an address at the domain: no `hd`.
        let consumer = person("google", "ann@example.com");
        assert_eq!(allowed(&policy, &consumer), Err(AccessDenied::NotListed));
        let workspace = Identity {
            domain: Some("Example.com".into()),
            ..person("google", "ann@elsewhere.org")
        };
        assert_eq!(allowed(&policy, &workspace), Ok(()));
        // Other providers verify the email itself: its domain counts.
        assert_eq!(allowed(&policy, &person("oidc", "ann@example.com")), Ok(()));
    }

    #[test]
    fn orgs_and_groups() {
        let policy = AccessPolicy {
            orgs: vec!["acme".into()],
            groups: vec!["staff".into()],
            ..AccessPolicy::default()
        };
        let in_org = Identity {
            orgs: vec!["ACME".into()],
            ..person("github", "ann@example.com")
        };
        assert_eq!(allowed(&policy, &in_org), Ok(()));
        let in_group = Identity {
            groups: vec!["staff".into()],
            ..person("local", "bob@example.com")
        };
        assert_eq!(allowed(&policy, &in_group), Ok(()));
        let neither = person("local", "eve@example.com");
        assert_eq!(allowed(&policy, &neither), Err(AccessDenied::NotListed));
    }

    #[test]
    fn messages_complete_the_sentence_shown_to_the_person() {
        assert_eq!(
            AccessDenied::NotListed.to_string(),
            "this account is not in an allowed domain, organisation, group or email list"
        );
    }
}
