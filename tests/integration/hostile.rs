//! Hostile ONNX files and bundle archives: every defect ends in an error
//! that names it, in bounded time and memory, never a panic, hang or abort.
//! (The C ABI's callers are in ffi.rs, signatures in signing.rs, and
//! tests/fuzz.rs mutates all of these at random.)

use std::time::{Duration, Instant};

use excite::engine::native::NativeEngine;
use excite::onnx::graph::{Init, Io, Node, FLOAT};
use excite::onnx::{Interpreter, Model};

use crate::util::{quick_data, scratch, train_and_export};

/// A small exported surrogate (1-8-8-2 tanh), its bytes.
fn real_model() -> Vec<u8> {
    let dir = scratch("hostile-model");
    let data = quick_data(&dir);
    let onnx = train_and_export(&dir, &data, "mode: ddnn\narchitecture:\n  hidden: [[tanh, 8], [gelu, 8]]\nsteps: 20\nbatch: 32\nval_every: 20\n");
    std::fs::read(onnx).unwrap()
}

/// What each consumer makes of `bytes`: the interpreter's output on a fixed
/// input, or a message, never a panic.
fn consume(bytes: &[u8]) -> Result<Vec<f32>, String> {
    let m = Model::parse(bytes)?;
    NativeEngine::from_model(&m, 1).map_err(|e| e.to_string())?;
    let i = Interpreter::new(m).map_err(|e| e.to_string())?;
    let x: Vec<f32> = (0..i.inputs() * 3).map(|k| k as f32 * 0.3).collect();
    i.run(&x, 3).map_err(|e| e.to_string())
}

