//! The typed bus: topics keyed by message type, subscriptions and publishers.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use crate::error::{BusError, RecvError};

/// Bound on every message kind: messages are cloned once per subscriber and cross threads.
pub trait Message: Clone + Send + 'static {}

impl<T: Clone + Send + 'static> Message for T {}

/// What a publisher does when a subscriber's queue is full.
///
/// The policy belongs to the subscriber because only it knows whether it can afford to
/// lose messages (metrics sampling) or must see all of them (request handling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OverflowPolicy {
    /// Wait until the subscriber makes room. Lossless; a stuck subscriber stalls publishers.
    #[default]
    Block,
    /// Evict the oldest queued message to make room, and count it in
    /// [`Subscription::dropped`]. Never blocks the publisher.
    DropOldest,
    /// Skip this subscriber and make `publish` return [`BusError::SubscriberFull`]
    /// (after delivering to everyone else). Never blocks the publisher.
    Error,
}

/// Queue size and overflow policy of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscribeOptions {
    /// Queue capacity in messages. `0` is treated as `1`: a rendezvous queue could never
    /// hold a message to evict, which would break [`OverflowPolicy::DropOldest`].
    pub capacity: usize,
    /// What to do when the queue is full.
    pub policy: OverflowPolicy,
}

impl SubscribeOptions {
    /// Default queue capacity: large enough to absorb bursts, small enough to bound memory.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// Options with the given capacity and policy.
    #[must_use]
    pub const fn new(capacity: usize, policy: OverflowPolicy) -> Self {
        Self { capacity, policy }
    }

    /// These options with another capacity.
    #[must_use]
    pub const fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// These options with another policy.
    #[must_use]
    pub const fn with_policy(mut self, policy: OverflowPolicy) -> Self {
        self.policy = policy;
        self
    }
}

impl Default for SubscribeOptions {
    /// Capacity [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY), policy [`OverflowPolicy::Block`].
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY, OverflowPolicy::Block)
    }
}

/// Process-unique identifier of a subscription, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriberId(u64);

impl SubscriberId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The raw number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub-{}", self.0)
    }
}

type Filter<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

/// The publisher-side half of one subscription.
struct Slot<T> {
    id: SubscriberId,
    tx: Sender<T>,
    policy: OverflowPolicy,
    /// A receiver clone, only for `DropOldest`, so the publisher can pop the oldest message.
    /// Block and Error slots must not hold one: it would keep the channel connected after
    /// the subscriber is gone, and a publisher blocked on a full queue would never wake.
    evict: Option<Receiver<T>>,
    dropped: Arc<AtomicU64>,
    filter: Option<Filter<T>>,
}

enum Delivery<T> {
    Delivered,
    Full,
    Gone(T),
}

impl<T> Slot<T> {
    fn accepts(&self, msg: &T) -> bool {
        self.filter.as_ref().is_none_or(|f| f(msg))
    }

    fn deliver(&self, msg: T) -> Delivery<T> {
        match self.policy {
            OverflowPolicy::Block => match self.tx.send(msg) {
                Ok(()) => Delivery::Delivered,
                Err(e) => Delivery::Gone(e.into_inner()),
            },
            OverflowPolicy::Error => match self.tx.try_send(msg) {
                Ok(()) => Delivery::Delivered,
                Err(TrySendError::Full(_)) => Delivery::Full,
                Err(TrySendError::Disconnected(m)) => Delivery::Gone(m),
            },
            OverflowPolicy::DropOldest => self.deliver_drop_oldest(msg),
        }
    }

    fn deliver_drop_oldest(&self, mut msg: T) -> Delivery<T> {
        // Each turn either sends, or evicts one message, or finds that someone else (the
        // reader, or another publisher evicting) made room meanwhile; so the loop always
        // makes global progress. Every eviction is counted exactly once, by whoever popped.
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return Delivery::Delivered,
                Err(TrySendError::Disconnected(m)) => return Delivery::Gone(m),
                Err(TrySendError::Full(m)) => {
                    msg = m;
                    if let Some(evict) = &self.evict {
                        match evict.try_recv() {
                            Ok(old) => {
                                drop(old);
                                self.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(TryRecvError::Empty) => {}
                            Err(TryRecvError::Disconnected) => return Delivery::Gone(msg),
                        }
                    } else {
                        // Unreachable by construction; degrade to Error semantics rather
                        // than spin.
                        return Delivery::Full;
                    }
                }
            }
        }
    }
}

type Slots<T> = Arc<Vec<Arc<Slot<T>>>>;

