//! `mdsa domains` and the bare `mdsa` welcome page. Neither loads a model.

mod common;
use common::{failure, mdsa_in, sandbox, success};

const DOMAINS: [&str; 4] = ["finance", "medical", "support", "technical"];

#[test]
fn domains_list_shows_the_four_built_ins() {
    let home = sandbox();
    let listed = success(&mdsa_in(&home, &["domains", "list"]));
    for id in DOMAINS {
        assert!(listed.contains(id), "{id} missing: {listed}");
    }
    assert!(listed.contains("smollm2"), "{listed}");
    assert!(listed.contains("<builtin>"), "{listed}");
}

#[test]
fn domains_show_prints_one_domain_as_ron() {
    let home = sandbox();
    let shown = success(&mdsa_in(&home, &["domains", "show", "medical"]));
    assert!(shown.contains("id: \"medical\""), "{shown}");
    assert!(!shown.contains("id: \"finance\""), "{shown}");
}

#[test]
fn domains_show_of_an_unknown_id_names_the_known_ones() {
    let home = sandbox();
    let error = failure(&mdsa_in(&home, &["domains", "show", "astrology"]));
    assert!(error.contains("\"astrology\""), "{error}");
    for id in DOMAINS {
        assert!(error.contains(id), "{error}");
    }
}

#[test]
fn domains_export_reads_back_and_a_duplicate_id_is_named() {
    let home = sandbox();
    let exported = success(&mdsa_in(&home, &["domains", "export"]));
    let copy = home.path().join("copy.ron");
    std::fs::write(&copy, &exported).unwrap();
    let copy_arg = copy.to_str().unwrap();
    let shown = success(&mdsa_in(
        &home,
        &["--domains", copy_arg, "domains", "show", "support"],
    ));
    assert!(shown.contains("id: \"support\""), "{shown}");

    // Support (the third domain) renamed to medical: a duplicate id.
    let duplicate = exported.replacen("id: \"support\"", "id: \"medical\"", 1);
    assert_ne!(duplicate, exported);
    let bad = home.path().join("dup.ron");
    std::fs::write(&bad, duplicate).unwrap();
    let bad_arg = bad.to_str().unwrap();
    for args in [
        &["--domains", bad_arg, "domains", "list"][..],
        &["--domains", bad_arg, "route", "x"][..],
    ] {
        let error = failure(&mdsa_in(&home, args));
        assert!(error.contains("dup.ron:"), "{error}");
        assert!(error.contains("domains[2].id"), "{error}");
        assert!(error.contains("duplicate"), "{error}");
    }
}

#[test]
fn bare_mdsa_welcomes_with_models_domains_and_next_steps() {
    let home = sandbox();
    let page = success(&mdsa_in(&home, &[]));
    assert!(
        page.starts_with(&format!("mdsa {}", env!("CARGO_PKG_VERSION"))),
        "{page}"
    );
    for expected in ["minilm", "smollm2", "mdsa query"]
        .into_iter()
        .chain(DOMAINS)
    {
        assert!(page.contains(expected), "{expected} missing: {page}");
    }
    // A model that is here says where it would run and why.
    if !page.contains("MISSING") {
        assert!(page.contains("runs on cpu: auto: "), "{page}");
    }
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    // `mdsa domains export | head -1`: the pipe closes while mdsa still writes.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mdsa"))
        .args(["domains", "export"])
        .env_remove("MDSA_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mdsa starts");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("mdsa ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn domains_from_jsonl_writes_a_domains_file_and_a_held_out_set() {
    let home = sandbox();
    let mut lines = String::new();
    for i in 0..6 {
        lines.push_str(&format!(
            "{{\"text\": \"my card {i} was declined\", \"label\": \"Card Declined\"}}\n"
        ));
        lines.push_str(&format!(
            "{{\"text\": \"what is balance {i}\", \"label\": \"balance\"}}\n"
        ));
    }
    lines.push_str("{\"text\": \"tell me a joke\", \"label\": null}\n");
    let data = home.path().join("intents.jsonl");
    std::fs::write(&data, lines).unwrap();
    let data_arg = data.to_str().unwrap();
    let made = success(&mdsa_in(
        &home,
        &["domains", "from-jsonl", data_arg, "--examples", "4"],
    ));
    assert!(made.contains("card_declined"), "{made}");
    assert!(
        made.contains("5 held-out queries (1 out of domain)"),
        "{made}"
    );
    let ron = home.path().join("intents.ron");
    let heldout = std::fs::read_to_string(home.path().join("intents.heldout.jsonl")).unwrap();
    assert_eq!(heldout.lines().count(), 5, "{heldout}");
    assert!(heldout.contains("\"domain\":\"balance\""), "{heldout}");
    // The file loads as the domains in use.
    let listed = success(&mdsa_in(
        &home,
        &["--domains", ron.to_str().unwrap(), "domains", "list"],
    ));
    assert!(
        listed.contains("card_declined") && listed.contains("Card Declined"),
        "{listed}"
    );

    let error = failure(&mdsa_in(
        &home,
        &["domains", "from-jsonl", data_arg, "--examples", "0"],
    ));
    assert!(
        error.contains("intents.jsonl") && error.contains("at least 1"),
        "{error}"
    );
}
