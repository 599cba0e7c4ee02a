//! A compiled model's step as native code: [`c_source`] built with the
//! host's C compiler (`$CC`, else `cc`) into a shared library and loaded.
//! A build is kept in the process and on disk (`$XDG_CACHE_HOME/excite/native`,
//! else `~/.cache/excite/native`), by the sha256 of the source, the
//! compiler's version and this CPU, so it is paid once per model on a
//! machine; the cache keeps the 64 builds used last. The results are the
//! interpreter's bit for bit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use crate::cell::c_source::{c_source, groups, LANES};
use crate::cell::program::Program;
use crate::Error;

/// Flags of every build: no contraction into FMA and no fast math (the
/// interpreter's arithmetic); not trapping lets `floor` vectorise (values unchanged).
const FLAGS: [&str; 7] = ["-O2", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared"];

/// `excite_run(regs, w, n0, steps, dt)`.
type RunFn = unsafe extern "C" fn(*mut f64, i64, i64, i64, f64);

/// A model's step, built and loaded.
pub struct Native {
    run: RunFn,
    // keeps the code mapped while `run` is callable
    _lib: libloading::Library,
}

/// Built programs by the sha256 of their source: a failure is kept too, so
/// a machine without a compiler tries once.
type Cache = Mutex<HashMap<String, Result<Arc<Native>, Unavailable>>>;

/// Why a program could not be built (an [`Error::Unavailable`]'s fields, which can be cloned).
#[derive(Clone)]
struct Unavailable([String; 3]);

impl From<Error> for Unavailable {
    fn from(e: Error) -> Self {
        let hint = e.hint().unwrap_or("").to_string();
        match e {
            Error::Unavailable { what, problem, .. } => Unavailable([what, problem, hint]),
            other => Unavailable(["generated model".into(), other.to_string(), hint]),
        }
    }
}

impl Native {
    /// `program`'s step built and loaded, or why not (the compiler is
    /// missing or failed): from this process's builds, the disk cache, or
    /// built now. A failure is remembered for the process.
    pub fn get(program: &Program) -> Result<Arc<Native>, Error> {
        Self::find(program, true).expect("built where none is at hand")
    }

    /// `program`'s step from this process's builds or the disk cache, else
    /// built now where `build` says so; `None` where it is neither at hand
    /// nor to be built.
    pub fn find(program: &Program, build: bool) -> Option<Result<Arc<Native>, Error>> {
        let key = Key::of(program);
        let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
        let found = match cache.get(&key.id) {
            Some(known) => known.clone(),
            None => {
                let found = match load_cached(&key) {
                    Some(native) => Ok(native),
                    None if build => self::build(&key).map(Arc::new).map_err(Unavailable::from),
                    None => return None,
                };
                cache.insert(key.id, found.clone());
                found
            }
        };
        Some(found.map_err(|Unavailable([what, problem, hint])| Error::unavailable(what, problem, hint)))
    }

    /// Runs `steps` steps from step `n0` on a register file of `w` lanes
    /// (`regs`: `n_regs × w`, register-major) that the program's setup has filled.
    pub fn run(&self, program: &Program, regs: &mut [f64], w: usize, n0: usize, steps: usize, dt: f64) {
        assert!(w % (groups(program) * LANES) == 0 && regs.len() >= program.n_regs * w, "a register file of {} × {w} lanes", program.n_regs);
        // SAFETY: the generated code touches registers < n_regs of w lanes,
        // in groups of LANES, which `regs` holds (asserted above)
        unsafe { (self.run)(regs.as_mut_ptr(), w as i64, n0 as i64, steps as i64, dt) }
    }
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// A program's source and what names its build.
struct Key {
    source: String,
    cc: String,
    /// sha256 of the source, the compiler's version, the flags and this CPU.
    id: String,
}

impl Key {
    fn of(program: &Program) -> Key {
        let source = c_source(program);
        let cc = std::env::var("CC").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "cc".into());
        let version = compiler_version(&cc);
        let id = crate::hash::sha256_hex(format!("{source}\n{cc}\n{version}\n{FLAGS:?}\n{} {:?}", crate::isa::cpu_name(), crate::isa::Isa::best()).as_bytes());
        Key { source, cc, id }
    }
}

/// The compiler's own account of itself (`cc --version`), asked once per
/// compiler in a process; empty where it cannot run (the build says why).
fn compiler_version(cc: &str) -> String {
    static VERSIONS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let mut versions = VERSIONS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    versions
        .entry(cc.to_string())
        .or_insert_with(|| Command::new(cc).arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default())
        .clone()
}

/// Where builds are kept between processes, if this machine has a home for them.
fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME").filter(|s| !s.is_empty()).map(PathBuf::from).or_else(|| std::env::var_os("HOME").filter(|s| !s.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("excite").join("native"))
}

/// The build of `key` from the disk cache, where it is there and loads;
/// its time is set to now, so that pruning keeps the builds in use.
fn load_cached(key: &Key) -> Option<Arc<Native>> {
    let so = cache_dir()?.join(format!("{}.so", key.id));
    let native = so.is_file().then(|| load(&so).ok()).flatten().map(Arc::new)?;
    let _ = std::fs::File::options().append(true).open(&so).and_then(|f| f.set_modified(std::time::SystemTime::now()));
    Some(native)
}

