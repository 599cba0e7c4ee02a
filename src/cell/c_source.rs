//! A compiled [`Program`] as C for the host's compiler: the step of eight
//! cells at a time in GCC vector types, every value a local (kept in vector
//! registers where they suffice), the states in registers across every step
//! of a call. The arithmetic is the interpreter's, operation for operation:
//! the same exponential and logarithm (fused multiply-adds where it has
//! them, nowhere else: built with `-ffp-contract=off`), comparisons as 1/0,
//! the other functions from libm lane by lane, as Rust's call them. So a
//! cell's result is bit for bit the interpreter's, which a test checks.

use std::fmt::Write;

use crate::cell::equations::Func;
use crate::cell::program::{c_literal, libm_name, CDialect, Program, EXP_POLY};

/// Lanes of one generated vector: a register of AVX-512, two of AVX2.
pub const LANES: usize = 8;

/// `void excite_run(double *regs, long long w, long long n0, long long steps, double dt)`:
/// `steps` steps from step `n0` of each group of [`LANES`] cells of a
/// register file of `w` lanes (`w` a multiple of [`groups`]` · `[`LANES`]), whose
/// constants, parameters, setup and states are set; the states are left in it.
pub fn c_source(p: &Program) -> String {
    let groups = groups(p);
    let (mut load, mut step, mut store) = (String::new(), String::new(), String::new());
    for g in 0..groups {
        let r = |x: u32| format!("r{x}_{g}");
        let at = |x: u32| format!("regs + {x}LL * w + c + {}", g * LANES);
        for x in 0..p.n_regs as u32 {
            if x == p.time {
                let _ = writeln!(load, "        v8 {};", r(x));
            } else {
                let _ = writeln!(load, "        v8 {} = ld({});", r(x), at(x));
            }
        }
        let _ = writeln!(step, "            {} = vt;", r(p.time));
        for ins in &p.code {
            let (d, e) = VECTOR.instruction(ins, &r);
            let _ = writeln!(step, "            {} = {e};", r(d));
        }
        // every state's new value from the old ones, then all stored: no rate
        // or coefficient is a state's register, as in the interpreter
        for (k, &x) in p.states.iter().enumerate() {
            let _ = writeln!(step, "            v8 next{k}_{g} = {};", VECTOR.update(p, k, &r));
            let _ = writeln!(store, "        st({}, {});", at(x), r(x));
        }
        for (k, &x) in p.states.iter().enumerate() {
            let _ = writeln!(step, "            {} = next{k}_{g};", r(x));
        }
    }
    let cells = groups * LANES;
    // the exponential's polynomial written out from the interpreter's coefficients
    let lit = VECTOR.literal;
    let poly = EXP_POLY[1..].iter().fold(lit(EXP_POLY[0]), |acc, &c| format!("fma8({acc}, r, {})", lit(c)));
    let prelude = PRELUDE.replace("@EXP_POLY@", &poly);
    format!("{prelude}\nvoid excite_run(double *regs, long long w, long long n0, long long steps, double dt) {{\n    const v8 vdt = splat(dt);\n    for (long long c = 0; c < w; c += {cells}) {{\n{load}        for (long long s = 0; s < steps; s++) {{\n            const v8 vt = splat((double)(n0 + s) * dt);\n{step}        }}\n{store}    }}\n}}\n")
}

/// The vector dialect: eight lanes a value, selects by mask, the
/// interpreter's exponential.
const VECTOR: CDialect = CDialect { call, literal: |v| format!("splat{}", c_literal(v)), select: |op, x, y, a, b| format!("sel_{}({x}, {y}, {a}, {b})", selector(op)), exp: "vexp", dt: "vdt" };

/// The suffix of the prelude's `sel_` function of a comparison.
fn selector(f: Func) -> &'static str {
    match f {
        Func::Lt => "lt",
        Func::Le => "le",
        Func::Gt => "gt",
        Func::Ge => "ge",
        Func::Eq => "eq",
        Func::Ne => "ne",
        _ => unreachable!("{f:?} is not a comparison"),
    }
}

