//! Studies: `excite sweep` with its executors (worker processes, a real
//! one-node Slurm cluster, real Open MPI ranks), resuming after kills,
//! `excite sweep merge` and `excite report`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::util::{excite, root, scratch};

/// A small base pipeline (problem A, short training, native engine) and a
/// study over it in `dir`; `axes` is the study's axes block, `edit` replaces
/// text in the base pipeline.
fn study(dir: &Path, axes: &str, edit: &[(&str, &str)]) -> PathBuf {
    let mut base = std::fs::read_to_string(root().join("models/study-smoke-base.yaml")).unwrap();
    base = base.replace("steps: 600", "steps: 300");
    for (a, b) in edit {
        assert!(base.contains(a), "{a} not in the base pipeline");
        base = base.replace(a, b);
    }
    std::fs::write(dir.join("base.yaml"), base).unwrap();
    let file = dir.join("study.yaml");
    std::fs::write(&file, format!("name: t\npipeline: base.yaml\ncompare: A\naxes:\n{axes}")).unwrap();
    file
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    if !out.status.success() {
        eprintln!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    out
}

/// results.json's rows.
fn rows(out: &Path) -> Vec<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap()
}

/// Each point's result.json, by point id, with its modification time.
fn records(out: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(out.join("points"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let m = std::fs::metadata(e.path().join("result.json")).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), m.modified().ok()?))
        })
        .collect();
    v.sort();
    v
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const FOUR: &str = "  architecture:\n    - hidden: [[tanh, 8], [tanh, 8]]\n    - generate: {shapes: [funnel], layers: [2], budgets: [12], activations: [silu]}\n  seed: [0, 1]\n";

#[test]
fn a_sweep_runs_each_point_once_records_it_and_resumes_a_changed_study() {
    let dir = scratch("sweep-local");
    let file = study(&dir, FOUR, &[]);
    let out = dir.join("out");
    let o = run(excite().args(["sweep"]).arg(&file).arg("--out").arg(&out));
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 of 4 points finished (0 diverged, 0 failed)"));
    let r = rows(&out);
    assert_eq!(r.len(), 4);
    for (i, row) in r.iter().enumerate() {
        assert_eq!(row["index"], i);
        assert_eq!(row["status"], "ok", "{row}");
        let mae = row["val_mae"].as_f64().unwrap();
        assert!(mae > 1e-5 && mae < 0.2, "validation MAE {mae}");
        // verify on problem A compares at times no training row holds
        assert!(row["verify_on"].as_str().unwrap().starts_with("held-out times"), "{row}");
        assert!(row["verify"]["u"]["mae"].as_f64().unwrap() > 0.0);
        assert!(row["engine_samples_per_s"].as_f64().unwrap() > 1e5);
        assert!(row["cpu"].as_str().is_some_and(|c| !c.is_empty()));
    }
    // sizes from the architecture: 1-8-8-2 and silu funnel 4-8
    assert_eq!(r[0]["parameters"], 16 + 72 + 18);
    assert_eq!(r[0]["multiply_adds"], 8 + 64 + 16);
    assert_eq!(r[0]["settings"]["shape"], "rectangle");
    assert_eq!(r[2]["settings"]["architecture"], "silu 4-8");
    assert_eq!(r[2]["settings"]["shape"], "funnel");
    // two seeds of one architecture differ; the same seed reproduces (below)
    assert_ne!(r[0]["val_mae"], r[1]["val_mae"]);
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.lines().next().unwrap().starts_with("index,id,architecture,shape,neurons,layers,zoo,mode,data,seed"));

    // again: nothing runs, no record is rewritten
    let before = records(&out);
    let o = run(excite().args(["sweep"]).arg(&file).arg("--out").arg(&out));
    assert!(o.status.success());
    assert_eq!(records(&out), before);

    // a third seed: only its two points run
    let file = study(&dir, &FOUR.replace("seed: [0, 1]", "seed: [0, 1, 2]"), &[]);
    let o = run(excite().args(["sweep"]).arg(&file).arg("--out").arg(&out).arg("--json"));
    assert!(o.status.success());
    let after = records(&out);
    assert_eq!(after.len(), 6);
    assert_eq!(after.iter().filter(|r| before.contains(r)).count(), 4, "the four finished points were left alone");
    let r2 = rows(&out);
    assert_eq!(r2.len(), 6);
    assert_eq!(r2[0]["val_mae"], r[0]["val_mae"]);
}

