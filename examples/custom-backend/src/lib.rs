//! The smallest real model backend for mdsa: every answer is written by an
//! external program. Copy this crate to add your own engine.
//!
//! A model spec selects it with `backend: "command"`; `source` is the program
//! and `options.args` its arguments, with placeholders filled per request:
//!
//! ```ron
//! (
//!     id: "smollm2-cli",
//!     source: "/usr/local/bin/mdsa",   // a path, or a name looked up in PATH
//!     role: generator,
//!     backend: "command",
//!     options: {
//!         "args": "generate --chat --system={system} --max-tokens {max_tokens} -- {user}",
//!         "context_length": 2048,
//!     },
//! )
//! ```
//!
//! | placeholder | filled with |
//! | --- | --- |
//! | `{prompt}` | the whole conversation as a transcript (`system: ...`, `user: ...`, `assistant:`) |
//! | `{system}` | the system messages (the domain's system prompt) |
//! | `{user}` | the last user message |
//! | `{max_tokens}` | the token limit of this answer |
//!
//! `args` is split at whitespace before the placeholders are filled, so a
//! filled placeholder stays one argument whatever it holds. When `args` has no
//! `{prompt}`, `{system}` or `{user}`, the transcript is written to the
//! program's standard input instead (`llama-cli`, `ollama run NAME`, `cat`).
//!
//! The program's standard output is the answer, streamed to mdsa as it is
//! written. A stop string, the token limit (estimated at four characters a
//! token) or a caller that stops the stream ends the answer, and the program
//! is killed; a program that fails (non-zero exit) is an error carrying the end
//! of its standard error.
//!
//! # The shape of a backend
//!
//! 1. A [`ModelBackend`]: a name (`"command"`) and a `load` that reads the
//!    spec's options once and fails early with a clear message.
//! 2. An engine, here a [`TextGenerator`]: `generate` streams text through
//!    `on_text` and stops when it returns `Break`; `render_chat` and
//!    `generate_chat` say how a conversation becomes a prompt;
//!    `count_tokens` and `context_length` let mdsa budget prompts.
//!
//! Its options are a serde struct read with `spec.options()` (the
//! [`ModelSpec::options`] of mdsa-engine): values may be written as themselves
//! (`"context_length": 2048`) or as strings, and an unknown key is an error
//! that lists `args` and `context_length`.
//!
//! # Plugging it in
//!
//! - **In your own program**: register it beside the built-in local backend
//!   with `mdsa::Mdsa::builder().backend(Arc::new(CommandBackend))` (or
//!   `ModelManager::builder(..).backend(..)`); `examples/ask.rs` answers a
//!   routed query with it.
//! - **In the `mdsa` CLI**: a `main` of your own adds it to the CLI's
//!   backends and runs the whole command line (`query`, `chat`, `serve`, ...);
//!   `examples/mdsa_with_command.rs` is all of it:
//!
//!   ```ignore
//!   let mut backends = mdsa_cli::default_backends();
//!   backends.insert(Arc::new(CommandBackend));
//!   mdsa_cli::run_with(backends)
//!   ```
//!
//!   A backend that ships with mdsa may instead be a cargo feature of
//!   mdsa-cli, as `remote` (mdsa-remote's `openai` backend) is.
//!
//! `mdsa-remote` is the full-size backend (HTTP, retries, SSE).

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use mdsa_engine::{
    ChatMessage, FinishReason, GenerationOutput, GenerationParams, LoadPlan, LoadedEngine,
    LoadedModel, ModelBackend, ModelError, TextGenerator, Timings, Usage, spec::ModelRole,
    spec::ModelSpec, transcript,
};

/// The name specs select this backend by (`backend: "command"`).
pub const BACKEND_NAME: &str = "command";

/// Device label of command models: they live in another process.
const DEVICE: &str = "process";

/// How much of a failed program's standard error its error keeps.
const STDERR_TAIL: usize = 2000;

/// Loads [`CommandGenerator`]s from specs with `backend: "command"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandBackend;

impl ModelBackend for CommandBackend {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    /// Nothing to reserve here: the program's memory is its own.
    fn plan(&self, _spec: &ModelSpec) -> Result<LoadPlan, ModelError> {
        Ok(LoadPlan {
            device: DEVICE.into(),
            device_reason: "the program runs as its own process".into(),
            estimated_bytes: 0,
        })
    }

