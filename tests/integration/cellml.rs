//! CellML import against Myokit: real models (Luo–Rudy 1991, Beeler–Reuter
//! 1977, Noble 1962, Decker 2009, Hodgkin–Huxley 1952) exported by Myokit as
//! CellML 1.0, 1.1 and 2.0, and real CellML 1.0 files of the model
//! repository, read by excite and by Myokit: the same states, initial values
//! and derivatives.

use std::path::{Path, PathBuf};

use excite::cell::cellml;

use crate::util::{excite, python, root, scratch};

/// The files of cellml_models.py and Myokit's reference, written into `dir`.
pub fn models(dir: &Path) -> PathBuf {
    let out = dir.join("cellml");
    let o = python().arg(root().join("tests/integration/cellml_models.py")).arg(&out).output().unwrap();
    assert!(o.status.success(), "cellml_models.py: {}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn real_models_read_as_myokit_reads_them() {
    let dir = scratch("cellml-models");
    let out = models(&dir);
    let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("reference.json")).unwrap()).unwrap();
    let reference = reference.as_object().unwrap();
    assert_eq!(reference.len(), 18, "five models in three versions and three repository files");
    for (file, want) in reference {
        let eq = cellml::load(&out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let names: Vec<&str> = want["states"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(eq.states.len(), names.len(), "{file}: states");
        // Myokit's order → ours, by name
        let ours: Vec<usize> = names
            .iter()
            .map(|n| eq.states.iter().position(|&s| eq.vars[s].name == *n).unwrap_or_else(|| panic!("{file}: no state {n} among {:?}", eq.states.iter().map(|&s| &eq.vars[s].name).collect::<Vec<_>>())))
            .collect();
        let params = eq.param_values();
        let initial = eq.initial_state();
        for point in want["points"].as_array().unwrap() {
            let get = |k: &str| point[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<f64>>();
            let (t, state, rates) = (point["t"].as_f64().unwrap(), get("state"), get("rates"));
            let mut x = vec![0.0; state.len()];
            for (m, &o) in ours.iter().enumerate() {
                x[o] = state[m];
            }
            if t == 0.0 {
                for (m, &o) in ours.iter().enumerate() {
                    assert!((initial[o] - state[m]).abs() <= 1e-12 * state[m].abs(), "{file}: initial {} {} vs {}", names[m], initial[o], state[m]);
                }
            }
            let got = eq.rates(t, &x, &params);
            for (m, &o) in ours.iter().enumerate() {
                let tol = 1e-9 * rates[m].abs() + 1e-12;
                assert!((got[o] - rates[m]).abs() <= tol, "{file}: d{}/dt at t = {t}: {} vs Myokit {}", names[m], got[o], rates[m]);
            }
        }
    }
}

/// excite's forward Euler and Rush–Larsen on the imported Luo–Rudy 1991
/// (its stimulus an equation of time, as Myokit's exporter writes it) against
/// Myokit's Simulation1d with the same scheme and dt (its stimulus from the
/// protocol): V every 1 ms over a beat. Both are f64 and step `n` is at
/// `n·dt` in both, so the stimulus edges fall on the same steps and the traces
/// agree to rounding (3e-12 mV measured; 1e-6 mV allowed).
#[test]
fn luo_rudy_traces_match_myokit() {
    use excite::solve::imported::{solve, Scheme};
    let dir = scratch("cellml-traces");
    let out = models(&dir);
    let traces: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("traces.json")).unwrap()).unwrap();
    let eq = cellml::load(&out.join("lr1991-2.0.cellml")).unwrap();
    let v = eq.states.iter().position(|&s| eq.vars[s].name == "membrane.V").unwrap();
    // the six Hodgkin–Huxley gates are found, V and [Ca]i are not gates (as Myokit decides)
    let o = excite().args(["models", "--json", "--cellml"]).arg(out.join("lr1991-2.0.cellml")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let gates: Vec<&str> = shown["states"].as_array().unwrap().iter().filter(|s| s["gate"] == true).map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(gates, ["ica.d", "ica.f", "ik.x", "ina.h", "ina.j", "ina.m"]);
    assert_eq!(shown["potential"], "membrane.V");
    // an absurd number of cells is refused by name, not an abort
    let o = excite().args(["bench", "cellml", "--cells", "100000000000000", "--t-end", "1", "--threads", "1", "--repeat", "1"]).arg(out.join("lr1991-2.0.cellml")).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("GB for the solution"), "{}", String::from_utf8_lossy(&o.stderr));
    let grid = excite::solve::TimeGrid::new(999.0, 0.01, 1.0).unwrap();
    for (scheme, key) in [(Scheme::Euler, "lr1991-euler"), (Scheme::RushLarsen, "lr1991-rl")] {
        let ours = solve(&eq, scheme, &grid, &eq.initial_state(), &eq.param_values()).unwrap();
        let theirs: Vec<f64> = traces[key].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(ours.len(), theirs.len());
        let diffs: Vec<f64> = ours.iter().zip(&theirs).map(|(o, t)| (o[v] - t).abs()).collect();
        let worst = diffs.iter().cloned().fold(0.0, f64::max);
        let (at, _) = diffs.iter().enumerate().fold((0, 0.0), |b, (i, d)| if *d > b.1 { (i, *d) } else { b });
        assert!(worst < 1e-6, "{key}: max |ΔV| {worst} mV at t = {at} ms");
    }
}

