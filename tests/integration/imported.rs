//! An imported (CellML) model as a first-class cell model: datasets from
//! `model: {cellml: FILE}` with a chosen scheme and outputs, the pipeline
//! through to a bundle that records the file's sha256, and the named errors
//! of bad configurations. Luo–Rudy 1991 is exported from Myokit at test time
//! by scripts/myokit_models.py (the presets' own script).

use std::path::{Path, PathBuf};

use excite::data::{self, DatasetSpec};
use excite::solve::imported;

use crate::util::{excite, python, root, scratch};

/// Luo–Rudy 1991 as CellML 2.0 in `dir`.
fn lr1991(dir: &Path) -> PathBuf {
    let o = python().arg(root().join("scripts/myokit_models.py")).arg(dir).output().unwrap();
    assert!(o.status.success(), "myokit_models.py: {}", String::from_utf8_lossy(&o.stderr));
    dir.join("lr1991.cellml")
}

const DATASET: &str = "name: lr
model: {cellml: lr1991.cellml}
scheme: rush-larsen
time: {t_end: 100, dt: 0.01, sample_every: 1}
sample:
  ina.gNa: [12, 20]
  membrane.stim_amplitude: [-100, -60]
outputs: [membrane.V, ina.m]
cells: 8
seed: 5
";

#[test]
fn a_cellml_dataset_is_the_imported_reference() {
    let dir = scratch("imported-dataset");
    lr1991(&dir);
    let config = dir.join("lr.yaml");
    std::fs::write(&config, DATASET).unwrap();
    // the relative path is taken from the configuration's folder, not the working directory
    let spec = DatasetSpec::from_file(&config).unwrap();
    assert_eq!(spec.outputs.len(), 2);
    let ds = data::generate(&spec, 1, &excite::report::Silent).unwrap();
    let m = &ds.meta;
    let names = |v: &[excite::data::VarRange]| v.iter().map(|v| v.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&m.inputs), ["t", "ina.gNa", "membrane.stim_amplitude"]);
    assert_eq!(names(&m.outputs), ["membrane.V", "ina.m"]);
    assert_eq!(m.solver.scheme, "rush-larsen");
    assert_eq!(m.time.scheme, excite::solve::Scheme::RushLarsen);
    let c = m.model.cellml.as_ref().expect("an imported model records its file");
    assert_eq!(c.sha256, excite::hash::sha256_file(&dir.join("lr1991.cellml")).unwrap());
    assert_eq!(m.model.params["ina.gNa"], 16.0);
    // a variable given by a constant (stim_amplitude = -80) is a parameter
    assert_eq!(m.model.params["membrane.stim_amplitude"], -80.0);

    // every row is the scalar Rush–Larsen reference of its cell, to f32 rounding
    let eq = &excite::cell::imported::load(&dir.join("lr1991.cellml")).unwrap().equations;
    let cells = data::sample_cells(&spec);
    let (v, mm) = (eq.find("membrane.V").unwrap(), eq.find("ina.m").unwrap());
    let (kv, km) = (eq.states.iter().position(|&s| s == v).unwrap(), eq.states.iter().position(|&s| s == mm).unwrap());
    let (x, y) = &ds.splits[0];
    let mut checked = 0;
    for c in 0..cells.n {
        let params: Vec<f64> = cells.params.iter().map(|p| p.get(c)).collect();
        let init: Vec<f64> = cells.init.iter().map(|p| p.get(c)).collect();
        let want = imported::solve(eq, imported::Scheme::RushLarsen, &spec.grid, &init, &params).unwrap();
        // this cell's rows in the training split, found by its sampled gNa
        for r in (0..x.rows).filter(|&r| x.row(r)[1] == params[eq.params.iter().position(|&p| p == eq.find("ina.gNa").unwrap()).unwrap()] as f32) {
            let s = (x.row(r)[0] as f64).round() as usize;
            assert!((y.row(r)[0] - want[s][kv] as f32).abs() <= 1e-4 * (1.0 + want[s][kv].abs() as f32), "V at {s}: {} vs {}", y.row(r)[0], want[s][kv]);
            assert!((y.row(r)[1] - want[s][km] as f32).abs() <= 1e-6, "m at {s}");
            checked += 1;
        }
    }
    assert_eq!(checked, x.rows, "every training row was one cell's");
    // the beat happened: V peaks above 0 mV after the 50 ms stimulus, from rest
    let peak = (0..x.rows).filter(|&r| x.row(r)[0] > 50.0).map(|r| y.row(r)[0]).fold(f32::MIN, f32::max);
    let rest = (0..x.rows).filter(|&r| x.row(r)[0] == 0.0).map(|r| y.row(r)[0]).next().unwrap();
    assert!(peak > 20.0 && (rest + 84.5286).abs() < 1e-4, "peak {peak}, rest {rest}");

    // an ITNN of a model whose stimulus reads time takes time as an input
    std::fs::write(&config, DATASET.replace("outputs: [membrane.V, ina.m]\n", "kind: itnn\n")).unwrap();
    let itnn = data::generate(&DatasetSpec::from_file(&config).unwrap(), 1, &excite::report::Silent).unwrap();
    let inputs = names(&itnn.meta.inputs);
    assert_eq!(inputs.len(), 8 + 1 + 2, "{inputs:?}");
    assert_eq!(inputs[8], "t");
    let (x, _) = &itnn.splits[0];
    assert_eq!((x.row(0)[8], x.row(1)[8]), (0.0, 1.0), "time of the first two rows");
}

