//! The `excite` binary as a user drives it.

use std::process::Output;

use crate::util::{excite, scratch};

fn run(args: &[&str]) -> Output {
    excite().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn problem_c_dataset_loads_in_numpy_with_metadata() {
    let out = scratch("problem-c");
    let o = run(&[
        "simulate",
        "--config",
        "models/problem-c.yaml",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(meta["model"]["name"], "fhn-cardiac");
    assert_eq!(
        meta["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["t", "u0", "v0", "k"]
    );
    assert_eq!(meta["time"]["dt"], 0.01);
    assert_eq!(meta["sampling"]["seed"], 3);
    let rows: u64 = ["train", "val", "test"]
        .iter()
        .map(|s| meta["split"]["rows"][s].as_u64().unwrap())
        .sum();
    assert_eq!(rows, 1000 * 201);

    // numpy, from the project's .deps (scripts/setup.sh), reads it in one line.
    let script = format!(
        "import numpy, json; d = numpy.load('{0}/dataset.npz'); m = json.load(open('{0}/dataset.json')); \
         x, y = d['x_train'], d['y_train']; \
         print(json.dumps({{'shape': list(x.shape), 'ycols': y.shape[1], 'dtype': str(x.dtype), 'kmax': float(x[:, 3].max()), 'tmax': float(x[:, 0].max()), 'rows': m['split']['rows']['train']}}))",
        out.display()
    );
    let py = crate::util::python()
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "numpy could not load the dataset (run scripts/setup.sh): {}",
        stderr(&py)
    );
    let got: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(got["shape"][1], 4);
    assert_eq!(got["shape"][0], got["rows"]);
    assert_eq!(got["ycols"], 2);
    assert_eq!(got["dtype"], "float32");
    assert!(got["kmax"].as_f64().unwrap() <= 1.0 && got["kmax"].as_f64().unwrap() > 0.9);
    assert!((got["tmax"].as_f64().unwrap() - 20.0).abs() < 1e-5);

    let o = run(&["data", "inspect", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("verified") && text.contains("x_train  k"),
        "{text}"
    );
}

#[test]
fn same_seed_same_bytes_and_tampering_is_detected() {
    let (a, b) = (scratch("seed-a"), scratch("seed-b"));
    for d in [&a, &b] {
        let o = run(&[
            "simulate",
            "-c",
            "models/problem-b.yaml",
            "-o",
            d.to_str().unwrap(),
            "--threads",
            "1",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let npz = |d: &std::path::Path| std::fs::read(d.join("dataset.npz")).unwrap();
    assert_eq!(npz(&a), npz(&b));
    let mut bytes = npz(&b);
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(b.join("dataset.npz"), bytes).unwrap();
    let o = run(&["data", "inspect", b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("dataset.npz")
            && stderr(&o).contains("does not match")
            && stderr(&o).contains("hint:"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_input_is_an_error_with_a_hint_never_a_panic() {
    let dir = scratch("bad-input");
    let cases: [(&str, &str); 4] = [
        ("name: x\nmodel: hh\ntime: {t_end: 1, dt: 0.1, sample_every: 0.1}\n", "unknown cell model"),
        ("name: x\nmodel: fhn\ntime: {t_end: 1, dt: 0.1, sample_every: 0.1}\nsample: {u: [1, 0]}\n", "inverted"),
        ("name: x\nmodel: fhn\ntime: {t_end: 1, dt: -0.1, sample_every: 0.1}\n", "time.dt"),
        ("name: x\nmodel: fhn\ntime: {t_end: 1, dt: 0.1\n", "not a valid dataset configuration"),
    ];
    for (i, (yaml, want)) in cases.iter().enumerate() {
        let cfg = dir.join(format!("c{i}.yaml"));
        std::fs::write(&cfg, yaml).unwrap();
        let o = run(&[
            "simulate",
            "-c",
            cfg.to_str().unwrap(),
            "-o",
            dir.join("out").to_str().unwrap(),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(want) && err.contains("hint:") && err.contains(&format!("c{i}.yaml")),
            "case {i}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = run(&["simulate", "-c", "/nonexistent.yaml"]);
    assert!(
        stderr(&o).contains("/nonexistent.yaml") && stderr(&o).contains("hint:"),
        "{}",
        stderr(&o)
    );
    if !excite::gpu::driver_present() {
        let o = run(&[
            "simulate",
            "--device",
            "cuda",
            "-o",
            dir.join("gpu").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o).contains("libcuda") && stderr(&o).contains("--device cpu"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn a_failed_run_keeps_the_previous_dataset() {
    let dir = scratch("keep");
    let out = dir.join("data");
    let o = run(&["simulate", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = std::fs::read(out.join("dataset.json")).unwrap();
    // A configuration that diverges (dt far beyond stability) fails mid-stage.
    let cfg = dir.join("diverge.yaml");
    std::fs::write(&cfg, "name: quick\nmodel: fhn-cardiac\ntime: {t_end: 100, dt: 1, sample_every: 1}\ninitial: {u: 0.9}\nparams: {k1: 1000}\n").unwrap();
    let o = run(&[
        "simulate",
        "-c",
        cfg.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("diverged"), "{}", stderr(&o));
    assert_eq!(std::fs::read(out.join("dataset.json")).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

#[test]
fn help_documents_every_flag() {
    let o = run(&["simulate", "--help"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--config",
        "--out",
        "--device",
        "--threads",
        "--seed",
        "--json",
    ] {
        assert!(text.contains(flag), "{flag} missing from simulate --help");
    }
    let o = run(&["models"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("fhn-cardiac") && text.contains("alpha"),
        "{text}"
    );
}
