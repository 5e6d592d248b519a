//! A persistent team of threads for the CPU kernels' fork-joins.
//!
//! A decode step makes ~150 parallel regions (a matmul, an attention pass)
//! separated by a few microseconds of serial work. Through rayon, each region
//! is a work-stealing fork-join whose idle worker has gone to `sched_yield` or
//! to sleep: on the 2-core reference machine, batched decoding ran 1.2–1.46×
//! faster on 2 threads than on 1, while two single-threaded processes ran at
//! full speed side by side. The team keeps its workers spinning for a short
//! while after each region, hands out a region's tasks by an atomic counter,
//! and lets the calling thread take tasks too, so a region starts and ends in
//! well under a microsecond when the workers are awake.
//!
//! One region runs on the team at a time. A caller that finds it busy (another
//! request's encoder during a decode step, say), or that is itself inside a
//! team task, runs its tasks inline instead of waiting.

// Handing a region's job and disjoint pieces of a slice to the workers.
#![allow(unsafe_code)]

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps: longer than the serial
/// work between a step's regions, short enough that an idle server is idle.
const SPIN: Duration = Duration::from_micros(200);

/// Tasks one region may have (the state word keeps 16 bits for them);
/// [`for_each_index`] runs larger counts as several regions.
const MAX_TASKS: usize = u16::MAX as usize;

/// Threads that run a region started on this thread: the caller and the
/// team's workers (from `MDSA_THREADS`, else `RAYON_NUM_THREADS`, else the
/// available parallelism), or 1 inside a team task, whose regions run inline.
pub(crate) fn threads() -> usize {
    if IN_TASK.get() {
        return 1;
    }
    team().map_or(1, |t| t.workers + 1)
}

/// Runs `task(i)` for every `i` in `0..tasks` over the team, the calling thread
/// included, and returns when all have finished. A panic in a task is raised
/// again here, after the other tasks have finished.
pub(crate) fn for_each_index(tasks: usize, task: impl Fn(usize) + Sync) {
    let mut start = 0;
    while start < tasks {
        let count = (tasks - start).min(MAX_TASKS);
        let shifted = |i: usize| task(start + i);
        match team() {
            Some(team) if count > 1 && !IN_TASK.get() => team.run(count, &shifted),
            _ => run_inline(count, &shifted),
        }
        start += count;
    }
}

/// Cuts `items` into pieces of `piece` (the last may be shorter) and runs
/// `task(k, piece_k)` for each over the team.
pub(crate) fn for_each_piece_mut<T: Send>(
    items: &mut [T],
    piece: usize,
    task: impl Fn(usize, &mut [T]) + Sync,
) {
    let piece = piece.max(1);
    let len = items.len();
    let base = SendPtr(items.as_mut_ptr());
    for_each_index(len.div_ceil(piece), |k| {
        let start = k * piece;
        let count = piece.min(len - start);
        // SAFETY: every index runs exactly once, so the pieces handed out are
        // disjoint sub-slices of `items`, which is borrowed mutably until all
        // tasks have finished.
        let part = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), count) };
        task(k, part);
    });
}

/// Cuts the columns of the row-major matrix `items` (rows of `row_len`) into
/// blocks of `block` (the last may be narrower) and runs `task(k, block_k)`
/// for each over the team: every task writes its columns of every row.
pub(crate) fn for_each_column_block<T: Send>(
    items: &mut [T],
    row_len: usize,
    block: usize,
    task: impl Fn(usize, ColumnBlock<'_, T>) + Sync,
) {
    let block = block.max(1);
    if row_len == 0 {
        return;
    }
    let rows = items.len() / row_len;
    let base = SendPtr(items.as_mut_ptr());
    for_each_index(row_len.div_ceil(block), |k| {
        let start = k * block;
        task(
            k,
            ColumnBlock {
                base: base.get(),
                row_len,
                start,
                width: block.min(row_len - start),
                rows,
                _items: std::marker::PhantomData,
            },
        );
    });
}

/// Columns `start..start + width` of every row of a row-major matrix: one
/// task's share (see [`for_each_column_block`]), or all of them
/// ([`ColumnBlock::whole`]).
pub(crate) struct ColumnBlock<'a, T> {
    base: *mut T,
    row_len: usize,
    start: usize,
    width: usize,
    rows: usize,
    _items: std::marker::PhantomData<&'a mut [T]>,
}