/// The compiled program over blocks of cells (the fast path) against the
/// scalar reference, both schemes: Luo–Rudy 1991 cells with different
/// conductances and initial potentials, 140 of them (a full block of 128 and
/// a partial one), on two threads; and 40 of them alone (narrow blocks).
#[test]
fn compiled_blocks_match_the_scalar_reference() {
    use excite::solve::imported::{solve, solve_cells, Scheme};
    use excite::solve::{Cells, Column};
    let dir = scratch("cellml-blocks");
    let out = models(&dir);
    let eq = cellml::load(&out.join("lr1991-1.0.cellml")).unwrap();
    let n = 140;
    let params = eq.param_values();
    let g_na = eq.params.iter().position(|&p| eq.vars[p].name == "ina.gNa").expect("gNa is a parameter");
    let v = eq.states.iter().position(|&s| eq.vars[s].name == "membrane.V").unwrap();
    let mut init: Vec<Column> = eq.initial_state().into_iter().map(Column::Same).collect();
    init[v] = Column::PerCell((0..n).map(|i| -84.5 + 0.03 * i as f64).collect());
    let mut cols: Vec<Column> = params.iter().map(|&p| Column::Same(p)).collect();
    cols[g_na] = Column::PerCell((0..n).map(|i| params[g_na] * (0.6 + 0.005 * i as f64)).collect());
    let cells = Cells { n, init, params: cols };
    let grid = excite::solve::TimeGrid::new(400.0, 0.01, 1.0).unwrap();
    for scheme in [Scheme::Euler, Scheme::RushLarsen] {
        let fast = solve_cells(&eq, scheme, &grid, &cells, 2).unwrap();
        for cell in [0, 7, 127, 128, 139] {
            let x0: Vec<f64> = cells.init.iter().map(|c| c.get(cell)).collect();
            let p: Vec<f64> = cells.params.iter().map(|c| c.get(cell)).collect();
            let reference = solve(&eq, scheme, &grid, &x0, &p).unwrap();
            for (s, row) in reference.iter().enumerate() {
                for (k, want) in row.iter().enumerate() {
                    let got = fast.get(k, s, cell);
                    assert!((got - want).abs() <= 1e-6 * (1.0 + want.abs()), "{scheme:?} cell {cell} state {k} sample {s}: {got} vs {want}");
                }
            }
            // the cells differ: the conductance and start matter
            assert!(fast.get(v, 60, cell) != fast.get(v, 60, (cell + 1) % n));
        }
        // the first 40 cells alone take narrow blocks: the same results to the bit
        let cut = |cols: &[Column]| cols.iter().map(|c| match c {
            Column::PerCell(v) => Column::PerCell(v[..40].to_vec()),
            same => same.clone(),
        }).collect::<Vec<_>>();
        let few = Cells { n: 40, init: cut(&cells.init), params: cut(&cells.params) };
        let narrow = solve_cells(&eq, scheme, &grid, &few, 1).unwrap();
        for k in 0..eq.states.len() {
            for s in [0, 100, 400] {
                assert_eq!(narrow.row(k, s), &fast.row(k, s)[..40], "{scheme:?} state {k} sample {s}");
            }
        }
    }
}

