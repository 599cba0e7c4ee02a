//! `excite report DIR`: a study's results as `report.md` and SVG figures —
//! the Pareto fronts (validation MAE against engine samples/s and against
//! parameter count), MAE by shape × neuron budget, PINN against DDNN at
//! each data size with Welch's t-test, and error against inference time
//! with the Euler reference's line — with the authors' figures for the same
//! problem beside ours where the study names one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::fsio::{write_atomic, StagingDir};
use crate::sweep::results::{self, Row, Status};
use crate::sweep::stats;
use crate::verify::chart::{self, BoxGroup, Chart, Scale, Series, Stroke};
use crate::verify::sci;
use crate::Error;

/// The authors' results for the problem a study compares with.
#[derive(Debug, Clone)]
pub struct Authors {
    /// `A`, `B` or `C`.
    pub problem: String,
    pub rows: Vec<AuthorRow>,
}

#[derive(Debug, Clone)]
pub struct AuthorRow {
    pub mae: f64,
    pub pinn: bool,
    pub shape: String,
    pub neurons: usize,
}

/// The authors' results folder, where a report is not told another.
pub const DEFAULT_AUTHORS_DIR: &str = "../shared/reference/ufjf-results";

impl Authors {
    /// Reads `problem-{a,b,c}-results.csv` from `dir` (rows that are
    /// trained models: their folder is `simulationN`).
    pub fn read(dir: &Path, problem: &str) -> Result<Authors, Error> {
        let problem = crate::sweep::study::paper_problem(problem, "--authors")?;
        let p = problem.to_ascii_lowercase();
        let path = dir.join(format!("problem-{p}-results.csv"));
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::invalid("--authors-dir", format!("no {} (the authors' results for problem {problem})", path.display()), "pass --authors-dir with the authors' ufjf-results folder (shared/reference/ufjf-results)"),
            _ => Error::io(&path, e),
        })?;
        let mut r = csv::Reader::from_reader(&bytes[..]);
        let bad = |what: String| Error::format(&path, what, "use the authors' problem-X-results.csv (shared/reference/ufjf-results)");
        let headers = r.headers().map_err(|e| bad(e.to_string()))?.clone();
        let col = |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| bad(format!("no column `{name}`")));
        let (folder, mae, pinn, shape, neurons) = (col("Folder")?, col("Final Error 1")?, col("Pinn Info")?, col("shape")?, col("total_neurons")?);
        let mut rows = Vec::new();
        for rec in r.records() {
            let rec = rec.map_err(|e| bad(e.to_string()))?;
            if !rec.get(folder).unwrap_or("").starts_with("simulation") {
                continue;
            }
            let num = |i: usize| rec.get(i).and_then(|v| v.trim().parse::<f64>().ok());
            let Some(m) = num(mae) else { continue };
            rows.push(AuthorRow { mae: m, pinn: rec.get(pinn) == Some("True"), shape: rec.get(shape).unwrap_or("").to_string(), neurons: num(neurons).unwrap_or(0.0) as usize });
        }
        Ok(Authors { problem: problem.to_string(), rows })
    }
}

/// The figures a report states, also written as `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// How far the study got.
    #[serde(flatten)]
    pub tally: crate::sweep::Merged,
    pub best_val_mae: Option<f64>,
    pub median_val_mae: Option<f64>,
    pub authors_best_val_mae: Option<f64>,
    pub authors_median_val_mae: Option<f64>,
    /// Indices of the points on each front.
    pub front_speed: Vec<usize>,
    pub front_parameters: Vec<usize>,
    pub pinn_vs_ddnn: Vec<Comparison>,
    /// The Euler reference at coarser steps: error against the problem's own dt and time per sample.
    pub euler: Vec<crate::verify::EulerPoint>,
}

/// PINN against DDNN at one training-set size.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Training rows (None: the whole training set).
    pub data: Option<usize>,
    pub ddnn: Vec<f64>,
    pub pinn: Vec<f64>,
    /// Welch's t-test on log10 of the validation MAE.
    pub welch: Option<stats::Welch>,
}

