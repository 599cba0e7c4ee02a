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

    /// Runs `job` on the caller and every helper; returns when all are done,
    /// also when the caller's share panics (helpers may still be using `job`
    /// and whatever it borrows until then). A panic on any thread is returned
    /// as an error; the pool stays usable.
    pub fn run(&self, job: &(dyn Fn() + Sync)) -> Result<(), JobPanicked> {
        let _busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        s.panicked.store(false, Ordering::SeqCst);
        // SAFETY: only the lifetime is erased; `Finish` below waits for
        // `pending` to reach zero and clears the slot before `run` returns
        // or unwinds, so no helper uses the pointer afterwards.
        let ptr: Job = unsafe { std::mem::transmute::<*const (dyn Fn() + Sync + '_), Job>(job as *const _) };
        {
            let mut slot = s.job.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(SendJob(ptr));
            s.pending.store(self.threads.len(), Ordering::SeqCst);
            s.generation.fetch_add(1, Ordering::SeqCst);
        }
        s.wake.notify_all();
        let finish = Finish(s);
        let caller = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        drop(finish);
        if caller.is_err() || s.panicked.swap(false, Ordering::SeqCst) {
            return Err(JobPanicked);
        }
        Ok(())
    }
}

/// A panic in a job, on the caller's thread or a helper's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobPanicked;

/// Waits for every helper to finish the current job and clears it, on every
/// way out of [`Helpers::run`] (a panic included).
struct Finish<'a>(&'a Shared);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let s = self.0;
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
            })
            .unwrap();
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
                        })
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::SeqCst), 3 * 100 * 4);
    }

    /// The caller's share panics while the helpers are still writing into
    /// what the job borrows: `run` returns only after they finish (they
    /// never touch freed memory), reports the panic, and the next job runs.
    /// Likewise for a helper's panic.
    #[test]
    fn a_panicking_job_is_an_error_after_every_helper_finished() {
        let h = Helpers::new(2).unwrap();
        let on_helper = || std::thread::current().name().is_some_and(|n| n.starts_with("excite-native-"));
        for _ in 0..20 {
            let done = AtomicUsize::new(0);
            let out = std::sync::Mutex::new(vec![0u8; 64]);
            let r = h.run(&|| {
                if on_helper() {
                    std::thread::sleep(Duration::from_millis(2));
                    out.lock().unwrap_or_else(|e| e.into_inner()).fill(1);
                    done.fetch_add(1, Ordering::SeqCst);
                } else {
                    panic!("the caller's share fails");
                }
            });
            assert_eq!(r, Err(JobPanicked));
            // both helpers had finished their share before `run` came back
            assert_eq!(done.load(Ordering::SeqCst), 2);
            drop(out);
        }
        assert_eq!(h.run(&|| assert!(!on_helper(), "a helper fails")), Err(JobPanicked));
        let count = AtomicUsize::new(0);
        h.run(&|| {
            count.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 3, "the pool is usable after panics");
    }
}
