//! A bad system configuration (`--config`, `MDSA_CONFIG`) is one clear line:
//! the file, the line, the field. Checked before any model loads.

mod common;
use common::{failure, mdsa_in, mdsa_in_with, sandbox, success};

/// Configurations with one mistake each: (file text, `file:line:` expected,
/// field expected).
const BAD: [(&str, &str, &str); 4] = [
    (
        "(\n  encoder: \"minilm\",\n  budget: (ram_fraction: 0.5,,),\n)\n",
        "bad.ron:3:",
        "budget",
    ),
    (
        "(\n  encoder: \"minilm\",\n  colour: \"blue\",\n)\n",
        "bad.ron:3:",
        "colour",
    ),
    (
        "(\n  encoder: \"minilm\",\n  budget: (ram_fraction: 1.5),\n)\n",
        "bad.ron:3:",
        "budget.ram_fraction",
    ),
    (
        "(\n  default_generator: \"nope\",\n)\n",
        "bad.ron:2:",
        "default_generator",
    ),
];

#[test]
fn a_bad_config_file_is_one_line_naming_file_line_and_field() {
    let home = sandbox();
    let file = home.path().join("bad.ron");
    for (text, location, field) in BAD {
        std::fs::write(&file, text).unwrap();
        let error = failure(&mdsa_in(
            &home,
            &["--config", file.to_str().unwrap(), "route", "x"],
        ));
        assert!(error.contains(location), "{text}: {error}");
        assert!(error.contains(&format!(" {field}: ")), "{text}: {error}");
    }
    let error = failure(&mdsa_in(&home, &["--config", "nowhere.ron", "route", "x"]));
    assert!(error.contains("nowhere.ron"), "{error}");
    // The OS's reason once, not once per layer.
    assert_eq!(error.matches("No such file").count(), 1, "{error}");
}

#[test]
fn mdsa_config_in_the_environment_is_used() {
    let home = sandbox();
    let file = home.path().join("bad.ron");
    let (text, location, field) = BAD[2];
    std::fs::write(&file, text).unwrap();
    for args in [&["route", "x"][..], &["domains", "list"][..]] {
        let error = failure(&mdsa_in_with(&home, args, &[("MDSA_CONFIG", &file)], None));
        assert!(error.contains(location) && error.contains(field), "{error}");
    }
}

#[test]
fn a_config_file_can_name_domains_and_the_log_beside_it() {
    let home = sandbox();
    let exported = success(&mdsa_in(&home, &["domains", "export"]));
    let folder = home.path().join("conf");
    std::fs::create_dir(&folder).unwrap();
    // Only finance and medical: cut the export before the third domain.
    let third = exported.find("(\n            id: \"support\"").unwrap();
    let two = format!("{}],\n)\n", &exported[..third]);
    std::fs::write(folder.join("two.ron"), two).unwrap();
    std::fs::write(
        folder.join("system.ron"),
        "(domains: \"two.ron\", logging: (file: \"logs/requests.jsonl\"))",
    )
    .unwrap();
    let config = folder.join("system.ron");
    let listed = success(&mdsa_in(
        &home,
        &["--config", config.to_str().unwrap(), "domains", "list"],
    ));
    assert!(
        listed.contains("finance") && listed.contains("medical"),
        "{listed}"
    );
    assert!(!listed.contains("support"), "{listed}");
    // `logs` reads the configured file, relative to the configuration; none yet.
    let logs = success(&mdsa_in(
        &home,
        &[
            "--config",
            config.to_str().unwrap(),
            "logs",
            "--format",
            "jsonl",
        ],
    ));
    assert_eq!(logs, "");
}

/// A model whose `backend` this build of `mdsa` lacks fails at start-up,
/// naming the model and the backends there are.
#[test]
fn an_unknown_backend_names_the_model_and_the_backends_there_are() {
    let home = sandbox();
    let file = home.path().join("command.ron");
    std::fs::write(
        &file,
        r#"(models: [
            (id: "minilm", source: "sentence-transformers/all-MiniLM-L6-v2", role: encoder),
            (id: "cli", source: "mdsa", role: generator, backend: "command"),
        ], default_generator: "cli")"#,
    )
    .unwrap();
    let error = failure(&mdsa_in(
        &home,
        &["--config", file.to_str().unwrap(), "route", "x"],
    ));
    let expected = if cfg!(feature = "remote") {
        "local, openai"
    } else {
        "local"
    };
    assert!(
        error.contains(&format!(
            "model \"cli\" asks for backend \"command\", which this program does not have (it has: {expected})"
        )),
        "{error}"
    );
}