    /// Reads the options and finds the program, so that a typo fails when the
    /// model loads, not on the first question.
    fn load(&self, spec: &ModelSpec) -> Result<LoadedModel, ModelError> {
        if spec.role != ModelRole::Generator {
            return Err(backend_error(
                spec,
                "only generators can be commands (role: generator)",
            ));
        }
        let generator = CommandGenerator::new(spec)?;
        Ok(LoadedModel {
            engine: LoadedEngine::Generator(Arc::new(generator)),
            weight_bytes: 0,
            kv_bytes: 0,
            device: DEVICE.into(),
        })
    }
}

/// The options a `command` spec may set; any other key is an error.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandOptions {
    /// The program's arguments, with placeholders.
    #[serde(default)]
    args: String,
    /// Longest prompt plus answer, in tokens; the spec's `max_context` else.
    context_length: Option<usize>,
}

/// Generates by running a program once per answer.
#[derive(Debug, Clone)]
pub struct CommandGenerator {
    program: PathBuf,
    args: Vec<String>,
    context_length: usize,
}

impl CommandGenerator {
    /// The generator a spec describes (see the crate docs for its options).
    pub fn new(spec: &ModelSpec) -> Result<Self, ModelError> {
        // Typed options: a wrong kind of value or an unknown key is an error
        // naming the file, line, field path and model.
        let options: CommandOptions = spec.options()?;
        let args = options
            .args
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let context_length = options.context_length.or(spec.max_context).unwrap_or(4096);
        let program = find_program(&spec.source).ok_or_else(|| {
            backend_error(
                spec,
                &format!(
                    "program {:?} not found (expected a file path or a name in PATH)",
                    spec.source
                ),
            )
        })?;
        Ok(Self {
            program,
            args,
            context_length,
        })
    }

    /// Runs the program for one answer.
    fn run(
        &self,
        fill: &Fill<'_>,
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationOutput, ModelError> {
        if params.max_tokens == 0 {
            return Err(ModelError::InvalidParams {
                reason: "max_tokens must be at least 1".into(),
            });
        }
        let started = Instant::now();
        let uses_stdin = !self.args.iter().any(|a| fill.names_text(a));
        let mut child = Command::new(&self.program)
            .args(self.args.iter().map(|a| fill.apply(a, params.max_tokens)))
            .stdin(if uses_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.error(format!("cannot start: {e}")))?;

        // Feed stdin and drain stderr on their own threads: a program that
        // writes a lot before reading everything must not deadlock with us.
        if let Some(mut stdin) = child.stdin.take() {
            let prompt = fill.prompt.to_string();
            std::thread::spawn(move || stdin.write_all(prompt.as_bytes()));
        }
        let stderr = child.stderr.take().map(|mut stderr| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                text
            })
        });

        let mut answer = Answer::new(&params.stop);
        let mut first_token = None;
        let finish = match child.stdout.take() {
            Some(stdout) => answer.read(stdout, params.max_tokens, &mut |piece| {
                first_token.get_or_insert_with(|| started.elapsed());
                on_text(piece)
            }),
            None => Ok(FinishReason::Eos),
        };
        let finish = match finish {
            Ok(FinishReason::Eos) => {
                let status = child.wait().map_err(|e| self.error(e.to_string()))?;
                if !status.success() {
                    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
                    let tail =
                        &stderr[floor_char(&stderr, stderr.len().saturating_sub(STDERR_TAIL))..];
                    return Err(self.error(format!("exited with {status}: {}", tail.trim())));
                }
                FinishReason::Eos
            }
            // Stopped early (stop string, limit, caller): the program may
            // still be writing, and its answer is no longer wanted.
            Ok(reason) => {
                stop(&mut child);
                reason
            }
            Err(e) => {
                stop(&mut child);
                return Err(self.error(format!("reading its output: {e}")));
            }
        };

        let total = started.elapsed();
        let first = first_token.unwrap_or(total);
        Ok(GenerationOutput {
            usage: Usage {
                prompt_tokens: estimate_tokens(fill.prompt),
                completion_tokens: estimate_tokens(&answer.text),
                ..Usage::default()
            },
            text: answer.text,
            // The program's tokens are not visible from here.
            token_ids: Vec::new(),
            finish_reason: finish,
            timings: Timings {
                prefill: first,
                time_to_first_token: first,
                decode: total.saturating_sub(first),
                total,
            },
        })
    }

    fn error(&self, message: String) -> ModelError {
        ModelError::Backend(format!("command {}: {message}", self.program.display()))
    }
}

