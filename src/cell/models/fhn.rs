//! `fhn`: the classic FitzHugh–Nagumo model as printed in the paper (Eq. 1).

use crate::cell::{CellModel, ModelInfo, Param, Real, StateVar};

pub struct Fhn;

pub static MODEL: Fhn = Fhn;

const A: usize = 0;
const B: usize = 1;
const TAU: usize = 2;
const C: usize = 3;
const I: usize = 4;

static INFO: ModelInfo = ModelInfo {
    name: "fhn",
    summary: "classic FitzHugh-Nagumo (the paper's Eq. 1)",
    equations: "du/dt = c*(u - u^3/3 - v) + I; dv/dt = (u + a - b*v)/tau",
    states: &[
        StateVar { name: "u", summary: "membrane potential (dimensionless)", initial: 0.0 },
        StateVar { name: "v", summary: "recovery variable", initial: 0.0 },
    ],
    params: &[
        Param { name: "a", default: 0.7, min: -10.0, max: 10.0, summary: "recovery offset" },
        Param { name: "b", default: 0.8, min: 0.0, max: 10.0, summary: "recovery damping" },
        Param { name: "tau", default: 12.5, min: 1e-3, max: 1e4, summary: "recovery time constant" },
        Param { name: "c", default: 1.0, min: 0.0, max: 100.0, summary: "excitation scale" },
        Param { name: "I", default: 0.0, min: -10.0, max: 10.0, summary: "applied current" },
    ],
};

impl CellModel for Fhn {
    const N_STATE: usize = 2;

    fn info(&self) -> &'static ModelInfo {
        &INFO
    }

    #[inline(always)]
    fn rhs<R: Real>(&self, p: &[R], x: &[R], dx: &mut [R]) {
        let (u, v) = (x[0], x[1]);
        // u - u³/3 = u·(1 - u²/3)
        let cubic = (u * u).mul_add(R::splat(-1.0 / 3.0), R::splat(1.0)) * u;
        dx[0] = p[C].mul_add(cubic - v, p[I]);
        // 1/τ is loop-invariant, so the solver hoists it out of the step loop.
        dx[1] = (u + p[A] - p[B] * v) * (R::splat(1.0) / p[TAU]);
    }

    fn cuda_rhs(&self) -> &'static str {
        r#"
__device__ __forceinline__ void rhs(const float* p, const float* x, float* dx) {
    const float u = x[0], v = x[1];
    const float cubic = fmaf(u * u, -1.0f / 3.0f, 1.0f) * u;
    dx[0] = fmaf(p[3], cubic - v, p[4]);
    dx[1] = (u + p[0] - p[1] * v) * (1.0f / p[2]);
}
"#
    }
}
