//! A mutation fuzzer over everything excite reads from others, on the stable
//! toolchain: ONNX files (reader, interpreter, native engine, the fp16 and
//! int8 build passes), bundles (the archive as bytes, the tar inside it, and
//! the files of an unpacked bundle with their checksums made to match, so
//! the manifest and engine loaders are reached), bundle signatures and keys,
//! and npz datasets. Seeds are real files from a short run of the quick
//! pipeline, made at start.
//!
//! Each input is mutated from the corpus (bit flips, interesting integers
//! and varints, inserted, deleted, repeated and spliced ranges, cuts), run
//! in-process, and judged: a panic, an input that runs longer than
//! EXCITE_FUZZ_HANG_SECONDS (10), or more than 1 GiB allocated at once is a
//! finding, saved to EXCITE_FUZZ_OUT (target/fuzz-findings) with its target
//! in the name. Without coverage instrumentation (not on stable), an input
//! whose outcome (success, or its error message with numbers blanked) was not
//! seen before joins the corpus: the errors excite names are the map of
//! where an input got to.
//!
//! `cargo test --release` runs it for EXCITE_FUZZ_SECONDS (60); longer runs:
//! `scripts/fuzz.sh MINUTES`. Replay a finding:
//! `EXCITE_FUZZ_REPLAY=FILE EXCITE_FUZZ_TARGET=NAME cargo test --release --test fuzz`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use excite::bundle::sign::{generate_keys, SigningKey, TrustedKey};

// ---------------------------------------------------------------- allocation cap

const ALLOC_LIMIT: usize = 1 << 30;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Set while an input runs: the cap applies to the code under test only.
static ARMED: AtomicBool = AtomicBool::new(false);
static IN_HANDLER: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting live bytes; over the cap while armed, the
/// current input is saved and the process aborts (an allocator cannot unwind).
struct Capped;

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grow(l.size());
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        grow(l.size());
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            grow(new - l.size());
        } else {
            LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;

fn grow(n: usize) {
    let live = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    if ARMED.load(Ordering::Relaxed) {
        PEAK.fetch_max(live.saturating_sub(BASELINE.load(Ordering::Relaxed)), Ordering::Relaxed);
        if live.saturating_sub(BASELINE.load(Ordering::Relaxed)) > ALLOC_LIMIT && !IN_HANDLER.swap(true, Ordering::SeqCst) {
            finding_and_abort("alloc", &format!("{live} bytes live, over the {ALLOC_LIMIT}-byte cap"));
        }
    }
}

/// Live bytes when the input started: the corpus and seeds are not the input's.
static BASELINE: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------- the input being run

struct Current {
    target: &'static str,
    bytes: Vec<u8>,
}
static CURRENT: Mutex<Option<Current>> = Mutex::new(None);
static STARTED_MS: AtomicU64 = AtomicU64::new(0);

fn out_dir() -> PathBuf {
    std::env::var_os("EXCITE_FUZZ_OUT").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-findings"))
}

/// Saves the current input as a finding and aborts (hangs and allocations).
fn finding_and_abort(kind: &str, why: &str) -> ! {
    ARMED.store(false, Ordering::SeqCst);
    if let Ok(guard) = CURRENT.try_lock() {
        if let Some(c) = guard.as_ref() {
            let path = save(kind, c.target, &c.bytes);
            eprintln!("fuzz: FINDING ({kind}) in target {}: {why}; input saved to {}", c.target, path.display());
        }
    }
    std::process::abort()
}

fn save(kind: &str, target: &str, bytes: &[u8]) -> PathBuf {
    let dir = out_dir();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{kind}-{target}-{}", &excite::hash::sha256_hex(bytes)[..16]));
    let _ = std::fs::write(&path, bytes);
    path
}

// ---------------------------------------------------------------- randomness and mutation

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

const INTERESTING: [u64; 14] = [0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 1 << 40, i64::MAX as u64, u64::MAX];

/// One to eight stacked mutations of `input`; `other` feeds splices.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let n = b.len();
        let at = rng.below(n + 1);
        match rng.below(11) {
            0 if n > 0 => {
                let i = rng.below(n);
                b[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                b[i] = [0u8, 0xff, 0x7f, 0x80, 1][rng.below(5)];
            }
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.chance(2) { varint(v) } else { v.to_le_bytes()[..[1, 2, 4, 8][rng.below(4)]].to_vec() };
                let end = (at + bytes.len()).min(n);
                b.splice(at..end, bytes);
            }
            3 => {
                let len = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                b.splice(at..at, bytes);
            }
            4 if n > 0 => {
                let len = 1 + rng.below((n - at.min(n - 1)).min(64));
                let start = at.min(n - 1);
                b.drain(start..(start + len).min(n));
            }
            5 if n > 0 => {
                // repeat a range (lengths and counts that disagree with content)
                let start = rng.below(n);
                let len = 1 + rng.below((n - start).min(256));
                let chunk = b[start..start + len].to_vec();
                let times = 1 + rng.below(4);
                for _ in 0..times {
                    b.splice(at..at, chunk.iter().copied());
                }
            }
            6 if !other.is_empty() => {
                // splice from another corpus entry
                let start = rng.below(other.len());
                let len = 1 + rng.below((other.len() - start).min(512));
                let end = (at + len).min(n);
                b.splice(at..end, other[start..start + len].iter().copied());
            }
            7 if n > 0 => b.truncate(rng.below(n)),
            8 if n > 1 => {
                // swap two bytes far apart
                let (i, j) = (rng.below(n), rng.below(n));
                b.swap(i, j);
            }
            9 if n > 0 => {
                // an arithmetic nudge of one byte: off-by-one lengths
                let i = rng.below(n);
                b[i] = b[i].wrapping_add([1u8, 255, 2, 254][rng.below(4)]);
            }
            _ => {
                if n > 0 {
                    let i = rng.below(n);
                    b[i] = rng.next() as u8;
                }
            }
        }
        if b.len() > 8 << 20 {
            b.truncate(8 << 20);
        }
    }
    b
}

