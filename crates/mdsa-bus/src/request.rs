//! Request/reply on top of publish/subscribe.
//!
//! A request is an ordinary message of kind [`Request<Q, A>`], so responders are just
//! subscribers (with the same queue policies and filters). Each request carries its own
//! one-slot reply channel, which makes correlation trivial: the reply can only reach the
//! caller that sent it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::bus::{Bus, Message, SubscribeOptions, SubscriberId};
use crate::error::BusError;

/// Process-unique id tying a reply to its request (and to logs and errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CorrelationId(u64);

impl CorrelationId {
    /// A fresh id from a global counter.
    #[must_use]
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The raw number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What travels back on a request's reply channel.
struct Reply<A> {
    correlation_id: CorrelationId,
    body: A,
}

/// Shared by every clone of one request, so "first reply wins" holds across responders.
struct ReplySlot<A> {
    answered: AtomicBool,
    tx: Sender<Reply<A>>,
}

/// A request message with body `Q` expecting an answer of type `A`.
///
/// Subscribe to `Request<Q, A>` to become a responder. Clones share one reply slot: the
/// first [`reply`](Self::reply) wins and later ones are ignored.
pub struct Request<Q, A> {
    correlation_id: CorrelationId,
    body: Q,
    reply: Arc<ReplySlot<A>>,
}

impl<Q, A> Request<Q, A> {
    /// The id shared by this request and its reply.
    #[must_use]
    pub fn correlation_id(&self) -> CorrelationId {
        self.correlation_id
    }

    /// The request body.
    #[must_use]
    pub fn body(&self) -> &Q {
        &self.body
    }

    /// Answers the request. Returns `true` if this was the first reply and the caller may
    /// still be waiting; `false` if another reply won or the caller has given up.
    pub fn reply(&self, answer: A) -> bool {
        if self.reply.answered.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.reply
            .tx
            .try_send(Reply {
                correlation_id: self.correlation_id,
                body: answer,
            })
            .is_ok()
    }

    /// Whether some clone of this request has been answered already.
    #[must_use]
    pub fn is_answered(&self) -> bool {
        self.reply.answered.load(Ordering::Acquire)
    }
}

impl<Q: Clone, A> Clone for Request<Q, A> {
    fn clone(&self) -> Self {
        Self {
            correlation_id: self.correlation_id,
            body: self.body.clone(),
            reply: Arc::clone(&self.reply),
        }
    }
}

impl<Q: fmt::Debug, A> fmt::Debug for Request<Q, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("correlation_id", &self.correlation_id)
            .field("body", &self.body)
            .field("answered", &self.is_answered())
            .finish()
    }
}

/// A request that has been published and whose reply has not been collected yet.
pub struct PendingReply<A> {
    correlation_id: CorrelationId,
    rx: Receiver<Reply<A>>,
}

impl<A> PendingReply<A> {
    /// The id of the request.
    #[must_use]
    pub fn correlation_id(&self) -> CorrelationId {
        self.correlation_id
    }

