//! One request's path, as stages: classify, target, load, execute, validate,
//! then finish (publish the record that metrics and the log observe).
//!
//! Each stage moves the request's [`Workflow`] on, fills in its part of the
//! [`QueryResponse`] and the [`RequestRecord`], and reports progress to the
//! caller; a stage whose progress report is refused ends the request as
//! cancelled. Nothing here counts or logs: that is the observers' job
//! (see `telemetry`).

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mdsa_bus::{RequestState, Workflow};
use mdsa_domains::executor::{Execution, ExecutionEvent};
use mdsa_domains::{DomainConfig, RouteDecision};
use mdsa_engine::TextGenerator;
use mdsa_monitor::{LatencyBreakdown, RequestRecord, RequestStatus};

use super::{
    DIRECT_DOMAIN, DomainSet, Mdsa, QueryOptions, advance, check_query, direct_domain,
    new_request_id,
};
use crate::error::MdsaError;
use crate::response::{Outcome, QueryEvent, QueryResponse, ResponseTimings};
use crate::telemetry::RequestEvent;

/// A request on its way through the stages.
struct InFlight<'a> {
    workflow: Workflow,
    record: RequestRecord,
    started: Instant,
    on_event: &'a mut dyn FnMut(QueryEvent) -> ControlFlow<()>,
}

impl InFlight<'_> {
    /// Reports progress; `true` when the caller asked to stop.
    fn report(&mut self, event: QueryEvent) -> bool {
        (self.on_event)(event).is_break()
    }

    /// Ends the request as cancelled by the caller.
    fn cancel(&mut self, mut response: QueryResponse) -> QueryResponse {
        response.outcome = Outcome::Cancelled;
        let _ = self.workflow.fail("cancelled by the caller");
        response
    }
}

/// What a routed request is answered with.
struct Target<'s> {
    domain: Cow<'s, DomainConfig>,
    model: String,
}

impl Mdsa {
    /// Runs every stage, then publishes the request's record.
    pub(super) fn run_request(
        &self,
        query: &str,
        options: &QueryOptions,
        on_event: &mut dyn FnMut(QueryEvent) -> ControlFlow<()>,
    ) -> Result<QueryResponse, MdsaError> {
        let request_id = options.request_id.clone().unwrap_or_else(new_request_id);
        let mut request = InFlight {
            workflow: Workflow::with_bus(&request_id, &self.inner.bus),
            record: RequestRecord::new(&request_id, query),
            started: Instant::now(),
            on_event,
        };
        let result = self.stages(query, options, &mut request);
        self.finish(request, result)
    }

    fn stages(
        &self,
        query: &str,
        options: &QueryOptions,
        request: &mut InFlight<'_>,
    ) -> Result<QueryResponse, MdsaError> {
        check_query(query)?;
        let set = self.domain_set();
        let mut response = self.classify(&set, query, options, request)?;
        if request.report(QueryEvent::Routed(response.route.clone())) {
            return Ok(request.cancel(response));
        }
        let Some(target) = self.target(&set, options, request, &mut response)? else {
            return Ok(response);
        };
        let Some(generator) = self.load(&target.model, request, &mut response)? else {
            return Ok(request.cancel(response));
        };
        let domain = options.apply(&target.domain);
        let execution = self.execute(
            &domain,
            generator.as_ref(),
            query,
            options,
            request,
            &mut response,
        )?;
        Ok(validate(execution, request, response))
    }