/// The built-in fhn-cardiac and the same equations written as CellML
/// (models/fhn-cardiac.cellml): the same right-hand side for any state and
/// parameters, and the same Euler trajectory as the built-in f64 reference.
#[test]
fn fhn_as_cellml_is_the_built_in_model() {
    let eq = cellml::load(&root().join("models/fhn-cardiac.cellml")).unwrap();
    let model = excite::cell::by_name("fhn-cardiac").unwrap();
    let info = model.info();
    let names: Vec<&str> = eq.params.iter().map(|&p| eq.vars[p].name.strip_prefix("cell.").unwrap()).collect();
    let order: Vec<usize> = info.params.iter().map(|p| names.iter().position(|n| *n == p.name).unwrap_or_else(|| panic!("no parameter {}", p.name))).collect();
    let mut rng = excite::data::sampling::Rng::new(4);
    for _ in 0..200 {
        let ours: Vec<f64> = (0..info.params.len()).map(|_| rng.uniform() * 2.0 - 0.5).collect();
        let mut theirs = vec![0.0; ours.len()];
        for (i, &j) in order.iter().enumerate() {
            theirs[j] = ours[i];
        }
        let x = [rng.uniform() * 1.2 - 0.1, rng.uniform() * 0.2];
        let mut want = [0.0; 2];
        let excite::cell::Form::Builtin(rhs) = model.form() else { unreachable!("fhn-cardiac is built in") };
        rhs.rhs_f64(&ours, &x, &mut want);
        let got = eq.rates(0.0, &x, &theirs);
        for k in 0..2 {
            assert!((got[k] - want[k]).abs() <= 1e-12 * (1.0 + want[k].abs()), "d{}/dt: {} vs built-in {}", info.states[k].name, got[k], want[k]);
        }
    }
    let gates = eq.gates(eq.potential());
    assert!(gates.iter().all(|g| g.is_none()), "FHN has no gating variables");
}

/// Both schemes converge to OpenCOR's CVODE solution (libopencor, tolerances
/// 1e-10) at first order: Luo–Rudy 1991 over one beat, the largest |ΔV| at
/// the 1 ms samples for dt = 0.01 and 0.005 ms roughly halves (ratio 1.6–2.4);
/// and on this model Rush–Larsen is the less accurate at equal dt, as the
/// issue's orientation figures have it (its errors there, on a finer sampling:
/// Euler 3.19 and 1.67 mV, Rush–Larsen 6.5 and 3.1 mV).
#[test]
fn schemes_converge_to_opencor_at_first_order() {
    use excite::solve::imported::{solve_cells, Scheme};
    use excite::solve::{Cells, Column};
    let dir = scratch("cellml-opencor");
    let out = models(&dir);
    let file = out.join("lr1991-2.0.cellml");
    let py312 = std::fs::read_to_string(root().join(".deps/python312-interpreter.txt")).expect("scripts/setup.sh installs libopencor under Python 3.12");
    let o = std::process::Command::new(py312.trim())
        .env("PYTHONPATH", root().join(".deps/python312"))
        .arg(root().join("tests/integration/opencor_reference.py"))
        .arg(&file)
        .arg("1000")
        .arg(dir.join("cvode.json"))
        .output()
        .unwrap();
    assert!(o.status.success(), "opencor_reference.py: {}", String::from_utf8_lossy(&o.stderr));
    let cvode: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("cvode.json")).unwrap()).unwrap();
    let reference: Vec<f64> = cvode["states"]["membrane.V"].as_array().expect("membrane.V in OpenCOR's states").iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(reference.len(), 1001);
    let eq = cellml::load(&file).unwrap();
    let v = eq.states.iter().position(|&s| eq.vars[s].name == "membrane.V").unwrap();
    let cells = Cells { n: 1, init: eq.initial_state().into_iter().map(Column::Same).collect(), params: eq.param_values().into_iter().map(Column::Same).collect() };
    let mut worst = Vec::new();
    for scheme in [Scheme::Euler, Scheme::RushLarsen] {
        let errors: Vec<f64> = [0.01, 0.005]
            .iter()
            .map(|&dt| {
                let grid = excite::solve::TimeGrid::new(1000.0, dt, 1.0).unwrap();
                let ours = solve_cells(&eq, scheme, &grid, &cells, 1).unwrap();
                (0..=1000).map(|s| (ours.get(v, s, 0) - reference[s]).abs()).fold(0.0, f64::max)
            })
            .collect();
        let ratio = errors[0] / errors[1];
        eprintln!("{scheme:?}: max |ΔV| against CVODE {:.3} mV at dt 0.01, {:.3} mV at 0.005 (ratio {ratio:.2})", errors[0], errors[1]);
        assert!((1.6..=2.4).contains(&ratio), "{scheme:?}: max |ΔV| {errors:?} mV at dt 0.01, 0.005: ratio {ratio}, not first order");
        worst.push(errors[0]);
    }
    assert!(worst[1] > worst[0], "Rush–Larsen {} mV vs Euler {} mV at dt 0.01", worst[1], worst[0]);
}

