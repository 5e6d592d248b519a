//! In-process typed message bus and per-request workflow state machine.
//!
//! This is the bottom layer the other mdsa crates talk through, so it depends on no other
//! mdsa crate.
//!
//! # The bus
//!
//! A [`Bus`] routes messages by their Rust type: [`Bus::subscribe::<T>`](Bus::subscribe)
//! receives every `T` published from then on, by any thread. The type *is* the topic, so
//! there are no topic strings to mistype and no payload casts at the receiver.
//!
//! Design choices, and why:
//!
//! - **One bounded crossbeam channel per subscriber.** Each subscriber gets its own clone of
//!   a message, so a slow subscriber never delays what a fast one sees (except under
//!   [`OverflowPolicy::Block`], by choice), and memory is bounded.
//! - **An explicit overflow policy per subscriber** ([`OverflowPolicy`]): `Block` for what
//!   must not be lost, `DropOldest` (counted in [`Subscription::dropped`]) for telemetry
//!   where fresh data matters more, and `Error` to make backpressure visible to publishers.
//! - **No lock held while sending.** Each topic keeps its subscriber list copy-on-write;
//!   publishing clones an `Arc` snapshot and sends outside the lock. A publisher blocked on
//!   a full queue therefore never stops anyone from subscribing or unsubscribing.
//! - **Dropping a [`Subscription`] unsubscribes**, and wakes a publisher blocked on it. A
//!   publisher that finds a subscriber gone removes it too. When every [`Bus`] clone and
//!   [`Publisher`] is dropped, subscribers see [`RecvError::Closed`].
//! - **Synchronous observers for what must be exact** ([`Bus::observe`]): a callback
//!   run on the publisher's thread before `publish` returns. Metrics, counters and the
//!   request log observe events this way, so the numbers a caller reads right after a
//!   request are complete, with no queue or thread in between; tools that only watch
//!   (a live view, a trace) subscribe with a queue.
//! - **Request/reply is publish/subscribe** of a [`Request<Q, A>`] carrying a private
//!   one-slot reply channel and a [`CorrelationId`]: responders are ordinary subscribers,
//!   and a reply cannot reach the wrong caller. See [`Bus::request`] and [`Bus::serve`].
//!
//! ```
//! use std::time::Duration;
//! use mdsa_bus::{Bus, OverflowPolicy, SubscribeOptions};
//!
//! #[derive(Clone, Debug, PartialEq)]
//! struct Loaded(&'static str);
//!
//! let bus = Bus::new();
//! let sub = bus.subscribe::<Loaded>(SubscribeOptions::new(64, OverflowPolicy::DropOldest));
//! assert_eq!(bus.publish(Loaded("qwen-0.5b"))?, 1);
//! assert_eq!(sub.recv(), Ok(Loaded("qwen-0.5b")));
//!
//! let _responder = bus.serve(|n: &u32| n * 2);
//! assert_eq!(bus.request::<u32, u32>(21, Duration::from_secs(1))?, 42);
//! # Ok::<(), mdsa_bus::BusError>(())
//! ```
//!
//! # The workflow
//!
//! A [`Workflow`] tracks one request through [`RequestState`]s, refuses transitions that
//! are not in the table ([`RequestState::can_transition_to`]), timestamps each one, and
//! publishes it as a [`WorkflowEvent`] when attached to a bus, so monitors can follow
//! requests without the pipeline knowing about them.
//!
//! ```
//! use mdsa_bus::{RequestState, Workflow};
//!
//! let mut wf = Workflow::new("req-1");
//! wf.advance(RequestState::Classifying)?;
//! wf.advance(RequestState::Executing)?; // model already resident
//! wf.advance(RequestState::Validating)?;
//! wf.advance(RequestState::Executing)?; // validation failed: generate again
//! wf.advance(RequestState::Validating)?;
//! wf.advance(RequestState::Completed)?;
//! assert_eq!(wf.attempts(&RequestState::Executing), 2);
//! assert!(wf.advance(RequestState::Loading).is_err()); // nothing leaves a terminal state
//! assert_eq!(wf.path().len(), 7);
//! # Ok::<(), mdsa_bus::WorkflowError>(())
//! ```

mod bus;
mod error;
mod request;
mod workflow;

pub use bus::{
    Bus, Iter, Message, Observer, OverflowPolicy, Publisher, SubscribeOptions, SubscriberId,
    Subscription, TryIter,
};
pub use error::{BusError, RecvError, WorkflowError};
pub use request::{CorrelationId, PendingReply, Request, ResponderHandle};
pub use workflow::{RequestState, StateSpan, Transition, Workflow, WorkflowEvent};

// The README's snippets are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