#[test]
fn bad_imported_configurations_are_named() {
    let dir = scratch("imported-errors");
    lr1991(&dir);
    let check = |yaml: String, want: &[&str]| {
        let e = DatasetSpec::from_yaml_in(&yaml, &dir).err().unwrap_or_else(|| panic!("accepted:\n{yaml}"));
        let text = format!("{e} / {}", e.hint().unwrap_or(""));
        for w in want {
            assert!(text.contains(w), "`{w}` not in: {text}");
        }
    };
    check(DATASET.replace("[membrane.V, ina.m]", "[membrane.V, ina.q]"), &["outputs.ina.q", "no state", "ina.h"]);
    check(DATASET.replace("[membrane.V, ina.m]", "[membrane.V, membrane.V]"), &["twice"]);
    check(DATASET.replace("outputs: [membrane.V, ina.m]", "kind: itnn\noutputs: [membrane.V]"), &["ITNN", "1 of the 8"]);
    check(DATASET.replace("ina.gNa: [12, 20]", "ina.gNaa: [12, 20]"), &["sample.ina.gNaa", "Luo_Rudy_1991", "ina.gNa"]);
    check(DATASET.replace("lr1991.cellml", "missing.cellml"), &["missing.cellml", "configuration file"]);
    check("name: t\nmodel: fhn-cardiac\nscheme: rush-larsen\ntime: {t_end: 1, dt: 0.01, sample_every: 0.1}\n".into(), &["scheme", "forward Euler only"]);
    check("name: t\nmodel: hodgkin\ntime: {t_end: 1, dt: 0.01, sample_every: 0.1}\n".into(), &["hodgkin", "cellml"]);
    check("name: t\nmodel: {cellm: x.cellml}\ntime: {t_end: 1, dt: 0.01, sample_every: 0.1}\n".into(), &["model", "{cellml: FILE}"]);

    // a dataset names its file by content: edited later, the file is refused where the model is read again
    std::fs::write(dir.join("lr.yaml"), DATASET).unwrap();
    let spec = DatasetSpec::from_file(&dir.join("lr.yaml")).unwrap();
    let meta = data::generate(&spec, 1, &excite::report::Silent).unwrap().meta;
    let copy = dir.join("copy.cellml");
    std::fs::copy(dir.join("lr1991.cellml"), &copy).unwrap();
    let mut moved = meta.model.clone();
    moved.cellml.as_mut().unwrap().file = copy.display().to_string();
    assert!(moved.resolve().is_ok());
    let text = std::fs::read_to_string(&copy).unwrap().replace("initial_value=\"16.0\"", "initial_value=\"17.0\"");
    std::fs::write(&copy, text).unwrap();
    let e = moved.resolve().err().expect("a changed file is refused").to_string();
    assert!(e.contains("changed") && e.contains("copy.cellml"), "{e}");
    // metadata naming some other file: refused by its content, never parsed
    moved.cellml.as_mut().unwrap().file = dir.join("lr.yaml").display().to_string();
    let e = moved.resolve().err().expect("another file is refused").to_string();
    assert!(e.contains("changed") && e.contains("lr.yaml") && !e.contains("XML") && !e.contains("CellML model"), "{e}");
}

