//! Publish/subscribe behaviour: delivery guarantees per overflow policy, unsubscription,
//! filters, and closing.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{DEADLINE, watchdog};
use mdsa_bus::{
    Bus, BusError, OverflowPolicy, Publisher, RecvError, SubscribeOptions, Subscription,
};
use proptest::prelude::*;

/// A message tagged with its publisher and that publisher's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seq {
    publisher: usize,
    n: u32,
}

const PUBLISHERS: usize = 4;
const PER_PUBLISHER: u32 = 10_000;
const TOTAL: usize = PUBLISHERS * PER_PUBLISHER as usize;

fn spawn_publishers(bus: &Bus) -> Vec<thread::JoinHandle<()>> {
    let start = Arc::new(Barrier::new(PUBLISHERS));
    (0..PUBLISHERS)
        .map(|publisher| {
            let handle: Publisher<Seq> = bus.publisher();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                for n in 0..PER_PUBLISHER {
                    handle
                        .publish(Seq { publisher, n })
                        .expect("Block and DropOldest never return an error");
                }
            })
        })
        .collect()
}

#[test]
fn block_policy_loses_nothing_and_keeps_per_publisher_order() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let opts = SubscribeOptions::new(16, OverflowPolicy::Block);
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let sub = bus.subscribe::<Seq>(opts);
                thread::spawn(move || {
                    let mut next = [0u32; PUBLISHERS];
                    for _ in 0..TOTAL {
                        let m = sub.recv().expect("bus stays open");
                        assert_eq!(m.n, next[m.publisher], "out of order from {}", m.publisher);
                        next[m.publisher] += 1;
                    }
                    assert_eq!(sub.try_recv(), Err(RecvError::Empty));
                    assert_eq!(sub.dropped(), 0);
                    next
                })
            })
            .collect();
        for p in spawn_publishers(&bus) {
            p.join().expect("publisher thread");
        }
        for r in readers {
            let next = r.join().expect("reader thread");
            assert_eq!(next, [PER_PUBLISHER; PUBLISHERS]);
        }
    });
}

#[test]
fn drop_oldest_without_reader_keeps_the_newest_and_counts_the_rest() {
    let bus = Bus::new();
    let sub = bus.subscribe::<u32>(SubscribeOptions::new(8, OverflowPolicy::DropOldest));
    for n in 0..10_000u32 {
        assert_eq!(bus.publish(n), Ok(1));
    }
    let received: Vec<u32> = sub.try_iter().collect();
    assert_eq!(received, (9_992..10_000).collect::<Vec<_>>());
    assert_eq!(sub.dropped(), 9_992);
}

#[test]
fn drop_oldest_with_concurrent_publishers_and_slow_reader_counts_every_drop() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let sub = bus.subscribe::<Seq>(SubscribeOptions::new(8, OverflowPolicy::DropOldest));
        // A lossless witness proves that all messages really were published.
        let witness = bus.subscribe::<Seq>(SubscribeOptions::new(TOTAL, OverflowPolicy::Block));
        let publishers = spawn_publishers(&bus);
        let mut received = 0usize;
        let mut last = [None::<u32>; PUBLISHERS];
        let mut check = |m: Seq| {
            // Drops make gaps, but never reorder one publisher's messages.
            assert!(last[m.publisher].is_none_or(|prev| m.n > prev));
            last[m.publisher] = Some(m.n);
            received += 1;
        };
        while !publishers.iter().all(thread::JoinHandle::is_finished) {
            if let Ok(m) = sub.recv_timeout(Duration::from_millis(1)) {
                check(m);
                thread::sleep(Duration::from_micros(50)); // slow reader
            }
        }
        for p in publishers {
            p.join().expect("publisher thread");
        }
        sub.try_iter().for_each(&mut check);
        let dropped = usize::try_from(sub.dropped()).expect("fits");
        assert!(
            dropped > 0,
            "the reader was slow, something must have been dropped"
        );
        assert_eq!(received + dropped, TOTAL);
        assert_eq!(witness.try_iter().count(), TOTAL);
    });
}

#[test]
fn error_policy_reports_the_full_subscriber_and_still_delivers_to_others() {
    let bus = Bus::new();
    let strict = bus.subscribe::<u8>(SubscribeOptions::new(1, OverflowPolicy::Error));
    let lossless = bus.subscribe::<u8>(SubscribeOptions::new(10, OverflowPolicy::Block));
    assert_eq!(bus.publish(1u8), Ok(2));
    let err = bus.publish(2u8).expect_err("strict is full");
    assert_eq!(
        err,
        BusError::SubscriberFull {
            kind: "u8",
            subscriber: strict.id(),
            delivered: 1,
            skipped: 1,
        }
    );
    assert!(err.to_string().contains(&strict.id().to_string()));
    assert_eq!(strict.try_iter().collect::<Vec<_>>(), [1]);
    assert_eq!(lossless.try_iter().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        strict.dropped(),
        0,
        "Error policy drops are reported, not counted"
    );
    assert_eq!(bus.publish(3u8), Ok(2), "room again after draining");
}

