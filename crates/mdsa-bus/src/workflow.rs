//! The per-request workflow state machine.
//!
//! ```text
//! Init ─▶ Classifying ─┬─▶ Loading ─▶ Executing ─▶ Validating ─▶ Completed
//!                      │      ▲           │ ▲          │
//!                      │      └───────────┘ └──────────┘  (retry edges)
//!                      ├─▶ Executing (model already resident)
//!                      └─▶ Abstained (out of domain)
//! any non-terminal state ─▶ Failed { reason }
//! ```
//!
//! `Executing → Loading` covers a model evicted mid-request or an engine asking for a
//! reload; `Validating → Executing` is "validation failed, generate again". Nothing leaves
//! `Completed`, `Failed` or `Abstained`, and no state transitions to itself (a retry is an
//! explicit back edge, so it shows up in [`Workflow::attempts`]).

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::bus::{Bus, Publisher};
use crate::error::WorkflowError;

/// Where a request is in its life.
///
/// Serialized with serde's default external tagging in snake_case, so most states are a
/// plain string (`"loading"`) and a failure is `{"failed":{"reason":"…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Created, nothing done yet.
    Init,
    /// The router is choosing a domain/model.
    Classifying,
    /// The chosen model is being loaded.
    Loading,
    /// The model is generating.
    Executing,
    /// The output is being checked.
    Validating,
    /// Done, with an accepted answer. Terminal.
    Completed,
    /// Gave up. Terminal.
    Failed {
        /// Why, for logs and the client.
        reason: String,
    },
    /// The request is outside every domain, so no model should answer it. Terminal.
    Abstained,
}

impl RequestState {
    /// One value of every kind, in workflow order (`Failed` with an empty reason); handy for
    /// printing the transition table.
    #[must_use]
    pub fn kinds() -> [Self; 8] {
        [
            Self::Init,
            Self::Classifying,
            Self::Loading,
            Self::Executing,
            Self::Validating,
            Self::Completed,
            Self::Failed {
                reason: String::new(),
            },
            Self::Abstained,
        ]
    }

    /// Whether no transition can leave this state.
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed { .. } | Self::Abstained
        )
    }

    /// Stable snake_case name of the kind (as serialized), without the failure reason.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Classifying => "classifying",
            Self::Loading => "loading",
            Self::Executing => "executing",
            Self::Validating => "validating",
            Self::Completed => "completed",
            Self::Failed { .. } => "failed",
            Self::Abstained => "abstained",
        }
    }

    /// Whether two states are the same kind, ignoring a failure reason.
    #[must_use]
    pub fn same_kind(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// The transition table: whether `self → to` is legal (any failure reason is allowed).
    #[must_use]
    pub fn can_transition_to(&self, to: &Self) -> bool {
        use RequestState::{
            Abstained, Classifying, Completed, Executing, Failed, Init, Loading, Validating,
        };
        match (self, to) {
            (Init, Classifying)
            | (Classifying, Loading | Executing | Abstained)
            | (Loading, Executing)
            | (Executing, Validating | Loading)
            | (Validating, Completed | Executing) => true,
            (from, Failed { .. }) => !from.is_terminal(),
            _ => false,
        }
    }

    /// The kinds reachable from this state in one step (see [`kinds`](Self::kinds)).
    #[must_use]
    pub fn successors(&self) -> Vec<Self> {
        Self::kinds()
            .into_iter()
            .filter(|to| self.can_transition_to(to))
            .collect()
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed { reason } if !reason.is_empty() => write!(f, "failed ({reason})"),
            other => f.write_str(other.name()),
        }
    }
}

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The request this workflow belongs to.
    pub request_id: String,
    /// The state left.
    pub from: RequestState,
    /// The state entered.
    pub to: RequestState,
    /// Wall-clock time of the change (serialized as Unix milliseconds).
    #[serde(rename = "at_unix_ms", with = "unix_millis")]
    pub at: SystemTime,
    /// Time spent in `from` (serialized as microseconds).
    #[serde(rename = "elapsed_in_from_us", with = "micros")]
    pub elapsed_in_from: Duration,
}

/// A transition as published on the bus, numbered so consumers can spot gaps (for example
/// under [`OverflowPolicy::DropOldest`](crate::OverflowPolicy::DropOldest)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowEvent {
    /// 0 for the request's first transition, then 1, 2, …
    pub sequence: usize,
    /// The transition itself.
    #[serde(flatten)]
    pub transition: Transition,
}

