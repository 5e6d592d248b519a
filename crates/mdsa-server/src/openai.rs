//! The OpenAI wire format: what clients send and what they expect back.
//!
//! Only what mdsa can honour is read; fields a client library sends by default
//! and that change nothing here (`user`, `logprobs: false`, penalties of 0) are
//! accepted and ignored, as other OpenAI-compatible servers do. Asking for
//! what mdsa cannot do (`n` > 1, tools) is an error, not silently dropped.

use mdsa::domains::RouteDecision;
use mdsa::engine::ChatMessage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Reads a request body as `T` the way every JSON route does: errors name the
/// field at fault (`messages[0].role: invalid type: integer, expected a
/// string`), and anything after the JSON value is refused.
pub fn from_json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(ApiError::bad_json)?;
    deserializer.end().map_err(|e| {
        ApiError::invalid(
            "body",
            format!("trailing characters after the JSON value: {e}"),
        )
    })?;
    Ok(value)
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    /// `auto` routes by meaning; a domain id or a model id forces.
    pub model: String,
    /// The conversation; the last message is the user's question.
    pub messages: Vec<RequestMessage>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Stream options (`include_usage`).
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Most tokens to generate (capped by the server's limit).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens`.
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// 0 is greedy, at most 2.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass, in (0, 1].
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Strings that end the answer: one or a list of up to 4.
    #[serde(default)]
    pub stop: Option<StopStrings>,
    /// Seed for reproducible sampling.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Number of choices; only 1 is supported.
    #[serde(default)]
    pub n: Option<u32>,
    /// Tools are not supported; present and non-empty is an error.
    #[serde(default)]
    pub tools: Option<Vec<serde_json::Value>>,
    /// mdsa's own options (extension).
    #[serde(default)]
    pub mdsa: Option<MdsaRequestOptions>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with token usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// `stop`: OpenAI takes one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopStrings {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl StopStrings {
    /// The strings, as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}

/// The `mdsa` extension object of a request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdsaRequestOptions {
    /// Answer in this domain (like naming it as the model).
    #[serde(default)]
    pub domain: Option<String>,
}

/// One message of a request. `content` is a string or, as newer clients send,
/// a list of parts of which the text ones are kept.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestMessage {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// The text.
    #[serde(default)]
    pub content: Option<MessageContent>,
}

/// A message's content.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts (`{"type": "text", "text": ...}`).
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// `text` (other kinds are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

impl ChatCompletionRequest {
    /// The conversation as chat messages, checked: roles known, text only, the
    /// last message from the user. Returns the history and the question.
    pub fn conversation(&self) -> Result<(Vec<ChatMessage>, String), ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid(
                "messages",
                "expected at least one message, found an empty list",
            ));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, message) in self.messages.iter().enumerate() {
            let role = match message.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                other => {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].role"),
                        format!("expected system, developer, user or assistant, found {other:?}"),
                    ));
                }
            };
            let content = match &message.content {
                None => String::new(),
                Some(MessageContent::Text(text)) => text.clone(),
                Some(MessageContent::Parts(parts)) => {
                    let mut text = String::new();
                    for (j, part) in parts.iter().enumerate() {
                        match (part.kind.as_str(), &part.text) {
                            ("text", Some(piece)) => text.push_str(piece),
                            (kind, _) => {
                                return Err(ApiError::invalid(
                                    format!("messages[{i}].content[{j}]"),
                                    format!("expected a text part, found a {kind:?} part"),
                                ));
                            }
                        }
                    }
                    text
                }
            };
            messages.push(ChatMessage::new(role, content));
        }
        let last = messages.len() - 1;
        let question = messages.pop().filter(|m| m.role == "user").ok_or_else(|| {
            ApiError::invalid(
                format!("messages[{last}].role"),
                "expected the last message to be the user's question",
            )
        })?;
        if question.content.trim().is_empty() {
            return Err(ApiError::invalid(
                format!("messages[{last}].content"),
                "the question is empty; expected some text to answer",
            ));
        }
        Ok((messages, question.content))
    }

    /// Checks the parameters' ranges and what mdsa does not support.
    pub fn check(&self) -> Result<(), ApiError> {
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ApiError::invalid(
                "temperature",
                format!("expected a number from 0 to 2, found {t}"),
            ));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(ApiError::invalid(
                "top_p",
                format!("expected a number in (0, 1], found {p}"),
            ));
        }
        if let Some(0) = self.max_tokens.or(self.max_completion_tokens) {
            return Err(ApiError::invalid(
                "max_tokens",
                "expected at least 1, found 0",
            ));
        }
        if let Some(n) = self.n
            && n != 1
        {
            return Err(ApiError::invalid(
                "n",
                format!("mdsa answers with one choice; expected 1, found {n}"),
            ));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::invalid(
                "tools",
                "mdsa's domain models do not call tools; expected no tools",
            ));
        }
        if let Some(StopStrings::Many(stop)) = &self.stop
            && stop.len() > 4
        {
            return Err(ApiError::invalid(
                "stop",
                format!("expected at most 4 stop strings, found {}", stop.len()),
            ));
        }
        Ok(())
    }
}

/// Token counts, as OpenAI reports them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UsageBody {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
    /// How the prompt's tokens were processed.
    pub prompt_tokens_details: PromptTokensDetails,
}

