//! Helper threads for the native engine that spin briefly between batches.
//!
//! A batch of 1024 rows is 10–50 µs of work; waking a parked thread costs
//! 5–40 µs on a virtual machine (measured: a rayon pool parked its worker
//! on about half the calls, and two threads gained 1.5× instead of 2× at
//! 16 384 rows). The helpers here poll for the next job for
//! [`SPIN`] (or `EXCITE_NATIVE_SPIN_US` microseconds; 0 parks at once) after
//! each one, as ONNX Runtime's intra-op threads do, and park
//! after that, so an idle engine costs nothing. The caller runs the job too
//! and returns only when every helper has finished it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle helper polls before parking, unless `EXCITE_NATIVE_SPIN_US` says.
pub const SPIN: Duration = Duration::from_micros(300);

fn spin() -> Duration {
    std::env::var("EXCITE_NATIVE_SPIN_US").ok().and_then(|v| v.parse().ok()).map_or(SPIN, Duration::from_micros)
}

type Job = *const (dyn Fn() + Sync);

struct Shared {
    /// Bumped for every job (and at shutdown).
    generation: AtomicU64,
    /// Helpers still running the current job.
    pending: AtomicUsize,
    job: Mutex<Option<SendJob>>,
    wake: Condvar,
    shutdown: AtomicBool,
    panicked: AtomicBool,
}

#[derive(Clone, Copy)]
struct SendJob(Job);
// SAFETY: the pointee is Sync and outlives every use (`Helpers::run` waits
// for all helpers before returning).
unsafe impl Send for SendJob {}

pub struct Helpers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// One job at a time, whoever calls (`run` takes `&self`).
    busy: Mutex<()>,
}

impl Helpers {
    /// `n` helper threads (the caller is one more worker).
    pub fn new(n: usize) -> std::io::Result<Helpers> {
        let shared = Arc::new(Shared { generation: AtomicU64::new(0), pending: AtomicUsize::new(0), job: Mutex::new(None), wake: Condvar::new(), shutdown: AtomicBool::new(false), panicked: AtomicBool::new(false) });
        let threads = (0..n)
            .map(|i| {
                let s = shared.clone();
                let poll = spin();
                std::thread::Builder::new().name(format!("excite-native-{i}")).spawn(move || helper(&s, poll))
            })
            .collect::<Result<_, _>>()?;
        Ok(Helpers { shared, threads, busy: Mutex::new(()) })
    }

    /// Runs `job` on the caller and every helper; returns when all are done.
    pub fn run(&self, job: &(dyn Fn() + Sync)) {
        let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let s = &self.shared;
        // SAFETY: only the lifetime is erased; we wait for `pending` to reach
        // zero below, so no helper uses the pointer after this returns.
        let ptr: Job = unsafe { std::mem::transmute::<*const (dyn Fn() + Sync + '_), Job>(job as *const _) };
        {
            let mut slot = s.job.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(SendJob(ptr));
            s.pending.store(self.threads.len(), Ordering::SeqCst);
            s.generation.fetch_add(1, Ordering::SeqCst);
        }
        s.wake.notify_all();
        job();
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) > 0 {
            spins += 1;
            if spins < 4096 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now(); // more threads than cores: let the helper run
            }
        }
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
        assert!(!s.panicked.load(Ordering::SeqCst), "a native engine helper thread panicked");
    }
}

fn helper(s: &Shared, poll: Duration) {
    let mut seen = 0u64;
    loop {
        // poll, then park
        let start = Instant::now();
        let mut spins = 0u32;
        while s.generation.load(Ordering::Acquire) == seen {
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(256) && start.elapsed() > poll {
                let mut slot = s.job.lock().unwrap_or_else(|e| e.into_inner());
                while s.generation.load(Ordering::Acquire) == seen {
                    slot = s.wake.wait(slot).unwrap_or_else(|e| e.into_inner());
                }
                break;
            }
        }
        seen = s.generation.load(Ordering::Acquire);
        if s.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(SendJob(ptr)) = job {
            // SAFETY: `run` keeps the job alive until `pending` is zero.
            let f = unsafe { &*ptr };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                s.panicked.store(true, Ordering::SeqCst);
            }
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        {
            let _slot = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.shutdown.store(true, Ordering::SeqCst);
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
        }
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_helper_runs_every_job_and_run_waits_for_them() {
        let h = Helpers::new(3).unwrap();
        let count = AtomicUsize::new(0);
        for round in 1..=200 {
            h.run(&|| {
                count.fetch_add(1, Ordering::SeqCst);
            });
            assert_eq!(count.load(Ordering::SeqCst), 4 * round);
            if round % 50 == 0 {
                std::thread::sleep(SPIN * 3); // let them park
            }
        }
        // callers on several threads take turns
        let total = AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..3 {
                sc.spawn(|| {
                    for _ in 0..100 {
                        h.run(&|| {
                            total.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::SeqCst), 3 * 100 * 4);
    }
}
