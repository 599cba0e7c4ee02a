//! One precision variant of the exported graph, as the target will load it:
//! the fp32 graph, its fp16 form, or int8 (QDQ, or for TensorRT the fp32
//! graph with a calibration cache) calibrated on a dataset's inputs or on
//! Latin-hypercube samples of the input ranges.

use crate::build::{precision, BuildSpec};
use crate::engine::manifest::{Calibration, Precision, Target};
use crate::onnx::Model;
use crate::verify::Problem;
use crate::Error;

/// The calibration set: rows of inputs in physical units.
fn calibration_set(source: &Model, p: Option<&Problem>, spec: &BuildSpec) -> Result<(Vec<f32>, usize, String), Error> {
    let n_in = source.features().0.unwrap_or(0);
    if let Some(dir) = &spec.calibration_data {
        let d = crate::data::load(dir)?;
        let x = d
            .arrays
            .iter()
            .find(|(n, _)| n == "x_train")
            .map(|(_, a)| a.clone())
            .ok_or_else(|| {
                Error::format(
                    dir,
                    "no x_train array",
                    "pass a dataset folder from `excite simulate`",
                )
            })?;
        if x.cols != n_in {
            return Err(Error::invalid(
                "--calibration-data",
                format!(
                    "{} has {} input columns, the model takes {n_in}",
                    dir.display(),
                    x.cols
                ),
                "use the dataset the model was trained on",
            ));
        }
        let rows = spec.calibration_rows.min(x.rows);
        let mut rng = crate::data::sampling::Rng::new(0xCA11);
        let data: Vec<f32> = (0..rows)
            .flat_map(|_| x.row(rng.below(x.rows)).to_vec())
            .collect();
        return Ok((
            data,
            rows,
            format!("{} (x_train, {rows} random rows)", dir.display()),
        ));
    }
    let Some(p) = p else {
        return Err(Error::invalid("int8", "calibration needs inputs: the model records no input ranges", "pass --calibration-data DATASET, or --problem DATASET"));
    };
    let rows = spec.calibration_rows.max(1);
    let mut rng = crate::data::sampling::Rng::new(0xCA11);
    let ranges: Vec<[f64; 2]> = p.inputs.iter().map(|v| [v.min, v.max]).collect();
    let cols =
        crate::data::sampling::sample(crate::data::sampling::Method::Lhs, &ranges, rows, &mut rng);
    let data = (0..rows)
        .flat_map(|r| cols.iter().map(move |c| c[r] as f32))
        .collect();
    Ok((
        data,
        rows,
        "Latin-hypercube samples of the model's input ranges".into(),
    ))
}

pub(super) struct Variant {
    pub precision: Precision,
    pub bytes: Vec<u8>,
    /// The calibration and its TensorRT cache text, for int8.
    pub calibration: Option<(Calibration, String)>,
}

pub(super) fn variant(
    source: &Model,
    p: Option<&Problem>,
    prec: Precision,
    spec: &BuildSpec,
) -> Result<Variant, Error> {
    Ok(match prec {
        // excite's own engines read the fp32 graph and apply the precision
        // themselves (fast activations, tensor-core operands)
        _ if matches!(spec.target, Target::NativeCpu | Target::NativeCuda) => Variant {
            precision: prec,
            bytes: source.to_bytes(),
            calibration: None,
        },
        Precision::Fp32 | Precision::Fp32Fast | Precision::Bf16 => Variant {
            precision: prec,
            bytes: source.to_bytes(),
            calibration: None,
        },
        Precision::Fp16 => Variant {
            precision: prec,
            bytes: precision::to_fp16(source).to_bytes(),
            calibration: None,
        },
        Precision::Int8 => {
            let (x, rows, from) = calibration_set(source, p, spec)?;
            let amax = precision::calibrate(source, &x, rows, spec.calibrator)?;
            let graph = if spec.target == Target::Tensorrt {
                // implicit quantisation: the fp32 graph with the calibration
                // cache (TensorRT refuses a cache for a graph with Q/DQ nodes)
                let mut g = source.clone();
                g.set_meta("excite.precision", "int8");
                g
            } else {
                precision::to_qdq(source, &amax)?
            };
            Variant {
                precision: prec,
                bytes: graph.to_bytes(),
                calibration: Some((
                    Calibration {
                        method: spec.calibrator,
                        rows,
                        source: from,
                    },
                    precision::trt_cache(&amax, spec.calibrator),
                )),
            }
        }
    })
}