/// Groups of [`LANES`] cells a generated step advances together: a short
/// step is a chain of dependent operations, whose latency several
/// independent groups hide; a long one has independent work enough within
/// itself and would only spill more values (measured on one Zen 4 core:
/// FHN, 11 instructions, 1.18e9 cell-steps/s with one group, 3.3e9 with
/// four, 3.8e9 with eight or sixteen; Luo–Rudy 1991, 233 instructions,
/// 2.9–3.1e7 with one, 3.1e7 with two, Rush–Larsen 2.7e7 with one or two
/// and 2.3e7 with four; Hodgkin–Huxley, 72, 1.3–1.6e8 with one, two or four).
pub fn groups(p: &Program) -> usize {
    if p.code.len() <= 64 {
        8
    } else {
        1
    }
}

/// One instruction as a C expression on vectors.
fn call(f: Func, a: &str, b: &str) -> String {
    match f {
        Func::Add => format!("{a} + {b}"),
        Func::Sub => format!("{a} - {b}"),
        Func::Mul => format!("{a} * {b}"),
        Func::Div => format!("{a} / {b}"),
        Func::Neg => format!("-{a}"),
        Func::Pow => format!("each2(pow, {a}, {b})"),
        Func::Exp => format!("vexp({a})"),
        Func::Ln => format!("vln({a})"),
        Func::Lt | Func::Le | Func::Gt | Func::Ge | Func::Eq | Func::Ne => format!("sel_{}({a}, {b}, ONE, ZERO)", selector(f)),
        Func::Xor => format!("sel_ne({a}, {b}, ONE, ZERO)"),
        // operands are 0/1 here (the compiler compares with 0 first)
        Func::And => format!("{a} * {b}"),
        Func::Or => format!("sel_gt({a} + {b}, ZERO, ONE, ZERO)"),
        Func::Not => format!("sel_eq({a}, ZERO, ONE, ZERO)"),
        // the rest: libm's functions of one argument, lane by lane
        _ => format!("each1({}, {a})", libm_name(f).expect("the rest are libm's functions of one argument")),
    }
}

/// Vector types and the functions the step calls: `vexp` and `vln` are
/// [`crate::cell::program::exp_block`] and `ln_block` step by step.
const PRELUDE: &str = r#"// generated by excite from a compiled cell model: do not edit
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

typedef double v8 __attribute__((vector_size(64)));
typedef int64_t m8 __attribute__((vector_size(64)));
typedef uint64_t u8 __attribute__((vector_size(64)));