/// `usage.prompt_tokens_details`, as OpenAI reports it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens taken from a cached prefix instead of being run.
    pub cached_tokens: usize,
}

impl From<mdsa::engine::Usage> for UsageBody {
    fn from(usage: mdsa::engine::Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.prompt_tokens + usage.completion_tokens,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: usage.cached_prompt_tokens,
            },
        }
    }
}

/// The assistant's message in a non-streamed answer.
#[derive(Debug, Clone, Serialize)]
pub struct ResponseMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// The answer; `null` when mdsa abstained.
    pub content: Option<String>,
    /// Why there is no answer: set when no domain fits the query.
    pub refusal: Option<String>,
}

/// One choice of a non-streamed answer.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// Always 0.
    pub index: u32,
    /// The message.
    pub message: ResponseMessage,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
    /// Not computed.
    pub logprobs: Option<()>,
}

/// `POST /v1/chat/completions` without streaming.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletion {
    /// `chatcmpl-` and the request id of the log.
    pub id: String,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: i64,
    /// The model that answered (the requested name when none did).
    pub model: String,
    /// One choice.
    pub choices: Vec<Choice>,
    /// Token counts.
    pub usage: UsageBody,
    /// mdsa's extension: the route decision and how the request went.
    pub mdsa: MdsaInfo,
}

/// The `mdsa` extension object of a response.
#[derive(Debug, Clone, Serialize)]
pub struct MdsaInfo {
    /// The request id in the log and metrics.
    pub request_id: String,
    /// `answered`, `abstained`, `invalid_answer` or `cancelled`.
    pub outcome: mdsa::Outcome,
    /// The domain that answered.
    pub domain: Option<String>,
    /// The router's confidence.
    pub confidence: f32,
    /// The whole route decision: every domain's score and why.
    pub route: RouteDecision,
    /// The validation verdict of the answer kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<mdsa::domains::Verdict>,
    /// Generation attempts.
    pub attempts: u32,
    /// Where the time went, in milliseconds.
    pub timings: mdsa::ResponseTimings,
}

impl MdsaInfo {
    /// The extension object for a finished query.
    pub fn from_response(response: &mdsa::QueryResponse) -> Self {
        Self {
            request_id: response.request_id.clone(),
            outcome: response.outcome,
            domain: response.domain.clone(),
            confidence: response.confidence,
            route: response.route.clone(),
            verdict: response.verdict.clone(),
            attempts: response.attempts,
            timings: response.timings,
        }
    }
}

/// The text of `refusal` when no domain fits a query.
pub fn abstention_text(route: &RouteDecision) -> String {
    let best = route
        .best()
        .map(|b| format!(" (closest: {} at score {:.2})", b.domain, b.score))
        .unwrap_or_default();
    format!(
        "No domain fits this question well enough{best}; ask within a domain, \
         or name one as the model."
    )
}

/// One streamed chunk (`chat.completion.chunk`).
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletionChunk<'a> {
    /// Same for every chunk of an answer.
    pub id: &'a str,
    /// `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds, the same for every chunk.
    pub created: i64,
    /// The model (or the requested name before one is chosen).
    pub model: &'a str,
    /// Zero or one choice deltas.
    pub choices: Vec<ChunkChoice<'a>>,
    /// In the last chunk when `stream_options.include_usage` was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageBody>,
    /// mdsa's progress: the route in the first chunk, loading, retries, and
    /// the summary in the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mdsa: Option<serde_json::Value>,
}

/// The delta of one streamed choice.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice<'a> {
    /// Always 0.
    pub index: u32,
    /// What is new.
    pub delta: Delta<'a>,
    /// Set in the last chunk of the answer.
    pub finish_reason: Option<&'static str>,
    /// Not computed.
    pub logprobs: Option<()>,
}

/// New content of a streamed answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta<'a> {
    /// `assistant`, in the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// A piece of the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    /// Why there is no answer (abstention).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<&'a str>,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingsRequest {
    /// One text or a list.
    pub input: EmbeddingInput,
    /// The encoder's id, or any name (there is one encoder).
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32 bytes).
    #[serde(default)]
    pub encoding_format: Option<String>,
}

/// The texts to embed.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `POST /v1/route`: one query (`query`, or `input` with a string), or many
/// (`queries`, or `input` with a list), routed as one batch.
#[derive(Debug, Clone, Deserialize)]
pub struct RouteRequest {
    /// The query to route.
    #[serde(default, alias = "input")]
    pub query: Option<EmbeddingInput>,
    /// Queries to route together.
    #[serde(default)]
    pub queries: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_read_with_the_field_at_fault_named() {
        let request: ChatCompletionRequest = from_json_body(
            br#"{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}"#,
        )
        .unwrap();
        assert_eq!(request.conversation().unwrap().1, "hi");
        let err = from_json_body::<ChatCompletionRequest>(
            br#"{"model": "auto", "messages": [{"role": 7}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, "invalid_json");
        assert_eq!(err.param.as_deref(), Some("messages[0].role"));
        let err = from_json_body::<RouteRequest>(br#"{"query": "x"} {}"#).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("body"));
        assert!(err.message.contains("trailing characters"), "{err}");
    }
}