#[test]
fn a_length_near_2_pow_64_is_refused_at_once() {
    // field 7 (graph), length 2^64 - 1: the 11-byte payload that hung every reader
    let mut b = vec![0x3a];
    b.extend([0xff; 9]);
    b.push(0x01);
    let start = Instant::now();
    let e = Model::parse(&b).unwrap_err();
    assert!(e.contains("well-formed"), "{e}");
    let dir = scratch("hostile-varint");
    let path = dir.join("m.onnx");
    std::fs::write(&path, &b).unwrap();
    for e in [excite::onnx::read(&path).unwrap_err(), NativeEngine::load(&path, 1).err().unwrap(), Interpreter::load(&path).err().unwrap()] {
        assert!(e.to_string().contains("m.onnx") && e.to_string().contains("not a usable ONNX model"), "{e}");
    }
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_real_model_truncated_at_every_byte_never_panics() {
    let bytes = real_model();
    let whole = consume(&bytes).expect("the whole file loads and runs");
    let start = Instant::now();
    let mut refused = 0;
    for cut in 0..bytes.len() {
        let r = std::panic::catch_unwind(|| consume(&bytes[..cut]));
        match r.unwrap_or_else(|_| panic!("a panic on the file cut at byte {cut} of {}", bytes.len())) {
            Err(_) => refused += 1,
            // a cut at a field boundary after the graph (metadata) is a valid, smaller file
            Ok(y) => assert_eq!(y, whole, "a cut at byte {cut} changed the graph and still loaded"),
        }
    }
    assert!(refused * 10 > bytes.len() * 9, "{refused} of {} cuts refused", bytes.len());
    assert!(start.elapsed() < Duration::from_secs(60), "{:?}", start.elapsed());
}

/// A one-Gemm model x[N, 2] → y[N, 2] with weight `w` of `dims` and `data`.
fn one_gemm(dims: &[usize], data: &[f32], op: &str) -> Model {
    Model {
        opset: 17,
        producer_version: "test".into(),
        name: "g".into(),
        nodes: vec![Node::new(op, "gemm0", &["x", "w"], &["y"], vec![])],
        inits: vec![Init::f32("w", dims, data)],
        inputs: vec![Io { name: "x".into(), dtype: FLOAT, dims: vec![None, Some(2)] }],
        outputs: vec![Io { name: "y".into(), dtype: FLOAT, dims: vec![None, Some(2)] }],
        metadata: vec![],
        domains: vec![],
    }
}

#[test]
fn shapes_that_disagree_with_their_data_are_named() {
    let ok = one_gemm(&[2, 2], &[1.0, 0.0, 0.0, 1.0], "Gemm");
    assert_eq!(consume(&ok.to_bytes()), Ok(vec![0.0, 0.3, 0.6, 0.90000004, 1.2, 1.5]));
    // dims say 2×3, the data holds 4 values
    let mut short = ok.clone();
    short.inits[0].dims = vec![2, 3];
    let e = Model::parse(&short.to_bytes()).unwrap_err();
    assert!(e.contains("`w`") && e.contains("needs 24 bytes") && e.contains("has 16"), "{e}");
    // 10^12 elements declared: refused before anything is allocated
    let mut huge = ok.clone();
    huge.inits[0].dims = vec![1_000_000, 1_000_000];
    let e = Model::parse(&huge.to_bytes()).unwrap_err();
    assert!(e.contains("over 2147483648 elements"), "{e}");
    // a product past 2^64
    huge.inits[0].dims = vec![1 << 40, 1 << 40];
    assert!(Model::parse(&huge.to_bytes()).unwrap_err().contains("over"));
    // a weight that is not a matrix: the native engine names it instead of indexing it
    let mut flat = ok.clone();
    flat.inits[0] = Init::f32("w", &[4], &[1.0; 4]);
    let e = NativeEngine::from_model(&flat, 1).err().unwrap().to_string();
    assert!(e.contains("shape [4]"), "{e}");
    // a node with no output, a Gemm with one input
    let mut bare = ok.clone();
    bare.nodes[0].outputs.clear();
    assert!(Model::parse(&bare.to_bytes()).unwrap_err().contains("no output"));
    bare = ok.clone();
    bare.nodes[0].inputs.truncate(1);
    assert!(Model::parse(&bare.to_bytes()).unwrap_err().contains("needs 2"));
}

/// Integer-typed tensor data (int64_data) decodes one file byte into up to
/// eight: past its limit it is named before anything is decoded, and data
/// that does decode must still fit its shape.
#[test]
fn typed_integer_data_is_bounded_before_decoding() {
    use excite::onnx::graph::MAX_TYPED_INT_BYTES;
    use excite::onnx::proto::{self, Msg};
    let model = |values: usize, dims: usize| {
        let t = Msg::default().int(1, dims as i64).int(2, 7).bytes(7, &vec![1u8; values]).str(8, "idx");
        let g = proto::graph("g", &[proto::node("Gemm", "gemm0", &["x", "w"], &["y"], &[])], &[t], &[proto::value_info("x", &[None, Some(2)])], &[proto::value_info("y", &[None, Some(2)])]);
        proto::model(&g, 17, &[], "test", &[]).0
    };
    let n = MAX_TYPED_INT_BYTES / 8 + 1;
    let start = Instant::now();
    let e = Model::parse(&model(n, n)).unwrap_err();
    assert!(e.contains("`idx`") && e.contains(&format!("holds {n} integer values")) && e.contains("raw_data"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // within the limit: decoded, then checked against the shape like raw data
    let m = Model::parse(&model(4, 4)).unwrap();
    assert_eq!(m.init("idx").unwrap().ints().unwrap(), vec![1, 1, 1, 1]);
    let e = Model::parse(&model(3, 4)).unwrap_err();
    assert!(e.contains("`idx`") && e.contains("needs 32 bytes"), "{e}");
}

#[test]
fn unknown_operators_and_bad_indices_are_named_errors() {
    let m = one_gemm(&[2, 2], &[1.0, 0.0, 0.0, 1.0], "Conv");
    let e = NativeEngine::from_model(&m, 1).err().unwrap().to_string();
    assert!(e.contains("`Conv`") && e.contains("gemm0"), "{e}");
    let i = Interpreter::new(m).unwrap();
    assert!(i.run(&[0.0; 4], 2).unwrap_err().to_string().contains("`Conv`"));
    // Gather with an index past the columns, Add of shapes that do not broadcast
    let mut g = one_gemm(&[2, 2], &[1.0; 4], "Gemm");
    g.nodes = vec![Node::new("Gather", "pick", &["x", "idx"], &["y"], vec![])];
    g.inits = vec![Init::f32("idx", &[1], &[7.0])];
    let e = Interpreter::new(g.clone()).unwrap().run(&[0.0; 4], 2).unwrap_err().to_string();
    assert!(e.contains("pick") && e.contains("outside 0..2"), "{e}");
    g.nodes = vec![Node::new("Add", "plus", &["x", "v"], &["y"], vec![])];
    g.inits = vec![Init::f32("v", &[3], &[1.0; 3])];
    let e = Interpreter::new(g).unwrap().run(&[0.0; 4], 2).unwrap_err().to_string();
    assert!(e.contains("plus") && e.contains("do not broadcast"), "{e}");
}

/// A `.tar.gz` whose entries are written raw: (path, type, bytes, link target).
fn archive(dir: &std::path::Path, entries: &[(&str, tar::EntryType, &[u8], &str)]) -> std::path::PathBuf {
    let path = dir.join(format!("a{}.tar.gz", entries.len()));
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        // the raw name field: the tar crate's own setters refuse `..` and absolute paths
        let raw = h.as_old_mut();
        raw.name.fill(0);
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
    path
}

#[test]
fn hostile_archives_unpack_nothing_outside_and_name_the_entry() {
    use excite::bundle::archive::{extract_into, Limits};
    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};
    let dir = scratch("hostile-archives");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let limits = Limits::default();
    let cases: Vec<(Vec<(&str, tar::EntryType, &[u8], &str)>, &str)> = vec![
        (vec![("b/", Directory, b"", ""), ("b/model.onnx", Symlink, b"", "/etc/passwd")], "Symlink"),
        (vec![("b/", Directory, b"", ""), ("b/etc", Symlink, b"", "/etc/ssl")], "Symlink"),
        (vec![("b/", Directory, b"", ""), ("b/x", Link, b"", "/etc/passwd")], "Link"),
        (vec![("b/", Directory, b"", ""), ("b/zero", Char, b"", "")], "Char"),
        (vec![("b/", Directory, b"", ""), ("b/disk", Block, b"", "")], "Block"),
        (vec![("b/", Directory, b"", ""), ("b/pipe", Fifo, b"", "")], "Fifo"),
        (vec![("b/../../escaped", Regular, b"x", "")], "not a plain relative path"),
        (vec![("/tmp/excite-escaped-absolute", Regular, b"x", "")], "not a plain relative path"),
        (vec![("b/a", Regular, b"x", ""), ("c/a", Regular, b"x", "")], "outside the bundle folder"),
        (vec![], "empty"),
    ];
    for (entries, want) in &cases {
        let tarball = archive(&dir, entries);
        let e = extract_into(&tarball, &cache, &limits).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
        std::fs::remove_file(&tarball).unwrap();
        // nothing left in the cache, nothing written beside it
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0, "{want}: a partial folder was left");
    }
    assert!(!dir.join("escaped").exists() && !std::path::Path::new("/tmp/excite-escaped-absolute").exists());

    // too many entries, and a bomb: both stop at the cap while streaming
    let many: Vec<String> = (0..100_000).map(|i| format!("b/{i}")).collect();
    let entries: Vec<_> = many.iter().map(|n| (n.as_str(), Regular, &b""[..], "")).collect();
    let start = Instant::now();
    let e = extract_into(&archive(&dir, &entries), &cache, &limits).unwrap_err().to_string();
    assert!(e.contains("more than 10000 entries"), "{e}");
    let zeros = vec![0u8; 4 << 20];
    let bomb = archive(&dir, &[("b/bomb", Regular, &zeros, "")]);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 100_000, "a compressible bomb");
    let small = Limits { total_bytes: 1 << 20, ..Limits::default() };
    let e = extract_into(&bomb, &cache, &small).unwrap_err().to_string();
    assert!(e.contains("passes the limit"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);

    // a long-name header claiming 64 MiB: refused at its header, never read into memory
    let zeros = vec![0u8; 64 << 20];
    let long = archive(&dir, &[("././@LongLink", tar::EntryType::GNULongName, &zeros, ""), ("b/f", Regular, b"x", "")]);
    let e = extract_into(&long, &cache, &limits).unwrap_err().to_string();
    assert!(e.contains("GNULongName header of 67108864 bytes"), "{e}");
    // an escape sequence in an entry name is not echoed raw by the CLI
    let evil = archive(&dir, &[("b/\x1b[2Jx", Symlink, b"", "/etc/passwd")]);
    let o = crate::util::excite().arg("inspect").arg(&evil).env("EXCITE_BUNDLE_CACHE", &cache).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("\\u{1b}[2Jx") && !err.contains('\x1b'), "{err}");

    // a plain one unpacks, once, into a folder named by its digest
    let ok = archive(&dir, &[("b/", Directory, b"", ""), ("b/f.txt", Regular, b"hello", "")]);
    let top = extract_into(&ok, &cache, &limits).unwrap();
    assert_eq!(std::fs::read(top.join("f.txt")).unwrap(), b"hello");
    assert_eq!(extract_into(&ok, &cache, &limits).unwrap(), top);
}

