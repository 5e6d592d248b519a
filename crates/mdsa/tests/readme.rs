//! The configuration shown in the README is one that mdsa accepts.

use mdsa::SystemConfig;

#[test]
fn the_readme_configuration_parses() {
    let readme = include_str!("../../../README.md");
    let start = readme.find("```ron\n").expect("README has a RON block") + "```ron\n".len();
    let end = start + readme[start..].find("```").expect("the block ends");
    let config =
        SystemConfig::parse(&readme[start..end], "README.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.models.len(), 3);
    assert_eq!(config.default_generator, "smollm2");
    assert_eq!(config.budget.max_models, Some(3));
}