/// One stay in a state, as returned by [`Workflow::path`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSpan {
    /// The state.
    pub state: RequestState,
    /// Wall-clock time it was entered (serialized as Unix milliseconds).
    #[serde(rename = "entered_at_unix_ms", with = "unix_millis")]
    pub entered_at: SystemTime,
    /// Time spent there; `None` for the current state of an unfinished workflow, zero for
    /// the terminal state. Serialized as microseconds.
    #[serde(rename = "duration_us", with = "opt_micros")]
    pub duration: Option<Duration>,
}

struct Stay {
    state: RequestState,
    entered: Instant,
    entered_at: SystemTime,
}

/// The state machine of one request, with its timestamped history.
///
/// Wall-clock stamps are derived from one `SystemTime` reading at creation plus monotonic
/// `Instant` offsets, so they never go backwards (even if the system clock is adjusted)
/// and always agree with the durations.
pub struct Workflow {
    request_id: String,
    created: Instant,
    created_at: SystemTime,
    /// Every state entered, oldest first; the last one is the current state.
    stays: Vec<Stay>,
    transitions: Vec<Transition>,
    finished: Option<Instant>,
    publisher: Option<Publisher<WorkflowEvent>>,
    unpublished: usize,
}

impl Workflow {
    /// A workflow in [`RequestState::Init`] that publishes nothing.
    #[must_use]
    pub fn new(request_id: impl Into<String>) -> Self {
        let created = Instant::now();
        let created_at = SystemTime::now();
        Self {
            request_id: request_id.into(),
            created,
            created_at,
            stays: vec![Stay {
                state: RequestState::Init,
                entered: created,
                entered_at: created_at,
            }],
            transitions: Vec::new(),
            finished: None,
            publisher: None,
            unpublished: 0,
        }
    }

    /// A workflow that publishes a [`WorkflowEvent`] on `bus` for every transition.
    #[must_use]
    pub fn with_bus(request_id: impl Into<String>, bus: &Bus) -> Self {
        let mut wf = Self::new(request_id);
        wf.publisher = Some(bus.publisher());
        wf
    }

    /// The request id.
    #[must_use]
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    fn current(&self) -> &Stay {
        self.stays
            .last()
            .expect("a workflow always has its initial state")
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> &RequestState {
        &self.current().state
    }

    /// Whether the workflow reached a terminal state.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }

    /// Moves to `to` if the table allows it, records the transition and publishes it.
    ///
    /// A failed publish (an [`OverflowPolicy::Error`](crate::OverflowPolicy::Error)
    /// subscriber was full) does not undo the transition, because observers must not veto
    /// a request's progress; it is counted in [`unpublished_events`](Self::unpublished_events).
    ///
    /// # Errors
    /// [`WorkflowError::IllegalTransition`] (the state is unchanged).
    pub fn advance(&mut self, to: RequestState) -> Result<(), WorkflowError> {
        let from = self.state().clone();
        if !from.can_transition_to(&to) {
            return Err(WorkflowError::IllegalTransition {
                request_id: self.request_id.clone(),
                from,
                to,
            });
        }
        let now = Instant::now();
        let at = self.created_at + now.duration_since(self.created);
        let transition = Transition {
            request_id: self.request_id.clone(),
            from,
            to: to.clone(),
            at,
            elapsed_in_from: now.duration_since(self.current().entered),
        };
        if to.is_terminal() {
            self.finished = Some(now);
        }
        self.stays.push(Stay {
            state: to,
            entered: now,
            entered_at: at,
        });
        if let Some(publisher) = self.publisher.as_ref().filter(|p| p.has_subscribers()) {
            let event = WorkflowEvent {
                sequence: self.transitions.len(),
                transition: transition.clone(),
            };
            if publisher.publish(event).is_err() {
                self.unpublished += 1;
            }
        }
        self.transitions.push(transition);
        Ok(())
    }

    /// Shorthand for `advance(RequestState::Failed { reason })`.
    ///
    /// # Errors
    /// [`WorkflowError::IllegalTransition`] if the workflow already finished.
    pub fn fail(&mut self, reason: impl Into<String>) -> Result<(), WorkflowError> {
        self.advance(RequestState::Failed {
            reason: reason.into(),
        })
    }

    /// Every transition so far, oldest first.
    #[must_use]
    pub fn transitions(&self) -> &[Transition] {
        &self.transitions
    }

    /// Every state visited with when it was entered and how long it lasted.
    #[must_use]
    pub fn path(&self) -> Vec<StateSpan> {
        let mut spans: Vec<StateSpan> = self
            .stays
            .windows(2)
            .map(|w| StateSpan {
                state: w[0].state.clone(),
                entered_at: w[0].entered_at,
                duration: Some(w[1].entered.duration_since(w[0].entered)),
            })
            .collect();
        let last = self.current();
        spans.push(StateSpan {
            state: last.state.clone(),
            entered_at: last.entered_at,
            duration: self.finished.map(|_| Duration::ZERO),
        });
        spans
    }

    /// Time from creation to the terminal state, or to now if still running.
    #[must_use]
    pub fn total_duration(&self) -> Duration {
        self.finished
            .unwrap_or_else(Instant::now)
            .duration_since(self.created)
    }

    /// How many times a state of this kind was entered (the initial `Init` counts), so
    /// retries show up as counts above 1. A failure reason is ignored.
    #[must_use]
    pub fn attempts(&self, state: &RequestState) -> usize {
        self.stays
            .iter()
            .filter(|s| s.state.same_kind(state))
            .count()
    }

    /// How many transitions could not be published (see [`advance`](Self::advance)).
    #[must_use]
    pub fn unpublished_events(&self) -> usize {
        self.unpublished
    }
}

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("request_id", &self.request_id)
            .field("state", self.state())
            .field("transitions", &self.transitions.len())
            .field("publishing", &self.publisher.is_some())
            .finish()
    }
}

