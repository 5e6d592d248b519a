//! `docs/guide.md` against the real binary: every `mdsa` command line it shows
//! names subcommands and flags that exist, and the errors its troubleshooting
//! section quotes are, word for word, what `mdsa` prints for the inputs it
//! describes. A changed message fails here until the guide quotes it again.

// Skipped tests say why on stderr.
#![allow(clippy::print_stderr)]

mod common;
use common::{failure, hf_cache, mdsa, mdsa_in_with, models_missing, sandbox};

use std::net::TcpListener;
use std::path::Path;

fn guide() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/guide.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Words of a shell line, quotes removed; stops at a comment, pipe or redirect.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quote, mut in_word) = (None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '#' | '|' | '>') if !in_word => break,
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The arguments of every `mdsa ...` command in the guide's shell blocks
/// (`$ ` prompts and leading `VAR=value` assignments dropped).
fn guide_commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut in_shell = false;
    for line in text.lines() {
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            in_shell = !in_shell && matches!(fence, "sh" | "console");
            continue;
        }
        if !in_shell {
            continue;
        }
        let line = line.strip_prefix("$ ").unwrap_or(line);
        let mut words = words(line).into_iter().skip_while(|w| {
            w.split_once('=')
                .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        });
        if words
            .next()
            .is_some_and(|program| program == "mdsa" || program.ends_with("/mdsa"))
        {
            commands.push(words.collect());
        }
    }
    commands
}

/// The subcommand names listed under `Commands:` in a help text.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

fn help(path: &[String]) -> String {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let output = mdsa(&args);
    assert!(output.status.success(), "mdsa {}", args.join(" "));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn every_command_and_flag_in_the_guide_exists() {
    let commands = guide_commands(&guide());
    assert!(commands.len() >= 20, "found only {commands:?}");
    let mut checked = std::collections::BTreeSet::new();
    for args in commands {
        let mut path: Vec<String> = Vec::new();
        let mut flags = Vec::new();
        for word in &args {
            if let Some(flag) = word.strip_prefix("--") {
                flags.push(flag.split('=').next().unwrap_or(flag).to_string());
            } else if subcommands(&help(&path)).contains(word) {
                path.push(word.clone());
            }
        }
        let text = help(&path);
        for flag in flags {
            assert!(
                text.contains(&format!("--{flag} ")) || text.contains(&format!("--{flag}\n")),
                "the guide runs `mdsa {}` but `mdsa {} --help` has no --{flag}",
                args.join(" "),
                path.join(" ")
            );
            checked.insert(format!("{} --{flag}", path.join(" ")));
        }
    }
    for expected in [
        "routes fit --dry-run",
        "routes fit --data",
        " --domains",
        "serve --port",
    ] {
        assert!(
            checked.iter().any(|c| c.contains(expected)),
            "{expected:?} not checked: {checked:?}"
        );
    }
}

/// Runs `mdsa ARGS` in a sandbox holding `files`, and returns the last line of
/// stderr with `replace` applied.
fn error_of(files: &[(&str, &str)], args: &[&str], env: &[(&str, &Path)]) -> String {
    let home = sandbox();
    for (name, text) in files {
        std::fs::write(home.path().join(name), text).unwrap();
    }
    let output = mdsa_in_with(&home, args, env, None);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let last = stderr.trim_end().lines().last().unwrap_or("").to_string();
    last.replace(&home.path().display().to_string(), "/tmp")
}

fn assert_quoted(guide: &str, line: &str) {
    assert!(
        guide.lines().any(|l| l == line),
        "docs/guide.md does not quote what mdsa prints now:\n{line}"
    );
}

/// Files to write (name, text) and the `mdsa` arguments that read them.
type ErrorCase = (
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

#[test]
fn configuration_errors_are_quoted_as_printed() {
    let guide = guide();
    let cases: [ErrorCase; 6] = [
        (
            &[(
                "bad.ron",
                "(\n    domains: [\n        (id: \"legal\", name: \"Legal\", examples: [\"a\"],\n    ],\n)\n",
            )],
            &["--domains", "bad.ron", "route", "hello"],
        ),
        (
            &[(
                "bad2.ron",
                "(\n    domains: [\n        (id: \"legal\", name: \"Legal\", keyword: [\"x\"], examples: [\"a\"]),\n    ],\n)\n",
            )],
            &["--domains", "bad2.ron", "route", "hello"],
        ),
        (
            &[("c.ron", "(modles: [])\n")],
            &["--config", "c.ron", "query", "x"],
        ),
        (
            &[("b.ron", "(budget: (ram_fraction: 1.5))\n")],
            &["--config", "b.ron", "query", "x"],
        ),
        (&[], &["--config", "nope.ron", "query", "x"]),
        (
            &[("labelled.jsonl", "{\"text\": \"a\", \"domain\": null}\n")],
            &["routes", "fit", "--data", "labelled.jsonl"],
        ),
    ];
    for (files, args) in cases {
        let home = sandbox();
        for (name, text) in files {
            std::fs::write(home.path().join(name), text).unwrap();
        }
        let line = failure(&mdsa_in_with(&home, args, &[], None));
        assert_quoted(&guide, &line);
    }
    let line = failure(&mdsa(&[
        "generate",
        "--model",
        "./no/such/model.gguf",
        "hi",
    ]));
    assert_quoted(&guide, &line);
}

#[test]
fn model_errors_are_quoted_as_printed() {
    let guide = guide();
    let empty = sandbox();
    let hub = empty.path().join("hub");
    let line = error_of(
        &[],
        &["query", "What is an index fund?"],
        &[("HF_HUB_CACHE", &hub)],
    );
    let line = line.replace(&empty.path().display().to_string(), "/tmp/empty");
    assert_quoted(&guide, &line);

    skip_if!(models_missing());
    assert!(hf_cache().exists());
    let um = "(\n    domains: [\n        (id: \"legal\", name: \"Legal\", model: \"lawyer\", examples: [\"Can my landlord keep my deposit?\"]),\n    ],\n)\n";
    for (files, args) in [
        (
            [("um.ron", um)],
            &[
                "--domains",
                "um.ron",
                "query",
                "Can my landlord keep my deposit?",
            ][..],
        ),
        (
            [("x.ron", "()")],
            &["query", "--domain", "legal", "What is an index fund?"][..],
        ),
        (
            [("tiny.ron", "(budget: (ram_bytes: Some(50000000)))\n")],
            &["--config", "tiny.ron", "query", "What is an index fund?"][..],
        ),
        (
            [("small.ron", "(budget: (ram_bytes: Some(200000000)))\n")],
            &["--config", "small.ron", "query", "What is an index fund?"][..],
        ),
    ] {
        assert_quoted(&guide, &error_of(&files, args, &[]));
    }

    // A port another process holds.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let line = error_of(&[], &["serve", "--port", &port], &[]);
    assert_quoted(&guide, &line.replace(&format!(":{port}:"), ":8080:"));
}

#[test]
fn guide_commands_are_found_in_shell_blocks_only() {
    let text = "x mdsa query\n```sh\nmdsa query \"a b\" --json   # c\nHF_HUB_OFFLINE=1 ./mdsa-0.1/mdsa --config f.ron route q | head\ncargo run\n```\n```console\n$ mdsa hw\nerror: mdsa x\n```\n```ron\nmdsa y\n```\n";
    assert_eq!(
        guide_commands(text),
        [
            vec!["query", "a b", "--json"],
            vec!["--config", "f.ron", "route", "q"],
            vec!["hw"],
        ]
    );
}