impl TextGenerator for CommandGenerator {
    fn generate(
        &self,
        prompt: &str,
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationOutput, ModelError> {
        let fill = Fill {
            prompt,
            system: "",
            user: prompt,
        };
        self.run(&fill, params, on_text)
    }

    /// A plain transcript: the program, not mdsa, knows the model's template.
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, ModelError> {
        Ok(transcript(messages))
    }

    /// Fills `{system}` and `{user}` from the messages, so a program that
    /// applies the model's chat template itself gets the parts it needs.
    fn generate_chat(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<GenerationOutput, ModelError> {
        let prompt = self.render_chat(messages)?;
        let system: Vec<&str> = messages
            .iter()
            .filter(|m| m.role == "system")
            .map(|m| m.content.as_str())
            .collect();
        let system = system.join("\n");
        let user = messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map_or("", |m| m.content.as_str());
        let fill = Fill {
            prompt: &prompt,
            system: &system,
            user,
        };
        self.run(&fill, params, on_text)
    }

    /// An estimate: the program's tokenizer is not visible from here.
    fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        Ok(estimate_tokens(text))
    }

    fn context_length(&self) -> usize {
        self.context_length
    }
}

/// The values of one request's placeholders.
struct Fill<'a> {
    prompt: &'a str,
    system: &'a str,
    user: &'a str,
}

impl Fill<'_> {
    /// Whether an argument carries request text (else the prompt goes to stdin).
    fn names_text(&self, arg: &str) -> bool {
        ["{prompt}", "{system}", "{user}"]
            .iter()
            .any(|p| arg.contains(p))
    }

    fn apply(&self, arg: &str, max_tokens: usize) -> String {
        arg.replace("{max_tokens}", &max_tokens.to_string())
            .replace("{system}", self.system)
            .replace("{user}", self.user)
            .replace("{prompt}", self.prompt)
    }
}

/// The answer as it streams: UTF-8 decoding across reads, stop strings that
/// may span reads, and the token limit.
struct Answer<'s> {
    text: String,
    /// Bytes of `text` already given to the caller.
    sent: usize,
    stop: &'s [String],
    /// Text held back in case it is the start of a stop string.
    hold: usize,
}

impl<'s> Answer<'s> {
    fn new(stop: &'s [String]) -> Self {
        let hold = stop
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .saturating_sub(1);
        Self {
            text: String::new(),
            sent: 0,
            stop,
            hold,
        }
    }