// ---------------------------------------------------------------- targets

/// What excite made of an input: a short class for novelty.
type Outcome = Result<String, String>;

fn class(o: &Outcome) -> String {
    let text = match o {
        Ok(s) => format!("ok: {s}"),
        Err(e) => format!("err: {e}"),
    };
    // the message's shape is the class: its first words, with numbers,
    // digests, temp names, quoted names and echoed bytes blanked
    let plain = |w: &str| w.chars().all(|c| c.is_ascii_alphabetic() || ".,:;()-_/<>'".contains(c));
    let mut words: Vec<&str> = Vec::new();
    for (i, part) in text.split('`').enumerate() {
        let blanked = i % 2 == 1;
        for w in part.split_whitespace() {
            let w = if blanked || !plain(w) { "#" } else { w };
            if !(w == "#" && words.last() == Some(&"#")) {
                words.push(w);
            }
        }
    }
    words.truncate(12);
    words.join(" ")
}

struct Ctx {
    work: PathBuf,
    /// The signed seed bundle folder, for the signature target.
    signed: PathBuf,
    trusted: TrustedKey,
    /// The unpacked seed bundle: relative path → bytes.
    files: BTreeMap<String, Vec<u8>>,
}

/// An int8 calibration of every tensor of `m` to ±4, for the QDQ pass.
fn unit_ranges(m: &excite::onnx::Model) -> BTreeMap<String, f32> {
    m.nodes.iter().flat_map(|n| n.outputs.iter().chain(n.inputs.iter())).map(|t| (t.clone(), 4.0)).collect()
}