#[test]
fn several_full_error_subscribers_are_all_counted() {
    let bus = Bus::new();
    let opts = SubscribeOptions::new(1, OverflowPolicy::Error);
    let a = bus.subscribe::<u8>(opts);
    let _b = bus.subscribe::<u8>(opts);
    assert_eq!(bus.publish(0u8), Ok(2));
    match bus.publish(1u8) {
        Err(BusError::SubscriberFull {
            subscriber,
            delivered: 0,
            skipped: 2,
            ..
        }) => assert_eq!(subscriber, a.id()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn dropping_a_subscriber_removes_it() {
    let bus = Bus::new();
    let a = bus.subscribe::<u16>(SubscribeOptions::default());
    let b = bus.subscribe::<u16>(SubscribeOptions::new(4, OverflowPolicy::DropOldest));
    let publisher = bus.publisher::<u16>();
    assert_eq!(publisher.publish(1), Ok(2));
    assert_eq!(bus.subscriber_count::<u16>(), 2);
    drop(b);
    assert_eq!(publisher.publish(2), Ok(1));
    assert_eq!(publisher.subscriber_count(), 1);
    drop(a);
    assert_eq!(publisher.publish(3), Ok(0), "no subscriber is not an error");
    assert_eq!(bus.subscriber_count::<u16>(), 0);
}

/// Publishes from another thread and returns each `publish` result in order.
fn publish_in_background(
    publisher: Publisher<u32>,
    msgs: Vec<u32>,
) -> thread::JoinHandle<Vec<Result<usize, BusError>>> {
    thread::spawn(move || msgs.into_iter().map(|m| publisher.publish(m)).collect())
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn dropping_a_subscriber_wakes_a_publisher_blocked_on_it() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let stuck = bus.subscribe::<u32>(SubscribeOptions::new(1, OverflowPolicy::Block));
        let other = bus.subscribe::<u32>(SubscribeOptions::new(16, OverflowPolicy::Block));
        let publishing = publish_in_background(bus.publisher(), vec![1, 2, 3]);
        // 1 reaches both; 2 blocks on `stuck` (it comes first) before reaching `other`.
        assert_eq!(other.recv_timeout(Duration::from_secs(10)), Ok(1));
        wait_until("stuck is full", || stuck.len() == 1);
        thread::sleep(Duration::from_millis(50)); // let the publisher block in send
        assert!(
            !publishing.is_finished(),
            "publisher should be blocked on `stuck`"
        );
        drop(stuck);
        let results = publishing.join().expect("publisher thread");
        assert_eq!(results, [Ok(2), Ok(1), Ok(1)]);
        assert_eq!(other.try_iter().collect::<Vec<_>>(), [2, 3]);
        assert_eq!(bus.subscriber_count::<u32>(), 1);
    });
}

#[test]
fn dropping_the_only_subscriber_wakes_a_blocked_publisher() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let stuck = bus.subscribe::<u32>(SubscribeOptions::new(1, OverflowPolicy::Block));
        let publishing = publish_in_background(bus.publisher(), vec![1, 2]);
        wait_until("stuck is full", || stuck.len() == 1);
        thread::sleep(Duration::from_millis(50));
        drop(stuck);
        let results = publishing.join().expect("publisher thread");
        assert_eq!(results, [Ok(1), Ok(0)]);
        assert_eq!(bus.subscriber_count::<u32>(), 0);
    });
}

