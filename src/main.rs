//! The `excite` command line: parses arguments, runs one command, prints.
//! All work happens in the library; errors are printed here with their hint.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use excite::solve::Device;

/// Turn cell-electrophysiology ODE models into fast, verified neural surrogates.
///
/// The pipeline runs stage by stage: `simulate` solves a cell model with the
/// forward-Euler reference and writes a training dataset; later stages train,
/// export, build and verify surrogates against that same reference.
/// Training allocates and frees many tensors of a few hundred KiB each step;
/// glibc would map and unmap each one (page faults on every step). Keeping
/// freed memory in the heap made the PINN step 15% faster.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[derive(Parser)]
#[command(
    name = "excite",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole chain: simulate → train → export → build → verify → package.
    ///
    /// Each stage writes its folder under the run directory (default
    /// runs/<name>): simulate/, train/, export/, build/, verify/, package/.
    /// pipeline.lock records each stage's input hash (its config section, its
    /// upstream output, the excite version) and output hash; an up-to-date stage
    /// is skipped. An interrupted stage leaves earlier outputs intact and the
    /// next run resumes (training from its checkpoint). A failed accuracy gate
    /// stops the pipeline with exit code 1, naming the stage and the budget.
    Pipeline(commands::pipeline::PipelineArgs),
    /// Run a study: a base pipeline over axes of architectures, modes, data
    /// sizes, seeds and more.
    ///
    /// Every point is the pipeline's train → export → build → verify, in
    /// DIR/points/<id>/ (the id is the hash of the point's pipeline file);
    /// a finished point is never run again and an interrupted one resumes, so
    /// re-running a sweep after a crash, a kill or a change of the study
    /// costs only what is new. Each finished point adds its row to
    /// DIR/results.csv and results.json: settings, validation and verify
    /// errors per variable, parameters, multiply-adds, engine samples/s on
    /// this machine, training time, and diverged or not (a diverged point is
    /// recorded, never fatal). Executors: --workers processes here, a Slurm
    /// job array (--executor slurm), or MPI ranks (--executor mpi, or
    /// `mpirun -np N excite sweep FILE --mpi`); each runs `--shard i/n`.
    /// `excite sweep merge DIR` joins what shards left.
    Sweep(commands::sweep::SweepArgs),
    /// Write a study's report: Pareto fronts, MAE by shape and budget, PINN
    /// against DDNN (Welch's t-test), error against inference time.
    ///
    /// Reads DIR (an `excite sweep` folder) and writes DIR/report/report.md
    /// with SVG figures and report.json. With --authors A|B|C (or the study's
    /// `compare:`), the paper's published results for that problem go in the
    /// same tables.
    Report(commands::sweep::ReportArgs),
    /// Run the paper's studies and write one report.
    ///
    /// Sweeps models/study-zoo-a.yaml (the authors' 800 architectures on
    /// problem A), study-pinn-ddnn.yaml (PINN against DDNN at 10, 100 and
    /// 1000 training rows, five seeds) and study-windows.yaml (time windows
    /// and adaptive points on problem C) into OUT/<study>, reports each beside
    /// the authors' results, and joins the summaries in OUT/report.md. Hours
    /// on a small machine: interrupt it at will, it resumes; spread it with
    /// -j, --executor slurm or --executor mpi.
    Reproduce(commands::reproduce::ReproduceArgs),
    /// Show a bundle's manifest after checking every file's sha256.
    ///
    /// Also says whether the bundle is signed. With --trusted-key the
    /// signature must be there and made by that key (exit code 2 otherwise,
    /// naming why: unsigned, signed by another key, or changed after signing).
    Inspect(commands::inspect::InspectArgs),
    /// Sign a bundle with a minisign secret key.
    ///
    /// Checks every file of the bundle (folder or .tar.gz), then signs its
    /// SHA256SUMS, which lists the sha256 of every other file, bundle.json
    /// included: SHA256SUMS.minisig is written into the folder, or the archive
    /// is rewritten with it inside. The format is minisign's (Ed25519), so
    /// `minisign -Vm BUNDLE/SHA256SUMS -p KEY.pub` checks it too, and keys made
    /// by `minisign -G` sign here. An encrypted key's password comes from
    /// EXCITE_KEY_PASSWORD, or is asked for on the terminal.
    Sign(commands::sign::SignArgs),
    /// Make a key pair for signing bundles (minisign's format).
    ///
    /// Writes NAME.key (the secret key, mode 0600, encrypted with a password
    /// unless --unencrypted) and NAME.pub (the public key to hand to those who
    /// load your bundles: `excite inspect --trusted-key NAME.pub`,
    /// `Surrogate::load_trusted`, `excite_surrogate_load_trusted`). The
    /// password comes from EXCITE_KEY_PASSWORD, or is asked for on the
    /// terminal. Existing files are never replaced.
    Keygen(commands::keygen::KeygenArgs),
    /// Solve a cell model with the Euler reference and write a dataset.
    ///
    /// Samples initial states and parameters as the config says (Latin
    /// hypercube or uniform, seeded), solves every cell with forward Euler in
    /// f32, and writes DIR/dataset.npz (x_train, y_train, x_val, y_val,
    /// x_test, y_test) and DIR/dataset.json (model, constants, ranges, time
    /// grid, seed, solver, version, content hash). Without --config, the
    /// built-in quick preset (problem A, models/quick.yaml) is used.
    Simulate(SimulateArgs),
    /// Train a surrogate network on a dataset.
    ///
    /// Reads a training configuration (YAML: dataset folder, mode ddnn|pinn|itnn,
    /// architecture, steps, batch, learning rate and schedule, validation interval,
    /// early-stopping patience, seed, PINN loss weights, adaptive point density,
    /// time windows) and writes the run folder: surrogate.json, model-K.bpk (best
    /// weights per window), losses.csv, metrics.json and checkpoint-K/ for --resume.
    /// The run folder is replaced only when training finishes; an interrupted run
    /// leaves its checkpoint in a staging folder beside it.
    Train(TrainArgs),
    /// Export a trained surrogate to ONNX.
    ///
    /// Writes one ONNX file (opset 17, dynamic batch): input `x` [N, inputs] and
    /// output `y` [N, outputs], both in physical units (the normalisation is
    /// folded into the first and last layer), with metadata_props holding the
    /// cell model and constants, input ranges, variable names, surrogate kind,
    /// time windows and the training run's hash.
    Export {
        /// Training run folder (from `excite train`).
        run: PathBuf,
        /// Output file.
        #[arg(long, short, default_value = "model.onnx")]
        out: PathBuf,
    },
    /// Verify an exported engine against the Euler reference.
    ///
    /// Draws fresh cells (new seed) from the ranges recorded in the ONNX file,
    /// solves them with forward Euler, runs the engine on the same inputs (ITNN:
    /// rolled out over the whole horizon), and reports per output variable the
    /// MAE, RMSE and max abs error, the error over time, and pass/fail against
    /// --max-mae / --max-abs-error (exit code 1 on fail). Times the engine
    /// (samples/s, latency percentiles at --batch) and the Euler reference
    /// (sample-equivalents/s) in the same run. Writes report.json, report.md,
    /// trajectories.svg and error.svg.
    Verify(commands::verify::VerifyArgs),
    /// Build an inference engine: target, precision and batch profile, verified.
    ///
    /// Writes an engine directory: model.onnx (the precision variant), the
    /// backend's files (CPU: model.optimized.onnx; TensorRT: trt/ with engine and
    /// timing caches and the EP-context model), calibration.cache (int8, TensorRT's
    /// text format), batch.csv/batch.svg (--batch auto), candidates.csv
    /// (--precision auto), verify/ (the report), and engine.json (target,
    /// precision, batch profile, names and shapes, runtime versions, device,
    /// verification, sha256 of every file). CUDA and TensorRT need the GPU build
    /// of ONNX Runtime; without it the error names the missing library.
    Build(commands::build::BuildArgs),
    /// Record in a model trained elsewhere the problem it solves.
    ///
    /// Reads any MLP-shaped ONNX file (torch.onnx, skl2onnx, tf2onnx, keras,
    /// jax2onnx), rewrites it in excite's form (Gemm layers, input scaling
    /// folded in) and writes into its metadata the problem of the dataset it
    /// was trained on: cell model and constants, inputs and outputs in column
    /// order with their ranges, time grid. `verify`, `build` and bundles then
    /// need no --problem.
    Annotate(commands::annotate::AnnotateArgs),
    /// Look at datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// List the built-in cell models with their parameters, or read a CellML model.
    ///
    /// With --cellml FILE, reads a CellML 1.0, 1.1 or 2.0 file and shows what
    /// excite makes of it: states with initial values (and which are gating
    /// variables that Rush–Larsen advances), parameters with values, the
    /// algebraic variables in evaluation order and the free variable. A
    /// file that cannot be read is named with its line and element.
    Models(ModelsArgs),
    /// Measure the speed of excite's components.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Args)]
