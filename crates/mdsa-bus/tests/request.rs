//! Request/reply: success, timeouts, missing responders, first reply wins, and responder
//! threads that stop cleanly.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{DEADLINE, watchdog};
use mdsa_bus::{Bus, BusError, OverflowPolicy, Request, SubscribeOptions};

const LONG: Duration = Duration::from_secs(10);

#[test]
fn request_gets_the_served_answer() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let _responder = bus.serve(|s: &String| s.len());
        assert_eq!(bus.request::<String, usize>("hello".into(), LONG), Ok(5));
    });
}

#[test]
fn manual_responder_sees_the_correlation_id() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let sub = bus.subscribe::<Request<u32, u32>>(SubscribeOptions::default());
        let pending = bus.send_request::<u32, u32>(7).expect("one responder");
        let req = sub.recv().expect("request arrives");
        assert_eq!(req.correlation_id(), pending.correlation_id());
        assert_eq!(*req.body(), 7);
        assert!(req.reply(49));
        assert_eq!(pending.wait(LONG), Ok(49));
    });
}

#[test]
fn request_times_out_when_nobody_answers() {
    let bus = Bus::new();
    let _silent = bus.subscribe::<Request<u8, u8>>(SubscribeOptions::default());
    let timeout = Duration::from_millis(30);
    let start = Instant::now();
    match bus.request::<u8, u8>(1, timeout) {
        Err(BusError::Timeout {
            correlation_id,
            after,
        }) => {
            assert_eq!(after, timeout);
            assert!(correlation_id.get() > 0);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(start.elapsed() >= timeout);
}

#[test]
fn request_without_responder_fails_fast() {
    let bus = Bus::new();
    let err = bus
        .request::<u8, u8>(1, LONG)
        .expect_err("nobody subscribed");
    match err {
        BusError::NoResponder { kind } => assert!(kind.contains("Request<u8, u8>"), "{kind}"),
        other => panic!("expected NoResponder, got {other:?}"),
    }
    // A responder for another answer type is not a responder for this request.
    let _other = bus.serve(|n: &u8| u16::from(*n));
    assert!(matches!(
        bus.request::<u8, u8>(1, LONG),
        Err(BusError::NoResponder { .. })
    ));
}

#[test]
fn first_reply_wins_and_later_replies_are_ignored() {
    let bus = Bus::new();
    let first = bus.subscribe::<Request<u8, &'static str>>(SubscribeOptions::default());
    let second = bus.subscribe::<Request<u8, &'static str>>(SubscribeOptions::default());
    let pending = bus
        .send_request::<u8, &'static str>(0)
        .expect("two responders");
    let a = first.try_recv().expect("queued");
    let b = second.try_recv().expect("queued");
    assert!(b.reply("second subscriber, first to answer"));
    assert!(!a.reply("too late"));
    assert!(!b.reply("again"));
    assert!(a.is_answered());
    assert_eq!(pending.wait(LONG), Ok("second subscriber, first to answer"));
}

#[test]
fn competing_served_responders_give_exactly_one_answer() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..3u32)
            .map(|k| {
                let calls = Arc::clone(&calls);
                bus.serve(move |n: &u32| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    n * 10 + k
                })
            })
            .collect();
        for n in 0..50u32 {
            let answer = bus.request::<u32, u32>(n, LONG).expect("answered");
            assert_eq!(answer / 10, n);
            assert!(answer % 10 < 3);
        }
        drop(handles);
        assert!(calls.load(Ordering::Relaxed) >= 50);
    });
}

#[test]
fn concurrent_callers_get_their_own_answers() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let _responder = bus.serve(|n: &u64| n * n);
        let callers: Vec<_> = (0..4u64)
            .map(|t| {
                let bus = bus.clone();
                thread::spawn(move || {
                    for i in 0..200 {
                        let n = t * 1_000 + i;
                        assert_eq!(bus.request::<u64, u64>(n, LONG), Ok(n * n));
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().expect("caller thread");
        }
    });
}

#[test]
fn many_requests_in_flight_at_once() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let _responder = bus.serve(|n: &i32| -n);
        let pending: Vec<_> = (0..100)
            .map(|n| (n, bus.send_request::<i32, i32>(n).expect("responder")))
            .collect();
        for (n, p) in pending.into_iter().rev() {
            assert_eq!(p.wait(LONG), Ok(-n));
        }
    });
}

