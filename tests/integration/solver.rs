//! The fast CPU path against the scalar reference.

use excite::cell;
use excite::isa::Isa;
use excite::solve::{cpu, scalar, Column, TimeGrid};

use crate::util::cells;

/// Agreement allowed between fused (FMA) and unfused f32 arithmetic after
/// thousands of steps; the same model in f64 bounds both.
const FMA_VS_UNFUSED: f64 = 2e-5;

fn problem(model: &dyn cell::Model, n: usize) -> excite::solve::Cells {
    let states = model.info().states.len();
    let init = (0..states)
        .map(|s| {
            (0..n)
                .map(|i| ((i * 7919 + s * 13) % 1000) as f64 / 1000.0 * 0.9)
                .collect()
        })
        .collect();
    let k: Vec<f64> = (0..n).map(|i| (i % 17) as f64 / 16.0).collect();
    let over = if model.info().param_index("k").is_some() {
        vec![("k", Column::PerCell(k))]
    } else {
        vec![]
    };
    cells(model, init, &over)
}

#[test]
fn every_kernel_matches_the_scalar_reference() {
    let grid = TimeGrid::new(20.0, 0.01, 0.5).unwrap();
    for model in cell::all() {
        // 101 cells: three full blocks of 32 and a partial one.
        let c = problem(*model, 101);
        let scalar = scalar::solve_model::<f32>(*model, &grid, &c).unwrap();
        let f64_ref = scalar::solve_model::<f64>(*model, &grid, &c).unwrap();
        for kernel in Isa::available() {
            let fast = cpu::solve_with(*model, &grid, &c, 1, kernel).unwrap();
            let d = fast.max_abs_diff(&scalar);
            let tol = if kernel == Isa::Portable {
                0.0
            } else {
                FMA_VS_UNFUSED
            };
            assert!(
                d <= tol,
                "{} {kernel:?}: max diff to scalar {d:.2e} > {tol:.0e}",
                model.info().name
            );
            assert!(fast.max_abs_diff(&f64_ref) < 1e-4);
        }
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let grid = TimeGrid::new(5.0, 0.01, 0.5).unwrap();
    let model = cell::by_name("fhn-cardiac").unwrap();
    let c = problem(model, 1000);
    let one = cpu::solve_best(model, &grid, &c, 1).unwrap();
    for threads in [2, 3, 7] {
        assert_eq!(
            one.data,
            cpu::solve_best(model, &grid, &c, threads).unwrap().data,
            "{threads} threads"
        );
    }
    // A cell's result does not depend on its neighbours or on the block it lands in.
    let sub = problem(model, 1000);
    let idx: Vec<usize> = (0..1000).step_by(37).collect();
    let pick = |col: &Column| match col {
        Column::PerCell(v) => Column::PerCell(idx.iter().map(|&i| v[i]).collect()),
        same => same.clone(),
    };
    let few = excite::solve::Cells {
        n: idx.len(),
        init: sub.init.iter().map(pick).collect(),
        params: sub.params.iter().map(pick).collect(),
    };
    let r = cpu::solve_best(model, &grid, &few, 2).unwrap();
    for (j, &i) in idx.iter().enumerate() {
        for s in 0..grid.n_samples {
            assert_eq!(r.get(0, s, j), one.get(0, s, i));
        }
    }
}

#[test]
fn samples_are_stored_at_the_right_times() {
    // dx/dt is constant for fhn-cardiac at u = 0, v = 0 for one step only,
    // so check the first sample after one step against a hand computation.
    let model = cell::by_name("fhn-cardiac").unwrap();
    let c = cells(model, vec![vec![0.0], vec![0.0]], &[]);
    let grid = TimeGrid::new(0.02, 0.01, 0.01).unwrap();
    let r = cpu::solve_best(model, &grid, &c, 1).unwrap();
    // one step: u = dt·k1·I = 0.01·10·0.08, v = 0; two steps: v = dt·e1·u1
    assert_eq!(r.get(0, 0, 0), 0.0);
    assert!((r.get(0, 1, 0) as f64 - 0.008).abs() < 1e-8);
    assert!((r.get(1, 2, 0) as f64 - 0.01 * 0.04 * 0.008).abs() < 1e-9);
}