/// The presets' model through every stage: a trajectory DDNN of V over the
/// beat, verified against the imported reference, packaged with the file's sha256.
#[test]
fn lr1991_goes_through_the_pipeline() {
    let dir = scratch("imported-pipeline");
    let cellml = lr1991(&dir);
    let yaml = std::fs::read_to_string(root().join("models/lr1991.yaml"))
        .unwrap()
        .replace("cellml/lr1991.cellml", "lr1991.cellml")
        .replace("t_end: 500", "t_end: 300")
        .replace("cells: 400", "cells: 64")
        .replace("steps: 20000", "steps: 3000")
        .replace("cells: 100\n", "cells: 20\n")
        .replace("max_mae: 3.0", "max_mae: 8.0");
    std::fs::write(dir.join("lr.yaml"), yaml).unwrap();
    let out = excite().args(["pipeline", "--json"]).arg(dir.join("lr.yaml")).arg("-o").arg(dir.join("run")).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run/verify/report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["cell_model"], "Luo_Rudy_1991");
    let mae = report["variables"][0]["mae"].as_f64().unwrap();
    assert!(mae > 0.0 && mae < 8.0, "MAE {mae} mV");
    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run/package/lr1991/bundle.json")).unwrap()).unwrap();
    assert_eq!(bundle["cell_model"]["cellml"]["sha256"], excite::hash::sha256_file(&cellml).unwrap());
    assert_eq!(bundle["outputs"][0]["name"], "membrane.V");
    let units = bundle["units"].as_str().unwrap();
    assert!(units.contains("t in ms") && units.contains("ina.gNa in mS_per_cm2") && units.contains("membrane.V in mV"), "{units}");
    // the bundle loads and runs without the CellML file (or the training stack)
    std::fs::remove_file(&cellml).unwrap();
    let mut s = excite::Surrogate::load(dir.join("run/package/lr1991")).unwrap();
    let v = s.predict(&[0.0, 0.09, 16.0, -80.0]).unwrap();
    assert!((v[0] + 84.5).abs() < 8.0, "V at rest {}", v[0]);
}