/// `SystemTime` as Unix milliseconds; pre-1970 times (never produced here) clamp to 0.
mod unix_millis {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn to_millis(t: SystemTime) -> u64 {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(to_millis(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let ms = u64::deserialize(d)?;
        Ok(UNIX_EPOCH + Duration::from_millis(ms))
    }
}

/// `Duration` as whole microseconds: one plain number is easier to chart than `{secs, nanos}`.
mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn to_micros(d: Duration) -> u64 {
        u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
    }

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(to_micros(*d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

/// `Option<Duration>` as optional microseconds.
mod opt_micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::micros::to_micros(*d)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_helpers_round_trip_at_their_precision() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(unix_millis::to_millis(t), 1_700_000_000_123);
        assert_eq!(
            unix_millis::to_millis(SystemTime::UNIX_EPOCH - Duration::from_secs(1)),
            0
        );
        assert_eq!(micros::to_micros(Duration::from_nanos(2_500)), 2);
    }

    #[test]
    fn unit_states_deserialize_from_their_name() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, StrDeserializer};

        for state in RequestState::kinds() {
            let de: StrDeserializer<'_, Error> = state.name().into_deserializer();
            let parsed = RequestState::deserialize(de);
            if state.same_kind(&RequestState::Failed {
                reason: String::new(),
            }) {
                assert!(parsed.is_err(), "failed needs its reason");
            } else {
                assert_eq!(parsed, Ok(state));
            }
        }
    }

    #[test]
    fn names_and_display() {
        let names: Vec<_> = RequestState::kinds()
            .iter()
            .map(RequestState::name)
            .collect();
        assert_eq!(
            names,
            [
                "init",
                "classifying",
                "loading",
                "executing",
                "validating",
                "completed",
                "failed",
                "abstained"
            ]
        );
        let failed = RequestState::Failed {
            reason: "oom".into(),
        };
        assert_eq!(failed.to_string(), "failed (oom)");
        assert_eq!(RequestState::Loading.to_string(), "loading");
        assert!(failed.same_kind(&RequestState::kinds()[6]));
    }

    #[test]
    fn successors_match_the_issue() {
        use RequestState::{Abstained, Classifying, Executing, Loading, Validating};
        let failed = || RequestState::Failed {
            reason: String::new(),
        };
        assert_eq!(
            RequestState::Init.successors(),
            [Classifying, failed()].to_vec()
        );
        assert_eq!(
            Classifying.successors(),
            [Loading, Executing, failed(), Abstained].to_vec()
        );
        assert_eq!(
            Executing.successors(),
            [Loading, Validating, failed()].to_vec()
        );
        assert!(RequestState::Completed.successors().is_empty());
    }
}
