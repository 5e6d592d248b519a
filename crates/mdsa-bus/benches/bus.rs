//! The bus's overhead against a bare crossbeam channel on the same machine.
//!
//! - `bus_vs_bare/throughput/{bare,bus}`: one producer sends `N` `u64`s, another thread
//!   reads them; both sides use a queue of the same capacity.
//! - `bus_vs_bare/single_thread/{bare,bus}`: the same `N` messages sent and received on one
//!   thread in batches, which isolates the per-message cost from thread wake-ups.
//! - `bus_vs_bare/latency/{bare,bus,bus_request}`: one message's round trip to an echo
//!   thread and back (`bus_request` is the same through [`Bus::request`] and
//!   [`Bus::serve`]).
//!
//! Divide a `bus` time by the matching `bare` time for the overhead ratio.

use std::hint::black_box;
use std::thread;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_channel::{Receiver, Sender};
use mdsa_bus::{Bus, OverflowPolicy, SubscribeOptions, Subscription};

const N: u64 = 10_000;
const CAPACITY: usize = 1024;

/// Reads batches of `N` messages and acknowledges each batch, until `next` says closed.
/// The consumer thread lives across iterations so thread start-up is not measured.
fn consumer(
    mut next: impl FnMut() -> Option<u64> + Send + 'static,
) -> (Receiver<()>, thread::JoinHandle<()>) {
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let handle = thread::spawn(move || {
        loop {
            for _ in 0..N {
                match next() {
                    Some(v) => {
                        black_box(v);
                    }
                    None => return,
                }
            }
            if done_tx.send(()).is_err() {
                return;
            }
        }
    });
    (done_rx, handle)
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("bus_vs_bare/throughput");
    group.throughput(Throughput::Elements(N));

    {
        let (tx, rx) = crossbeam_channel::bounded::<u64>(CAPACITY);
        let (done, handle) = consumer(move || rx.recv().ok());
        group.bench_function("bare", |b| {
            b.iter(|| {
                for i in 0..N {
                    tx.send(i).expect("consumer alive");
                }
                done.recv().expect("batch acknowledged");
            });
        });
        drop(tx);
        handle.join().expect("consumer thread");
    }

    {
        let bus = Bus::new();
        let sub: Subscription<u64> =
            bus.subscribe(SubscribeOptions::new(CAPACITY, OverflowPolicy::Block));
        let publisher = bus.publisher::<u64>();
        let (done, handle) = consumer(move || sub.recv().ok());
        group.bench_function("bus", |b| {
            b.iter(|| {
                for i in 0..N {
                    publisher.publish(i).expect("Block never errors");
                }
                done.recv().expect("batch acknowledged");
            });
        });
        drop((bus, publisher));
        handle.join().expect("consumer thread");
    }
    group.finish();
}

/// Send and receive on one thread, in batches that fit the queue: no wake-ups or
/// scheduling, so this isolates the bus's own per-message cost (and is far less noisy on a
/// busy machine than the two-thread benches).
fn single_thread(c: &mut Criterion) {
    const BATCH: u64 = 500; // divides N and fits the queue
    let mut group = c.benchmark_group("bus_vs_bare/single_thread");
    group.throughput(Throughput::Elements(N));

    let (tx, rx) = crossbeam_channel::bounded::<u64>(CAPACITY);
    group.bench_function("bare", |b| {
        b.iter(|| {
            for start in (0..N).step_by(BATCH as usize) {
                for i in start..start + BATCH {
                    tx.send(i).expect("receiver alive");
                }
                for _ in 0..BATCH {
                    black_box(rx.recv().expect("queued"));
                }
            }
        });
    });

    let bus = Bus::new();
    let sub: Subscription<u64> =
        bus.subscribe(SubscribeOptions::new(CAPACITY, OverflowPolicy::Block));
    let publisher = bus.publisher::<u64>();
    group.bench_function("bus", |b| {
        b.iter(|| {
            for start in (0..N).step_by(BATCH as usize) {
                for i in start..start + BATCH {
                    publisher.publish(i).expect("Block never errors");
                }
                for _ in 0..BATCH {
                    black_box(sub.recv().expect("queued"));
                }
            }
        });
    });
    group.finish();
}

#[derive(Clone, Copy)]
struct Ping(u64);

#[derive(Clone, Copy)]
struct Pong(u64);

fn latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("bus_vs_bare/latency");

    {
        let (ping_tx, ping_rx) = crossbeam_channel::bounded::<u64>(CAPACITY);
        let (pong_tx, pong_rx): (Sender<u64>, Receiver<u64>) = crossbeam_channel::bounded(CAPACITY);
        let echo = thread::spawn(move || {
            for v in &ping_rx {
                if pong_tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut i = 0u64;
        group.bench_function("bare", |b| {
            b.iter(|| {
                i += 1;
                ping_tx.send(i).expect("echo alive");
                black_box(pong_rx.recv().expect("echo alive"))
            });
        });
        drop(ping_tx);
        echo.join().expect("echo thread");
    }

    {
        let bus = Bus::new();
        let opts = SubscribeOptions::new(CAPACITY, OverflowPolicy::Block);
        let pings: Subscription<Ping> = bus.subscribe(opts);
        let pongs: Subscription<Pong> = bus.subscribe(opts);
        let pong_publisher = bus.publisher::<Pong>();
        let echo = thread::spawn(move || {
            for Ping(v) in &pings {
                if pong_publisher.publish(Pong(v)).is_err() {
                    return;
                }
            }
        });
        let ping_publisher = bus.publisher::<Ping>();
        let mut i = 0u64;
        group.bench_function("bus", |b| {
            b.iter(|| {
                i += 1;
                ping_publisher.publish(Ping(i)).expect("Block never errors");
                black_box(pongs.recv().expect("echo alive").0)
            });
        });
        drop((bus, ping_publisher));
        echo.join().expect("echo thread");
    }

    {
        let bus = Bus::new();
        let responder = bus.serve(|v: &u64| *v);
        let mut i = 0u64;
        group.bench_function("bus_request", |b| {
            b.iter(|| {
                i += 1;
                black_box(
                    bus.request::<u64, u64>(i, Duration::from_secs(10))
                        .expect("answered"),
                )
            });
        });
        drop(responder);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = throughput, single_thread, latency
}
criterion_main!(benches);