#[test]
fn dropping_the_serve_handle_stops_and_joins_the_thread() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let handle = bus.serve(|n: &u8| n + 1);
        assert_eq!(bus.subscriber_count::<Request<u8, u8>>(), 1);
        assert_eq!(bus.request::<u8, u8>(1, LONG), Ok(2));
        drop(handle);
        // Joined means the subscription is gone too.
        assert_eq!(bus.subscriber_count::<Request<u8, u8>>(), 0);
        assert!(matches!(
            bus.request::<u8, u8>(1, LONG),
            Err(BusError::NoResponder { .. })
        ));
    });
}

#[test]
fn dropping_the_serve_handle_waits_for_the_call_in_progress_only() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let (started_tx, started_rx) = crossbeam_channel::bounded(1);
        let handle = bus.serve(move |_: &()| {
            let _ = started_tx.try_send(());
            thread::sleep(Duration::from_millis(100));
        });
        let caller = {
            let bus = bus.clone();
            thread::spawn(move || bus.request::<(), ()>((), LONG))
        };
        started_rx.recv().expect("handler started");
        let start = Instant::now();
        handle.stop();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(caller.join().expect("caller thread"), Ok(()));
    });
}

#[test]
fn serve_handle_outliving_the_bus_drops_cleanly() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let handle = bus.serve(|n: &u8| *n);
        let id = handle.subscriber_id();
        assert!(format!("{handle:?}").contains(&format!("{id:?}")));
        drop(bus); // the responder sees the bus close and exits on its own
        drop(handle);
    });
}

#[test]
fn unanswered_requests_report_no_reply_when_responder_goes_away() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let sub = bus.subscribe::<Request<u8, u8>>(SubscribeOptions::default());
        let pending = bus.send_request::<u8, u8>(1).expect("responder");
        let id = pending.correlation_id();
        let dropper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            drop(sub);
        });
        assert_eq!(
            pending.wait(LONG),
            Err(BusError::NoReply { correlation_id: id })
        );
        dropper.join().expect("dropper thread");
    });
}

#[test]
fn full_error_policy_responder_is_reported() {
    let bus = Bus::new();
    let _full = bus.subscribe::<Request<u8, u8>>(SubscribeOptions::new(1, OverflowPolicy::Error));
    let _first = bus.send_request::<u8, u8>(1).expect("fits");
    assert!(matches!(
        bus.send_request::<u8, u8>(2),
        Err(BusError::SubscriberFull { delivered: 0, .. })
    ));
    // With another responder that has room, the request goes through.
    let _roomy = bus.serve(|n: &u8| *n);
    assert_eq!(bus.request::<u8, u8>(3, LONG), Ok(3));
}

#[test]
fn filtered_responders_shard_requests() {
    watchdog(DEADLINE, || {
        let bus = Bus::new();
        let even = bus.subscribe_filtered::<Request<u32, &'static str>, _>(
            SubscribeOptions::default(),
            |r| r.body() % 2 == 0,
        );
        let odd = bus.subscribe_filtered::<Request<u32, &'static str>, _>(
            SubscribeOptions::default(),
            |r| r.body() % 2 == 1,
        );
        let workers: Vec<_> = [(even, "even"), (odd, "odd")]
            .into_iter()
            .map(|(sub, name)| {
                thread::spawn(move || {
                    for req in &sub {
                        req.reply(name);
                    }
                })
            })
            .collect();
        for n in 0..20u32 {
            let expected = if n % 2 == 0 { "even" } else { "odd" };
            assert_eq!(bus.request::<u32, &'static str>(n, LONG), Ok(expected));
        }
        drop(bus); // closes the subscriptions, ending the workers' loops
        for w in workers {
            w.join().expect("worker");
        }
    });
}