/// Builds the disk cache keeps: every model and compiler a machine has
/// used lately (a build is 20–110 KB), the ones used longest ago removed.
const CACHE_KEEP: usize = 64;

/// Removes all but the `keep` builds used last from the cache folder, and
/// the half-written copies (`.part`) an hour old, whose process died. A
/// process that has a removed build loaded keeps it mapped.
fn prune(cache: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(cache) else { return };
    let now = std::time::SystemTime::now();
    let mut builds = Vec::new();
    for e in entries.flatten() {
        let (path, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
        let Ok(modified) = e.metadata().and_then(|m| m.modified()) else { continue };
        if name.ends_with(".so") {
            builds.push((modified, path));
        } else if name.starts_with('.') && name.ends_with(".part") && now.duration_since(modified).is_ok_and(|age| age.as_secs() > 3600) {
            let _ = std::fs::remove_file(path);
        }
    }
    builds.sort_by(|a, b| b.0.cmp(&a.0));
    for (_, path) in builds.into_iter().skip(keep) {
        let _ = std::fs::remove_file(path);
    }
}

/// Compiles `key`'s source in a private folder, keeps the library in the
/// disk cache (renamed into place whole, so no reader sees half a file;
/// a cache that cannot be written is skipped) and loads it.
fn build(key: &Key) -> Result<Native, Error> {
    let dir = scratch_dir(&key.id)?;
    let result = (|| {
        let so = compile(key, &dir)?;
        let kept = cache_dir().and_then(|cache| {
            std::fs::create_dir_all(&cache).ok()?;
            // copied beside its place (the cache may be on another file
            // system than the scratch folder, shared by several machines),
            // then renamed into it
            let (target, part) = (cache.join(format!("{}.so", key.id)), cache.join(format!(".{}.{}.{}.part", key.id, std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()))));
            let kept = std::fs::copy(&so, &part).and_then(|_| std::fs::rename(&part, &target));
            if kept.is_err() {
                let _ = std::fs::remove_file(&part);
            }
            prune(&cache, CACHE_KEEP);
            kept.ok().map(|_| target)
        });
        load(kept.as_deref().unwrap_or(&so))
    })();
    // a loaded library stays mapped after its file is gone
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn compile(key: &Key, dir: &Path) -> Result<PathBuf, Error> {
    let (c, so) = (dir.join("model.c"), dir.join("model.so"));
    std::fs::write(&c, &key.source).map_err(|e| Error::unavailable("generated model", format!("cannot write {}: {e}", c.display()), "check that the temporary folder (TMPDIR) is writable"))?;
    let cc = &key.cc;
    let out = Command::new(cc)
        .args(FLAGS)
        .arg("-o")
        .arg(&so)
        .arg(&c)
        .arg("-lm")
        .output()
        .map_err(|e| Error::unavailable(format!("C compiler `{cc}`"), format!("cannot run it: {e}"), "install gcc (Debian: apt-get install gcc) or set CC; the interpreter solves meanwhile"))?;
    if !out.status.success() {
        let said: Vec<&str> = std::str::from_utf8(&out.stderr).unwrap_or("").lines().take(5).collect();
        return Err(Error::unavailable(format!("C compiler `{cc}`"), format!("the generated model did not compile: {}", said.join(" / ")), "set CC to gcc or clang; the interpreter solves meanwhile"));
    }
    Ok(so)
}

fn load(so: &Path) -> Result<Native, Error> {
    // SAFETY: the library is one excite built from its own generated
    // source, whose only initialisers are the C runtime's
    let lib = unsafe { libloading::Library::new(so) }.map_err(|e| Error::unavailable("generated model", format!("cannot load {}: {e}", so.display()), "check that the folder is not mounted noexec"))?;
    // SAFETY: `excite_run` has exactly this signature in the generated source
    let run: RunFn = unsafe { *lib.get::<RunFn>(b"excite_run\0").map_err(|e| Error::unavailable("generated model", format!("no excite_run in {}: {e}", so.display()), "delete the file; excite builds it again"))? };
    Ok(Native { run, _lib: lib })
}

/// A fresh private folder for one build.
fn scratch_dir(id: &str) -> Result<PathBuf, Error> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("excite-model-{}-{}-{}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed), &id[..12]);
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::unavailable("generated model", format!("cannot create {}: {e}", dir.display()), "check that the temporary folder (TMPDIR) is writable"))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache keeps the builds used last and drops the rest, and a
    /// half-written copy only once it is old.
    #[test]
    fn the_cache_keeps_the_builds_used_last() {
        let dir = std::env::temp_dir().join(format!("excite-native-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let now = std::time::SystemTime::now();
        let touch = |name: &str, age: std::time::Duration| {
            let f = std::fs::File::create(dir.join(name)).unwrap();
            f.set_modified(now - age).unwrap();
        };
        for i in 0..10 {
            touch(&format!("{i}.so"), day * i);
        }
        touch(".old.1.2.part", day);
        touch(".new.1.2.part", std::time::Duration::from_secs(5));
        touch("notes.txt", day * 30);
        prune(&dir, 4);
        let mut left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, [".new.1.2.part", "0.so", "1.so", "2.so", "3.so", "notes.txt"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