/// Writes `out/report.md`, `out/report.json` and the SVG figures.
pub fn write(dir: &Path, out: &Path, authors: Option<&Authors>) -> Result<Summary, Error> {
    let study = results::read_study(dir)?;
    let rows = results::collect(dir, &study);
    let ok: Vec<&Row> = rows.iter().filter(|r| matches!(r.status, Status::Ok | Status::OverBudget) && r.val_mae.is_some_and(f64::is_finite)).collect();
    let maes: Vec<f64> = ok.iter().filter_map(|r| r.val_mae).collect();

    let speed_pts: Vec<(f64, f64)> = ok.iter().map(|r| (r.val_mae.unwrap_or(f64::NAN), r.engine_samples_per_s.unwrap_or(f64::NAN))).collect();
    let front_speed: Vec<usize> = stats::pareto_front(&speed_pts).into_iter().map(|i| ok[i].index).collect();
    let param_pts: Vec<(f64, f64)> = ok.iter().map(|r| (r.parameters.map_or(f64::NAN, |p| p as f64), -r.val_mae.unwrap_or(f64::NAN))).collect();
    let front_parameters: Vec<usize> = stats::pareto_front(&param_pts).into_iter().map(|i| ok[i].index).collect();

    // PINN against DDNN: rows alike but for the mode, grouped by data size
    let mut by_data: BTreeMap<Option<usize>, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for r in &ok {
        let e = by_data.entry(r.settings.data).or_default();
        match r.settings.mode.as_str() {
            "ddnn" => e.0.push(r.val_mae.unwrap_or(f64::NAN)),
            "pinn" => e.1.push(r.val_mae.unwrap_or(f64::NAN)),
            _ => {}
        }
    }
    let log = |v: &[f64]| v.iter().map(|x| x.log10()).collect::<Vec<_>>();
    let pinn_vs_ddnn: Vec<Comparison> = by_data
        .into_iter()
        .filter(|(_, (d, p))| !d.is_empty() && !p.is_empty())
        .map(|(data, (ddnn, pinn))| Comparison { data, welch: stats::welch(&log(&pinn), &log(&ddnn)), ddnn, pinn })
        .collect();

    // the Euler reference's accuracy-cost line, on the problem of the first finished point
    let euler = match ok.first().map(|r| results::point_dir(dir, &study.points[r.index]).join("run").join("simulate")) {
        Some(d) if d.exists() => {
            let problem = crate::verify::Problem::from_dataset(&d)?;
            crate::verify::euler_line(&problem, 200, crate::verify::Settings::default().seed, 0)?
        }
        _ => Vec::new(),
    };
    let authors_mae: Vec<f64> = authors.map(|a| a.rows.iter().map(|r| r.mae).collect()).unwrap_or_default();
    let summary = Summary {
        tally: crate::sweep::tally(&study, &rows),
        best_val_mae: maes.iter().copied().min_by(f64::total_cmp),
        median_val_mae: stats::median(&maes),
        authors_best_val_mae: authors_mae.iter().copied().min_by(f64::total_cmp),
        authors_median_val_mae: stats::median(&authors_mae),
        front_speed,
        front_parameters,
        pinn_vs_ddnn,
        euler,
    };

    let staging = StagingDir::new(out)?;
    let o = staging.path();
    let mut md = String::new();
    let e = sci;
    let _ = writeln!(md, "# Study {}\n", study.name);
    let hosts: std::collections::BTreeSet<String> = rows.iter().map(|r| format!("{} ({})", r.host, r.cpu)).collect();
    let t = &summary.tally;
    let _ = writeln!(md, "- points: {} ({} finished, {} diverged, {} failed)", t.points, t.finished, t.diverged, t.failed);
    let _ = writeln!(md, "- measured on: {}", hosts.into_iter().collect::<Vec<_>>().join("; "));
    let _ = writeln!(md, "- validation MAE: the mean over output variables of the MAE on the dataset's validation rows (the authors' \"Final Error 1\")");
    let _ = writeln!(md, "- engine samples/s: `verify`'s timing of each point's engine on this machine; workers running side by side share its cores\n");

    let _ = writeln!(md, "## Validation MAE\n");
    let _ = writeln!(md, "| | models | best | median |\n|---|---:|---:|---:|");
    let _ = writeln!(md, "| this study | {} | {} | {} |", maes.len(), e(summary.best_val_mae), e(summary.median_val_mae));
    if let Some(a) = authors {
        let _ = writeln!(md, "| the authors, problem {} | {} | {} | {} |", a.problem, a.rows.len(), e(summary.authors_best_val_mae), e(summary.authors_median_val_mae));
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Pareto front: validation MAE against engine samples/s\n\n![front](pareto-speed.svg)\n");
    front_table(&mut md, &rows, &summary.front_speed);
    let _ = writeln!(md, "## Pareto front: validation MAE against parameter count\n\n![front](pareto-parameters.svg)\n");
    front_table(&mut md, &rows, &summary.front_parameters);

    // shape × neuron budget, ours and the authors' side by side
    let mut groups: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for r in &ok {
        groups.entry((r.settings.shape.clone(), r.settings.neurons)).or_default().push(r.val_mae.unwrap_or(f64::NAN));
    }
    let mut theirs: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for r in authors.map(|a| a.rows.as_slice()).unwrap_or(&[]) {
        theirs.entry((r.shape.clone(), r.neurons)).or_default().push(r.mae);
    }
    let _ = writeln!(md, "## Validation MAE by shape × neurons\n\n![boxes](shapes.svg)\n");
    let _ = writeln!(md, "| shape | neurons | models | median | best | authors' models | authors' median | authors' best |\n|---|---:|---:|---:|---:|---:|---:|---:|");
    let keys: std::collections::BTreeSet<&(String, usize)> = groups.keys().chain(theirs.keys()).collect();
    for k in keys {
        let (a, b) = (groups.get(k).map(Vec::as_slice).unwrap_or(&[]), theirs.get(k).map(Vec::as_slice).unwrap_or(&[]));
        let best = |v: &[f64]| v.iter().copied().min_by(f64::total_cmp);
        let _ = writeln!(md, "| {} | {} | {} | {} | {} | {} | {} | {} |", k.0, k.1, a.len(), e(stats::median(a)), e(best(a)), b.len(), e(stats::median(b)), e(best(b)));
    }
    let _ = writeln!(md, "\n(the authors count neurons their own way, `total_neurons` in their files; rows meet where the counts agree)\n");

    let _ = writeln!(md, "## PINN against DDNN\n");
    if summary.pinn_vs_ddnn.is_empty() {
        let _ = writeln!(md, "No data size has both PINN and DDNN points.\n");
    } else {
        let _ = writeln!(md, "Welch's t-test on log10 of the validation MAE (unequal variances; a negative t: PINN lower).\n");
        let _ = writeln!(md, "| training rows | DDNN models | DDNN median | PINN models | PINN median | t | df | p |\n|---:|---:|---:|---:|---:|---:|---:|---:|");
        for c in &summary.pinn_vs_ddnn {
            let _ = writeln!(md, "| {} | {} | {} | {} | {} | {} |", c.data.map_or("all".into(), |d| d.to_string()), c.ddnn.len(), e(stats::median(&c.ddnn)), c.pinn.len(), e(stats::median(&c.pinn)), welch_cells(c.welch));
        }
        if let Some(a) = authors {
            let (p, d): (Vec<f64>, Vec<f64>) = (a.rows.iter().filter(|r| r.pinn).map(|r| r.mae).collect(), a.rows.iter().filter(|r| !r.pinn).map(|r| r.mae).collect());
            if !p.is_empty() {
                let _ = writeln!(md, "| the authors, problem {} | {} | {} | {} | {} | {} |", a.problem, d.len(), e(stats::median(&d)), p.len(), e(stats::median(&p)), welch_cells(stats::welch(&log(&p), &log(&d))));
            }
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Error against inference time\n\n![time](error-time.svg)\n");
    if !summary.euler.is_empty() {
        let _ = writeln!(md, "The line is the Euler reference at coarser steps: its error against the reference at the problem's own dt (the ground truth of every verify MAE here) and its time per sample on this machine. A surrogate left of the line at equal error is faster than Euler at that accuracy.\n");
        let _ = writeln!(md, "| Euler dt | seconds per sample | MAE |\n|---:|---:|---:|");
        for p in &summary.euler {
            let _ = writeln!(md, "| {} | {:.3e} | {} |", p.dt, p.seconds_per_sample, e(Some(p.mae)));
        }
        let _ = writeln!(md);
    }

    // figures
    let pts = |f: &dyn Fn(&Row) -> Option<(f64, f64)>| ok.iter().filter_map(|r| f(r)).collect::<Vec<_>>();
    let front_pts = |idx: &[usize], f: &dyn Fn(&Row) -> Option<(f64, f64)>| idx.iter().filter_map(|i| rows.iter().find(|r| r.index == *i)).filter_map(|r| f(r)).collect::<Vec<_>>();
    let speed = |r: &Row| Some((r.engine_samples_per_s?, r.val_mae?));
    let params = |r: &Row| Some((r.parameters? as f64, r.val_mae?));
    let mut front_sorted = front_pts(&summary.front_speed, &speed);
    front_sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let svg = |series: &[Series], title: &str, x: &str, y: &str| chart::svg(&Chart { title, x_label: x, y_label: y, x_scale: Scale::Log, y_scale: Scale::Log, series });
    write_atomic(
        &o.join("pareto-speed.svg"),
        svg(&[Series { name: "points".into(), color: 0, stroke: Stroke::Points, points: pts(&speed) }, Series { name: "front".into(), color: 1, stroke: Stroke::Solid, points: front_sorted }], "validation MAE against engine throughput", "engine samples/s", "validation MAE").as_bytes(),
    )?;
    write_atomic(
        &o.join("pareto-parameters.svg"),
        svg(&[Series { name: "points".into(), color: 0, stroke: Stroke::Points, points: pts(&params) }, Series { name: "front".into(), color: 1, stroke: Stroke::Solid, points: front_pts(&summary.front_parameters, &params) }], "validation MAE against parameters", "parameters", "validation MAE").as_bytes(),
    )?;
    // ours and the authors' of each shape and size one above the other
    let mut keyed: Vec<((&String, &usize, bool), BoxGroup)> = groups.iter().map(|((s, n), v)| ((s, n, false), BoxGroup { label: format!("{s} {n}"), values: v.clone() })).collect();
    keyed.extend(theirs.iter().map(|((s, n), v)| ((s, n, true), BoxGroup { label: format!("authors: {s} {n}"), values: v.clone() })));
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let boxes: Vec<BoxGroup> = keyed.into_iter().map(|(_, b)| b).collect();
    write_atomic(&o.join("shapes.svg"), chart::boxes("validation MAE by shape and neurons", "validation MAE", &boxes).as_bytes())?;
    let time = |r: &Row| Some((1.0 / r.engine_samples_per_s?, r.verify_mae?));
    // in order of dt, finest first
    let euler: Vec<(f64, f64)> = summary.euler.iter().map(|p| (p.seconds_per_sample, p.mae)).collect();
    let series = [Series { name: "surrogates".into(), color: 0, stroke: Stroke::Points, points: pts(&time) }, Series { name: "Euler, coarser dt".into(), color: 1, stroke: Stroke::Dashed, points: euler }];
    write_atomic(&o.join("error-time.svg"), svg(&series, "verify MAE against time per sample", "seconds per sample", "verify MAE").as_bytes())?;
    write_atomic(&o.join("report.md"), md.as_bytes())?;
    write_atomic(&o.join("report.json"), &serde_json::to_vec_pretty(&summary).expect("serialises"))?;
    staging.commit()?;
    Ok(summary)
}

/// `t | df | p` cells of a table row.
fn welch_cells(w: Option<stats::Welch>) -> String {
    match w {
        Some(w) => format!("{:.2} | {:.1} | {}", w.t, w.df, stats::p_value(w.p)),
        None => "— | — | —".into(),
    }
}

fn front_table(md: &mut String, rows: &[Row], front: &[usize]) {
    let _ = writeln!(md, "| point | architecture | mode | parameters | validation MAE | verify MAE | engine samples/s |\n|---:|---|---|---:|---:|---:|---:|");
    for i in front {
        if let Some(r) = rows.iter().find(|r| r.index == *i) {
            let e = sci;
            let _ = writeln!(md, "| {} | {} | {} | {} | {} | {} | {} |", r.index, r.settings.architecture, r.settings.mode, r.parameters.map_or("—".into(), |p| p.to_string()), e(r.val_mae), e(r.verify_mae), e(r.engine_samples_per_s));
        }
    }
    let _ = writeln!(md);
}

/// The report folder of a sweep folder, where not told another.
pub fn default_out(dir: &Path) -> PathBuf {
    dir.join("report")
}