struct SimulateArgs {
    /// Dataset configuration (YAML); see models/ for presets.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Output folder [default: runs/<name>/simulate].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Where to solve; overrides the config's `device`.
    #[arg(long, value_enum)]
    device: Option<Device>,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Overrides the config's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the written metadata as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// Training configuration (YAML), or a pipeline file (its train section); see models/quick.yaml.
    #[arg(long, short)]
    config: PathBuf,
    /// Run folder [default: runs/<name>/train].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Continue from the checkpoint an interrupted (or finished) run left.
    #[arg(long)]
    resume: bool,
    /// Print the validation metrics as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Print a dataset's metadata and per-variable statistics.
    ///
    /// PATH is a dataset folder, or its dataset.json or dataset.npz. The
    /// content hash recorded at write time is checked against the arrays.
    Inspect {
        path: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ModelsArgs {
    /// Read this CellML file instead of listing the built-in models.
    #[arg(long)]
    cellml: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Euler reference throughput in cell-steps per second.
    ///
    /// Solves the same cells with the plain scalar loop, the SIMD solver on
    /// one thread and on all threads (and on CUDA with --cuda), all in one
    /// run, and prints each throughput with its ratio to the scalar loop.
    /// A vectorised numpy loop is timed too when numpy is installed
    /// (`scripts/setup.sh`). The problem is fhn-cardiac with sampled
    /// (u0, v0, k), dt = 0.01, one stored sample every 100 steps.
    Euler(commands::bench::EulerArgs),
    /// Reference throughput of an imported (CellML) model in cell-steps per second.
    ///
    /// Solves copies of the model's default cell with the compiled program
    /// (forward Euler and Rush–Larsen) on each thread count given, in f64,
    /// both ways it runs: native (the step generated as C and built with the
    /// host's compiler, `$CC` or `cc`, once per model and machine; the build
    /// is not timed) and interpreted over SIMD blocks, and prints cell-steps
    /// per second. The two give the same numbers bit for bit. Its peer is Myokit's
    /// Simulation1d on the same model, dt and cell count:
    /// `scripts/bench_myokit.py` (`scripts/bench-cellml.sh` runs both in one sitting).
    /// With --cuda, also the generated CUDA kernel on GPU 0 and its largest
    /// difference to the CPU result.
    Cellml(commands::bench::CellmlArgs),
    /// Training throughput in samples per second.
    ///
    /// Times the real training step (forward, MSE, backward, Adam) on the
    /// training rows of a dataset (problem C's preset unless `--dataset` names
    /// another), for DDNN and for PINN (data loss plus physics residual through
    /// the forward tangent plus initial-condition loss), interleaved.
    Train(commands::bench::TrainArgs),
    /// Inference throughput and latency of engines per batch size.
    ///
    /// Times each ONNX file (ONNX Runtime CPU) or engine directory at each batch
    /// size (warm-up excluded; mean, p50, p90, p99 latency), engines interleaved
    /// over --repeat rounds, and the Euler reference of the same problem in
    /// sample-equivalents per second (cell-steps ÷ steps per sample), in one run.
    Engine(commands::bench::EngineArgs),
    /// A surrogate on the GPU next to the CUDA Euler reference of its problem.
    ///
    /// Solves fresh cells with the CUDA Euler kernel and evaluates the same
    /// trajectories with the native-cuda engine (rows in, and with the time
    /// grid made in the kernel) and native-cpu; checks the GPU outputs against
    /// the CPU ones (limit 1e-5) and prints sample-equivalents per second and
    /// the ratio to CUDA Euler; then the tensor-core kernel with fp16 and
    /// bf16 operands (its error reported, not gated). Kernels are timed with
    /// inputs on the GPU, as the Euler kernel is. `--out DIR` also writes the
    /// network and a check set for the PyTorch peer (`scripts/torch_peer.py
    /// DIR`), before the GPU is needed.
    Gpu(commands::bench_gpu::GpuArgs),
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(a) => commands::simulate::run(
            a.config.as_deref(),
            a.out,
            a.device,
            a.threads,
            a.seed,
            a.json,
        ),
        Command::Export { run, out } => commands::export::run(&run, &out),
        Command::Pipeline(a) => commands::pipeline::run(&a),
        Command::Sweep(a) => commands::sweep::run(&a),
        Command::Report(a) => commands::sweep::report(&a),
        Command::Reproduce(a) => commands::reproduce::run(&a),
        Command::Inspect(a) => commands::inspect::run(&a),
        Command::Sign(a) => commands::sign::run(&a),
        Command::Annotate(a) => commands::annotate::run(&a),
        Command::Keygen(a) => commands::keygen::run(&a),
        Command::Build(a) => commands::build::run(&a),
        Command::Verify(a) => commands::verify::run(&a),
        Command::Train(a) => commands::train::run(&a.config, a.out, a.resume, a.json),
        Command::Data(DataCommand::Inspect { path, json }) => commands::data_inspect::run(&path, json),
        Command::Models(a) => match a.cellml {
            Some(path) => commands::models::cellml(&path, a.json),
            None => commands::models::run(a.json),
        },
        Command::Bench(BenchCommand::Euler(a)) => commands::bench::euler(&a),
        Command::Bench(BenchCommand::Cellml(a)) => commands::bench::cellml(&a),
        Command::Bench(BenchCommand::Train(a)) => commands::bench::train(&a),
        Command::Bench(BenchCommand::Engine(a)) => commands::bench::engine(&a),
        Command::Bench(BenchCommand::Gpu(a)) => commands::bench_gpu::gpu(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            commands::printer::error(&e);
            // 1: an accuracy gate failed; 2: bad input, a missing library, an I/O error
            let gate = e.chain().any(|c| matches!(c.downcast_ref::<excite::Error>(), Some(excite::Error::Gate { .. })));
            ExitCode::from(if gate { 1 } else { 2 })
        }
    }
}