/// A rate that is another state itself (x' = −y, y' = x, x advanced
/// first): the compiled program advances states in place, and must still
/// give forward Euler (each update from the old states), as the scalar
/// reference does.
#[test]
fn a_rate_that_is_a_state_is_not_updated_first() {
    use excite::solve::imported::{solve, solve_cells, Scheme};
    use excite::solve::{Cells, Column};
    let dir = scratch("cellml-oscillator");
    let file = dir.join("oscillator.cellml");
    std::fs::write(&file, r#"<?xml version="1.0"?>
<model xmlns="http://www.cellml.org/cellml/2.0#" name="oscillator">
  <component name="c">
    <variable name="t" units="dimensionless"/>
    <variable name="x" units="dimensionless" initial_value="1"/>
    <variable name="y" units="dimensionless" initial_value="0"/>
    <math xmlns="http://www.w3.org/1998/Math/MathML">
      <apply><eq/><apply><diff/><bvar><ci>t</ci></bvar><ci>x</ci></apply><apply><minus/><ci>y</ci></apply></apply>
      <apply><eq/><apply><diff/><bvar><ci>t</ci></bvar><ci>y</ci></apply><ci>x</ci></apply>
    </math>
  </component>
</model>"#).unwrap();
    let eq = cellml::load(&file).unwrap();
    let grid = excite::solve::TimeGrid::new(10.0, 0.1, 1.0).unwrap();
    let reference = solve(&eq, Scheme::Euler, &grid, &eq.initial_state(), &[]).unwrap();
    let cells = Cells { n: 3, init: eq.initial_state().into_iter().map(Column::Same).collect(), params: vec![] };
    let fast = solve_cells(&eq, Scheme::Euler, &grid, &cells, 1).unwrap();
    for (s, row) in reference.iter().enumerate() {
        for (k, want) in row.iter().enumerate() {
            assert_eq!(fast.get(k, s, 2), *want, "state {k} sample {s}");
        }
    }
    // forward Euler on a rotation grows the radius by √(1 + dt²) a step
    let r2 = reference[10][0].powi(2) + reference[10][1].powi(2);
    assert!((r2 - 1.01f64.powi(100)).abs() < 1e-9, "{r2}");
}

/// The native step (generated C, built with the host's compiler) against
/// the interpreter, both schemes, on every model of the import tests in
/// one version each, the repository's files and the FHN written as CellML:
/// the same numbers to the bit, cells differing in their start, 70 of them
/// (a narrow block and a padded one) on two threads.
#[test]
fn native_step_is_the_interpreter_to_the_bit() {
    use excite::solve::imported::{solve_cells_by, Exec, Scheme};
    use excite::solve::{Cells, Column};
    let dir = scratch("cellml-native");
    let out = models(&dir);
    let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("reference.json")).unwrap()).unwrap();
    let mut files: Vec<PathBuf> = reference.as_object().unwrap().keys().filter(|f| !f.contains("-1.1.") && !f.contains("-2.0.")).map(|f| out.join(f)).collect();
    files.push(root().join("models/fhn-cardiac.cellml"));
    assert!(files.len() >= 9, "{files:?}");
    let n = 70;
    for file in &files {
        let eq = cellml::load(file).unwrap();
        let mut init: Vec<Column> = eq.initial_state().into_iter().map(Column::Same).collect();
        // the state of the largest size (the potential, where there is one) differs by cell
        let x = eq.initial_state();
        let k = (0..x.len()).max_by(|&a, &b| x[a].abs().total_cmp(&x[b].abs())).unwrap();
        init[k] = Column::PerCell((0..n).map(|i| x[k] * (1.0 + 0.002 * i as f64)).collect());
        let cells = Cells { n, init, params: eq.param_values().into_iter().map(Column::Same).collect() };
        let grid = excite::solve::TimeGrid::new(20.0, 0.005, 1.0).unwrap();
        for scheme in [Scheme::Euler, Scheme::RushLarsen] {
            let native = solve_cells_by(Exec::Native, &eq, scheme, &grid, &cells, 2).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let interpreted = solve_cells_by(Exec::Interpreted, &eq, scheme, &grid, &cells, 2).unwrap();
            let same = native.data.iter().zip(&interpreted.data).filter(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())).count();
            assert_eq!(same, native.data.len(), "{} {scheme:?}: {} of {} values differ", file.display(), native.data.len() - same, native.data.len());
            // the cells moved, and differently
            assert!(native.data.iter().any(|x| x.is_finite()), "{}", file.display());
            assert!((0..eq.states.len()).any(|k| native.get(k, 20, 0) != native.get(k, 20, n - 1)), "{}: cells alike", file.display());
        }
    }
}

