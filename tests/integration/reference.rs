//! The Euler reference against the outside world: the authors' CUDA solver
//! output, and the convergence order of the scheme.

use excite::cell;
use excite::solve::{cpu, scalar, Column, TimeGrid};

use crate::util::{cells, read_csv, reference_dir};

/// fhn-cardiac, I = 0.08, dt = 0.01 from the authors' 250 initial states
/// reproduces their u.csv and v.csv (t = 0, 5, …, 25) to 1e-4.
#[test]
fn reproduces_the_authors_cuda_solver() {
    let dir = reference_dir().join("ufjf-fhn-cuda");
    let inputs = read_csv(&dir.join("inputs.csv"));
    let expected = [read_csv(&dir.join("u.csv")), read_csv(&dir.join("v.csv"))];
    assert_eq!(inputs.len(), 250);
    let model = cell::by_name("fhn-cardiac").unwrap();
    let init = vec![
        inputs.iter().map(|r| r[0]).collect(),
        inputs.iter().map(|r| r[1]).collect(),
    ];
    // The authors' kernel ignored k and ran I = 0.08 for every cell.
    let c = cells(
        model,
        init,
        &[("i0", Column::Same(0.08)), ("k", Column::Same(0.0))],
    );
    let grid = TimeGrid::new(25.0, 0.01, 5.0).unwrap();
    assert_eq!((grid.steps_per_sample, grid.n_samples), (500, 6));

    let simd = cpu::solve_best(model, &grid, &c, 0).unwrap();
    let scalar = scalar::solve_model::<f32>(model, &grid, &c).unwrap();
    for (name, traj) in [("simd", &simd), ("scalar", &scalar)] {
        let mut worst = (0.0f64, 0, 0, 0);
        for (var, table) in expected.iter().enumerate() {
            for (cell, row) in table.iter().enumerate() {
                for (s, &want) in row.iter().enumerate() {
                    let d = (traj.get(var, s, cell) as f64 - want).abs();
                    if d > worst.0 {
                        worst = (d, var, s, cell);
                    }
                }
            }
        }
        let (d, var, s, cell) = worst;
        assert!(
            d <= 1e-4,
            "{name}: {} of cell {cell} at t = {} is off by {d:.2e}",
            ["u", "v"][var],
            5 * s
        );
        // The data pins the scheme down: the worst error is far below what a
        // different dt would give (> 8e-3).
        eprintln!("{name}: max abs error to the authors' output {d:.2e}");
    }
}

/// Halving dt halves the error against a fine f64 solution (first order).
#[test]
fn euler_converges_at_first_order() {
    for model in cell::all() {
        let info = model.info();
        let (init, t_end) = match info.name {
            "fhn-cardiac" => (vec![vec![0.5, 0.3, 0.05], vec![0.0, 0.02, 0.1]], 10.0),
            _ => (vec![vec![-1.0, 0.5, 1.5], vec![1.0, 0.0, -0.3]], 10.0),
        };
        let c = cells(*model, init, &[]);
        let solve = |dt: f64| scalar::solve_model::<f64>(*model, &TimeGrid::new(t_end, dt, 1.0).unwrap(), &c).unwrap();
        let fine = solve(1e-5);
        let errors: Vec<f64> = [4e-3, 2e-3, 1e-3]
            .iter()
            .map(|&dt| solve(dt).max_abs_diff(&fine))
            .collect();
        for w in errors.windows(2) {
            let ratio = w[0] / w[1];
            assert!(
                (1.8..2.2).contains(&ratio),
                "{}: error ratio {ratio:.3} when halving dt ({errors:?})",
                info.name
            );
        }
    }
}

/// f32 stays close to f64 over the reference problem (no precision blow-up).
#[test]
fn f32_tracks_f64() {
    let model = cell::by_name("fhn-cardiac").unwrap();
    let n = 64;
    let init = vec![
        (0..n).map(|i| i as f64 / n as f64).collect(),
        (0..n).map(|i| 0.12 * i as f64 / n as f64).collect(),
    ];
    let c = cells(model, init, &[]);
    let grid = TimeGrid::new(25.0, 0.01, 0.1).unwrap();
    let d = scalar::solve_model::<f32>(model, &grid, &c)
        .unwrap()
        .max_abs_diff(&scalar::solve_model::<f64>(model, &grid, &c).unwrap());
    assert!(d < 1e-4, "f32 vs f64: {d:.2e}");
}
