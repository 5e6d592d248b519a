//! Running the `mdsa` binary as a user does, offline.

use std::process::{Command, Output};

/// Runs `mdsa ARGS` with `HF_HUB_OFFLINE=1` (models come from the local cache).
pub(crate) fn mdsa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mdsa"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the mdsa binary runs")
}