/// The exponential and the logarithm of the native step (AVX-512's
/// scaling instruction for 2^k where the CPU has it) against the
/// interpreter's over their whole range, the edges included: overflow near
/// 709.78, the subnormal results below −708, 0, negative, subnormal,
/// infinite and NaN arguments. One Euler step of x' = e^(p + t),
/// y' = ln(q + t) from 0 at t = 0 with dt 1 is e^p and ln q themselves
/// (t keeps them in the step, which the generated code runs, rather than
/// in the setup, which the interpreter runs for both), 154 800 arguments
/// of each; exp within 1 ulp of libm's, ln within 2.
#[test]
fn native_exp_and_ln_are_the_interpreters_at_the_edges() {
    use excite::solve::imported::{solve_cells_by, Exec, Scheme};
    use excite::solve::{Cells, Column};
    let dir = scratch("cellml-native-edges");
    let file = dir.join("edges.cellml");
    std::fs::write(&file, r#"<?xml version="1.0"?>
<model xmlns="http://www.cellml.org/cellml/2.0#" name="edges">
  <component name="c">
    <variable name="t" units="dimensionless"/>
    <variable name="p" units="dimensionless" initial_value="0"/>
    <variable name="q" units="dimensionless" initial_value="1"/>
    <variable name="x" units="dimensionless" initial_value="0"/>
    <variable name="y" units="dimensionless" initial_value="0"/>
    <math xmlns="http://www.w3.org/1998/Math/MathML">
      <apply><eq/><apply><diff/><bvar><ci>t</ci></bvar><ci>x</ci></apply><apply><exp/><apply><plus/><ci>p</ci><ci>t</ci></apply></apply></apply>
      <apply><eq/><apply><diff/><bvar><ci>t</ci></bvar><ci>y</ci></apply><apply><ln/><apply><plus/><ci>q</ci><ci>t</ci></apply></apply></apply>
    </math>
  </component>
</model>"#).unwrap();
    let eq = cellml::load(&file).unwrap();
    let mut p: Vec<f64> = (0..150_000).map(|i| -760.0 + 1480.0 * i as f64 / 149_999.0).collect();
    p.extend((0..400).map(|i| 709.0 + 0.002 * i as f64));
    p.extend((0..400).map(|i| -745.2 + 0.1 * i as f64));
    p.extend([0.0, -0.0, 1e-300, f64::MAX, f64::MIN, f64::INFINITY, f64::NEG_INFINITY, f64::NAN]);
    let mut q: Vec<f64> = (0..p.len() - 16).map(|i| 10f64.powf(-330.0 + 640.0 * i as f64 / (p.len() - 17) as f64)).collect();
    q.extend([0.0, -0.0, -1.0, 5e-324, 2.2e-308, 1.0, f64::MAX, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 0.5, 2.0, std::f64::consts::SQRT_2, 1.0 - 1e-16, 1.0 + 2e-16, 1e300]);
    assert_eq!(p.len(), q.len());
    let n = p.len();
    // the parameters in the model's order, found by name
    let params: Vec<Column> = eq.params.iter().map(|&v| Column::PerCell(if eq.vars[v].name.ends_with('p') { p.clone() } else { q.clone() })).collect();
    let cells = Cells { n, init: eq.initial_state().into_iter().map(Column::Same).collect(), params };
    let grid = excite::solve::TimeGrid::new(1.0, 1.0, 1.0).unwrap();
    let native = solve_cells_by(Exec::Native, &eq, Scheme::Euler, &grid, &cells, 1).unwrap();
    let interpreted = solve_cells_by(Exec::Interpreted, &eq, Scheme::Euler, &grid, &cells, 1).unwrap();
    let state = |name: &str| eq.states.iter().position(|&v| eq.vars[v].name.ends_with(name)).unwrap();
    let (kx, ky) = (state("x"), state("y"));
    let ulps = |a: f64, b: f64| (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs();
    for i in 0..n {
        // exp within 1 ulp of libm's, ln within 2 (their documented bounds)
        for (k, arg, want, bound) in [(kx, p[i], p[i].exp(), 1), (ky, q[i], q[i].ln(), 2)] {
            let (a, b) = (native.get(k, 1, i), interpreted.get(k, 1, i));
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "state {k} of {arg:e}: native {a:e}, interpreted {b:e}");
            assert!((want.is_nan() && a.is_nan()) || want == a || ulps(want, a) <= bound, "state {k} of {arg:e}: {a:e}, libm {want:e}");
        }
    }
}

/// Without a C compiler the solver still runs, interpreted, and the
/// benchmark says why there is no native figure; a build is kept in the
/// cache folder and used by the next process.
#[test]
fn native_step_without_a_compiler_and_from_the_cache() {
    let dir = scratch("cellml-native-cache");
    let bench = |cc: &str| {
        let o = excite().env("CC", cc).env("XDG_CACHE_HOME", &dir).args(["bench", "cellml", "models/fhn-cardiac.cellml", "--cells", "16", "--t-end", "1", "--repeat", "1", "--threads", "1", "--json"]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let none = bench("/nonexistent/cc");
    let why = none["native_missing"].as_str().expect("a reason");
    assert!(why.contains("C compiler `/nonexistent/cc`") && why.contains("cannot run it") && why.contains("install gcc"), "{why}");
    let execs: Vec<&str> = none["rows"].as_array().unwrap().iter().map(|r| r["exec"].as_str().unwrap()).collect();
    assert_eq!(execs, ["interpreted", "interpreted"], "Euler and Rush–Larsen, interpreted");
    let with = bench("cc");
    assert!(with["native_missing"].is_null(), "{}", with["native_missing"]);
    let kept: Vec<_> = std::fs::read_dir(dir.join("excite/native")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    // FHN has no gates: Euler and Rush–Larsen are one program, one build
    assert!(kept.len() == 1 && kept[0].ends_with(".so"), "{kept:?}");
    // a corrupt file in the cache is not loaded; the next process builds anew
    for f in &kept {
        std::fs::write(dir.join("excite/native").join(f), b"not a library").unwrap();
    }
    let again = bench("cc");
    assert!(again["native_missing"].is_null(), "{}", again["native_missing"]);
}
