//! What a status request pays to read the published snapshot, per way of holding it:
//! `ArcSwap::load_full` (what `SnapshotCell::load` does), `ArcSwap::load` (a guard, no
//! reference count), and `RwLock<Arc<_>>` read + clone. Measured while another thread
//! reads the same cell in a loop (the second HTTP worker) and a writer swaps it every
//! millisecond (the refresher does it every second), so the shared cache lines move.
//!
//! `cargo bench --bench snapshot -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion};

/// Stands in for a snapshot: what a reader gets is a pointer to it.
struct Snapshot {
    taken_at_ms: u64,
    body: Vec<u8>,
}

fn snapshot(n: u64) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        taken_at_ms: n,
        body: vec![0; 4096],
    })
}

/// Runs `read` on one background thread and `write` every millisecond on another until the
/// returned guard is dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(read: impl Fn() + Send + 'static, write: impl Fn(u64) + Send + 'static) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    read();
                }
            })
        };
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    write(n);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        Load {
            stop,
            threads: vec![reader, writer],
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn read_paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot-read");

    let cell = Arc::new(ArcSwap::new(snapshot(0)));
    let load = {
        let (r, w) = (cell.clone(), cell.clone());
        Load::start(
            move || {
                black_box(r.load_full().taken_at_ms);
            },
            move |n| w.store(snapshot(n)),
        )
    };
    group.bench_function("arc_swap_load_full", |b| {
        b.iter(|| {
            let s = cell.load_full();
            black_box((s.taken_at_ms, s.body.len()))
        })
    });
    group.bench_function("arc_swap_load_guard", |b| {
        b.iter(|| {
            let s = cell.load();
            black_box((s.taken_at_ms, s.body.len()))
        })
    });
    drop(load);

    let lock = Arc::new(RwLock::new(snapshot(0)));
    let load = {
        let (r, w) = (lock.clone(), lock.clone());
        Load::start(
            move || {
                let s = r.read().unwrap().clone();
                black_box(s.taken_at_ms);
            },
            move |n| *w.write().unwrap() = snapshot(n),
        )
    };
    group.bench_function("rwlock_read_clone", |b| {
        b.iter(|| {
            let s = lock.read().unwrap().clone();
            black_box((s.taken_at_ms, s.body.len()))
        })
    });
    drop(load);
    group.finish();
}

criterion_group!(benches, read_paths);
criterion_main!(benches);