#define INLINE static inline __attribute__((always_inline))
INLINE v8 splat(double x) { return (v8){x, x, x, x, x, x, x, x}; }
INLINE v8 ld(const double *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
INLINE void st(double *p, v8 v) { memcpy(p, &v, sizeof v); }
#define each1(f, a) ({ v8 x_ = (a), r_; for (int i_ = 0; i_ < 8; i_++) r_[i_] = f(x_[i_]); r_; })
#define each2(f, a, b) ({ v8 x_ = (a), y_ = (b), r_; for (int i_ = 0; i_ < 8; i_++) r_[i_] = f(x_[i_], y_[i_]); r_; })

INLINE v8 fma8(v8 a, v8 b, v8 c) {
#if defined(__AVX512F__)
    return (v8)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif defined(__FMA__)
    __m256d a0, a1, b0, b1, c0, c1;
    memcpy(&a0, &a, 32); memcpy(&a1, (char *)&a + 32, 32);
    memcpy(&b0, &b, 32); memcpy(&b1, (char *)&b + 32, 32);
    memcpy(&c0, &c, 32); memcpy(&c1, (char *)&c + 32, 32);
    a0 = _mm256_fmadd_pd(a0, b0, c0); a1 = _mm256_fmadd_pd(a1, b1, c1);
    v8 r; memcpy(&r, &a0, 32); memcpy((char *)&r + 32, &a1, 32);
    return r;
#else
    v8 r;
    for (int i = 0; i < 8; i++) r[i] = fma(a[i], b[i], c[i]);
    return r;
#endif
}

/* sel_OP(x, y, a, b): lanes of a where x OP y (C's comparison: != is true
   where either is NaN, the others false), else of b; the larger and the
   smaller of a and b (either where one is NaN: callers mask NaN
   afterwards); p·2^k rounded once (k whole) */
#if defined(__AVX512F__)
#define SEL(name, op, code) INLINE v8 name(v8 x, v8 y, v8 a, v8 b) { return (v8)_mm512_mask_blend_pd(_mm512_cmp_pd_mask((__m512d)x, (__m512d)y, code), (__m512d)b, (__m512d)a); }
INLINE v8 vmax(v8 a, v8 b) { return (v8)_mm512_max_pd((__m512d)a, (__m512d)b); }
INLINE v8 vmin(v8 a, v8 b) { return (v8)_mm512_min_pd((__m512d)a, (__m512d)b); }
INLINE v8 scale2(v8 p, v8 k) { return (v8)_mm512_scalef_pd((__m512d)p, (__m512d)k); }
#else
INLINE v8 sel(m8 m, v8 a, v8 b) { return (v8)((m & (m8)a) | (~m & (m8)b)); }
#define SEL(name, op, code) INLINE v8 name(v8 x, v8 y, v8 a, v8 b) { return sel(x op y, a, b); }
INLINE v8 vmax(v8 a, v8 b) { return sel(a > b, a, b); }
INLINE v8 vmin(v8 a, v8 b) { return sel(a < b, a, b); }
INLINE v8 scale2(v8 p, v8 k) {
    /* 2^k = 2^k1 · 2^k2 with both halves normal: p·2^k1 is exact */
    const double SHIFT = 4503599627370496.0 + 1023.0;
    v8 k1 = each1(floor, k * 0.5);
    v8 k2 = k - k1;
    v8 s1 = (v8)((u8)(k1 + SHIFT) << 52);
    v8 s2 = (v8)((u8)(k2 + SHIFT) << 52);
    return p * s1 * s2;
}
#endif
SEL(sel_lt, <, _CMP_LT_OQ)
SEL(sel_le, <=, _CMP_LE_OQ)
SEL(sel_gt, >, _CMP_GT_OQ)
SEL(sel_ge, >=, _CMP_GE_OQ)
SEL(sel_eq, ==, _CMP_EQ_OQ)
SEL(sel_ne, !=, _CMP_NEQ_UQ)
#define ONE splat(1.0)
#define ZERO splat(0.0)

INLINE v8 vexp(v8 x) {
    const double LOG2E = 1.4426950408889634074, LN2_HI = 6.9314718036912381649e-1, LN2_LO = 1.9082149292705877000e-10;
    const double ROUND = 6755399441055744.0;
    v8 c = vmin(vmax(x, splat(-746.0)), splat(710.0));
    v8 k = fma8(c, splat(LOG2E), splat(ROUND)) - ROUND;
    v8 r = fma8(k, splat(-LN2_LO), fma8(k, splat(-LN2_HI), c));
    v8 p = @EXP_POLY@;
    return sel_ne(x, x, x, scale2(p, k));
}

INLINE v8 vln(v8 x) {
    const double LN2_HI = 6.9314718036912381649e-1, LN2_LO = 1.9082149292705877000e-10, TWO54 = 18014398509481984.0;
    const double C[11] = {1.0 / 23.0, 1.0 / 21.0, 1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0};
    const v8 MIN = splat(2.2250738585072014e-308), SQRT2 = splat(1.4142135623730951);
    v8 y = sel_lt(x, MIN, x * TWO54, x);
    u8 bits = (u8)y;
    v8 e = (v8)(((bits >> 52) & 0x7ff) | 0x4330000000000000ULL) - (4503599627370496.0 + 1023.0);
    v8 m1 = (v8)((bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);
    v8 m = sel_gt(m1, SQRT2, m1 * 0.5, m1);
    e = e + sel_gt(m1, SQRT2, ONE, ZERO) - sel_lt(x, MIN, splat(54.0), ZERO);
    v8 s = (m - 1.0) / (m + 1.0);
    v8 s2 = s * s;
    v8 p = splat(C[0]);
    for (int i = 1; i < 11; i++) p = fma8(p, s2, splat(C[i]));
    v8 lnm = 2.0 * s + 2.0 * s * s2 * p;
    v8 r = (e * LN2_LO + lnm) + e * LN2_HI;
    r = sel_eq(x, splat(__builtin_inf()), splat(__builtin_inf()), r);
    r = sel_eq(x, ZERO, splat(-__builtin_inf()), r);
    r = sel_lt(x, ZERO, splat(__builtin_nan("")), r);
    return sel_ne(x, x, splat(__builtin_nan("")), r);
}
"#;