impl<'a, T> ColumnBlock<'a, T> {
    /// Every column of the row-major matrix `items` (rows of `row_len`).
    pub(crate) fn whole(items: &'a mut [T], row_len: usize) -> Self {
        Self {
            rows: items.len().checked_div(row_len).unwrap_or(0),
            base: items.as_mut_ptr(),
            row_len,
            start: 0,
            width: row_len,
            _items: std::marker::PhantomData,
        }
    }

    /// Sets the block's part of every row to `value`.
    pub(crate) fn fill(&mut self, value: T)
    where
        T: Clone,
    {
        for i in 0..self.rows {
            self.row_mut(i).fill(value.clone());
        }
    }

    /// Columns in the block.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// The block's part of row `i`.
    pub(crate) fn row_mut(&mut self, i: usize) -> &mut [T] {
        assert!(i < self.rows, "row {i} of {}", self.rows);
        // SAFETY: blocks of different tasks cover disjoint columns, rows are
        // disjoint, and `&mut self` keeps this block's rows unaliased; the
        // matrix stays mutably borrowed until every task has finished.
        unsafe {
            std::slice::from_raw_parts_mut(self.base.add(i * self.row_len + self.start), self.width)
        }
    }
}

/// `task(i)` for every `i` in `0..tasks` over the team, in index order.
pub(crate) fn map<R: Send>(tasks: usize, task: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let mut slots: Vec<Option<R>> = (0..tasks).map(|_| None).collect();
    for_each_piece_mut(&mut slots, 1, |i, slot| slot[0] = Some(task(i)));
    slots.into_iter().flatten().collect()
}

/// A raw pointer that may cross to the team's threads (see its one use).
struct SendPtr<T>(*mut T);
// SAFETY: only used to hand disjoint sub-slices of a `&mut [T]` with `T: Send`
// to other threads, within the borrow.
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: as above; the pointer itself is only read.
unsafe impl<T: Send> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

thread_local! {
    /// Whether this thread is running a team task (a nested region runs inline).
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Runs every task on this thread. As in a team region, a task's panic is
/// raised after the other tasks have run, so that the callers of a busy team
/// see the same outcome as the team's.
fn run_inline(tasks: usize, task: &(dyn Fn(usize) + Sync)) {
    let mut first_panic = None;
    for i in 0..tasks {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| task(i))) {
            first_panic.get_or_insert(payload);
        }
    }
    if let Some(payload) = first_panic {
        resume_unwind(payload);
    }
}

/// The process's team, started on first use; `None` with one thread.
fn team() -> Option<&'static Team> {
    static TEAM: OnceLock<Option<&'static Team>> = OnceLock::new();
    *TEAM.get_or_init(|| {
        let workers = configured_threads().saturating_sub(1);
        (workers > 0).then(|| Team::start(workers))
    })
}

fn configured_threads() -> usize {
    ["MDSA_THREADS", "RAYON_NUM_THREADS"]
        .iter()
        .find_map(|name| {
            std::env::var(name)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
        })
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// One region: its tasks, how many have finished, and a task's panic.
struct Job<'a> {
    task: &'a (dyn Fn(usize) + Sync),
    finished: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Job<'_> {
    fn run(&self, i: usize) {
        IN_TASK.set(true);
        let result = catch_unwind(AssertUnwindSafe(|| (self.task)(i)));
        IN_TASK.set(false);
        if let Err(payload) = result {
            let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(payload);
        }
        self.finished.fetch_add(1, Ordering::Release);
    }
}

/// The state word: region number (32 bits), its task count (16) and the
/// next task to hand out (16), so that a thread claims a task of exactly the
/// region it read, with one compare-and-swap.
#[derive(Clone, Copy, PartialEq, Eq)]
struct State {
    region: u32,
    tasks: u16,
    next: u16,
}

impl State {
    fn pack(self) -> u64 {
        (u64::from(self.region) << 32) | (u64::from(self.tasks) << 16) | u64::from(self.next)
    }

    fn unpack(word: u64) -> Self {
        Self {
            region: (word >> 32) as u32,
            tasks: (word >> 16) as u16,
            next: word as u16,
        }
    }
}

struct Team {
    workers: usize,
    state: AtomicU64,
    /// The current region's job; valid while it has unfinished tasks.
    job: AtomicPtr<Job<'static>>,
    /// One caller at a time.
    caller: Mutex<()>,
    /// Workers asleep (or about to be), and where they sleep.
    sleeping: AtomicUsize,
    bed: Mutex<()>,
    alarm: Condvar,
}