    /// Classify: the caller's domain or model, else the router's decision.
    fn classify(
        &self,
        set: &DomainSet,
        query: &str,
        options: &QueryOptions,
        request: &mut InFlight<'_>,
    ) -> Result<QueryResponse, MdsaError> {
        advance(&mut request.workflow, RequestState::Classifying);
        let route_started = Instant::now();
        let decision = match (&options.domain, &options.model) {
            (Some(id), _) => {
                set.registry.require(id)?;
                RouteDecision::forced(query, id)
            }
            (None, Some(model)) => {
                let mut decision = RouteDecision::forced(query, DIRECT_DOMAIN);
                decision.explanation.reason = format!("model {model} chosen by the caller");
                decision
            }
            (None, None) => {
                let decision = set.router.route(query)?;
                let _ = self.inner.bus.publish(RequestEvent::Routed {
                    request_id: request.workflow.request_id().to_string(),
                    domain: decision.domain.clone(),
                    confidence: decision.confidence,
                });
                decision
            }
        };
        let route_time = route_started.elapsed();
        request.record.latency = LatencyBreakdown::default().with_route(route_time);
        Ok(QueryResponse {
            request_id: request.workflow.request_id().to_string(),
            outcome: Outcome::Abstained,
            text: String::new(),
            domain: decision.domain.clone(),
            confidence: decision.confidence,
            model: None,
            device: None,
            device_reason: None,
            verdict: None,
            attempts: 0,
            finish_reason: None,
            usage: Default::default(),
            timings: ResponseTimings {
                route: route_time,
                model: Duration::from_secs_f64(decision.encode_ms / 1e3),
                ..ResponseTimings::default()
            },
            route: decision,
        })
    }