type Callback<T> = Arc<dyn Fn(&T) + Send + Sync>;
type Observers<T> = Arc<Vec<(SubscriberId, Callback<T>)>>;

/// All subscribers of one message kind.
pub(crate) struct Topic<T> {
    /// Copy-on-write list: publishers clone the `Arc` and send with no lock held, because a
    /// `Block` send may wait for a long time.
    slots: RwLock<Slots<T>>,
    /// Synchronous observers, called on the publisher's thread before it returns.
    observers: RwLock<Observers<T>>,
    /// How many queued subscribers and observers there are, kept beside the
    /// lists (each count written under its list's lock): publishing with
    /// none, the common case for most kinds, reads one word instead of two
    /// locks, and a publisher can skip building the message at all.
    listeners: [AtomicUsize; 2],
}

impl<T> Topic<T> {
    fn new() -> Self {
        Self {
            slots: RwLock::new(Arc::new(Vec::new())),
            observers: RwLock::new(Arc::new(Vec::new())),
            listeners: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    /// Whether anyone subscribes or observes now.
    fn has_listeners(&self) -> bool {
        self.len() > 0
    }

    fn observer_snapshot(&self) -> Observers<T> {
        Arc::clone(
            &self
                .observers
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    fn add_observer(&self, id: SubscriberId, callback: Callback<T>) {
        let mut guard = self
            .observers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = Vec::with_capacity(guard.len() + 1);
        next.extend(guard.iter().cloned());
        next.push((id, callback));
        self.listeners[1].store(next.len(), Ordering::Release);
        *guard = Arc::new(next);
    }

    fn remove_observer(&self, id: SubscriberId) {
        let mut guard = self
            .observers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let next: Vec<_> = guard.iter().filter(|(i, _)| *i != id).cloned().collect();
        self.listeners[1].store(next.len(), Ordering::Release);
        *guard = Arc::new(next);
    }

    fn snapshot(&self) -> Slots<T> {
        Arc::clone(&self.slots.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn len(&self) -> usize {
        self.listeners
            .iter()
            .map(|count| count.load(Ordering::Acquire))
            .sum()
    }

    fn add(&self, slot: Arc<Slot<T>>) {
        let mut guard = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = Vec::with_capacity(guard.len() + 1);
        next.extend(guard.iter().cloned());
        next.push(slot);
        self.listeners[0].store(next.len(), Ordering::Release);
        *guard = Arc::new(next);
    }

    fn remove(&self, ids: &[SubscriberId]) {
        let mut guard = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        if !guard.iter().any(|s| ids.contains(&s.id)) {
            return;
        }
        let next: Vec<_> = guard
            .iter()
            .filter(|s| !ids.contains(&s.id))
            .cloned()
            .collect();
        self.listeners[0].store(next.len(), Ordering::Release);
        *guard = Arc::new(next);
    }
}

impl<T: Message> Topic<T> {
    fn subscribe(
        self: &Arc<Self>,
        opts: SubscribeOptions,
        filter: Option<Filter<T>>,
    ) -> Subscription<T> {
        let (tx, rx) = crossbeam_channel::bounded(opts.capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let id = SubscriberId::next();
        let evict = (opts.policy == OverflowPolicy::DropOldest).then(|| rx.clone());
        self.add(Arc::new(Slot {
            id,
            tx,
            policy: opts.policy,
            evict,
            dropped: Arc::clone(&dropped),
            filter,
        }));
        Subscription {
            id,
            rx: Some(rx),
            topic: Arc::downgrade(self),
            dropped,
            options: opts,
        }
    }

    pub(crate) fn publish(&self, msg: T) -> Result<usize, BusError> {
        if !self.has_listeners() {
            return Ok(0);
        }
        // Observers first, by reference: what they count is exact when `publish` returns.
        let observers = self.observer_snapshot();
        for (_, observe) in observers.iter() {
            observe(&msg);
        }
        let slots = self.snapshot();
        let mut delivered = observers.len();
        let mut first_full = None;
        let mut skipped = 0;
        let mut gone = Vec::new();
        let mut msg = Some(msg);
        let last = slots.len().saturating_sub(1);
        for (i, slot) in slots.iter().enumerate() {
            let Some(current) = msg.as_ref() else { break };
            if !slot.accepts(current) {
                continue;
            }
            // The last subscriber gets the original: one clone fewer per publish.
            let m = if i == last {
                msg.take().expect("message present until the last slot")
            } else {
                current.clone()
            };
            match slot.deliver(m) {
                Delivery::Delivered => delivered += 1,
                Delivery::Full => {
                    skipped += 1;
                    first_full.get_or_insert(slot.id);
                }
                Delivery::Gone(_) => gone.push(slot.id),
            }
        }
        if !gone.is_empty() {
            self.remove(&gone);
        }
        match first_full {
            None => Ok(delivered),
            Some(subscriber) => Err(BusError::SubscriberFull {
                kind: type_name::<T>(),
                subscriber,
                delivered,
                skipped,
            }),
        }
    }
}

/// Receiving end of one subscription to message kind `T`.
///
/// Dropping it unsubscribes: the slot is removed from the topic, and a publisher blocked
/// on this subscriber's full queue wakes up and moves on.
pub struct Subscription<T> {
    id: SubscriberId,
    /// `Option` only so `Drop` can release the receiver before unsubscribing.
    rx: Option<Receiver<T>>,
    /// Weak, so that when every bus handle and publisher is gone the senders drop and
    /// receivers see the bus as closed instead of waiting forever.
    topic: Weak<Topic<T>>,
    dropped: Arc<AtomicU64>,
    options: SubscribeOptions,
}

impl<T> Subscription<T> {
    pub(crate) fn receiver(&self) -> &Receiver<T> {
        self.rx
            .as_ref()
            .expect("receiver is present until the subscription is dropped")
    }

    /// Blocks until a message arrives; [`RecvError::Closed`] once the bus is gone and the
    /// queue is drained.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.receiver().recv().map_err(|_| RecvError::Closed)
    }

    /// Like [`recv`](Self::recv) but gives up after `timeout` with [`RecvError::Timeout`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvError> {
        self.receiver().recv_timeout(timeout).map_err(|e| {
            if e.is_timeout() {
                RecvError::Timeout
            } else {
                RecvError::Closed
            }
        })
    }

    /// Takes a queued message without waiting; [`RecvError::Empty`] if there is none.
    pub fn try_recv(&self) -> Result<T, RecvError> {
        self.receiver().try_recv().map_err(|e| match e {
            TryRecvError::Empty => RecvError::Empty,
            TryRecvError::Disconnected => RecvError::Closed,
        })
    }

    /// Blocking iterator over messages; ends when the bus is closed.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { sub: self }
    }

    /// Non-blocking iterator over the messages queued right now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { sub: self }
    }

    /// How many messages were evicted from this subscriber's queue under
    /// [`OverflowPolicy::DropOldest`] (always 0 for the other policies).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// This subscription's id.
    #[must_use]
    pub fn id(&self) -> SubscriberId {
        self.id
    }

    /// The options it was created with (capacity as requested, before clamping to 1).
    #[must_use]
    pub fn options(&self) -> SubscribeOptions {
        self.options
    }

    /// Number of messages waiting in the queue.
    #[must_use]
    pub fn len(&self) -> usize {
        self.receiver().len()
    }

    /// Whether the queue is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.receiver().is_empty()
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        // Receiver first: for Block slots it is the channel's only receiver, so a publisher
        // blocked in `send` on our full queue wakes with a disconnect instead of waiting
        // forever. Then unsubscribe (publishers hold no lock while sending: no deadlock).
        drop(self.rx.take());
        if let Some(topic) = self.topic.upgrade() {
            topic.remove(&[self.id]);
        }
    }
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("kind", &type_name::<T>())
            .field("id", &self.id)
            .field("options", &self.options)
            .field("queued", &self.rx.as_ref().map_or(0, Receiver::len))
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

/// A synchronous observer of message kind `T`, made by [`Bus::observe`]; dropping it
/// stops the calls.
#[must_use = "dropping an Observer unregisters it"]
pub struct Observer<T> {
    id: SubscriberId,
    topic: Weak<Topic<T>>,
}

impl<T> Observer<T> {
    /// The observer's id (shared with subscriptions' id space).
    pub fn id(&self) -> SubscriberId {
        self.id
    }
}

impl<T> Drop for Observer<T> {
    fn drop(&mut self) {
        if let Some(topic) = self.topic.upgrade() {
            topic.remove_observer(self.id);
        }
    }
}

impl<T> fmt::Debug for Observer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer")
            .field("kind", &type_name::<T>())
            .field("id", &self.id)
            .finish()
    }
}

/// Blocking iterator returned by [`Subscription::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    sub: &'a Subscription<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.sub.recv().ok()
    }
}