impl Team {
    fn start(workers: usize) -> &'static Team {
        let team: &'static Team = Box::leak(Box::new(Team {
            workers,
            state: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            caller: Mutex::new(()),
            sleeping: AtomicUsize::new(0),
            bed: Mutex::new(()),
            alarm: Condvar::new(),
        }));
        for k in 0..workers {
            let spawned = std::thread::Builder::new()
                .name(format!("mdsa-team-{k}"))
                .spawn(move || {
                    lower_priority();
                    team.work()
                });
            // Without the thread the callers still run every task themselves.
            drop(spawned);
        }
        team
    }

    fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        let turn = match self.caller.try_lock() {
            Ok(turn) => turn,
            // A task's panic passed through an earlier caller; the team is fine.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return run_inline(tasks, task),
        };
        let job = Job {
            task,
            finished: AtomicUsize::new(0),
            panic: Mutex::new(None),
        };
        // SAFETY (of the lifetime change): workers reach the job only through
        // a task claimed from this region, and this function returns only
        // after every task of the region has finished.
        let erased = (&job as *const Job<'_>).cast::<Job<'static>>().cast_mut();
        self.job.store(erased, Ordering::Release);
        let region = State::unpack(self.state.load(Ordering::Relaxed))
            .region
            .wrapping_add(1);
        let fresh = State {
            region,
            tasks: tasks as u16,
            next: 0,
        };
        self.state.store(fresh.pack(), Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) > 0 {
            let _bed = self.bed.lock().unwrap_or_else(|e| e.into_inner());
            self.alarm.notify_all();
        }
        while let Some(i) = self.claim(region) {
            job.run(i);
        }
        let mut waited = 0u32;
        while job.finished.load(Ordering::Acquire) < tasks {
            // A worker preempted mid-task must get a core back.
            waited += 1;
            if waited < 1 << 12 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let panic = job.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(turn);
        if let Some(payload) = panic {
            resume_unwind(payload);
        }
    }

    /// The next task of `region`, if it has one left.
    fn claim(&self, region: u32) -> Option<usize> {
        let mut word = self.state.load(Ordering::Acquire);
        loop {
            let s = State::unpack(word);
            if s.region != region || s.next >= s.tasks {
                return None;
            }
            let taken = State {
                next: s.next + 1,
                ..s
            };
            match self.state.compare_exchange_weak(
                word,
                taken.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(usize::from(s.next)),
                Err(now) => word = now,
            }
        }
    }

    fn work(&self) {
        let mut seen = 0u32;
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        loop {
            let s = State::unpack(self.state.load(Ordering::Acquire));
            if s.region != seen && s.next < s.tasks {
                let mut ran = false;
                while let Some(i) = self.claim(s.region) {
                    // SAFETY: a task of the region is claimed and unfinished,
                    // so its caller is still waiting and the job is alive; the
                    // claim (acquire) saw the store of the region, which came
                    // after the job's.
                    let job = unsafe { &*self.job.load(Ordering::Acquire) };
                    job.run(i);
                    ran = true;
                }
                seen = s.region;
                if ran {
                    idle_since = Instant::now();
                }
                continue;
            }
            seen = s.region;
            spins += 1;
            if !spins.is_multiple_of(64) || idle_since.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let bed = self.bed.lock().unwrap_or_else(|e| e.into_inner());
            self.sleeping.fetch_add(1, Ordering::SeqCst);
            let now = State::unpack(self.state.load(Ordering::SeqCst));
            let bed = if now.region == seen {
                self.alarm.wait(bed).unwrap_or_else(|e| e.into_inner())
            } else {
                bed
            };
            self.sleeping.fetch_sub(1, Ordering::SeqCst);
            drop(bed);
            idle_since = Instant::now();
        }
    }
}

/// The Unix nice value of the compute threads; see [`set_compute_nice`].
static COMPUTE_NICE: AtomicI32 = AtomicI32::new(0);

/// Runs the threads that compute for every request (the team's workers and
/// each generator's batch scheduler) at the Unix nice value `nice` (0-19; one
/// they inherit higher is kept), from the next such thread started.
///
/// A server sets it so that a request's own work (reading it, routing it,
/// streaming its answer) is not time-sliced with the shared batch on a machine
/// with few cores; an embedding application leaves it at 0, the default, for
/// the same priority as its own threads. Linux only (elsewhere a no-op);
/// lowering a priority needs no privilege.
pub fn set_compute_nice(nice: u8) {
    COMPUTE_NICE.store(i32::from(nice.min(19)), Ordering::Relaxed);
}