fn onnx(b: &[u8]) -> Outcome {
    let m = excite::onnx::Model::parse(b)?;
    let err = |e: excite::Error| e.to_string();
    let rows = 3;
    // excite's form of any exporter's MLP, and the interpreter on it
    let m = excite::onnx::canonical(m).map_err(err)?;
    let i = excite::onnx::Interpreter::new(m.clone()).map_err(err)?;
    let x: Vec<f32> = (0..i.inputs() * rows).map(|k| k as f32 * 0.37 - 1.0).collect();
    let y = i.run(&x, rows).map_err(err)?;
    // the native engine takes a subset (no Cast, no QDQ): its refusals are outcomes too
    let native = match excite::engine::native::NativeEngine::from_model(&m, 1) {
        Ok(mut native) => {
            let yn = excite::engine::Engine::run(&mut native, &x, rows).map_err(err)?;
            if yn.len() != y.len() {
                return Err(format!("native gives {} values, the interpreter {}", yn.len(), y.len()));
            }
            "native ok".to_string()
        }
        Err(e) => format!("native: {e}"),
    };
    // the build passes take what the reader took
    let half = excite::build::precision::to_fp16(&m);
    excite::onnx::Model::parse(&half.to_bytes()).map_err(|e| format!("fp16 pass wrote an unreadable model: {e}"))?;
    let amax = unit_ranges(&m);
    if let Ok(q) = excite::build::precision::to_qdq(&m, &amax) {
        let q = excite::onnx::Model::parse(&q.to_bytes()).map_err(|e| format!("int8 pass wrote an unreadable model: {e}"))?;
        excite::onnx::Interpreter::new(q).map_err(err)?.run(&x, rows).map_err(err)?;
    }
    Ok(native)
}

fn load_bundle(path: &Path) -> Outcome {
    let err = |e: excite::Error| e.to_string();
    let opened = excite::bundle::open(path, None).map_err(err)?;
    let mut s = excite::Surrogate::load(path).map_err(err)?;
    let n = s.inputs().max(1);
    let x: Vec<f32> = (0..n * 4).map(|k| k as f32).collect();
    let y = s.predict(&x).map_err(err)?;
    if y.len() != 4 * s.outputs() {
        return Err(format!("{} values for 4 rows of {} outputs", y.len(), s.outputs()));
    }
    Ok(format!("{} engines, {}", opened.manifest.engines.len(), s.engine()))
}

fn clear_cache(ctx: &Ctx) {
    let cache = ctx.work.join("cache");
    let _ = std::fs::remove_dir_all(&cache);
}

fn archive(ctx: &Ctx, b: &[u8]) -> Outcome {
    clear_cache(ctx);
    let path = ctx.work.join("input.tar.gz");
    std::fs::write(&path, b).map_err(|e| e.to_string())?;
    load_bundle(&path)
}

fn tar(ctx: &Ctx, b: &[u8]) -> Outcome {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).map_err(|e| e.to_string())?;
    archive(ctx, &gz.finish().map_err(|e| e.to_string())?)
}

/// The unpacked bundle with one file mutated (`b` is that file's new bytes,
/// its name chosen by the first byte); checksums of bundle.json,
/// engine.json and SHA256SUMS recomputed where they still parse, so the
/// loaders past the hash checks see the change.
fn bundle_files(ctx: &Ctx, b: &[u8]) -> Outcome {
    let (Some(&pick), rest) = (b.first(), b.get(1..).unwrap_or_default()) else { return Err("empty".into()) };
    let names: Vec<&String> = ctx.files.keys().filter(|k| !k.ends_with(".svg") && !k.ends_with(".md")).collect();
    let name = names[pick as usize % names.len()].clone();
    let mut files = ctx.files.clone();
    files.insert(name.clone(), rest.to_vec());
    fix_hashes(&mut files, pick & 0x80 == 0);
    let dir = ctx.work.join("bundle");
    let _ = std::fs::remove_dir_all(&dir);
    for (rel, bytes) in &files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(&p, bytes).map_err(|e| e.to_string())?;
    }
    load_bundle(&dir)
}

fn fix_hashes(files: &mut BTreeMap<String, Vec<u8>>, fix: bool) {
    if !fix {
        return;
    }
    let sha = |b: &[u8]| excite::hash::sha256_hex(b);
    // engine.json lists its folder's files by name inside the folder
    let engines: Vec<String> = files.keys().filter(|k| k.ends_with("/engine.json")).cloned().collect();
    for e in engines {
        let folder = e.trim_end_matches("engine.json").to_string();
        if let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&files[&e]) {
            if let Some(map) = json.get_mut("files").and_then(|f| f.as_object_mut()) {
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    if let Some(b) = files.get(&format!("{folder}{k}")) {
                        map.insert(k, sha(b).into());
                    }
                }
                files.insert(e, serde_json::to_vec_pretty(&json).unwrap());
            }
        }
    }
    if let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&files["bundle.json"]) {
        if let Some(map) = json.get_mut("files").and_then(|f| f.as_object_mut()) {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if let Some(b) = files.get(&k) {
                    map.insert(k, sha(b).into());
                }
            }
            files.insert("bundle.json".into(), serde_json::to_vec_pretty(&json).unwrap());
        }
    }
    let sums: String = files.iter().filter(|(k, _)| *k != "SHA256SUMS" && *k != "SHA256SUMS.minisig").map(|(k, b)| format!("{}  {k}\n", sha(b))).collect();
    files.insert("SHA256SUMS".into(), sums.into_bytes());
}

