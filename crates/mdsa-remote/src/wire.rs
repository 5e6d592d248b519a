//! The JSON of the OpenAI API: requests sent, and the parts of answers read.

use mdsa_engine::{ChatMessage, GenerationParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What to continue: a conversation (`/chat/completions`) or text (`/completions`).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Input<'a> {
    /// Sent as `"messages": [...]`; the server applies the model's chat template.
    Messages(&'a [ChatMessage]),
    /// Sent as `"prompt": "..."`, continued as it is.
    Prompt(&'a str),
}

impl Input<'_> {
    /// The endpoint below `base_url`.
    pub(crate) fn path(&self) -> &'static str {
        match self {
            Self::Messages(_) => "chat/completions",
            Self::Prompt(_) => "completions",
        }
    }
}

/// A streamed completion request.
#[derive(Debug, Serialize)]
pub(crate) struct CompletionRequest<'a> {
    model: &'a str,
    #[serde(flatten)]
    input: Input<'a>,
    max_tokens: usize,
    temperature: f32,
    top_p: f32,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repetition_penalty: Option<f32>,
    stream: bool,
    stream_options: StreamOptions,
}

/// Asks for a last chunk with the token counts.
#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl<'a> CompletionRequest<'a> {
    /// The request for `input` with `params`. With `extensions`, `top_k` and
    /// `repetition_penalty` are sent when they do something (vLLM, llama.cpp's
    /// server and mdsa accept them; OpenAI itself rejects unknown fields).
    /// `repetition_window` has no counterpart in the API and is not sent.
    pub(crate) fn new(
        model: &'a str,
        input: Input<'a>,
        params: &'a GenerationParams,
        extensions: bool,
    ) -> Self {
        let sampling = &params.sampling;
        Self {
            model,
            input,
            max_tokens: params.max_tokens,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            stop: &params.stop,
            seed: sampling.seed,
            top_k: (extensions && sampling.top_k > 0).then_some(sampling.top_k),
            repetition_penalty: (extensions && sampling.repetition_penalty != 1.0)
                .then_some(sampling.repetition_penalty),
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
        }
    }
}

/// One streamed chunk of either endpoint.
#[derive(Debug, Deserialize)]
pub(crate) struct Chunk {
    #[serde(default)]
    pub(crate) choices: Vec<Choice>,
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
}

/// One choice of a chunk; only the first (`n` is 1) is read.
#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    /// Chat: `{"content": "..."}` (the first delta may carry only the role).
    #[serde(default)]
    pub(crate) delta: Option<Delta>,
    /// Text completion: the new text.
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
}

impl Choice {
    /// The new text, whichever endpoint sent it.
    pub(crate) fn new_text(&self) -> Option<&str> {
        self.delta
            .as_ref()
            .and_then(|d| d.content.as_deref())
            .or(self.text.as_deref())
    }
}

/// A chat chunk's change to the message.
#[derive(Debug, Deserialize)]
pub(crate) struct Delta {
    #[serde(default)]
    pub(crate) content: Option<String>,
}

/// Token counts, in the final chunk when `include_usage` was asked for.
#[derive(Debug, Deserialize)]
pub(crate) struct WireUsage {
    pub(crate) prompt_tokens: usize,
    pub(crate) completion_tokens: usize,
    /// Cached prompt tokens, where the server says.
    #[serde(default)]
    pub(crate) prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Deserialize)]
pub(crate) struct PromptTokensDetails {
    #[serde(default)]
    pub(crate) cached_tokens: usize,
}

/// `GET /models`.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelList {
    pub(crate) data: Vec<ModelEntry>,
}

/// One served model.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelEntry {
    pub(crate) id: String,
}

/// The message of an error body, in the shapes servers use: OpenAI's
/// `{"error": {"message": ..}}`, `{"error": "..."}`, and vLLM's older
/// `{"object": "error", "message": ..}`. `None` when `value` is none of them.
pub(crate) fn error_message(value: &Value) -> Option<String> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    match value.get("error") {
        Some(Value::Null) | None => {}
        Some(error) => {
            return text(error)
                .or_else(|| error.get("message").and_then(text))
                .or_else(|| Some(error.to_string()));
        }
    }
    if value.get("object").and_then(Value::as_str) == Some("error") {
        return value.get("message").and_then(text);
    }
    None
}

#[cfg(test)]
mod tests {
    use mdsa_engine::SamplingParams;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_chat_request_has_the_standard_fields() {
        let messages = [ChatMessage::user("Hi")];
        let params = GenerationParams {
            max_tokens: 16,
            stop: vec!["\n".into()],
            sampling: SamplingParams {
                temperature: 0.5,
                top_k: 40,
                seed: Some(7),
                ..SamplingParams::default()
            },
            ..GenerationParams::default()
        };
        let request = CompletionRequest::new("m", Input::Messages(&messages), &params, true);
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "model": "m",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 16,
                "temperature": 0.5,
                "top_p": 1.0,
                "stop": ["\n"],
                "seed": 7,
                "top_k": 40,
                "stream": true,
                "stream_options": {"include_usage": true},
            })
        );
        let strict = CompletionRequest::new("m", Input::Prompt("Hi"), &params, false);
        let strict = serde_json::to_value(&strict).unwrap();
        assert_eq!(strict["prompt"], "Hi");
        assert!(strict.get("top_k").is_none() && strict.get("messages").is_none());
    }

    #[test]
    fn error_messages_are_found_in_every_shape() {
        let cases = [
            (
                r#"{"error":{"message":"no such model","type":"x"}}"#,
                Some("no such model"),
            ),
            (r#"{"error":"overloaded"}"#, Some("overloaded")),
            (
                r#"{"object":"error","message":"bad","code":400}"#,
                Some("bad"),
            ),
            (r#"{"choices":[]}"#, None),
            ("<html>", None),
        ];
        for (body, expected) in cases {
            let value = serde_json::from_str(body).unwrap_or(Value::Null);
            assert_eq!(error_message(&value).as_deref(), expected, "{body}");
        }
    }
}