#[test]
fn subscribing_and_unsubscribing_while_publishing_never_deadlocks_or_panics() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let keeper = bus.subscribe::<u64>(SubscribeOptions::new(1 << 16, OverflowPolicy::Block));
        let publishers: Vec<_> = (0..2)
            .map(|_| {
                let p = bus.publisher::<u64>();
                thread::spawn(move || {
                    for n in 0..20_000u64 {
                        let delivered = p.publish(n).expect("no Error-policy subscriber");
                        assert!(delivered >= 1, "the keeper is always subscribed");
                    }
                })
            })
            .collect();
        let churners: Vec<_> = [
            OverflowPolicy::Block,
            OverflowPolicy::DropOldest,
            OverflowPolicy::Block,
        ]
        .into_iter()
        .map(|policy| {
            let bus = bus.clone();
            thread::spawn(move || {
                for i in 0..300 {
                    let sub: Subscription<u64> = bus.subscribe(SubscribeOptions::new(2, policy));
                    if i % 2 == 0 {
                        let _ = sub.recv_timeout(Duration::from_micros(100));
                    }
                }
            })
        })
        .collect();
        for t in churners.into_iter().chain(publishers) {
            t.join().expect("thread");
        }
        assert_eq!(keeper.try_iter().count(), 40_000);
        assert_eq!(bus.subscriber_count::<u64>(), 1);
    });
}

#[test]
fn subscribe_filtered_takes_only_matching_messages() {
    let bus = Bus::new();
    let all = bus.subscribe::<u32>(SubscribeOptions::default());
    let even = bus.subscribe_filtered::<u32, _>(SubscribeOptions::default(), |n| n % 2 == 0);
    let counts: Vec<_> = (0..6u32).map(|n| bus.publish(n)).collect();
    assert_eq!(counts, [Ok(2), Ok(1), Ok(2), Ok(1), Ok(2), Ok(1)]);
    assert_eq!(even.try_iter().collect::<Vec<_>>(), [0, 2, 4]);
    assert_eq!(all.try_iter().count(), 6);
}

#[test]
fn filtered_only_subscriber_makes_publish_return_zero_for_rejected() {
    let bus = Bus::new();
    let _big = bus.subscribe_filtered::<u32, _>(SubscribeOptions::default(), |n| *n > 100);
    assert_eq!(bus.publish(5u32), Ok(0));
    assert_eq!(bus.publish(500u32), Ok(1));
}

#[test]
fn receive_methods_and_closing() {
    let bus = Bus::new();
    let sub = bus.subscribe::<String>(SubscribeOptions::default());
    assert!(sub.is_empty());
    assert_eq!(sub.try_recv(), Err(RecvError::Empty));
    assert_eq!(
        sub.recv_timeout(Duration::from_millis(5)),
        Err(RecvError::Timeout)
    );
    bus.publish("a".to_owned()).expect("ok");
    bus.publish("b".to_owned()).expect("ok");
    assert_eq!(sub.len(), 2);
    assert_eq!(sub.recv().as_deref(), Ok("a"));
    drop(bus);
    // Queued messages survive closing; then the blocking iterator ends.
    assert_eq!((&sub).into_iter().collect::<Vec<_>>(), ["b"]);
    assert_eq!(sub.recv(), Err(RecvError::Closed));
    assert_eq!(sub.try_recv(), Err(RecvError::Closed));
    assert_eq!(
        sub.recv_timeout(Duration::from_millis(1)),
        Err(RecvError::Closed)
    );
}

#[test]
fn clones_share_one_bus() {
    let bus = Bus::new();
    let sub = bus.subscribe::<i64>(SubscribeOptions::default());
    let clone = bus.clone();
    assert_eq!(clone.publish(-1i64), Ok(1));
    assert_eq!(sub.try_recv(), Ok(-1));
}

#[test]
fn handles_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Bus>();
    send_sync::<Publisher<String>>();
    send::<Subscription<String>>();
}

#[derive(Debug, Clone)]
enum Op {
    Publish,
    Recv,
}

proptest! {
    /// Against a model queue: DropOldest keeps the newest `capacity` messages and counts
    /// exactly what it evicts, for any interleaving of publishing and reading.
    #[test]
    fn drop_oldest_matches_a_model_queue(
        capacity in 1usize..6,
        ops in prop::collection::vec(prop_oneof![3 => Just(Op::Publish), 1 => Just(Op::Recv)], 0..200),
    ) {
        let bus = Bus::new();
        let sub = bus.subscribe::<usize>(SubscribeOptions::new(capacity, OverflowPolicy::DropOldest));
        let mut model = VecDeque::new();
        let mut model_dropped = 0u64;
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Publish => {
                    prop_assert_eq!(bus.publish(i), Ok(1));
                    if model.len() == capacity {
                        model.pop_front();
                        model_dropped += 1;
                    }
                    model.push_back(i);
                }
                Op::Recv => {
                    let expected = model.pop_front().ok_or(RecvError::Empty);
                    prop_assert_eq!(sub.try_recv(), expected);
                }
            }
            prop_assert_eq!(sub.dropped(), model_dropped);
        }
        prop_assert_eq!(sub.try_iter().collect::<Vec<_>>(), Vec::from(model));
    }
}