fn signature(ctx: &Ctx, b: &[u8]) -> Outcome {
    std::fs::write(ctx.signed.join("SHA256SUMS.minisig"), b).map_err(|e| e.to_string())?;
    let opened = excite::bundle::open(&ctx.signed, Some(&ctx.trusted)).map_err(|e| e.to_string())?;
    Ok(format!("{:?}", opened.signed))
}

fn keys(ctx: &Ctx, b: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(b);
    let public = TrustedKey::parse(&text, "fuzzed key").map(|k| k.id().to_string());
    let path = ctx.work.join("fuzzed.key");
    std::fs::write(&path, b).map_err(|e| e.to_string())?;
    // no password: an encrypted key is checked up to the password hashing,
    // whose cost (capped by the reader) is the key owner's choice
    let secret = SigningKey::from_file(&path, || None).map(|k| k.id().to_string());
    match (public, secret) {
        (Ok(p), _) => Ok(format!("public {p}")),
        (_, Ok(s)) => Ok(format!("secret {s}")),
        (Err(a), Err(b)) => Err(format!("{a} / {b}")),
    }
}

fn npz(ctx: &Ctx, b: &[u8]) -> Outcome {
    let path = ctx.work.join("input.npz");
    std::fs::write(&path, b).map_err(|e| e.to_string())?;
    let arrays = excite::data::npz::read(&path).map_err(|e| e.to_string())?;
    Ok(format!("{} arrays", arrays.len()))
}

struct Target {
    name: &'static str,
    run: fn(&Ctx, &[u8]) -> Outcome,
    corpus: Vec<Vec<u8>>,
    seen: HashSet<String>,
    runs: u64,
    ok: u64,
}

// ---------------------------------------------------------------- seeds

fn seeds(work: &Path) -> (Ctx, Vec<Target>) {
    let run = work.join("run");
    let yaml = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/quick.yaml")).unwrap();
    let yaml = yaml.replace("steps: 4000", "steps: 300").replace("cells: 200", "cells: 20").replace("max_mae: 0.02", "max_mae: 1.0");
    let file = work.join("quick.yaml");
    std::fs::write(&file, yaml).unwrap();
    let p = excite::pipeline::Pipeline::from_file(&file).unwrap();
    excite::pipeline::run(&p, &run, &Default::default(), &excite::report::Silent).expect("the seed pipeline runs");
    let bundle = run.join("package/quick");
    let tarball = run.join("package/quick.tar.gz");
    let mut files = BTreeMap::new();
    for rel in excite::fsio::file_hashes(&bundle).unwrap().keys() {
        files.insert(rel.clone(), std::fs::read(bundle.join(rel)).unwrap());
    }
    // ONNX seeds: the exported model, the engine's, and the fp16 and int8 variants
    let exported = std::fs::read(bundle.join("model.onnx")).unwrap();
    let m = excite::onnx::Model::parse(&exported).unwrap();
    let mut onnx_seeds = vec![exported.clone(), excite::build::precision::to_fp16(&m).to_bytes()];
    let amax = unit_ranges(&m);
    onnx_seeds.push(excite::build::precision::to_qdq(&m, &amax).unwrap().to_bytes());
    onnx_seeds.extend(files.iter().filter(|(k, _)| k.ends_with(".onnx")).map(|(_, b)| b.clone()));
    onnx_seeds.extend(foreign_seeds());
    // keys and a signed copy of the bundle
    generate_keys(&work.join("k.key"), &work.join("k.pub"), None).unwrap();
    generate_keys(&work.join("e.key"), &work.join("e.pub"), Some("pw".into())).unwrap();
    let signed = work.join("signed");
    excite::fsio::copy_dir(&bundle, &signed).unwrap();
    let key = SigningKey::from_file(&work.join("k.key"), || None).unwrap();
    excite::bundle::sign_bundle(&signed, &key, None).unwrap();
    let trusted = TrustedKey::from_file(&work.join("k.pub")).unwrap();
    let tar_bytes = {
        let mut d = flate2::read::GzDecoder::new(std::fs::File::open(&tarball).unwrap());
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut v).unwrap();
        v
    };
    let names: Vec<&String> = files.keys().filter(|k| !k.ends_with(".svg") && !k.ends_with(".md")).collect();
    let file_seeds: Vec<Vec<u8>> = names.iter().enumerate().map(|(i, n)| {
        let mut b = vec![i as u8];
        b.extend(&files[*n]);
        b
    }).collect();
    let read = |p: PathBuf| std::fs::read(p).unwrap();
    let target = |name, run, corpus| Target { name, run, corpus, seen: HashSet::new(), runs: 0, ok: 0 };
    let targets = vec![
        target("onnx", (|_: &Ctx, b: &[u8]| onnx(b)) as fn(&Ctx, &[u8]) -> Outcome, onnx_seeds),
        target("archive", archive, vec![read(tarball.clone())]),
        target("tar", tar, vec![tar_bytes]),
        target("files", bundle_files, file_seeds),
        target("signature", signature, vec![read(signed.join("SHA256SUMS.minisig"))]),
        target("key", keys, vec![read(work.join("k.pub")), read(work.join("k.key")), read(work.join("e.key"))]),
        target("npz", npz, vec![read(run.join("simulate/dataset.npz"))]),
    ];
    (Ctx { work: work.to_path_buf(), signed, trusted, files }, targets)
}