#[test]
fn two_processes_on_one_shard_run_each_point_once() {
    let dir = scratch("sweep-lock");
    let file = study(&dir, FOUR, &[]);
    let out = dir.join("out");
    let start = || excite().arg("sweep").arg(&file).arg("--out").arg(&out).args(["--shard", "0/1", "--json"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let (a, b) = (start(), start());
    let ran = |c: std::process::Child| -> (u64, u64) {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success());
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (s["ran"].as_u64().unwrap(), s["busy"].as_u64().unwrap())
    };
    let ((ra, ba), (rb, bb)) = (ran(a), ran(b));
    assert_eq!(ra + rb, 4, "each point run once: {ra} + {rb} (skipped as busy {ba} + {bb})");
    let o = run(excite().args(["sweep", "merge"]).arg(&out));
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("4 of 4 points finished"));
}

#[test]
fn diverged_and_over_budget_points_are_recorded_not_fatal() {
    let dir = scratch("sweep-faults");
    // relu at an absurd learning rate overflows to NaN; the budget no engine meets
    let file = study(
        &dir,
        "  architecture:\n    - hidden: [[relu, 8], [relu, 8]]\n    - hidden: [[tanh, 8], [tanh, 8]]\n",
        &[("lr: 0.005", "lr: 1.0e30"), ("min_lr: 0.0001", "min_lr: 1.0e29"), ("cells: 1\n  seconds: 0.1", "cells: 1\n  seconds: 0.1\n  max_mae: 1.0e-9")],
    );
    let out = dir.join("out");
    let o = run(excite().args(["sweep"]).arg(&file).arg("--out").arg(&out));
    assert!(o.status.success(), "diverged and over-budget points end the sweep normally");
    let r = rows(&out);
    assert_eq!(r.len(), 2);
    let statuses: Vec<&str> = r.iter().map(|x| x["status"].as_str().unwrap()).collect();
    assert!(statuses.contains(&"diverged"), "{statuses:?}");
    let diverged = r.iter().find(|x| x["status"] == "diverged").unwrap();
    assert!(diverged["verify"].as_object().unwrap().is_empty(), "a diverged point stops after training");
    for x in r.iter().filter(|x| x["status"] != "diverged") {
        assert_eq!(x["status"], "over-budget", "{x}");
        assert!(x["verify"]["u"]["mae"].as_f64().unwrap() > 1e-9, "over-budget rows keep their errors");
    }
    // neither is run again
    let before = records(&out);
    assert!(run(excite().args(["sweep"]).arg(&file).arg("--out").arg(&out)).status.success());
    assert_eq!(records(&out), before);
}

#[test]
fn mistakes_in_a_study_are_named_before_anything_runs() {
    let dir = scratch("sweep-bad");
    let cases: &[(&str, &str)] = &[
        ("  depth: [1, 2]\n", "unknown field `depth`"),
        ("  architecture:\n    - zoo: [0, 9999]\n", "no zoo id 9999"),
        ("  architecture:\n    - zoo: [1]\n      hidden: [[tanh, 8]]\n", "exactly one of hidden, zoo or generate"),
        ("  seed: []\n", "an empty list makes no points"),
        ("  data: [0]\n", "0 training rows"),
        ("  seed: [1, 1]\n", "two points are the same pipeline"),
        ("  precision: [fp64]\n", "fp64"),
        ("  architecture:\n    - zoo: \"0-99999999999\"\n", "no zoo id 99999999999"),
        ("  seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n  windows: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n  data: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n  set: {train.lr: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], train.steps: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}\n", "more than 100000 points"),
        ("  set: {lr: [0.1]}\n", "is not a setting's path"),
        ("  set: {train.lr: [-1]}\n", "is not a positive number"),
        ("  set: {train.learning_rate: [0.1]}\n", "unknown field `learning_rate`"),
    ];
    for (axes, expect) in cases {
        let file = study(&dir, axes, &[]);
        let out = dir.join("out-bad");
        let o = excite().arg("sweep").arg(&file).arg("--out").arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(expect), "{axes}: {err}");
        assert!(err.contains("hint:"), "{err}");
        assert!(!out.exists(), "{axes}: nothing is written");
    }
    // any setting by its path: an axis of its own, recorded with the point
    let file = study(&dir, "  seed: [0, 1]\n  set: {train.lr: [0.001, 0.01], train.batch: [32]}\n", &[]);
    let o = run(excite().arg("sweep").arg(&file).arg("--dry-run"));
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(listing.contains("4 points") && listing.matches("train.batch=32 train.lr=0.01").count() == 2, "{listing}");
    let file = study(&dir, FOUR, &[]);
    let o = excite().arg("sweep").arg(&file).args(["--shard", "2/2"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not I/N with 0 ≤ I < N"));
    // an executor's program missing: the package that provides it
    for (executor, package) in [("slurm", "slurm-client"), ("mpi", "openmpi-bin")] {
        let o = excite().arg("sweep").arg(&file).arg("--out").arg(dir.join("out-x")).args(["--executor", executor, "-j", "2"]).env("PATH", "/nonexistent").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(package), "{executor}: {err}");
    }
    let o = excite().args(["report"]).arg(&dir).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a sweep folder"));
}

