//! Error types for the bus, its subscriptions and the request workflow.

use std::time::Duration;

use thiserror::Error;

use crate::bus::SubscriberId;
use crate::request::CorrelationId;
use crate::workflow::RequestState;

/// Errors returned by publishing and by request/reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BusError {
    /// At least one subscriber with [`OverflowPolicy::Error`](crate::OverflowPolicy::Error)
    /// had a full queue and did not get the message.
    ///
    /// The message was still delivered to every other subscriber; publishing is not
    /// all-or-nothing, because one slow consumer must not starve the others.
    #[error(
        "subscriber {subscriber} of `{kind}` is full ({skipped} full in total); \
         delivered to {delivered} other subscriber(s)"
    )]
    SubscriberFull {
        /// Rust type name of the message kind.
        kind: &'static str,
        /// The first full subscriber, in subscription order.
        subscriber: SubscriberId,
        /// How many subscribers did get the message.
        delivered: usize,
        /// How many subscribers were skipped because their queue was full.
        skipped: usize,
    },
    /// Nobody is subscribed to (or accepted) the request kind.
    #[error("no responder for `{kind}`")]
    NoResponder {
        /// Rust type name of the request message.
        kind: &'static str,
    },
    /// No reply arrived within the timeout.
    #[error("request {correlation_id} timed out after {after:?}")]
    Timeout {
        /// The request that timed out.
        correlation_id: CorrelationId,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// Every copy of the request was dropped without a reply (its responders went away).
    #[error("request {correlation_id} was dropped by every responder without a reply")]
    NoReply {
        /// The request that got no reply.
        correlation_id: CorrelationId,
    },
}

/// Errors returned by [`Subscription`](crate::Subscription) receive methods.
///
/// One enum for all three methods keeps matching simple: `recv` can only return
/// [`Closed`](RecvError::Closed), `try_recv` adds [`Empty`](RecvError::Empty) and
/// `recv_timeout` adds [`Timeout`](RecvError::Timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RecvError {
    /// The queue is empty right now (`try_recv` only).
    #[error("no message queued")]
    Empty,
    /// Nothing arrived within the timeout (`recv_timeout` only).
    #[error("timed out waiting for a message")]
    Timeout,
    /// Every bus handle and publisher is gone and the queue is drained.
    #[error("bus closed")]
    Closed,
}

/// Errors returned by [`Workflow`](crate::Workflow).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// The transition is not in the table (see [`RequestState::can_transition_to`]).
    #[error("request {request_id}: illegal transition {from} -> {to}")]
    IllegalTransition {
        /// The request whose workflow refused the transition.
        request_id: String,
        /// The state the workflow is in (unchanged).
        from: RequestState,
        /// The refused target state.
        to: RequestState,
    },
}