/// MLPs as other exporters write them (see tests/integration/foreign_models.py):
/// torch's Gemm with transB and GELU through Erf with Constant nodes, and
/// MatMul + Add with input scaling, SiLU, Scaler and a final Reshape.
fn foreign_seeds() -> Vec<Vec<u8>> {
    use excite::onnx::graph::{Attr, Init, Io, Model, Node, FLOAT, INT64};
    let io = |n: &str, d: usize| Io { name: n.into(), dtype: FLOAT, dims: vec![None, Some(d)] };
    let w = |name: &str, r: usize, c: usize| Init::f32(name, &[r, c], &(0..r * c).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect::<Vec<_>>());
    let konst = |name: &str, v: f32| Node::new("Constant", &format!("{name}_node"), &[], &[name], vec![Attr::Tensor("value".into(), Init::f32(name, &[], &[v]))]);
    let model = |nodes: Vec<Node>, inits: Vec<Init>, domains: Vec<(String, i64)>| Model {
        opset: 17,
        producer_version: "fuzz".into(),
        name: "foreign".into(),
        nodes,
        inits,
        inputs: vec![io("input", 3)],
        outputs: vec![io("output", 2)],
        metadata: vec![],
        domains,
    };
    let torch = model(
        vec![
            Node::new("Gemm", "g0", &["input", "W0", "B0"], &["z"], vec![Attr::Int("transB".into(), 1)]),
            konst("sqrt2", std::f32::consts::SQRT_2),
            Node::new("Div", "div", &["z", "sqrt2"], &["d"], vec![]),
            Node::new("Erf", "erf", &["d"], &["e"], vec![]),
            konst("one", 1.0),
            Node::new("Add", "add", &["e", "one"], &["p"], vec![]),
            Node::new("Mul", "mul", &["z", "p"], &["m"], vec![]),
            konst("half", 0.5),
            Node::new("Mul", "mul1", &["m", "half"], &["a"], vec![]),
            Node::new("Gemm", "g1", &["a", "W1", "B1"], &["output"], vec![Attr::Int("transB".into(), 1), Attr::Float("alpha".into(), 0.5)]),
        ],
        vec![w("W0", 8, 3), Init::f32("B0", &[8], &[0.1; 8]), w("W1", 2, 8), Init::f32("B1", &[2], &[0.0, 1.0])],
        vec![],
    );
    let mut scaler = Node::new("Scaler", "scaler", &["input"], &["s"], vec![Attr::Floats("offset".into(), vec![0.5, 0.1, -0.2]), Attr::Floats("scale".into(), vec![2.0, 1.0, 0.5])]);
    scaler.domain = "ai.onnx.ml".into();
    let shape = Init { name: "shape".into(), dims: vec![2], dtype: INT64, raw: [-1i64, 1].iter().flat_map(|v| v.to_le_bytes()).collect(), unread: None };
    let sklearn = model(
        vec![
            scaler,
            Node::new("Cast", "cast", &["s"], &["c"], vec![Attr::Int("to".into(), 1)]),
            Node::new("Sub", "center", &["c", "mean"], &["x0"], vec![]),
            Node::new("MatMul", "mm0", &["x0", "W0"], &["h0"], vec![]),
            Node::new("Add", "b0", &["h0", "B0"], &["z"], vec![]),
            Node::new("Sigmoid", "sig", &["z"], &["sg"], vec![]),
            Node::new("Mul", "silu", &["sg", "z"], &["a"], vec![]),
            Node::new("MatMul", "mm1", &["a", "W1"], &["h1"], vec![]),
            Node::new("Add", "b1", &["h1", "B1"], &["y"], vec![]),
            Node::new("Reshape", "reshape", &["y", "shape"], &["output"], vec![]),
        ],
        vec![Init::f32("mean", &[1, 3], &[0.1, 0.2, 0.3]), w("W0", 3, 8), Init::f32("B0", &[1, 8], &[0.1; 8]), w("W1", 8, 2), Init::f32("B1", &[1, 2], &[0.0, 1.0]), shape],
        vec![("ai.onnx.ml".into(), 1)],
    );
    vec![torch.to_bytes(), sklearn.to_bytes()]
}

