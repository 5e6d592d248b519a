//! The example file in docs/domains.md parses, and its errors read as documented.

use mdsa_domains::DomainRegistry;

fn example() -> String {
    let doc = include_str!("../../../docs/domains.md");
    let start = doc.find("```ron\n").expect("a ron block") + "```ron\n".len();
    let end = start + doc[start..].find("```").expect("closed");
    doc[start..end].to_string()
}

#[test]
fn the_documented_example_file_parses() {
    let registry = DomainRegistry::from_str(&example(), "legal.ron").unwrap();
    assert_eq!(registry.ids().collect::<Vec<_>>(), ["legal"]);
    let legal = registry.get("legal").unwrap();
    assert_eq!(registry.model_for(legal), registry.default_model());
    // Written back and read again, nothing changes.
    let again = DomainRegistry::from_str(&registry.to_ron().unwrap(), "again.ron").unwrap();
    assert_eq!(again.domains_file(), registry.domains_file());
}

#[test]
fn errors_read_as_documented() {
    let bad = example().replace("top_p: 1.0,", "top_p: 1.5,");
    let err = DomainRegistry::from_str(&bad, "legal.ron")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("legal.ron:32:17: ")
            && err.contains(": domains[0].generation.top_p: top_p must be in (0, 1], found 1.5"),
        "{err}"
    );
    let bad = example().replace("keywords:", "keyword:");
    let err = DomainRegistry::from_str(&bad, "legal.ron")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("legal.ron:20:13: domains[0].keyword: "),
        "{err}"
    );
}
