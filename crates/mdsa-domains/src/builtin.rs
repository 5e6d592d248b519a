//! The predefined domains (finance, medical, support, technical), from
//! `domains/default.ron` compiled into the crate.

use crate::registry::DomainRegistry;

/// The text of the predefined domains file.
pub const DEFAULT_DOMAINS: &str = include_str!("../domains/default.ron");

/// Origin used in errors about the predefined file.
pub const BUILTIN_ORIGIN: &str = "<builtin>/domains/default.ron";

pub(crate) fn registry() -> DomainRegistry {
    // A test parses the file, so this cannot fail in a released build.
    DomainRegistry::from_str(DEFAULT_DOMAINS, BUILTIN_ORIGIN)
        .unwrap_or_else(|e| panic!("the builtin domains file is invalid: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_domains_are_complete() {
        let registry = DomainRegistry::builtin();
        assert_eq!(
            registry.ids().collect::<Vec<_>>(),
            ["finance", "medical", "support", "technical"]
        );
        for domain in registry.iter() {
            assert!(domain.description.len() > 80, "{}", domain.id);
            assert!((15..=30).contains(&domain.keywords.len()), "{}", domain.id);
            assert!(domain.examples.len() >= 15, "{}", domain.id);
            assert!(!domain.system_prompt.is_empty(), "{}", domain.id);
        }
        assert!(
            registry
                .get("medical")
                .unwrap()
                .system_prompt
                .contains("doctor")
        );
    }
}
