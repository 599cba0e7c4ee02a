//! Writing outputs so that a failure never leaves a half-written result:
//! every file goes to a temporary name in the same folder and is renamed into
//! place, and a multi-file output is built in a staging folder that replaces
//! the previous one only once complete.

use std::fs;
use std::io::Write;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Error;

/// Writes `bytes` to `path` atomically (temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = parent_of(path);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let tmp = sibling(path, "tmp");
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// A folder being built next to its final place; [`StagingDir::commit`]
/// swaps it in, dropping it uncommitted removes it and keeps the old output.
pub struct StagingDir {
    staging: PathBuf,
    target: PathBuf,
    committed: bool,
    keep_on_failure: bool,
}

impl StagingDir {
    pub fn new(target: &Path) -> Result<Self, Error> {
        Self::at(sibling(target, "partial"), target, true, false)
    }

    /// A staging folder with a fixed name (`.NAME.partial`) that survives a
    /// failure, so long work (training) can resume from what it left there.
    /// `fresh` empties it first.
    pub fn resumable(target: &Path, fresh: bool) -> Result<Self, Error> {
        Self::at(Self::resumable_path(target), target, fresh, true)
    }

    /// Where [`StagingDir::resumable`] stages the output for `target`.
    pub fn resumable_path(target: &Path) -> PathBuf {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        parent_of(target).join(format!(".{name}.partial"))
    }

    fn at(staging: PathBuf, target: &Path, fresh: bool, keep_on_failure: bool) -> Result<Self, Error> {
        if fresh {
            let _ = fs::remove_dir_all(&staging);
        }
        fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        Ok(StagingDir { staging, target: target.to_path_buf(), committed: false, keep_on_failure })
    }

    /// Where to write the files of the new output.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Puts the staged folder at `target` instead of its own target (a
    /// rejected result beside the good one), replacing what is there.
    pub fn commit_as(mut self, target: &Path) -> Result<(), Error> {
        self.target = target.to_path_buf();
        self.commit()
    }