/// Non-blocking iterator returned by [`Subscription::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    sub: &'a Subscription<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.sub.try_recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Subscription<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// A cheap, cloneable publishing handle for one message kind.
///
/// It holds the topic directly, so publishing skips the bus's type map; prefer it on hot
/// paths over [`Bus::publish`].
pub struct Publisher<T> {
    topic: Arc<Topic<T>>,
}

impl<T: Message> Publisher<T> {
    /// Delivers `msg` to every subscriber of `T` that accepts it and returns how many got it
    /// (`Ok(0)` when there are none: publishing into the void is not an error).
    ///
    /// # Errors
    /// [`BusError::SubscriberFull`] if an [`OverflowPolicy::Error`] subscriber was full; the
    /// others still received the message.
    pub fn publish(&self, msg: T) -> Result<usize, BusError> {
        self.topic.publish(msg)
    }

    /// Whether anyone would receive a message now: a publisher whose
    /// message costs something to build (clones, formatting) checks first.
    #[must_use]
    pub fn has_subscribers(&self) -> bool {
        self.topic.has_listeners()
    }

    /// Current number of subscribers of `T`.
    #[must_use]
    pub fn subscriber_count(&self) -> usize {
        self.topic.len()
    }
}

impl<T> Clone for Publisher<T> {
    fn clone(&self) -> Self {
        Self {
            topic: Arc::clone(&self.topic),
        }
    }
}

