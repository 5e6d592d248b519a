//! The official OpenAI Python client against the real server, unchanged.
//!
//! Needs a Python with the `openai` package: `MDSA_OPENAI_PYTHON` names it
//! (`cargo xtask ci` makes one in a virtual environment under `target/`).
//! Without it the test says so and skips, unless `MDSA_REQUIRE_OPENAI_CLIENT=1`
//! (set in CI), where skipping would hide a broken install.

// A skipped test says why on stderr.
#![allow(clippy::print_stderr)]

mod common;

use std::process::Command;

use common::{TestServer, build_mdsa};
use mdsa::SystemConfig;
use mdsa_server::ServerConfig;

#[test]
fn the_official_openai_python_client_works_unchanged() {
    let Some(python) = std::env::var_os("MDSA_OPENAI_PYTHON") else {
        assert!(
            std::env::var("MDSA_REQUIRE_OPENAI_CLIENT").as_deref() != Ok("1"),
            "MDSA_OPENAI_PYTHON is not set but MDSA_REQUIRE_OPENAI_CLIENT=1"
        );
        eprintln!("skipped: set MDSA_OPENAI_PYTHON to a python with the openai package");
        return;
    };
    let server = TestServer::start(build_mdsa(SystemConfig::default()), ServerConfig::default());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let output = Command::new(&python)
        .arg(script)
        .arg(server.url("/v1"))
        .output()
        .expect("run the python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the OpenAI client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all as expected"), "{stdout}");
}
