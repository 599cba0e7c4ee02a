//! `fhn-cardiac`: the cardiac FitzHugh–Nagumo variant the paper's authors ran
//! (cubic with excitation threshold α), with stimulus `I = i0 + i1·k`.

use crate::cell::{CellModel, ModelInfo, Param, Real, StateVar};

pub struct FhnCardiac;

pub static MODEL: FhnCardiac = FhnCardiac;

const K1: usize = 0;
const ALPHA: usize = 1;
const E1: usize = 2;
const E2: usize = 3;
const I0: usize = 4;
const I1: usize = 5;
const K: usize = 6;

static INFO: ModelInfo = ModelInfo {
    name: "fhn-cardiac",
    summary: "cardiac FitzHugh-Nagumo with threshold alpha (the authors' solver)",
    equations: "du/dt = k1*(u*(u - alpha)*(1 - u) - v + I); dv/dt = e1*u - e2*v; I = i0 + i1*k",
    states: &[
        StateVar { name: "u", summary: "membrane potential (dimensionless)", initial: 0.0 },
        StateVar { name: "v", summary: "recovery variable", initial: 0.0 },
    ],
    params: &[
        Param { name: "k1", default: 10.0, min: 0.0, max: 1e3, summary: "excitation rate" },
        Param { name: "alpha", default: 0.4, min: 0.0, max: 1.0, summary: "excitation threshold" },
        Param { name: "e1", default: 0.04, min: 0.0, max: 10.0, summary: "recovery drive by u" },
        Param { name: "e2", default: 0.16, min: 0.0, max: 10.0, summary: "recovery decay" },
        Param { name: "i0", default: 0.08, min: -10.0, max: 10.0, summary: "stimulus at k = 0" },
        Param { name: "i1", default: 0.04, min: -10.0, max: 10.0, summary: "stimulus per unit k" },
        Param { name: "k", default: 0.0, min: -100.0, max: 100.0, summary: "stimulus parameter" },
    ],
};

impl CellModel for FhnCardiac {
    const N_STATE: usize = 2;

    fn info(&self) -> &'static ModelInfo {
        &INFO
    }

    #[inline(always)]
    fn rhs<R: Real>(&self, p: &[R], x: &[R], dx: &mut [R]) {
        let (u, v) = (x[0], x[1]);
        let stimulus = p[I1].mul_add(p[K], p[I0]);
        // u(u - α)(1 - u) in Horner form: ((1 + α - u)·u - α)·u
        let cubic_plus = (R::splat(1.0) + p[ALPHA] - u)
            .mul_add(u, -p[ALPHA])
            .mul_add(u, stimulus - v);
        dx[0] = p[K1] * cubic_plus;
        dx[1] = p[E1].mul_add(u, -(p[E2] * v));
    }

    fn cuda_rhs(&self) -> &'static str {
        r#"
__device__ __forceinline__ void rhs(const float* p, const float* x, float* dx) {
    const float u = x[0], v = x[1];
    const float stimulus = fmaf(p[5], p[6], p[4]);
    const float cubic_plus = fmaf(fmaf(1.0f + p[1] - u, u, -p[1]), u, stimulus - v);
    dx[0] = p[0] * cubic_plus;
    dx[1] = fmaf(p[2], u, -(p[3] * v));
}
"#
    }
}
