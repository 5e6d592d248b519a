//! The machine's memory read bandwidth: every core streams its share of a
//! buffer far larger than any cache and sums it.
//!
//! Decoding one token reads every weight of the model once, so this figure
//! divided by the bytes of weights read per token is the physical ceiling of
//! decode tokens/s on this machine (`cargo xtask bench` reports it).
//!
//! `cargo bench -p mdsa-hw --bench memory`

use std::hint::black_box;
use std::thread;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// 512 MiB: well past the last-level cache of any CPU this runs on.
const BYTES: usize = 512 << 20;

/// Sums one chunk with eight independent accumulators, so the adds never
/// wait on each other and only the loads limit the loop.
fn sum(chunk: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut lanes = chunk.chunks_exact(8);
    for lane in &mut lanes {
        for (a, v) in acc.iter_mut().zip(lane) {
            *a = a.wrapping_add(*v);
        }
    }
    let tail: u64 = lanes.remainder().iter().fold(0, |a, v| a.wrapping_add(*v));
    acc.iter().fold(tail, |a, v| a.wrapping_add(*v))
}

fn read_all(buffer: &[u64], threads: usize) -> u64 {
    let per_thread = buffer.len().div_ceil(threads);
    thread::scope(|scope| {
        let workers: Vec<_> = buffer
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || sum(chunk)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(0))
            .fold(0, u64::wrapping_add)
    })
}

fn memory(c: &mut Criterion) {
    // Written, not just allocated, so every page is resident before timing.
    let buffer: Vec<u64> = (0..BYTES / 8).map(|i| i as u64).collect();
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("memory");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(BYTES as u64));
    group.bench_function(format!("read_{threads}_threads"), |b| {
        b.iter(|| read_all(black_box(&buffer), threads))
    });
    group.finish();
}

criterion_group!(benches, memory);
criterion_main!(benches);