// ---------------------------------------------------------------- the loop

/// Runs one input under the oracles: a panic is returned as a finding.
fn judge(t: &Target, ctx: &Ctx, input: &[u8]) -> Result<Outcome, String> {
    *CURRENT.lock().unwrap() = Some(Current { target: t.name, bytes: input.to_vec() });
    BASELINE.store(LIVE.load(Ordering::Relaxed), Ordering::SeqCst);
    STARTED_MS.store(now_ms(), Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.run)(ctx, input)));
    ARMED.store(false, Ordering::SeqCst);
    STARTED_MS.store(0, Ordering::SeqCst);
    r.map_err(|p| p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
}

fn now_ms() -> u64 {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

fn main() {
    // `cargo test FILTER` passes its filter here too: run only when it names this target
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !args.is_empty() && !args.iter().any(|a| "fuzz".contains(a.as_str())) {
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        println!("fuzz: test");
        return;
    }
    let env = |k: &str, d: f64| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(d);
    let seconds = env("EXCITE_FUZZ_SECONDS", 60.0);
    let hang = env("EXCITE_FUZZ_HANG_SECONDS", 10.0);
    let seed = env("EXCITE_FUZZ_SEED", 0.0) as u64;
    let seed = if seed == 0 { std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1 } else { seed };

    let work = std::env::temp_dir().join(format!("excite-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    // everything stays inside excite: no ONNX Runtime (its parser is not
    // excite's), no library search, archives unpack into the work folder
    std::env::set_var("ORT_DYLIB_PATH", work.join("no-onnxruntime.so"));
    std::env::set_var("EXCITE_BUNDLE_CACHE", work.join("cache"));
    let t0 = Instant::now();
    let (ctx, mut targets) = seeds(&work);
    eprintln!("fuzz: seeds ready in {:.1}s; seed {seed}; {seconds} s; findings go to {}", t0.elapsed().as_secs_f64(), out_dir().display());

    // the panics under test are caught and counted, not printed
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !ARMED.load(Ordering::SeqCst) {
            default_hook(info)
        }
    }));
    // watchdog: an input running past the limit is a hang
    let limit_ms = (hang * 1000.0) as u64;
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(200));
        let s = STARTED_MS.load(Ordering::SeqCst);
        if s != 0 && now_ms().saturating_sub(s) > limit_ms && !IN_HANDLER.swap(true, Ordering::SeqCst) {
            finding_and_abort("hang", &format!("an input ran over {hang} s"));
        }
    });

    if let Some(replay) = std::env::var_os("EXCITE_FUZZ_REPLAY") {
        let name = std::env::var("EXCITE_FUZZ_TARGET").expect("EXCITE_FUZZ_TARGET names the target of the replayed input");
        let t = targets.iter().find(|t| t.name == name).expect("a target name: onnx archive tar files signature key npz");
        let input = std::fs::read(&replay).unwrap();
        match judge(t, &ctx, &input) {
            Ok(o) => println!("fuzz: replay {}: {o:?}", Path::new(&replay).display()),
            Err(p) => panic!("fuzz: replay panicked: {p}"),
        }
        return;
    }

    let mut rng = Rng(seed);
    // every seed runs first: they must load (a seed that fails is a broken fuzzer)
    for t in targets.iter_mut() {
        for s in t.corpus.clone() {
            let o = judge(t, &ctx, &s).unwrap_or_else(|p| panic!("seed of {} panicked: {p}", t.name));
            if t.name != "key" && t.name != "files" {
                assert!(o.is_ok(), "seed of {} fails: {o:?}", t.name);
            }
            t.seen.insert(class(&o));
        }
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut findings: Vec<String> = Vec::new();
    let mut round = 0usize;
    let mut last_report = Instant::now();
    while Instant::now() < deadline {
        let t = &mut targets[round % 7];
        round += 1;
        let base = t.corpus[rng.below(t.corpus.len())].clone();
        let other = t.corpus[rng.below(t.corpus.len())].clone();
        let input = mutate(&mut rng, &base, &other);
        t.runs += 1;
        match judge(t, &ctx, &input) {
            Ok(o) => {
                t.ok += o.is_ok() as u64;
                if t.seen.insert(class(&o)) {
                    if t.corpus.len() < 2000 {
                        t.corpus.push(input);
                    } else {
                        let i = rng.below(t.corpus.len());
                        t.corpus[i] = input;
                    }
                }
            }
            Err(p) => {
                let path = save("panic", t.name, &input);
                findings.push(format!("panic in {}: {p} (input {})", t.name, path.display()));
                eprintln!("fuzz: FINDING {}", findings.last().unwrap());
            }
        }
        if last_report.elapsed() > Duration::from_secs(60) {
            last_report = Instant::now();
            let total: u64 = targets.iter().map(|t| t.runs).sum();
            eprintln!("fuzz: {:.0} s, {total} inputs, {} findings", seconds - deadline.saturating_duration_since(Instant::now()).as_secs_f64(), findings.len());
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let total: u64 = targets.iter().map(|t| t.runs).sum();
    println!("fuzz: {total} inputs in {seconds:.0} s (seed {seed}), peak allocation by one input {:.1} MiB, {} findings", PEAK.load(Ordering::Relaxed) as f64 / (1 << 20) as f64, findings.len());
    println!("fuzz: {:<10} {:>9} {:>9} {:>9} {:>7}", "target", "inputs", "loaded", "outcomes", "corpus");
    for t in &targets {
        println!("fuzz: {:<10} {:>9} {:>9} {:>9} {:>7}", t.name, t.runs, t.ok, t.seen.len(), t.corpus.len());
    }
    if std::env::var_os("EXCITE_FUZZ_SHOW_OUTCOMES").is_some() {
        for t in &targets {
            for c in t.seen.iter().take(20) {
                println!("fuzz: {} outcome: {c}", t.name);
            }
        }
    }
    if let Ok(path) = std::env::var("EXCITE_FUZZ_SUMMARY") {
        let rows: Vec<serde_json::Value> = targets.iter().map(|t| serde_json::json!({"target": t.name, "inputs": t.runs, "loaded": t.ok, "outcomes": t.seen.len(), "corpus": t.corpus.len()})).collect();
        let json = serde_json::json!({"seconds": seconds, "wall_seconds": elapsed, "seed": seed, "inputs": total, "peak_alloc_bytes": PEAK.load(Ordering::Relaxed), "findings": findings, "targets": rows});
        std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
    let _ = std::fs::remove_dir_all(&work);
    if !findings.is_empty() {
        eprintln!("fuzz: findings:\n{}", findings.join("\n"));
        std::process::exit(1);
    }
}
