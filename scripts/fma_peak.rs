//! The machine's AVX-512 FMA peak, for the cycle models in BENCHMARKS.md:
//! 16 independent FMA chains in registers, then the native kernel's
//! pattern (4 vector loads + 4 broadcasts per 16 FMAs) from an L1 buffer.
//! Run: rustc -O -C target-cpu=native scripts/fma_peak.rs -o /tmp/fma_peak && /tmp/fma_peak
use std::arch::x86_64::*;
use std::time::Instant;
#[target_feature(enable="avx512f")]
unsafe fn run(n: usize) -> f32 {
    let mut a = [_mm512_set1_ps(1.0); 16];
    let m = _mm512_set1_ps(0.999999); let c = _mm512_set1_ps(1e-7);
    for _ in 0..n { for i in 0..16 { a[i] = _mm512_fmadd_ps(a[i], m, c); } }
    let mut s = _mm512_setzero_ps(); for i in 0..16 { s = _mm512_add_ps(s, a[i]); }
    _mm512_reduce_add_ps(s)
}
#[target_feature(enable="avx512f")]
unsafe fn run_mem(n: usize, x: &[f32], w: &[f32]) -> f32 {
    // the kernel's pattern: 4 vector loads + 4 broadcasts + 16 FMA per k, k over 64
    let mut a = [_mm512_setzero_ps(); 16];
    for _ in 0..n { for k in 0..64 {
        let xv = [_mm512_loadu_ps(x.as_ptr().add(k*64)), _mm512_loadu_ps(x.as_ptr().add(k*64+16)), _mm512_loadu_ps(x.as_ptr().add(k*64+32)), _mm512_loadu_ps(x.as_ptr().add(k*64+48))];
        for j in 0..4 { let b = _mm512_set1_ps(*w.get_unchecked(k*64+j)); for r in 0..4 { a[j*4+r] = _mm512_fmadd_ps(b, xv[r], a[j*4+r]); } }
    } }
    let mut s = _mm512_setzero_ps(); for i in 0..16 { s = _mm512_add_ps(s, a[i]); }
    _mm512_reduce_add_ps(s)
}
fn main() {
    let n = 100_000_000usize;
    let t = Instant::now(); let r = unsafe { run(n) }; let dt = t.elapsed().as_secs_f64();
    println!("reg FMA: {:.3e} zmm-FMA/s ({r})", (n*16) as f64 / dt);
    let x = vec![0.001f32; 64*64]; let w = vec![0.001f32; 64*64];
    let n = 1_000_000usize;
    let t = Instant::now(); let r = unsafe { run_mem(n, &x, &w) }; let dt = t.elapsed().as_secs_f64();
    println!("kernel FMA: {:.3e} zmm-FMA/s ({r})", (n*64*16) as f64 / dt);
}