/// A PINN's residual from imported equations: the cardiac FHN written as
/// CellML trains as the built-in model does (the same residual, to rounding);
/// Luo–Rudy 1991's taped residual is its equations over a beat, stimulus included.
#[test]
fn a_pinn_takes_its_residual_from_the_imported_equations() {
    use excite::train::{self, TrainSpec};
    let dir = scratch("imported-pinn");
    let quick = std::fs::read_to_string(root().join("models/quick.yaml")).unwrap();
    let twin = quick
        .replace("model: fhn-cardiac", &format!("model: {{cellml: {}}}", root().join("models/fhn-cardiac.cellml").display()))
        .replace("params: {i0: 0.0}", "params: {cell.i0: 0.0}")
        .replace("initial: {u: 0.5, v: 0.0}", "initial: {cell.u: 0.5, cell.v: 0.0}");
    let body = "mode: pinn\narchitecture:\n  hidden: [[tanh, 32], [tanh, 32]]\nbatch: 128\ncollocation: 256\nlr: 0.003\nsteps: 600\nval_every: 300\nseed: 0\n";
    let mut maes = Vec::new();
    for (name, yaml) in [("builtin", quick), ("cellml", twin)] {
        let data = dir.join(name).join("data");
        data::generate(&DatasetSpec::from_yaml(&yaml).unwrap(), 1, &excite::report::Silent).unwrap().write(&data).unwrap();
        let spec = TrainSpec::from_yaml(&format!("name: t\ndataset: {}\n{body}", data.display())).unwrap();
        let o = train::train(&spec, &dir.join(name).join("run"), false, &excite::report::Silent).unwrap();
        maes.push(o.metrics.mae);
    }
    assert!(maes[0] < 0.1 && (maes[0] - maes[1]).abs() <= 1e-3 * maes[0], "validation MAE built-in {} vs CellML {}", maes[0], maes[1]);

    // Luo–Rudy 1991's residual (time, ln, pow, floor, the piecewise stimulus) on the tape is its equations'
    let cellml = lr1991(&dir);
    let model = excite::cell::imported::load(&cellml).unwrap();
    let eq = &model.equations;
    let params = eq.param_values();
    let tape = excite::cell::symbolic::trace(model, &params.iter().map(|&p| Some(p)).collect::<Vec<_>>());
    let beat = imported::solve(eq, imported::Scheme::Euler, &excite::solve::TimeGrid::new(60.0, 0.01, 0.25).unwrap(), &eq.initial_state(), &params).unwrap();
    for (s, state) in beat.iter().enumerate() {
        let t = s as f64 * 0.25;
        let (want, got) = (eq.rates(t, state, &params), tape.eval_f64(&[], state, t));
        for k in 0..want.len() {
            assert!((got[k] - want[k]).abs() <= 1e-12 * (1.0 + want[k].abs()), "t {t}: rate {k} {} vs {}", got[k], want[k]);
        }
    }
    let lr = dir.join("lr.yaml");

    // a PINN needs every state as an output
    std::fs::write(&lr, DATASET).unwrap();
    let data = dir.join("lr-some");
    data::generate(&DatasetSpec::from_file(&lr).unwrap(), 1, &excite::report::Silent).unwrap().write(&data).unwrap();
    let spec = TrainSpec::from_yaml(&format!("name: t\ndataset: {}\n{body}", data.display())).unwrap();
    let e = train::train(&spec, &dir.join("lr-some-run"), false, &excite::report::Silent).err().expect("refused").to_string();
    assert!(e.contains("every state") && e.contains("membrane.V, ina.m"), "{e}");
}

/// A PINN on Luo–Rudy 1991 (all eight states): without bounds the network's
/// outputs stray where the equations are undefined (a logarithm of a negative
/// calcium concentration) and training diverges; it stops at the first check
/// and export refuses the run, naming `clamp_states`. With the states the
/// residual reads clamped to the dataset's range, the same training does not
/// diverge and learns the beat.
#[test]
fn a_pinn_on_luo_rudy_keeps_its_states_in_their_domain() {
    use excite::train::{self, TrainSpec};
    let dir = scratch("imported-pinn-domain");
    lr1991(&dir);
    let yaml = "name: lr\nmodel: {cellml: lr1991.cellml}\ntime: {t_end: 100, dt: 0.01, sample_every: 0.5}\ncells: 1\nseed: 1\nsplit: {train: 0.5, val: 0.5, test: 0.0}\n";
    std::fs::write(dir.join("lr.yaml"), yaml).unwrap();
    let data = dir.join("data");
    data::generate(&DatasetSpec::from_file(&dir.join("lr.yaml")).unwrap(), 1, &excite::report::Silent).unwrap().write(&data).unwrap();
    let body = "mode: pinn\narchitecture:\n  hidden: [[tanh, 64], [tanh, 64]]\nbatch: 128\ncollocation: 256\nlr: 0.003\nloss: {data: 10, physics: 1, initial: 1}\nsteps: 1500\nval_every: 100\nseed: 1\n";
    let run = |extra: &str, name: &str| {
        let spec = TrainSpec::from_yaml(&format!("name: t\ndataset: {}\n{body}{extra}", data.display())).unwrap();
        train::train(&spec, &dir.join(name), false, &excite::report::Silent)
    };
    // a previous good output of the folder stays; the diverged run goes beside it
    std::fs::create_dir_all(dir.join("free")).unwrap();
    std::fs::write(dir.join("free/previous"), "kept").unwrap();
    let e = run("", "free").err().expect("a diverged run is an error");
    assert!(e.to_string().contains("diverged") && e.hint().unwrap_or("").contains("clamp_states: true"), "{e} / {:?}", e.hint());
    assert_eq!(std::fs::read_to_string(dir.join("free/previous")).unwrap(), "kept");
    let rejected = dir.join("free.rejected");
    let m: train::Metrics = serde_json::from_slice(&std::fs::read(rejected.join(train::METRICS_FILE)).unwrap()).unwrap();
    assert!(m.diverged && m.steps < 1500, "diverged {} after {} steps", m.diverged, m.steps);
    let e = excite::export::export(&rejected).err().expect("a diverged run is not exported");
    assert!(e.to_string().contains("diverged") && e.hint().unwrap_or("").contains("clamp_states: true"), "{e} / {:?}", e.hint());
    let clamped = run("clamp_states: true\n", "clamped").unwrap();
    assert!(!clamped.metrics.diverged && clamped.metrics.steps == 1500, "{:?}", clamped.metrics.steps);
    assert!(clamped.metrics.mae < 2.0, "validation MAE {}", clamped.metrics.mae);
    let v = clamped.metrics.variables.iter().find(|v| v.name == "membrane.V").unwrap();
    // V spans 125 mV over the beat (a constant would be ~30 mV off); 1500 steps learn its shape
    assert!(v.mae < 10.0, "V MAE {} mV", v.mae);
    excite::export::export(&dir.join("clamped")).expect("exported");
}

