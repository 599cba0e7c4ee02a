//! Signed bundles: keys, signing a folder and an archive, loading with a
//! trusted key from Rust, C and the CLI, every way a signature can be wrong,
//! and the real minisign as the peer that checks the format.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use excite::bundle::sign::{generate_keys, Signed, SigningKey, TrustedKey};
use excite::Surrogate;

use crate::ffi::quick_bundle;
use crate::util::{excite, scratch};

fn copy(from: &Path, to: &Path) -> PathBuf {
    assert!(Command::new("cp").arg("-r").arg(from).arg(to).status().unwrap().success());
    to.to_path_buf()
}

fn excite_ok(args: &[&std::ffi::OsStr]) -> String {
    let o = excite().args(args).env_remove("EXCITE_KEY_PASSWORD").output().unwrap();
    assert!(o.status.success(), "excite {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(r: Result<Surrogate, excite::Error>) -> String {
    r.err().expect("refused").to_string()
}

#[test]
fn signed_bundles_round_trip_and_every_wrong_signature_is_refused() {
    let dir = scratch("signing");
    let bundle = quick_bundle(&dir.join("run"));
    let (folder, tarball) = (copy(&bundle, &dir.join("quick")), copy(&bundle.with_extension("tar.gz"), &dir.join("quick.tar.gz")));
    let unsigned = copy(&bundle.with_extension("tar.gz"), &dir.join("unsigned.tar.gz"));

    // keys from the CLI, unencrypted; a second, encrypted pair from the library
    let out = excite_ok(&["keygen".as_ref(), dir.join("ci").as_os_str(), "--unencrypted".as_ref()]);
    let (key, public) = (dir.join("ci.key"), dir.join("ci.pub"));
    let trusted = TrustedKey::from_file(&public).unwrap();
    assert!(out.contains(trusted.id()), "{out}");
    let other_id = generate_keys(&dir.join("other.key"), &dir.join("other.pub"), Some("correct horse".into())).unwrap();
    let other = TrustedKey::from_file(&dir.join("other.pub")).unwrap();
    assert_eq!(other.id(), other_id);
    assert_ne!(other_id, trusted.id());
    // keygen never replaces a key
    let o = excite().args(["keygen".as_ref(), dir.join("ci").as_os_str(), "--unencrypted".as_ref()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists"));
    let secret_mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(secret_mode & 0o777, 0o600);

    // an unsigned bundle loads without a key and is refused with one
    let plain = Surrogate::load(&folder).unwrap();
    assert!(refused(Surrogate::load_trusted(&folder, &trusted)).contains("unsigned"));

    // sign the folder and the archive with the CLI
    excite_ok(&["sign".as_ref(), folder.as_os_str(), "--key".as_ref(), key.as_os_str()]);
    excite_ok(&["sign".as_ref(), tarball.as_os_str(), "--key".as_ref(), key.as_os_str(), "--comment".as_ref(), "release 1".as_ref()]);
    let x: Vec<f32> = (0..8).map(|i| i as f32 * 3.0).collect();
    let mut want = plain;
    let want = want.predict(&x).unwrap();
    for b in [&folder, &tarball] {
        let mut s = Surrogate::load_trusted(b, &trusted).unwrap();
        assert_eq!(s.predict(&x).unwrap(), want);
        assert!(refused(Surrogate::load_trusted(b, &other)).contains(&format!("signed by key {}, not by the trusted key {}", trusted.id(), other.id())));
    }
    let opened = excite::bundle::open(&tarball, Some(&trusted)).unwrap();
    assert_eq!(opened.signed, Signed::Verified(excite::bundle::sign::Signature { key_id: trusted.id().into(), trusted_comment: "release 1".into() }));
    assert_eq!(excite::bundle::open(&tarball, None).unwrap().signed, Signed::Unchecked { key_id: Some(trusted.id().into()) });
    let shown = excite_ok(&["inspect".as_ref(), folder.as_os_str(), "--trusted-key".as_ref(), public.as_os_str()]);
    assert!(shown.contains(&format!("signed   by key {}, verified", trusted.id())), "{shown}");
    let json: serde_json::Value = serde_json::from_str(&excite_ok(&["inspect".as_ref(), tarball.as_os_str(), "--json".as_ref()])).unwrap();
    assert_eq!(json["signature"]["state"], "unchecked");
    assert_eq!(json["bundle"]["name"], "quick");
    let o = excite().args(["inspect".as_ref(), folder.as_os_str(), "--trusted-key".as_ref(), dir.join("other.pub").as_os_str()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not by the trusted key"));

    // changed after signing: bundle.json with a better MAE and SHA256SUMS made to match
    let edited = copy(&folder, &dir.join("edited"));
    let manifest = edited.join("bundle.json");
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    json["validated"]["mae"]["u"] = serde_json::json!(1e-9);
    let text = serde_json::to_vec_pretty(&json).unwrap();
    std::fs::write(&manifest, &text).unwrap();
    let sums = edited.join("SHA256SUMS");
    let old = excite::hash::sha256_file(&folder.join("bundle.json")).unwrap();
    let new = std::fs::read_to_string(&sums).unwrap().replace(&old, &excite::hash::sha256_hex(&text));
    std::fs::write(&sums, new).unwrap();
    Surrogate::load(&edited).unwrap(); // consistent checksums: only the signature can tell
    assert!(refused(Surrogate::load_trusted(&edited, &trusted)).contains("changed after signing"));
    // a changed file whose checksum was left alone; a removed signature; a garbled one
    let flipped = copy(&folder, &dir.join("flipped"));
    let onnx = flipped.join("model.onnx");
    let mut b = std::fs::read(&onnx).unwrap();
    b[100] ^= 1;
    std::fs::write(&onnx, b).unwrap();
    assert!(refused(Surrogate::load_trusted(&flipped, &trusted)).contains("model.onnx"));
    let stripped = copy(&folder, &dir.join("stripped"));
    std::fs::remove_file(stripped.join("SHA256SUMS.minisig")).unwrap();
    assert!(refused(Surrogate::load_trusted(&stripped, &trusted)).contains("unsigned"));
    std::fs::write(stripped.join("SHA256SUMS.minisig"), "untrusted comment: x\nRWQ=\n").unwrap();
    assert!(refused(Surrogate::load_trusted(&stripped, &trusted)).contains("not a minisign signature"));
    // a global signature cut short (found by tests/fuzz.rs: it panicked inside the minisign crate)
    let good = std::fs::read_to_string(folder.join("SHA256SUMS.minisig")).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    std::fs::write(stripped.join("SHA256SUMS.minisig"), format!("{}\n{}\n{}\noh6l\n", lines[0], lines[1], lines[2])).unwrap();
    assert!(refused(Surrogate::load_trusted(&stripped, &trusted)).contains("global signature is 3 bytes, not 64"));
    // a signature file that is a link is refused like any link in a bundle
    std::fs::remove_file(stripped.join("SHA256SUMS.minisig")).unwrap();
    std::os::unix::fs::symlink(folder.join("SHA256SUMS.minisig"), stripped.join("SHA256SUMS.minisig")).unwrap();
    assert!(refused(Surrogate::load_trusted(&stripped, &trusted)).contains("link"));

    // an encrypted key: its password is needed, and must be right
    let enc = dir.join("other.key");
    let e = SigningKey::from_file(&enc, || None).err().unwrap();
    assert!(e.to_string().contains("encrypted") && e.hint().unwrap().contains("EXCITE_KEY_PASSWORD"), "{e}");
    assert!(SigningKey::from_file(&enc, || Some("wrong".into())).is_err());
    assert_eq!(SigningKey::from_file(&enc, || Some("correct horse".into())).unwrap().id(), other_id);
    let o = excite().args(["sign".as_ref(), folder.as_os_str(), "--key".as_ref(), enc.as_os_str()]).env_remove("EXCITE_KEY_PASSWORD").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("EXCITE_KEY_PASSWORD"));
    let o = excite().args(["sign".as_ref(), folder.as_os_str(), "--key".as_ref(), enc.as_os_str()]).env("EXCITE_KEY_PASSWORD", "correct horse").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(Surrogate::load_trusted(&folder, &other).is_ok() && Surrogate::load_trusted(&folder, &trusted).is_err());
    // a public key passed as a secret key is named as such
    let e = SigningKey::from_file(&public, || None).err().unwrap();
    assert!(e.to_string().contains("not a usable minisign secret key"), "{e}");

    // the pipeline signs what it packages: `package: {sign_key: …}`, only that stage re-runs
    let quick = std::fs::read_to_string(crate::util::root().join("models/quick.yaml")).unwrap();
    assert!(quick.contains("package: {}"));
    std::fs::write(dir.join("signed.yaml"), quick.replace("package: {}", "package: {sign_key: ci.key}")).unwrap();
    let p = excite::pipeline::Pipeline::from_file(&dir.join("signed.yaml")).unwrap();
    let stages = excite::pipeline::run(&p, &dir.join("run"), &Default::default(), &excite::report::Silent).unwrap();
    assert_eq!(stages.iter().map(|s| s.status.as_str()).collect::<Vec<_>>(), ["skipped", "skipped", "skipped", "skipped", "skipped", "ran"]);
    for b in [dir.join("run/package/quick"), dir.join("run/package/quick.tar.gz")] {
        assert!(matches!(excite::bundle::open(&b, Some(&trusted)).unwrap().signed, Signed::Verified(_)), "{}", b.display());
    }

    // EXCITE_TRUSTED_KEY makes every plain load a trusted one (the Rust example host here)
    let example = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples/predict");
    let host = |bundle: &Path, key: &Path| Command::new(&example).arg(bundle).env("EXCITE_TRUSTED_KEY", key).output().unwrap();
    let o = host(&unsigned, &public);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("unsigned"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = host(&tarball, &public);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = host(&tarball, &dir.join("no-such.pub"));
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("EXCITE_TRUSTED_KEY"), "{}", String::from_utf8_lossy(&o.stderr));

    // C: a trusted load with the right key predicts, with the wrong one fails with the reason
    use excite::bundle::ffi::*;
    let c = |p: &Path| CString::new(p.to_str().unwrap()).unwrap();
    unsafe {
        let h = excite_surrogate_load_trusted(c(&tarball).as_ptr(), c(&public).as_ptr());
        assert!(!h.is_null(), "{}", CStr::from_ptr(excite_last_error()).to_string_lossy());
        let mut y = vec![0f32; 16];
        assert_eq!(excite_surrogate_predict(h, x.as_ptr(), 8, 8, y.as_mut_ptr(), 16), 0);
        assert_eq!(y, want);
        excite_surrogate_free(h);
        let h = excite_surrogate_load_trusted(c(&tarball).as_ptr(), c(&dir.join("other.pub")).as_ptr());
        assert!(h.is_null());
        assert!(CStr::from_ptr(excite_last_error()).to_string_lossy().contains("not by the trusted key"));
        assert!(excite_surrogate_load_trusted(c(&tarball).as_ptr(), std::ptr::null()).is_null());
        assert!(CStr::from_ptr(excite_last_error()).to_string_lossy().contains("public_key is NULL"));
    }
}

/// The format is minisign's: the real minisign verifies what excite signs,
/// excite signs with minisign's keys, and accepts minisign's own signatures.
#[test]
fn minisign_verifies_excite_signatures_and_the_other_way_round() {
    let minisign = |args: &[&std::ffi::OsStr]| {
        let o = Command::new("minisign").args(args).output().expect("minisign is not installed: run scripts/setup.sh, which installs it");
        assert!(o.status.success(), "minisign {args:?}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let dir = scratch("minisign");
    let bundle = copy(&quick_bundle(&dir.join("run")), &dir.join("quick"));
    let sums = bundle.join("SHA256SUMS");
    let sig = bundle.join("SHA256SUMS.minisig");

    // excite's key and signature, minisign's check
    excite_ok(&["keygen".as_ref(), dir.join("ex").as_os_str(), "--unencrypted".as_ref()]);
    excite_ok(&["sign".as_ref(), bundle.as_os_str(), "--key".as_ref(), dir.join("ex.key").as_os_str(), "--comment".as_ref(), "from excite".as_ref()]);
    let out = minisign(&["-V".as_ref(), "-p".as_ref(), dir.join("ex.pub").as_os_str(), "-m".as_ref(), sums.as_os_str(), "-x".as_ref(), sig.as_os_str()]);
    assert!(out.contains("from excite"), "{out}");
    // sha256sum -c completes the check minisign starts
    let check = Command::new("sha256sum").arg("-c").arg("--quiet").arg("SHA256SUMS").current_dir(&bundle).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));

    // minisign's key signs through excite
    minisign(&["-G".as_ref(), "-W".as_ref(), "-p".as_ref(), dir.join("mini.pub").as_os_str(), "-s".as_ref(), dir.join("mini.key").as_os_str()]);
    let mini = TrustedKey::from_file(&dir.join("mini.pub")).unwrap();
    excite_ok(&["sign".as_ref(), bundle.as_os_str(), "--key".as_ref(), dir.join("mini.key").as_os_str()]);
    Surrogate::load_trusted(&bundle, &mini).unwrap();
    minisign(&["-V".as_ref(), "-p".as_ref(), dir.join("mini.pub").as_os_str(), "-m".as_ref(), sums.as_os_str(), "-x".as_ref(), sig.as_os_str()]);

    // minisign's default key is encrypted (scrypt at libsodium's "sensitive" limits): it signs here with its password
    let mut g = Command::new("minisign").args(["-G".as_ref(), "-p".as_ref(), dir.join("enc.pub").as_os_str(), "-s".as_ref(), dir.join("enc.key").as_os_str()]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(g.stdin.as_mut().unwrap(), b"pass phrase\npass phrase\n").unwrap();
    assert!(g.wait().unwrap().success());
    let o = excite().args(["sign".as_ref(), bundle.as_os_str(), "--key".as_ref(), dir.join("enc.key").as_os_str()]).env("EXCITE_KEY_PASSWORD", "pass phrase").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Surrogate::load_trusted(&bundle, &TrustedKey::from_file(&dir.join("enc.pub")).unwrap()).unwrap();

    // minisign's own signature of SHA256SUMS is a bundle signature; the bare `RW…` key line works too
    minisign(&["-S".as_ref(), "-W".as_ref(), "-s".as_ref(), dir.join("mini.key").as_os_str(), "-m".as_ref(), sums.as_os_str(), "-x".as_ref(), sig.as_os_str(), "-t".as_ref(), "from minisign".as_ref()]);
    let line = std::fs::read_to_string(dir.join("mini.pub")).unwrap().lines().nth(1).unwrap().to_string();
    let bare = TrustedKey::parse(&line, "the key line").unwrap();
    assert_eq!(bare.id(), mini.id());
    let opened = excite::bundle::open(&bundle, Some(&bare)).unwrap();
    assert!(matches!(&opened.signed, Signed::Verified(s) if s.trusted_comment == "from minisign"), "{:?}", opened.signed);
    // and minisign refuses what excite refuses
    let mut text = std::fs::read_to_string(&sums).unwrap();
    text.push('\n');
    std::fs::write(&sums, text).unwrap();
    assert!(!Command::new("minisign").args(["-V".as_ref(), "-p".as_ref(), dir.join("mini.pub").as_os_str(), "-m".as_ref(), sums.as_os_str(), "-x".as_ref(), sig.as_os_str()]).output().unwrap().status.success());
    assert!(excite::bundle::open(&bundle, Some(&mini)).err().unwrap().to_string().contains("changed after signing"));
}