    /// Waits up to `timeout` for the answer.
    ///
    /// # Errors
    /// [`BusError::Timeout`] when the time is up, [`BusError::NoReply`] when every copy of
    /// the request was dropped unanswered.
    pub fn wait(self, timeout: Duration) -> Result<A, BusError> {
        match self.rx.recv_timeout(timeout) {
            Ok(reply) => Ok(self.check(reply)),
            Err(RecvTimeoutError::Timeout) => Err(BusError::Timeout {
                correlation_id: self.correlation_id,
                after: timeout,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(BusError::NoReply {
                correlation_id: self.correlation_id,
            }),
        }
    }

    /// The answer if it has arrived, without waiting.
    ///
    /// # Errors
    /// [`BusError::NoReply`] when every copy of the request was dropped unanswered.
    pub fn try_take(&self) -> Result<Option<A>, BusError> {
        match self.rx.try_recv() {
            Ok(reply) => Ok(Some(self.check(reply))),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(BusError::NoReply {
                correlation_id: self.correlation_id,
            }),
        }
    }

    fn check(&self, reply: Reply<A>) -> A {
        // The channel belongs to this request alone, so a mismatch is a bug in this crate.
        debug_assert_eq!(reply.correlation_id, self.correlation_id);
        reply.body
    }
}

impl<A> fmt::Debug for PendingReply<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingReply")
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}

/// A responder thread started by [`Bus::serve`]; dropping it stops and joins the thread.
///
/// Dropping does not interrupt a handler call in progress: it waits for that one call to
/// return, then the thread exits without taking further requests. Requests still queued
/// for it are dropped, so their callers get [`BusError::NoReply`] at once (or are served by
/// another responder) instead of waiting for their timeout.
pub struct ResponderHandle {
    subscriber: SubscriberId,
    /// Dropping the sender is the stop signal (the thread sees a disconnect).
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ResponderHandle {
    /// The id of the responder's subscription.
    #[must_use]
    pub fn subscriber_id(&self) -> SubscriberId {
        self.subscriber
    }

    /// Stops and joins the responder thread (the same as dropping the handle).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ResponderHandle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panic in the handler already killed the thread; re-raising it here, maybe
            // during another unwind, would abort, so it is deliberately discarded.
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for ResponderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponderHandle")
            .field("subscriber", &self.subscriber)
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl Bus {
    /// Publishes a request and returns a handle to collect its reply later, so a caller can
    /// have several requests in flight.
    ///
    /// # Errors
    /// [`BusError::NoResponder`] if no subscriber took the request;
    /// [`BusError::SubscriberFull`] if every responder that would take it was full.
    pub fn send_request<Q, A>(&self, body: Q) -> Result<PendingReply<A>, BusError>
    where
        Q: Message,
        A: Send + 'static,
    {
        let correlation_id = CorrelationId::next();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let request = Request {
            correlation_id,
            body,
            reply: Arc::new(ReplySlot {
                answered: AtomicBool::new(false),
                tx,
            }),
        };
        match self.publish(request) {
            Ok(0) => Err(BusError::NoResponder {
                kind: std::any::type_name::<Request<Q, A>>(),
            }),
            // Someone has it; a full bystander does not make the request fail.
            Ok(_) | Err(BusError::SubscriberFull { delivered: 1.., .. }) => {
                Ok(PendingReply { correlation_id, rx })
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a request and waits up to `timeout` for the first reply.
    ///
    /// # Errors
    /// [`BusError::NoResponder`], [`BusError::Timeout`], [`BusError::NoReply`], or
    /// [`BusError::SubscriberFull`] when every responder was full.
    pub fn request<Q, A>(&self, body: Q, timeout: Duration) -> Result<A, BusError>
    where
        Q: Message,
        A: Send + 'static,
    {
        self.send_request::<Q, A>(body)?.wait(timeout)
    }

    /// Spawns a thread that answers every `Request<Q, A>` with `handler(&body)`.
    ///
    /// The responder is subscribed before this returns, so a request sent right after is
    /// never missed. The thread ends when the handle is dropped or the bus is closed.
    ///
    /// # Panics
    /// If the OS cannot spawn a thread.
    #[must_use = "dropping the handle stops the responder"]
    pub fn serve<Q, A, F>(&self, handler: F) -> ResponderHandle
    where
        Q: Message,
        A: Send + 'static,
        F: FnMut(&Q) -> A + Send + 'static,
    {
        self.serve_with(SubscribeOptions::default(), handler)
    }

    /// [`serve`](Self::serve) with explicit queue options for the responder's subscription.
    ///
    /// # Panics
    /// If the OS cannot spawn a thread.
    #[must_use = "dropping the handle stops the responder"]
    pub fn serve_with<Q, A, F>(&self, opts: SubscribeOptions, mut handler: F) -> ResponderHandle
    where
        Q: Message,
        A: Send + 'static,
        F: FnMut(&Q) -> A + Send + 'static,
    {
        let sub = self.subscribe::<Request<Q, A>>(opts);
        let subscriber = sub.id();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name(format!("mdsa-bus-responder-{subscriber}"))
            .spawn(move || {
                loop {
                    crossbeam_channel::select! {
                        recv(sub.receiver()) -> msg => match msg {
                            Ok(request) => {
                                // A request already answered elsewhere needs no work.
                                if !request.is_answered() {
                                    request.reply(handler(request.body()));
                                }
                            }
                            Err(_) => break,
                        },
                        recv(stop_rx) -> _ => break,
                    }
                }
            })
            .expect("spawning the responder thread");
        ResponderHandle {
            subscriber,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_unique_and_display() {
        let a = CorrelationId::next();
        let b = CorrelationId::next();
        assert!(b.get() > a.get());
        assert_eq!(a.to_string(), format!("#{}", a.get()));
    }

    #[test]
    fn reply_after_caller_gave_up_is_false_not_a_panic() {
        let bus = Bus::new();
        let sub = bus.subscribe::<Request<u8, u8>>(SubscribeOptions::default());
        let err = bus.request::<u8, u8>(1, Duration::from_millis(1));
        assert!(matches!(err, Err(BusError::Timeout { .. })));
        let req = sub.try_recv().expect("request queued");
        assert!(!req.reply(2));
        assert!(req.is_answered());
        assert!(format!("{req:?}").contains("answered: true"));
    }

    #[test]
    fn try_take_and_no_reply() {
        let bus = Bus::new();
        let sub = bus.subscribe::<Request<u8, u8>>(SubscribeOptions::default());
        let pending = bus.send_request::<u8, u8>(5).expect("one responder");
        assert_eq!(pending.try_take(), Ok(None));
        let req = sub.try_recv().expect("queued");
        assert!(req.reply(10));
        assert_eq!(pending.try_take(), Ok(Some(10)));

        let pending = bus.send_request::<u8, u8>(6).expect("one responder");
        let id = pending.correlation_id();
        drop(sub); // the queued copy goes with it
        assert_eq!(
            pending.wait(Duration::from_secs(5)),
            Err(BusError::NoReply { correlation_id: id })
        );
    }
}