    /// Reads the program's output to its end, or until a stop string, the
    /// token limit or the caller ends the answer.
    fn read(
        &mut self,
        mut out: impl Read,
        max_tokens: usize,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> std::io::Result<FinishReason> {
        let mut buffer = [0u8; 1024];
        let mut pending = Vec::new(); // an incomplete UTF-8 sequence
        loop {
            let n = out.read(&mut buffer)?;
            if n == 0 {
                // The end: nothing can complete a stop string any more.
                let rest = &self.text[self.sent..];
                if !rest.is_empty() && on_text(rest).is_break() {
                    return Ok(FinishReason::Cancelled);
                }
                self.sent = self.text.len();
                return Ok(FinishReason::Eos);
            }
            pending.extend_from_slice(&buffer[..n]);
            let valid = match std::str::from_utf8(&pending) {
                Ok(text) => text.len(),
                Err(e) if e.error_len().is_some() => {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
                Err(e) => e.valid_up_to(),
            };
            let piece = String::from_utf8_lossy(&pending[..valid]).into_owned();
            pending.drain(..valid);
            self.text.push_str(&piece);

            let found = self
                .stop
                .iter()
                .filter(|s| !s.is_empty())
                .filter_map(|s| self.text.find(s.as_str()))
                .min();
            let ready = match found {
                Some(at) => at,
                None => floor_char(&self.text, self.text.len().saturating_sub(self.hold)),
            };
            if ready > self.sent {
                let flow = on_text(&self.text[self.sent..ready]);
                self.sent = ready;
                if flow.is_break() {
                    self.text.truncate(ready);
                    return Ok(FinishReason::Cancelled);
                }
            }
            if let Some(at) = found {
                self.text.truncate(at);
                return Ok(FinishReason::Stop);
            }
            if estimate_tokens(&self.text) >= max_tokens {
                return Ok(FinishReason::Length);
            }
        }
    }
}

/// Kills a program whose answer is no longer wanted, and reaps it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Tokens in `text`, estimated at four characters a token (rounded up).
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// The largest char boundary of `text` at or below `at`.
fn floor_char(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// `source` as a path, or a name found in `PATH`.
fn find_program(source: &str) -> Option<PathBuf> {
    let path = Path::new(source);
    if path.components().count() > 1 {
        return path.is_file().then(|| path.to_path_buf());
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(source))
        .find(|candidate| candidate.is_file())
}

fn backend_error(spec: &ModelSpec, message: &str) -> ModelError {
    ModelError::Backend(format!(
        "model {:?} (backend {BACKEND_NAME}): {message}",
        spec.id
    ))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn spec(program: &str, args: &str) -> ModelSpec {
        let mut spec = ModelSpec::new("test", program, ModelRole::Generator);
        spec.backend = BACKEND_NAME.into();
        spec.options.insert("args", args);
        spec
    }

    fn params(max_tokens: usize, stop: &[&str]) -> GenerationParams {
        GenerationParams {
            max_tokens,
            stop: stop.iter().map(|s| s.to_string()).collect(),
            ..GenerationParams::default()
        }
    }

    #[test]
    fn the_prompt_goes_to_stdin_and_the_output_streams_back() {
        let generator = CommandGenerator::new(&spec("cat", "")).unwrap();
        let mut streamed = String::new();
        let output = generator
            .generate("héllo wörld", &params(100, &[]), &mut |piece| {
                streamed.push_str(piece);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(output.text, "héllo wörld");
        assert_eq!(streamed, output.text);
        assert_eq!(output.finish_reason, FinishReason::Eos);
    }

    #[test]
    fn a_stop_string_ends_the_answer_and_kills_the_program() {
        // `yes` never ends by itself: only the kill stops it.
        let generator = CommandGenerator::new(&spec("yes", "{user}")).unwrap();
        let mut streamed = String::new();
        let output = generator
            .generate("ab", &params(1000, &["never", "\n"]), &mut |piece| {
                streamed.push_str(piece);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(output.finish_reason, FinishReason::Stop);
        assert_eq!(output.text, "ab");
        assert_eq!(streamed, output.text);

        let mut pieces = 0;
        let output = generator
            .generate("ab", &params(1000, &[]), &mut |_| {
                pieces += 1;
                ControlFlow::Break(())
            })
            .unwrap();
        assert_eq!(output.finish_reason, FinishReason::Cancelled);
        assert_eq!(pieces, 1);

        let output = generator
            .generate("ab", &params(8, &[]), &mut |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(output.finish_reason, FinishReason::Length);
    }

    #[test]
    fn a_failing_program_is_an_error_with_its_stderr() {
        let generator = CommandGenerator::new(&spec("sh", "-c {user}")).unwrap();
        let error = generator
            .generate("echo broken >&2; exit 3", &params(10, &[]), &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap_err();
        assert!(error.to_string().contains("broken"), "{error}");
        assert!(CommandGenerator::new(&spec("no-such-program-xyz", "")).is_err());
    }

    #[test]
    fn options_are_typed_and_checked() {
        let mut with_context = spec("cat", "");
        with_context.options.insert("context_length", 2048);
        assert_eq!(
            CommandGenerator::new(&with_context).unwrap().context_length,
            2048
        );
        with_context.options.insert("context_length", "2048");
        assert_eq!(
            CommandGenerator::new(&with_context).unwrap().context_length,
            2048
        );
        let mut typo = spec("cat", "");
        typo.options.insert("arg", "x");
        let m = CommandGenerator::new(&typo).unwrap_err().to_string();
        assert!(
            m.contains("options.arg: model \"test\": unknown field `arg`, expected `args` or `context_length`"),
            "{m}"
        );
    }
}