/// A dataset records its CellML file's absolute path and sha256; moved to
/// another folder (a project copied to a cluster), the file is found by
/// name in a folder of EXCITE_CELLML_PATH, accepted by content only.
#[test]
fn a_moved_cellml_file_is_found_by_content() {
    let dir = scratch("imported-moved");
    let here = dir.join("here");
    std::fs::create_dir_all(&here).unwrap();
    lr1991(&here);
    std::fs::write(here.join("lr.yaml"), DATASET).unwrap();
    let data = dir.join("data");
    data::generate(&DatasetSpec::from_file(&here.join("lr.yaml")).unwrap(), 1, &excite::report::Silent).unwrap().write(&data).unwrap();
    let model = data::load(&data).unwrap().meta.model;
    assert!(model.cellml.as_ref().unwrap().file.ends_with("here/lr1991.cellml"), "{:?}", model.cellml);
    let there = dir.join("there");
    std::fs::create_dir_all(&there).unwrap();
    std::fs::rename(here.join("lr1991.cellml"), there.join("lr1991.cellml")).unwrap();
    let e = model.resolve_in(&[]).err().expect("gone from its path").to_string();
    assert!(e.contains("cannot read the CellML file"), "{e}");
    let found = model.resolve_in(&[dir.join("elsewhere"), there.clone()]).expect("found by name and content");
    assert_eq!(found.info().name, "Luo_Rudy_1991");
    // a file of that name with other content is not taken for it
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let text = std::fs::read_to_string(there.join("lr1991.cellml")).unwrap();
    std::fs::write(other.join("lr1991.cellml"), text.replacen("<model ", "<!-- edited -->\n<model ", 1)).unwrap();
    assert!(model.resolve_in(&[other]).is_err(), "another content");
}

/// A study's points are named by content, the imported model's file included:
/// an edited CellML file makes new points (finished ones are not taken for them).
#[test]
fn study_points_change_with_the_cellml_content() {
    let dir = scratch("imported-study");
    let cellml = lr1991(&dir);
    let base = std::fs::read_to_string(root().join("models/lr1991.yaml")).unwrap().replace("cellml/lr1991.cellml", "lr1991.cellml");
    std::fs::write(dir.join("base.yaml"), base).unwrap();
    let study = "name: s\npipeline: base.yaml\naxes:\n  seed: [0, 1]\n";
    let ids = || excite::sweep::Study::from_yaml(study, &dir).unwrap().points.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
    let before = ids();
    assert_eq!(before, ids(), "the same content, the same points");
    let text = std::fs::read_to_string(&cellml).unwrap().replace("initial_value=\"16.0\"", "initial_value=\"17.0\"");
    std::fs::write(&cellml, text).unwrap();
    let after = ids();
    assert_eq!(after.len(), 2);
    assert!(before.iter().all(|b| !after.contains(b)), "{before:?} {after:?}");
}