#[test]
fn a_killed_sweep_or_worker_loses_at_most_the_point_in_flight() {
    let dir = scratch("sweep-kill");
    let six = FOUR.replace("seed: [0, 1]", "seed: [0, 1, 2]");
    let file = study(&dir, &six, &[("steps: 300", "steps: 1500")]);
    let out = dir.join("out");

    // the whole sweep, killed after its first point
    let mut child = excite().arg("sweep").arg(&file).arg("--out").arg(&out).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    wait_until("a first finished point", Duration::from_secs(120), || out.join("points").exists() && !records(&out).is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = records(&out);
    assert!(!kept.is_empty() && kept.len() < 6, "{kept:?}");

    // two workers; one is killed mid-point and restarted by the executor
    let coord = excite().arg("sweep").arg(&file).arg("--out").arg(&out).args(["-j", "2", "--json"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut pid = None;
    wait_until("worker 1 to start", Duration::from_secs(60), || {
        pid = worker_of(&out, "1/2");
        pid.is_some()
    });
    std::thread::sleep(Duration::from_millis(700));
    unsafe { libc::kill(pid.unwrap(), libc::SIGKILL) };
    let o = coord.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("worker 1 stopped") && err.contains("restarting it"), "{err}");
    // every point finished; those finished before the kills were not run again
    let done = records(&out);
    assert_eq!(done.len(), 6);
    for k in &kept {
        assert!(done.contains(k), "{k:?} was run again");
    }
    assert_eq!(rows(&out).iter().filter(|r| r["status"] == "ok").count(), 6);

    // the coordinator killed: its workers go with it, none left running
    let out2 = dir.join("out2");
    let mut coord = excite().arg("sweep").arg(&file).arg("--out").arg(&out2).args(["-j", "2"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let on = |shard: &str| worker_of(&out2, shard);
    wait_until("both workers to start", Duration::from_secs(60), || on("0/2").is_some() && on("1/2").is_some());
    coord.kill().unwrap();
    coord.wait().unwrap();
    wait_until("the workers to end with their sweep", Duration::from_secs(2), || on("0/2").is_none() && on("1/2").is_none());
}

/// The pid of a running worker of the sweep into `out` on shard `shard`.
fn worker_of(out: &Path, shard: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()).find_map(|e| {
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // a zombie (state Z) has ended
        let running = stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z'));
        (running && cmd.contains(&format!("{} ", out.display())) && cmd.contains(&format!("--shard {shard}"))).then(|| e.file_name().to_string_lossy().parse().ok()).flatten()
    })
}

#[test]
fn a_report_states_fronts_groups_and_the_t_test_beside_the_authors() {
    let dir = scratch("sweep-report");
    let file = study(&dir, "  mode: [ddnn, pinn]\n  data: [30]\n  seed: [0, 1, 2]\n", &[("steps: 300", "steps: 200")]);
    let out = dir.join("out");
    assert!(run(excite().args(["sweep"]).arg(&file).arg("--out").arg(&out).args(["-j", "2"])).status.success());
    let o = run(excite().args(["report"]).arg(&out).arg("--authors-dir").arg(crate::util::reference_dir().join("ufjf-results")).arg("--json"));
    assert!(o.status.success());
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["points"], 6);
    assert_eq!(s["authors_best_val_mae"].as_f64().unwrap(), 0.0005999098066240549);
    let cmp = &s["pinn_vs_ddnn"][0];
    assert_eq!(cmp["data"], 30);
    assert_eq!(cmp["ddnn"].as_array().unwrap().len(), 3);
    let p = cmp["welch"]["p"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0, "{p}");
    assert!(!s["front_speed"].as_array().unwrap().is_empty());
    // the Euler line: dt 0.01 (the reference itself, no error), 0.02, 0.05, 0.1 with growing error
    let euler = s["euler"].as_array().unwrap();
    let dts: Vec<f64> = euler.iter().map(|p| p["dt"].as_f64().unwrap()).collect();
    assert_eq!(dts, [0.01, 0.02, 0.05, 0.1]);
    let maes: Vec<f64> = euler.iter().map(|p| p["mae"].as_f64().unwrap()).collect();
    assert!(maes[0] == 0.0 && maes.windows(2).all(|w| w[1] > w[0]) && maes[3] < 0.05, "{maes:?}");
    assert!(euler.iter().all(|p| p["seconds_per_sample"].as_f64().unwrap() > 0.0));
    let md = std::fs::read_to_string(out.join("report/report.md")).unwrap();
    for want in ["## Pareto front: validation MAE against engine samples/s", "| the authors, problem A | 24 |", "| 30 | 3 |", "Welch's t-test", "## Error against inference time"] {
        assert!(md.contains(want), "{want} not in\n{md}");
    }
    for svg in ["pareto-speed.svg", "pareto-parameters.svg", "shapes.svg", "error-time.svg"] {
        let t = std::fs::read_to_string(out.join("report").join(svg)).unwrap();
        assert!(t.starts_with("<svg") && !t.contains("NaN"), "{svg}");
    }
    assert!(std::fs::read_to_string(out.join("report/pareto-speed.svg")).unwrap().matches("<circle").count() >= 6);
}

#[test]
fn reproduce_runs_its_studies_and_joins_their_reports() {
    let dir = scratch("sweep-reproduce");
    let file = study(&dir, "  seed: [0, 1]\n", &[]);
    let out = dir.join("out");
    let o = run(excite().arg("reproduce").arg("--study").arg(&file).arg("--out").arg(&out).arg("--authors-dir").arg(crate::util::reference_dir().join("ufjf-results")));
    assert!(o.status.success());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let row = md.lines().find(|l| l.starts_with("| t |")).unwrap_or_else(|| panic!("{md}"));
    // 2 points, 2 finished, 0 diverged, ours, then the authors' best 5.999e-4
    assert!(row.starts_with("| t | 2 | 2 | 0 |") && row.contains("5.999e-4"), "{row}");
    assert!(out.join("t/report/report.md").exists() && out.join("t/results.csv").exists());
}

/// Runs scripts/slurm-up.sh (idempotent): a one-node cluster on this machine.
fn slurm_up() {
    let o = Command::new("bash").arg(root().join("scripts/slurm-up.sh")).output().unwrap();
    assert!(o.status.success(), "scripts/slurm-up.sh: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_slurm_array_runs_the_shards_and_resubmits_a_cancelled_task() {
    slurm_up();
    let dir = scratch("sweep-slurm");
    let six = FOUR.replace("seed: [0, 1]", "seed: [0, 1, 2]");
    let file = study(&dir, &six, &[("steps: 300", "steps: 1500")]);
    // a space in the folder, as users' paths have
    let out = dir.join("out dir");
    let coord = excite().arg("sweep").arg(&file).arg("--out").arg(&out).args(["--executor", "slurm", "-j", "2"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // cancel array task 1 once it runs
    let mut job = String::new();
    wait_until("array task 1 to run", Duration::from_secs(60), || {
        let o = Command::new("squeue").args(["-h", "-o", "%i %T %j"]).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        match text.lines().find(|l| l.contains("excite-t") && l.contains("RUNNING") && l.split_whitespace().next().is_some_and(|id| id.ends_with("_1"))) {
            Some(l) => {
                job = l.split_whitespace().next().unwrap().to_string();
                true
            }
            None => false,
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(Command::new("scancel").arg(&job).status().unwrap().success());
    let o = coord.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}\n{}", String::from_utf8_lossy(&o.stdout));
    assert!(err.contains("submitted job") && err.contains("resubmitting"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("6 of 6 points finished"));
    assert_eq!(rows(&out).iter().filter(|r| r["status"] == "ok").count(), 6);
    let script = std::fs::read_to_string(out.join("slurm/sweep.sbatch")).unwrap();
    assert!(script.contains("--shard \"$SLURM_ARRAY_TASK_ID/2\""));
    // each task's log in the study's logs folder
    let logs: Vec<String> = std::fs::read_dir(out.join("logs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(logs.iter().filter(|l| l.starts_with("slurm-") && l.ends_with(".log")).count() >= 2, "{logs:?}");
}

/// MPI ranks through rsmpi: in an excite built with `--features mpi` (the test command's build).
#[cfg(feature = "mpi")]
#[test]
fn mpi_ranks_run_the_shards_and_rank_zero_merges() {
    let dir = scratch("sweep-mpi");
    let file = study(&dir, FOUR, &[]);
    let out = dir.join("out");
    // mpirun itself, as users write it
    let o = run(Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-np", "2"])
        .arg(env!("CARGO_BIN_EXE_excite"))
        .arg("sweep")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .arg("--mpi"));
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shard 0/2: 2 run") && err.contains("shard 1/2: 2 run"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 of 4 points finished"));
    assert_eq!(rows(&out).len(), 4);
    // and through the executor: nothing left to do, each rank says so
    let o = run(excite().arg("sweep").arg(&file).arg("--out").arg(&out).args(["--executor", "mpi", "-j", "2", "--mpirun-arg=--oversubscribe"]));
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 run, 2 already finished"));
}
