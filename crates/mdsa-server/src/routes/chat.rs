//! `POST /v1/chat/completions`: OpenAI's chat API over mdsa's routing.
//!
//! The query runs on a blocking thread (models compute, they do not await);
//! the handler waits for it, or streams its events as server-sent events. A
//! client that goes away cancels its generation: the stream's receiver is
//! dropped (or the handler's future, without streaming), and the next piece
//! of text the model offers is refused.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use mdsa::{MdsaError, Outcome, QueryEvent, QueryOptions, QueryResponse};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::JsonBody;
use super::inspect::task_failed;
use crate::error::ApiError;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice, ChunkChoice, Delta,
    MdsaInfo, ResponseMessage, UsageBody, abstention_text,
};
use crate::state::{AppState, Permit};

/// Who answers: the router, a named domain, or a named model.
enum Target {
    Auto,
    Domain(String),
    Model(String),
}

/// Names that ask mdsa to route.
const AUTO_NAMES: [&str; 2] = ["auto", "mdsa"];

fn resolve(state: &AppState, request: &ChatCompletionRequest) -> Result<Target, ApiError> {
    let mdsa = state.mdsa();
    let domains = mdsa.domain_ids();
    if let Some(domain) = request.mdsa.as_ref().and_then(|m| m.domain.clone()) {
        if !domains.contains(&domain) {
            return Err(unknown_model(state, "mdsa.domain", &domain));
        }
        return Ok(Target::Domain(domain));
    }
    let name = request.model.as_str();
    if AUTO_NAMES.contains(&name) {
        return Ok(Target::Auto);
    }
    if domains.iter().any(|d| d == name) {
        return Ok(Target::Domain(name.to_string()));
    }
    match mdsa.manager().spec(name) {
        Some(spec) if spec.role == mdsa::engine::ModelRole::Generator => {
            Ok(Target::Model(name.to_string()))
        }
        _ => Err(unknown_model(state, "model", name)),
    }
}

fn unknown_model(state: &AppState, param: &str, name: &str) -> ApiError {
    let mdsa = state.mdsa();
    let generators: Vec<String> = mdsa
        .manager()
        .specs()
        .into_iter()
        .filter(|s| s.role == mdsa::engine::ModelRole::Generator)
        .map(|s| s.id)
        .collect();
    let mut error = ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "model_not_found",
        format!(
            "{param}: {name:?} is not a domain or a generator model; expected \"auto\", a domain ({}) or a model ({})",
            mdsa.domain_ids().join(", "),
            generators.join(", ")
        ),
    );
    error.param = Some(param.to_string());
    error
}

/// The handler.
pub(crate) async fn completions(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    request.check()?;
    let (history, question) = request.conversation()?;
    let target = resolve(&state, &request)?;
    let limits = state.limits();
    let asked = request.max_tokens.or(request.max_completion_tokens);
    let mut options = QueryOptions {
        request_id: Some(mdsa::new_request_id()),
        history,
        max_tokens: Some(asked.map_or(limits.max_tokens, |m| (m as usize).min(limits.max_tokens))),
        temperature: request.temperature,
        top_p: request.top_p,
        stop: request
            .stop
            .clone()
            .map(|s| s.into_vec())
            .unwrap_or_default(),
        seed: request.seed,
        ..QueryOptions::default()
    };
    match target {
        Target::Auto => {}
        Target::Domain(domain) => options.domain = Some(domain),
        Target::Model(model) => options.model = Some(model),
    }
    let permit = state.admit().await?;
    let call = Call {
        id: format!(
            "chatcmpl-{}",
            options.request_id.as_deref().unwrap_or_default()
        ),
        created: chrono::Utc::now().timestamp(),
        requested_model: request.model.clone(),
        include_usage: request
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage),
    };
    if request.stream {
        Ok(stream(state, permit, call, question, options).into_response())
    } else {
        complete(state, permit, call, question, options).await
    }
}

/// What every chunk or answer of one call repeats.
struct Call {
    id: String,
    created: i64,
    requested_model: String,
    include_usage: bool,
}

impl Call {
    fn model<'a>(&'a self, response: &'a QueryResponse) -> &'a str {
        response.model.as_deref().unwrap_or(&self.requested_model)
    }
}

async fn complete(
    state: AppState,
    permit: Permit,
    call: Call,
    question: String,
    options: QueryOptions,
) -> Result<Response, ApiError> {
    let cancel = Arc::new(AtomicBool::new(false));
    // Set when this future is dropped, which axum does when the client goes.
    let _cancel_on_drop = CancelOnDrop(Arc::clone(&cancel));
    let mdsa = state.mdsa().clone();
    let response = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        mdsa.query_with(&question, &options, &mut |_| {
            if cancel.load(Ordering::Relaxed) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
    })
    .await
    .map_err(task_failed)??;

    let (content, refusal) = match response.outcome {
        Outcome::Abstained => (None, Some(abstention_text(&response.route))),
        _ => (Some(response.text.clone()), None),
    };
    let body = ChatCompletion {
        id: call.id.clone(),
        object: "chat.completion",
        created: call.created,
        model: call.model(&response).to_string(),
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant",
                content,
                refusal,
            },
            finish_reason: finish_reason(&response),
            logprobs: None,
        }],
        usage: response.usage.into(),
        mdsa: MdsaInfo::from_response(&response),
    };
    Ok(Json(body).into_response())
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn finish_reason(response: &QueryResponse) -> &'static str {
    response
        .finish_reason
        .map_or("stop", mdsa::engine::FinishReason::openai_name)
}