/// Lowers the calling thread's priority to the [`set_compute_nice`] value.
pub(crate) fn lower_priority() {
    let nice = COMPUTE_NICE.load(Ordering::Relaxed);
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: plain syscalls about the calling thread; a failure leaves
        // its priority as it was, which is the fallback anyway.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            // The thread starts at its creator's nice value; raising a
            // priority would need a privilege.
            let current = libc::getpriority(libc::PRIO_PROCESS, tid);
            if current < nice {
                libc::setpriority(libc::PRIO_PROCESS, tid, nice);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_index_runs_once() {
        for tasks in [0, 1, 2, 3, 17, 1000] {
            let counts: Vec<AtomicU32> = (0..tasks).map(|_| AtomicU32::new(0)).collect();
            for_each_index(tasks, |i| {
                counts[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                "{tasks} tasks"
            );
        }
    }

    #[test]
    fn more_tasks_than_a_region_holds_run_in_rounds() {
        let tasks = MAX_TASKS * 2 + 7;
        let sum = AtomicU64::new(0);
        for_each_index(tasks, |i| {
            sum.fetch_add(i as u64, Ordering::Relaxed);
        });
        let n = tasks as u64;
        assert_eq!(sum.load(Ordering::Relaxed), n * (n - 1) / 2);
    }

    #[test]
    fn pieces_cover_the_slice_and_map_keeps_order() {
        let mut items = vec![0usize; 103];
        for_each_piece_mut(&mut items, 10, |k, piece| {
            assert!(piece.len() == 10 || (k == 10 && piece.len() == 3));
            piece.iter_mut().for_each(|x| *x += k + 1);
        });
        assert!(items.iter().enumerate().all(|(i, &x)| x == i / 10 + 1));
        assert_eq!(
            map(50, |i| i * i),
            (0..50).map(|i| i * i).collect::<Vec<_>>()
        );
    }

    #[test]
    fn column_blocks_cover_every_row() {
        let (rows, row_len) = (5, 23);
        let mut items = vec![0usize; rows * row_len];
        for_each_column_block(&mut items, row_len, 4, |k, mut block| {
            assert_eq!(block.width(), if k == 5 { 3 } else { 4 });
            for i in 0..rows {
                block.row_mut(i).iter_mut().for_each(|x| *x += k + 1);
            }
        });
        for (j, x) in items.iter().enumerate() {
            assert_eq!(*x, (j % row_len) / 4 + 1, "element {j}");
        }
    }

    #[test]
    fn nested_and_concurrent_regions_run_every_task() {
        let total = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        for_each_index(8, |_| {
                            for_each_index(4, |_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 200 * 8 * 4);
    }

    /// A region of 16 tasks whose task 5 panics, run by `region` (given the
    /// region to run): the panic reaches the caller after the 15 others ran.
    fn assert_task_five_panics_after_the_others(region: impl FnOnce(&(dyn Fn() + Sync))) {
        let finished = AtomicU32::new(0);
        let sixteen = || {
            for_each_index(16, |i| {
                if i == 5 {
                    panic!("task five");
                }
                finished.fetch_add(1, Ordering::Relaxed);
            })
        };
        let caught = catch_unwind(AssertUnwindSafe(|| region(&sixteen)));
        let payload = caught.expect_err("the panic is raised again");
        assert_eq!(
            crate::panic_message(payload.as_ref()).as_deref(),
            Some("task five")
        );
        assert_eq!(finished.load(Ordering::Relaxed), 15);
    }

    #[test]
    fn a_task_panic_reaches_the_caller_after_the_other_tasks() {
        assert_task_five_panics_after_the_others(|sixteen| sixteen());
        // The team still works after it.
        assert_eq!(map(4, |i| i + 1), vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_nested_region_run_inline_also_finishes_its_other_tasks() {
        // Inside a task, a region runs on the task's own thread.
        assert_task_five_panics_after_the_others(|sixteen| {
            for_each_index(2, |outer| {
                if outer == 0 {
                    sixteen();
                }
            })
        });
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn compute_threads_run_at_the_nice_value_set() {
        // SAFETY: reads the calling thread's priority.
        let nice_of_this_thread =
            || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = std::thread::spawn(move || {
            lower_priority();
            nice_of_this_thread()
        });
        let base = nice_of_this_thread();
        assert_eq!(before.join().unwrap(), base, "unset: priority unchanged");
        set_compute_nice(7);
        let after = std::thread::spawn(move || {
            lower_priority();
            nice_of_this_thread()
        });
        let nice = after.join().unwrap();
        set_compute_nice(0);
        assert_eq!(nice, base.max(7));
    }
}