impl<T> fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("kind", &type_name::<T>())
            .finish_non_exhaustive()
    }
}

type Registry = HashMap<TypeId, Arc<dyn Any + Send + Sync>>;

/// The in-process bus. Cloning is cheap and every clone is the same bus.
#[derive(Clone, Default)]
pub struct Bus {
    topics: Arc<RwLock<Registry>>,
}

impl Bus {
    /// A new, empty bus.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.topics.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.topics.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn downcast<T: Message>(topic: Arc<dyn Any + Send + Sync>) -> Arc<Topic<T>> {
        topic
            .downcast::<Topic<T>>()
            .unwrap_or_else(|_| panic!("topic for TypeId of `{}` has that type", type_name::<T>()))
    }

    fn existing_topic<T: Message>(&self) -> Option<Arc<Topic<T>>> {
        self.read()
            .get(&TypeId::of::<T>())
            .cloned()
            .map(Self::downcast::<T>)
    }

    pub(crate) fn topic<T: Message>(&self) -> Arc<Topic<T>> {
        if let Some(topic) = self.existing_topic::<T>() {
            return topic;
        }
        let any = Arc::clone(
            self.write()
                .entry(TypeId::of::<T>())
                .or_insert_with(|| Arc::new(Topic::<T>::new())),
        );
        Self::downcast::<T>(any)
    }

    /// Subscribes to every message of kind `T` published from now on.
    #[must_use]
    pub fn subscribe<T: Message>(&self, opts: SubscribeOptions) -> Subscription<T> {
        self.topic::<T>().subscribe(opts, None)
    }

    /// Subscribes to the messages of kind `T` for which `filter` returns `true`, e.g. the
    /// events of a single request. The filter runs on the publisher's thread, so keep it
    /// cheap; filtered-out messages are neither queued nor counted as delivered.
    #[must_use]
    pub fn subscribe_filtered<T, F>(&self, opts: SubscribeOptions, filter: F) -> Subscription<T>
    where
        T: Message,
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        self.topic::<T>().subscribe(opts, Some(Box::new(filter)))
    }

    /// Calls `callback` with every message of kind `T` published from now on, on the
    /// publisher's thread, before `publish` returns and before any queued subscriber
    /// sees it. For consumers whose numbers must be exact when the publisher moves on
    /// (counters, metrics, a request log): no queue, no thread, no message lost or late.
    /// Keep the callback short and never publish the same kind from inside it.
    /// Dropping the returned [`Observer`] unregisters it.
    pub fn observe<T, F>(&self, callback: F) -> Observer<T>
    where
        T: Message,
        F: Fn(&T) + Send + Sync + 'static,
    {
        let topic = self.topic::<T>();
        let id = SubscriberId::next();
        topic.add_observer(id, Arc::new(callback));
        Observer {
            id,
            topic: Arc::downgrade(&topic),
        }
    }

    /// A publishing handle for kind `T` that skips the type lookup on every message.
    #[must_use]
    pub fn publisher<T: Message>(&self) -> Publisher<T> {
        Publisher {
            topic: self.topic::<T>(),
        }
    }

    /// Publishes `msg` to the subscribers of its type; see [`Publisher::publish`].
    ///
    /// # Errors
    /// [`BusError::SubscriberFull`] if an [`OverflowPolicy::Error`] subscriber was full.
    pub fn publish<T: Message>(&self, msg: T) -> Result<usize, BusError> {
        // No topic means no subscriber ever: do not create one just to publish into it.
        match self.existing_topic::<T>() {
            Some(topic) => topic.publish(msg),
            None => Ok(0),
        }
    }

    /// Current number of subscribers (queued and observers) of kind `T`.
    #[must_use]
    pub fn subscriber_count<T: Message>(&self) -> usize {
        self.existing_topic::<T>().map_or(0, |t| t.len())
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("topics", &self.read().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_capacity_is_clamped_so_drop_oldest_terminates() {
        let bus = Bus::new();
        let sub = bus.subscribe::<u8>(SubscribeOptions::new(0, OverflowPolicy::DropOldest));
        for i in 0u8..5 {
            assert_eq!(bus.publish(i), Ok(1));
        }
        assert_eq!(sub.dropped(), 4);
        assert_eq!(sub.try_recv(), Ok(4));
    }

    #[test]
    fn observers_see_every_message_before_publish_returns() {
        let bus = Bus::new();
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        let observer = bus.observe(move |n: &u64| {
            counter.fetch_add(*n, Ordering::Relaxed);
        });
        let sub = bus.subscribe::<u64>(SubscribeOptions::default());
        assert_eq!(bus.publish(2u64), Ok(2));
        assert_eq!(seen.load(Ordering::Relaxed), 2);
        assert_eq!(sub.try_recv(), Ok(2));
        assert_eq!(bus.subscriber_count::<u64>(), 2);
        drop(observer);
        assert_eq!(bus.publish(3u64), Ok(1));
        assert_eq!(seen.load(Ordering::Relaxed), 2);
        assert_eq!(bus.subscriber_count::<u64>(), 1);
    }

    #[test]
    fn a_publisher_knows_whether_anyone_listens() {
        let bus = Bus::new();
        let publisher = bus.publisher::<u16>();
        assert!(!publisher.has_subscribers());
        let observer = bus.observe(|_: &u16| {});
        assert!(publisher.has_subscribers());
        let sub = bus.subscribe::<u16>(SubscribeOptions::default());
        drop(observer);
        assert!(publisher.has_subscribers());
        assert_eq!(publisher.publish(7), Ok(1));
        assert_eq!(sub.try_recv(), Ok(7));
        drop(sub);
        assert!(!publisher.has_subscribers());
        assert_eq!(publisher.publish(8), Ok(0));
    }

    #[test]
    fn publish_without_topic_creates_nothing() {
        let bus = Bus::new();
        assert_eq!(bus.publish(1u32), Ok(0));
        assert!(bus.read().is_empty());
        assert_eq!(bus.subscriber_count::<u32>(), 0);
    }

    #[test]
    fn kinds_are_separate() {
        let bus = Bus::new();
        let a = bus.subscribe::<u32>(SubscribeOptions::default());
        let b = bus.subscribe::<i32>(SubscribeOptions::default());
        assert_eq!(bus.publish(7u32), Ok(1));
        assert_eq!(a.try_recv(), Ok(7));
        assert_eq!(b.try_recv(), Err(RecvError::Empty));
    }

    #[test]
    fn bus_closes_when_all_handles_are_gone() {
        let bus = Bus::new();
        let sub = bus.subscribe::<u32>(SubscribeOptions::default());
        let publisher = bus.publisher::<u32>();
        drop(bus);
        assert_eq!(publisher.publish(3), Ok(1));
        drop(publisher);
        assert_eq!(sub.recv(), Ok(3));
        assert_eq!(sub.recv(), Err(RecvError::Closed));
        assert_eq!(sub.iter().count(), 0);
    }

    #[test]
    fn subscription_drop_after_bus_drop_is_fine() {
        let bus = Bus::new();
        let sub = bus.subscribe::<u32>(SubscribeOptions::default());
        drop(bus);
        drop(sub);
    }

    #[test]
    fn error_and_displays() {
        let id = SubscriberId(3);
        assert_eq!(id.to_string(), "sub-3");
        assert_eq!(id.get(), 3);
        let opts = SubscribeOptions::default()
            .with_capacity(2)
            .with_policy(OverflowPolicy::Error);
        assert_eq!(opts, SubscribeOptions::new(2, OverflowPolicy::Error));
        let bus = Bus::new();
        let sub = bus.subscribe::<u8>(opts);
        assert!(format!("{sub:?}").contains("Subscription"));
        assert!(format!("{bus:?}").contains("topics: 1"));
        assert!(format!("{:?}", bus.publisher::<u8>()).contains("u8"));
    }
}