/// Manifests from elsewhere name paths: one that leaves its folder is refused
/// before anything is read through it, and a bundle holding a link is refused.
#[test]
fn manifest_paths_stay_inside_their_folder() {
    let dir = scratch("hostile-manifest");
    for bad in ["/etc/passwd", "../../etc/passwd", "a/../../b", ""] {
        let e = excite::fsio::confined(&dir, bad, "bundle.json `model`").unwrap_err().to_string();
        assert!(e.contains("bundle.json `model`") && e.contains("not a plain relative path"), "{bad}: {e}");
    }
    assert_eq!(excite::fsio::confined(&dir, "engines/cpu-fp32", "x").unwrap(), dir.join("engines/cpu-fp32"));
    std::fs::create_dir_all(dir.join("b")).unwrap();
    std::fs::write(dir.join("b/ok"), b"1").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("b/model.onnx")).unwrap();
    let e = excite::fsio::file_hashes(&dir.join("b")).unwrap_err().to_string();
    assert!(e.contains("model.onnx") && e.contains("link or special file"), "{e}");
}

/// Bundles re-packed by the usual tools unpack and load: GNU tar in its gnu
/// and pax formats with a name past tar's 100 bytes (a long-name header, a
/// pax header), and `git archive` (a pax global header with the commit).
#[test]
fn bundles_repacked_by_gnu_tar_and_git_archive_load() {
    let dir = scratch("repacked");
    let bundle = crate::ffi::quick_bundle(&dir.join("run"));
    let long = "q".repeat(120);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    assert!(std::process::Command::new("cp").arg("-r").arg(&bundle).arg(src.join(&long)).status().unwrap().success());
    let want = excite::Surrogate::load(&bundle).unwrap().predict(&[1.0, 2.0]).unwrap();
    let run = |cmd: &mut std::process::Command| {
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    for format in ["gnu", "pax"] {
        let out = dir.join(format!("{format}.tar.gz"));
        run(std::process::Command::new("tar").arg(format!("--format={format}")).arg("-czf").arg(&out).arg("-C").arg(&src).arg(&long));
        let mut s = excite::Surrogate::load(&out).unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(s.predict(&[1.0, 2.0]).unwrap(), want);
    }
    let repo = dir.join("repo");
    assert!(std::process::Command::new("cp").arg("-r").arg(&bundle).arg(&repo).status().unwrap().success());
    let git = |args: &[&str]| {
        let mut c = std::process::Command::new("git");
        c.args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]).args(args).current_dir(&repo);
        run(&mut c);
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "bundle"]);
    let out = dir.join("git.tar.gz");
    git(&["archive", "--format=tar.gz", "--prefix=quick/", "-o", out.to_str().unwrap(), "HEAD"]);
    let mut s = excite::Surrogate::load(&out).unwrap();
    assert_eq!(s.predict(&[1.0, 2.0]).unwrap(), want);
}

/// Files that are not files: a device that never ends (/dev/zero reports no
/// length), a named pipe nobody writes, a folder. Each input that names a
/// file (ONNX, CellML, a dataset's `model: {cellml: …}`) refuses them by
/// name at once instead of reading forever or waiting.
#[test]
fn devices_pipes_and_folders_are_not_input_files() {
    let dir = scratch("hostile-special");
    let fifo = dir.join("pipe");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for path in [std::path::PathBuf::from("/dev/zero"), fifo, dir.clone()] {
        let start = Instant::now();
        let e = excite::onnx::read_bytes(&path).err().expect("refused").to_string();
        assert!(e.contains("not a regular file") && e.contains(&path.display().to_string()), "{e}");
        let e = excite::cell::cellml::load(&path).err().expect("refused").to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let yaml = format!("name: t\nmodel: {{cellml: {}}}\ntime: {{t_end: 1, dt: 0.01, sample_every: 0.1}}\n", path.display());
        let e = excite::data::DatasetSpec::from_yaml(&yaml).err().expect("refused").to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5), "{} took {:?}", path.display(), start.elapsed());
    }
}