/// Events queued ahead of a slow client before generation waits for it.
const STREAM_BUFFER: usize = 64;

fn stream(
    state: AppState,
    permit: Permit,
    call: Call,
    question: String,
    options: QueryOptions,
) -> impl IntoResponse {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let mdsa = state.mdsa().clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut writer = ChunkWriter {
            call,
            model: None,
            tx,
        };
        let result = mdsa.query_with(&question, &options, &mut |event| writer.event(event));
        writer.finish(result);
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}

/// Turns query events into `chat.completion.chunk` events.
struct ChunkWriter {
    call: Call,
    /// The model, once the route has chosen one.
    model: Option<String>,
    tx: mpsc::Sender<Result<Event, Infallible>>,
}

impl ChunkWriter {
    /// Sends one chunk; `Break` when the client is gone.
    fn send(
        &self,
        delta: Delta<'_>,
        finish_reason: Option<&'static str>,
        mdsa: Option<serde_json::Value>,
    ) -> ControlFlow<()> {
        let chunk = ChatCompletionChunk {
            id: &self.call.id,
            object: "chat.completion.chunk",
            created: self.call.created,
            model: self.model.as_deref().unwrap_or(&self.call.requested_model),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                logprobs: None,
            }],
            usage: None,
            mdsa,
        };
        self.send_json(&chunk)
    }

    fn send_json(&self, value: &impl serde::Serialize) -> ControlFlow<()> {
        let event = match Event::default().json_data(value) {
            Ok(event) => event,
            // Our own types always serialise; nothing to tell the client.
            Err(_) => return ControlFlow::Continue(()),
        };
        match self.tx.blocking_send(Ok(event)) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }

    fn event(&mut self, event: QueryEvent) -> ControlFlow<()> {
        match event {
            QueryEvent::Routed(route) => self.send(
                Delta {
                    role: Some("assistant"),
                    content: Some(""),
                    refusal: None,
                },
                None,
                Some(json!({ "event": "routed", "route": route })),
            ),
            QueryEvent::Loading { .. }
            | QueryEvent::Downloading { .. }
            | QueryEvent::Loaded { .. } => {
                let progress = event.load_progress_json();
                if let QueryEvent::Loading { model, .. } = event {
                    self.model = Some(model);
                }
                self.send(Delta::default(), None, progress)
            }
            // A retry: what the earlier attempt streamed failed validation.
            QueryEvent::Attempt { number } if number > 1 => self.send(
                Delta::default(),
                None,
                Some(json!({ "event": "retry", "attempt": number })),
            ),
            QueryEvent::Attempt { .. } => ControlFlow::Continue(()),
            QueryEvent::Text(piece) => self.send(
                Delta {
                    content: Some(&piece),
                    ..Delta::default()
                },
                None,
                None,
            ),
        }
    }

    fn finish(self, result: Result<QueryResponse, MdsaError>) {
        match result {
            Ok(response) if response.outcome == Outcome::Cancelled => {}
            Ok(response) => {
                let refusal = (response.outcome == Outcome::Abstained)
                    .then(|| abstention_text(&response.route));
                let summary = serde_json::to_value(MdsaInfo::from_response(&response))
                    .map(|mut v| {
                        v["event"] = json!("done");
                        v
                    })
                    .ok();
                let _ = self.send(
                    Delta {
                        refusal: refusal.as_deref(),
                        ..Delta::default()
                    },
                    Some(finish_reason(&response)),
                    summary,
                );
                if self.call.include_usage {
                    let chunk = ChatCompletionChunk {
                        id: &self.call.id,
                        object: "chat.completion.chunk",
                        created: self.call.created,
                        model: self.call.model(&response),
                        choices: Vec::new(),
                        usage: Some(UsageBody::from(response.usage)),
                        mdsa: None,
                    };
                    let _ = self.send_json(&chunk);
                }
                let _ = self.tx.blocking_send(Ok(Event::default().data("[DONE]")));
            }
            Err(error) => {
                // Headers are sent: the error travels in the stream, in the
                // shape OpenAI's clients raise from.
                let _ = self.send_json(&ApiError::from(error).body());
                let _ = self.tx.blocking_send(Ok(Event::default().data("[DONE]")));
            }
        }
    }
}