    /// The domain and model that answer, or `None` when the router abstained.
    fn target<'s>(
        &self,
        set: &'s DomainSet,
        options: &QueryOptions,
        request: &mut InFlight<'_>,
        response: &mut QueryResponse,
    ) -> Result<Option<Target<'s>>, MdsaError> {
        request.record.confidence = Some(response.confidence);
        let Some(domain_id) = response.domain.clone() else {
            advance(&mut request.workflow, RequestState::Abstained);
            request.record.domain = Some(mdsa_monitor::NONE_LABEL.to_string());
            return Ok(None);
        };
        request.record.domain = Some(domain_id.clone());
        let domain = match (&options.domain, &options.model) {
            (None, Some(_)) => Cow::Owned(direct_domain()),
            _ => Cow::Borrowed(set.registry.require(&domain_id)?),
        };
        let model = match &options.model {
            Some(model) => model.clone(),
            None => set
                .registry
                .model_for(&domain)
                .unwrap_or(&self.inner.config.default_generator)
                .to_string(),
        };
        response.model = Some(model.clone());
        request.record.model = Some(model.clone());
        Ok(Some(Target { domain, model }))
    }

    /// Load: the model from the manager, loading it if it is not resident;
    /// `None` when the caller cancelled before it was asked for.
    fn load(
        &self,
        model: &str,
        request: &mut InFlight<'_>,
        response: &mut QueryResponse,
    ) -> Result<Option<Arc<dyn TextGenerator>>, MdsaError> {
        advance(&mut request.workflow, RequestState::Loading);
        let cold = !self.inner.manager.is_resident(model);
        if request.report(QueryEvent::Loading {
            model: model.to_string(),
            cold,
        }) {
            return Ok(None);
        }
        let load_started = Instant::now();
        // A cancel during a download is not acted on: the load is shared
        // with every request for this model.
        let handle = self.inner.manager.get_with_progress(model, &mut |d| {
            let _ = request.report(QueryEvent::Downloading {
                model: model.to_string(),
                file: d.file.clone(),
                downloaded: d.downloaded,
                total: d.total,
                done: d.done,
            });
        })?;
        // The generator is shared: holding it keeps the engine alive while the
        // handle (and so the manager's in-use count) is released after this request.
        let generator = handle
            .as_generator()
            .ok_or_else(|| MdsaError::WrongRole {
                id: model.to_string(),
                expected: "generator",
            })?
            .clone();
        response.device = Some(handle.device().to_string());
        response.device_reason = Some(handle.device_reason().to_string());
        response.timings.load = load_started.elapsed();
        request.record.latency = request.record.latency.with_load(response.timings.load);
        let _ = request.report(QueryEvent::Loaded {
            model: model.to_string(),
            duration: response.timings.load,
        });
        Ok(Some(generator))
    }

    /// Execute: the executor's attempts, streaming text to the caller.
    fn execute(
        &self,
        domain: &DomainConfig,
        generator: &dyn TextGenerator,
        query: &str,
        options: &QueryOptions,
        request: &mut InFlight<'_>,
        response: &mut QueryResponse,
    ) -> Result<Execution, MdsaError> {
        let generate_started = Instant::now();
        let started = request.started;
        let mut first_token = None;
        let mut cancelled = false;
        let workflow = &mut request.workflow;
        let on_event = &mut request.on_event;
        let execution = self.inner.executor.execute_conversation(
            domain,
            generator,
            &options.history,
            query,
            &mut |event| {
                let forwarded = match event {
                    ExecutionEvent::AttemptStarted { attempt, .. } => {
                        advance(workflow, RequestState::Executing);
                        QueryEvent::Attempt { number: attempt }
                    }
                    ExecutionEvent::AttemptRejected { .. } => {
                        // The executor validated the answer and retries: the
                        // workflow's retry edge, validating back to executing.
                        advance(workflow, RequestState::Validating);
                        return ControlFlow::Continue(());
                    }
                    ExecutionEvent::Text(piece) => {
                        first_token.get_or_insert_with(|| started.elapsed());
                        QueryEvent::Text(piece.to_string())
                    }
                };
                let flow = on_event(forwarded);
                cancelled |= flow.is_break();
                flow
            },
        )?;
        let timings = &mut response.timings;
        timings.generate = generate_started.elapsed();
        timings.model += execution
            .history
            .iter()
            .map(|a| a.generation)
            .sum::<Duration>();
        timings.first_token = first_token;
        let record = &mut request.record;
        record.latency = record.latency.with_generate(timings.generate);
        if let Some(first) = first_token {
            record.latency = record.latency.with_first_token(first);
        }
        let usage = execution.output.usage;
        record.tokens_in = usage.prompt_tokens as u32;
        record.tokens_out = usage.completion_tokens as u32;
        if let Some(model) = &response.model {
            self.inner
                .metrics
                .model_metrics()
                .record_prompt(model, usage.cached_prompt_tokens);
        }
        response.usage = usage;
        if cancelled {
            response.outcome = Outcome::Cancelled;
        }
        Ok(execution)
    }

    /// Finish: the record's status and total, published for the observers.
    fn finish(
        &self,
        request: InFlight<'_>,
        result: Result<QueryResponse, MdsaError>,
    ) -> Result<QueryResponse, MdsaError> {
        let InFlight {
            mut workflow,
            mut record,
            started,
            ..
        } = request;
        let total = started.elapsed();
        record.latency = record.latency.with_total(total);
        match &result {
            Ok(response) => {
                record = record.with_status(match response.outcome {
                    Outcome::Answered => RequestStatus::Completed,
                    Outcome::Abstained => RequestStatus::Abstained,
                    Outcome::InvalidAnswer => RequestStatus::Failed,
                    Outcome::Cancelled => RequestStatus::Cancelled,
                });
                if response.outcome == Outcome::InvalidAnswer
                    && let Some(verdict) = &response.verdict
                {
                    record = record.with_error(format!("answer {verdict}"));
                }
            }
            Err(error) => {
                record = record.failed(error.to_string());
                if !workflow.is_finished() {
                    // The only way this fails is a terminal state, checked above.
                    let _ = workflow.fail(error.to_string());
                }
            }
        }
        // Metrics and the log observe this (see `telemetry`): they are complete
        // when this returns.
        let _ = self
            .inner
            .bus
            .publish(RequestEvent::Finished(Arc::new(record)));
        result.map(|mut response| {
            response.timings.total = total;
            response
        })
    }
}

/// Validate: the executor's verdict decides the outcome.
fn validate(
    execution: Execution,
    request: &mut InFlight<'_>,
    mut response: QueryResponse,
) -> QueryResponse {
    let workflow = &mut request.workflow;
    response.outcome = if response.outcome == Outcome::Cancelled || execution.cancelled() {
        let _ = workflow.fail("cancelled by the caller");
        Outcome::Cancelled
    } else {
        advance(workflow, RequestState::Validating);
        if execution.verdict.passed {
            advance(workflow, RequestState::Completed);
            Outcome::Answered
        } else {
            let _ = workflow.fail(format!("answer {}", execution.verdict));
            Outcome::InvalidAnswer
        }
    };
    response.text = execution.text;
    response.verdict = Some(execution.verdict);
    response.attempts = execution.attempts;
    response.finish_reason = Some(execution.output.finish_reason);
    response
}