    /// Replaces the target folder by the staged one.
    pub fn commit(mut self) -> Result<(), Error> {
        let old = sibling(&self.target, "old");
        let had_old = self.target.exists();
        if had_old {
            fs::rename(&self.target, &old).map_err(|e| Error::io(&self.target, e))?;
        }
        if let Err(e) = fs::rename(&self.staging, &self.target) {
            if had_old {
                let _ = fs::rename(&old, &self.target);
            }
            return Err(Error::io(&self.target, e));
        }
        self.committed = true;
        if had_old {
            let _ = fs::remove_dir_all(&old);
        }
        Ok(())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed && !self.keep_on_failure {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Copies the folder `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for entry in fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let path = entry.map_err(|e| Error::io(from, e))?.path();
        let dest = to.join(path.file_name().expect("entries have names"));
        if path.is_dir() {
            copy_dir(&path, &dest)?;
        } else {
            fs::copy(&path, &dest).map_err(|e| Error::io(&dest, e))?;
        }
    }
    Ok(())
}

/// The sha256 of every file below `dir`, by path relative to it. Only
/// regular files and folders count: a link, device or FIFO anywhere below is
/// an error naming it (a bundle or engine folder from elsewhere must not make
/// excite read outside it), and files are hashed as they stream, not read whole.
pub fn file_hashes(dir: &Path) -> Result<std::collections::BTreeMap<String, String>, Error> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, String>) -> Result<(), Error> {
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let kind = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?.file_type();
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() {
                out.insert(path.strip_prefix(root).unwrap_or(&path).display().to_string(), crate::hash::sha256_file(&path)?);
            } else {
                return Err(Error::format(&path, "is a link or special file, not a regular file", "bundles and engine folders hold regular files and folders only; rebuild or re-package it"));
            }
        }
        Ok(())
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// `root/rel` for a path `rel` named inside a manifest from elsewhere: only
/// plain relative components (no absolute path, `..` or drive prefix), so it
/// cannot point outside `root`. `what` names the manifest field for the error.
pub fn confined(root: &Path, rel: &str, what: &str) -> Result<PathBuf, Error> {
    use std::path::Component;
    let p = Path::new(rel);
    if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Error::format(root, format!("{what} names `{rel}`, which is not a plain relative path inside the folder"), "the manifest was altered; rebuild or re-package it"));
    }
    Ok(root.join(p))
}

/// Checks files `found` in `dir` (from [`file_hashes`], so none is a link)
/// against the hashes `listed` in the manifest `list`: every listed file must
/// be there with its hash and, when `exact`, nothing else may be. `fix` is the
/// hint for a mismatch.
pub fn check_hashes(dir: &Path, list: &str, listed: &BTreeMap<String, String>, found: &BTreeMap<String, String>, exact: bool, fix: &str) -> Result<(), Error> {
    for (file, want) in listed {
        let path = confined(dir, file, list)?;
        match found.get(file) {
            None => return Err(Error::format(path, format!("listed in {list} but missing"), fix)),
            Some(got) if got != want => return Err(Error::format(path, format!("sha256 {got} does not match {want} in {list}: the file changed after it was written"), fix)),
            _ => {}
        }
    }
    if let Some(extra) = found.keys().find(|f| exact && !listed.contains_key(*f)) {
        return Err(Error::format(dir.join(extra), format!("not listed in {list}"), fix));
    }
    Ok(())
}

static EMBEDDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks the process as a host application that loaded excite as a library
/// (the C ABI calls this): from then on [`search_roots`] ignores the working
/// directory and [`embedded`] tells lookups not to start processes.
pub fn set_embedded() {
    EMBEDDED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether excite runs inside a host application ([`set_embedded`]).
pub fn embedded() -> bool {
    EMBEDDED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Where project-local files (`.deps/`, `scripts/`) are looked for: the
/// working directory, then every folder above the running executable (so a
/// `target/release/excite` finds its checkout). Inside a host application
/// ([`embedded`]) only the folders above this library's own file: a host's
/// working directory is no place to load libraries from.
pub fn search_roots() -> Vec<PathBuf> {
    if embedded() {
        return library_file().map(|f| f.ancestors().skip(1).map(PathBuf::from).collect()).unwrap_or_default();
    }
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(PathBuf::from));
    }
    roots
}

/// The file this code was loaded from (libexcite.so in a host application).
fn library_file() -> Option<PathBuf> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables for an address of this
    // library; `info` is a plain struct it fills in.
    let found = unsafe { libc::dladdr(library_file as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.to_bytes()));
    path.canonicalize().ok()
}

/// `rows` as CSV with a header row from the row type's field names.
pub fn csv_bytes<T: serde::Serialize>(rows: &[T]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        // plain structs of numbers, strings and booleans always serialise
        w.serialize(r).expect("a flat row serialises as CSV");
    }
    w.into_inner().expect("writing into memory cannot fail")
}

/// The files in `dir` whose names start with `prefix` (`libnvrtc.so` finds
/// `libnvrtc.so.12`), sorted by name; none when `dir` cannot be read.
pub fn files_starting_with(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .collect();
    found.sort();
    found
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The bytes of the input file `path` (`what` it should be, for the error),
/// refused past `max` bytes, counted while reading (a device or pipe such as
/// /dev/zero reports no length and never ends), and refused when it is not a
/// regular file at all.
pub fn read_limited(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::format(path, format!("not a regular file, so not {what}"), format!("pass the path of {what}")));
    }
    let too_big = |n: u64| Error::format(path, format!("{n} bytes or more, over the {max}-byte limit of {what}"), format!("check that this is {what}"));
    if meta.len() > max {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::new();
    fs::File::open(path).and_then(|f| f.take(max + 1).read_to_end(&mut bytes)).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// `dir/.name.<tag>-<pid>`: a hidden neighbour on the same file system.
/// The absolute form of `p` (made from the working directory, not resolved
/// through links), for paths handed to processes that may start elsewhere.
pub fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(p).map_err(|e| Error::io(p, e))
}

fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_of(path).join(format!(".{name}.{tag}-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_staging_keeps_previous_output() {
        let root = std::env::temp_dir().join(format!("excite-fsio-{}", std::process::id()));
        let target = root.join("out");
        let s = StagingDir::new(&target).unwrap();
        write_atomic(&s.path().join("a.txt"), b"first").unwrap();
        s.commit().unwrap();
        {
            let s = StagingDir::new(&target).unwrap();
            write_atomic(&s.path().join("a.txt"), b"second").unwrap();
            // dropped without commit: an interrupted stage
        }
        assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"first");
        assert_eq!(
            fs::read_dir(&root).unwrap().count(),
            1,
            "staging folder left behind"
        );
        let s = StagingDir::new(&target).unwrap();
        write_atomic(&s.path().join("a.txt"), b"third").unwrap();
        s.commit().unwrap();
        assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"third");
        fs::remove_dir_all(&root).unwrap();
    }
}
