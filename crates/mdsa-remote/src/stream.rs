//! One streamed answer: text pieces handed to the caller as they arrive, then
//! the finish reason and token counts.

use std::io::{self, Read};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use mdsa_engine::{FinishReason, GenerationOutput, Timings, Usage};
use serde::Deserialize;
use serde_json::Value;

use crate::error::RemoteError;
use crate::sse::EventReader;
use crate::wire::{Chunk, error_message};

/// What has been read of an answer so far.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// Every piece passed to the caller, in order.
    pub(crate) text: String,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    first_text: Option<Instant>,
    cancelled: bool,
}

impl Answer {
    /// Reads events from `body` until `data: [DONE]`, passing each piece of
    /// text to `on_text`. When `on_text` breaks, reading stops at once: the
    /// caller drops the connection, which tells the server to stop generating.
    pub(crate) fn read(
        &mut self,
        body: impl Read,
        url: &str,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<(), RemoteError> {
        let protocol = |reason: String| RemoteError::Protocol {
            url: url.to_string(),
            reason,
        };
        let mut events = EventReader::new(body);
        loop {
            let event = match events.next_event() {
                Ok(Some(event)) => event,
                // Some servers close the stream after the last chunk without
                // `[DONE]`; that is an answer as long as it said it finished.
                Ok(None) if self.finish.is_some() => return Ok(()),
                Ok(None) => {
                    return Err(protocol(
                        "the stream ended before the answer finished (no finish_reason, no [DONE])"
                            .into(),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(protocol(e.to_string()));
                }
                Err(e) => return Err(RemoteError::body(url, e)),
            };
            if event.data == "[DONE]" {
                return Ok(());
            }
            let value = serde_json::from_str::<Value>(&event.data);
            // An error may come as an event named `error` (whose data need not be
            // JSON) or as an ordinary event whose JSON is an error body.
            let error = match &value {
                Ok(value) => error_message(value),
                Err(_) => None,
            };
            if error.is_some() || event.name == "error" {
                return Err(RemoteError::Stream {
                    url: url.to_string(),
                    message: error.unwrap_or(event.data),
                });
            }
            let value = value.map_err(|e| {
                protocol(format!("an event is not JSON ({e}): {}", clip(&event.data)))
            })?;
            let chunk = Chunk::deserialize(&value).map_err(|e| {
                protocol(format!("a chunk is malformed ({e}): {}", clip(&event.data)))
            })?;
            if let Some(usage) = chunk.usage {
                self.usage = Some(Usage {
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    cached_prompt_tokens: usage
                        .prompt_tokens_details
                        .map_or(0, |d| d.cached_tokens),
                });
            }
            // `n` is 1, so there is one choice; the usage chunk has none.
            let Some(choice) = chunk.choices.first() else {
                continue;
            };
            if let Some(text) = choice.new_text().filter(|t| !t.is_empty()) {
                self.first_text.get_or_insert_with(Instant::now);
                self.text.push_str(text);
                if on_text(text).is_break() {
                    self.cancelled = true;
                    return Ok(());
                }
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish = Some(finish_reason(reason));
            }
        }
    }

    /// The result, timed from `started`. Without usage from the server (an
    /// older server, or a cancelled stream), token counts are estimated with
    /// [`estimate_tokens`]; `prompt_text` is what the prompt estimate counts.
    pub(crate) fn into_output(self, started: Instant, prompt_text: &str) -> GenerationOutput {
        let now = Instant::now();
        let total = now - started;
        let first_token = self.first_text.map_or(total, |t| t - started);
        let usage = self.usage.unwrap_or_else(|| Usage {
            prompt_tokens: estimate_tokens(prompt_text),
            completion_tokens: estimate_tokens(&self.text),
            cached_prompt_tokens: 0,
        });
        let finish_reason = if self.cancelled {
            FinishReason::Cancelled
        } else {
            self.finish.unwrap_or(FinishReason::Stop)
        };
        GenerationOutput {
            text: self.text,
            // The API streams text, not token ids.
            token_ids: Vec::new(),
            finish_reason,
            usage,
            timings: Timings {
                // The server's prefill is not reported; the wait for the first
                // token (queue, prefill and network) is the closest measure.
                prefill: first_token,
                time_to_first_token: first_token,
                decode: self.first_text.map_or(Duration::ZERO, |t| now - t),
                total,
            },
        }
    }
}

/// A rough token count: one token per four characters, rounded up. It is the
/// usual rule of thumb for English with BPE vocabularies; the server's own
/// counts replace it whenever the server sends them.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// OpenAI's reasons: `length` is the token limit; `stop` covers both the end of
/// sequence and a stop string, which the API does not tell apart. Anything else
/// (`content_filter`, `tool_calls`, vLLM's `abort`) has no counterpart in mdsa
/// and ends the answer like `stop`.
fn finish_reason(name: &str) -> FinishReason {
    match name {
        "length" => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

/// The start of a long text, for error messages.
pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `stream` as an answer, collecting the pieces; `stop_after` pieces
    /// break the stream.
    fn read(stream: &str, stop_after: usize) -> (Result<(), RemoteError>, Answer, Vec<String>) {
        let mut answer = Answer::default();
        let mut pieces = Vec::new();
        let result = answer.read(
            stream.as_bytes(),
            "http://test/v1/chat/completions",
            &mut |t| {
                pieces.push(t.to_string());
                if pieces.len() == stop_after {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        (result, answer, pieces)
    }

    const CHAT: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"length\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn pieces_finish_reason_and_usage_are_read() {
        let (result, answer, pieces) = read(CHAT, usize::MAX);
        result.unwrap();
        assert_eq!(pieces, ["Hel", "lo"]);
        let output = answer.into_output(Instant::now(), "ignored: the server counted");
        assert_eq!(output.text, "Hello");
        assert_eq!(output.finish_reason, FinishReason::Length);
        assert_eq!(
            output.usage,
            Usage {
                prompt_tokens: 9,
                completion_tokens: 2,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn text_completion_chunks_are_read() {
        let stream =
            "data: {\"choices\":[{\"text\":\"4\",\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let (result, answer, pieces) = read(stream, usize::MAX);
        result.unwrap();
        assert_eq!(pieces, ["4"]);
        let output = answer.into_output(Instant::now(), "2+2=");
        assert_eq!(output.finish_reason, FinishReason::Stop);
        // No usage chunk: estimated, four characters a token, rounded up.
        assert_eq!(
            output.usage,
            Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn a_break_stops_reading_and_cancels() {
        let (result, answer, pieces) = read(CHAT, 1);
        result.unwrap();
        assert_eq!(pieces, ["Hel"]);
        let output = answer.into_output(Instant::now(), "");
        assert_eq!(
            (output.text.as_str(), output.finish_reason),
            ("Hel", FinishReason::Cancelled)
        );
    }

    #[test]
    fn error_events_become_errors_with_the_servers_message() {
        for stream in [
            "data: {\"error\":{\"message\":\"out of memory\",\"code\":500}}\n\n",
            "data: {\"object\":\"error\",\"message\":\"out of memory\"}\n\n",
            "error: {\"message\":\"out of memory\"}\n\n",
            "event: error\ndata: out of memory\n\n",
        ] {
            let error = read(stream, usize::MAX).0.unwrap_err();
            assert!(
                matches!(error, RemoteError::Stream { .. }),
                "{stream}: {error}"
            );
            assert!(error.to_string().contains("out of memory"), "{error}");
        }
    }

    #[test]
    fn a_stream_without_an_end_is_an_error() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";
        let (result, answer, _) = read(stream, usize::MAX);
        assert!(result.unwrap_err().to_string().contains("ended before"));
        assert_eq!(answer.text, "Hel");
        let stream =
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n";
        read(stream, usize::MAX)
            .0
            .expect("a finish reason without [DONE] is an answer");
    }

    #[test]
    fn garbage_is_a_protocol_error_that_quotes_it() {
        let error = read("data: <html>\n\n", usize::MAX).0.unwrap_err();
        assert!(matches!(error, RemoteError::Protocol { .. }), "{error}");
        assert!(error.to_string().contains("<html>"), "{error}");
    }
}
