//! Unpacking a bundle archive that came from elsewhere. Only regular files
//! and folders are created (a link, hard link, device or FIFO is refused by
//! name), every path must be plain and relative under one top folder, and
//! the entry count, each file's size and the total are capped while the
//! archive streams (a gzip bomb stops at the cap). Archives unpack into a
//! per-user cache folder (mode 0700, checked to be the user's own), named by
//! the archive's sha256 so a changed archive never meets an old folder; a
//! failed unpack leaves nothing behind.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::Error;

/// Caps on what an archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The archive file itself.
    pub archive_bytes: u64,
    pub entries: usize,
    pub file_bytes: u64,
    pub total_bytes: u64,
}

impl Default for Limits {
    /// 4 GiB archive, 10 000 entries, 4 GiB a file, 8 GiB in all.
    fn default() -> Self {
        Limits { archive_bytes: 4 << 30, entries: 10_000, file_bytes: 4 << 30, total_bytes: 8 << 30 }
    }
}

impl Limits {
    /// The defaults, with `EXCITE_BUNDLE_MAX_BYTES` (total unpacked size) and
    /// `EXCITE_BUNDLE_MAX_ENTRIES` where set.
    pub fn from_env() -> Limits {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let d = Limits::default();
        Limits {
            total_bytes: var("EXCITE_BUNDLE_MAX_BYTES").unwrap_or(d.total_bytes),
            entries: var("EXCITE_BUNDLE_MAX_ENTRIES").map_or(d.entries, |n| n as usize),
            ..d
        }
    }
}

/// A long name or pax header: names are at most a few KiB, metadata little more.
const MAX_METADATA_BYTES: u64 = 64 << 10;

const HINT: &str = "a bundle archive holds one folder of regular files, as `excite pipeline` packages it; get the bundle again from its source";

/// The per-user folder archives unpack into: `EXCITE_BUNDLE_CACHE`, else
/// `$XDG_CACHE_HOME/excite/bundles`, else `~/.cache/excite/bundles`, else a
/// folder in the temp directory named with the user id. Created private
/// (0700) and refused when another user owns it or may write to it.
pub fn cache_root() -> Result<PathBuf, Error> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let root = env("EXCITE_BUNDLE_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|c| c.join("excite/bundles")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/excite/bundles")))
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| std::env::temp_dir().join(format!("excite-bundles-{}", unsafe { libc::getuid() })));
    private_dir(&root)?;
    Ok(root)
}

/// Creates `dir` (mode 0700 where new) and checks that it is a real folder of
/// this user's that no one else may write to.
fn private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| Error::io(dir, e))?;
    let m = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if !m.file_type().is_dir() || m.uid() != uid || m.mode() & 0o022 != 0 {
        return Err(Error::format(dir, "the bundle cache is not a folder of this user's that only this user may write to", "remove it, or set EXCITE_BUNDLE_CACHE to a private folder"));
    }
    Ok(())
}

/// Unpacks `tarball` (a `.tar.gz`) into [`cache_root`], or reuses the folder an
/// earlier load unpacked from the same bytes; returns the bundle folder.
pub fn extract(tarball: &Path, limits: &Limits) -> Result<PathBuf, Error> {
    extract_into(tarball, &cache_root()?, limits)
}

/// [`extract`] into the cache folder `root`.
pub fn extract_into(tarball: &Path, root: &Path, limits: &Limits) -> Result<PathBuf, Error> {
    let size = std::fs::metadata(tarball).map_err(|e| Error::io(tarball, e))?.len();
    if size > limits.archive_bytes {
        return Err(Error::format(tarball, format!("{size} bytes, over the {}-byte limit of a bundle archive", limits.archive_bytes), HINT));
    }
    let digest = crate::hash::sha256_file(tarball)?;
    let dest = root.join(&digest);
    if !dest.is_dir() {
        // a fresh, unpredictable name beside the destination; removed on any failure
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let partial = root.join(format!(".partial-{}-{nanos}", std::process::id()));
        private_dir(&partial)?;
        let unpacked = unpack(tarball, &partial, limits);
        match unpacked {
            Ok(()) => {
                if std::fs::rename(&partial, &dest).is_err() {
                    let _ = std::fs::remove_dir_all(&partial); // another process unpacked it first
                }
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(e);
            }
        }
    }
    let mut tops = std::fs::read_dir(&dest).map_err(|e| Error::io(&dest, e))?.filter_map(|e| e.ok().map(|e| e.path()));
    match (tops.next(), tops.next()) {
        (Some(top), None) if top.is_dir() => Ok(top),
        _ => Err(Error::format(tarball, "the archive does not hold exactly one bundle folder", HINT)),
    }
}

/// Writes the folder `folder` as `out`, a `.tar.gz` whose one top folder is
/// `name` (deterministic headers: the same files give the same bytes).
pub fn pack(folder: &Path, name: &str, out: &Path) -> Result<(), Error> {
    let mut bytes = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut bytes, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        tar.append_dir_all(name, folder).map_err(|e| Error::io(out, e))?;
        tar.into_inner().and_then(|gz| gz.finish()).map_err(|e| Error::io(out, e))?;
    }
    crate::fsio::write_atomic(out, &bytes)
}

/// Streams the archive into `dir`, entry by entry, within `limits`.
fn unpack(tarball: &Path, dir: &Path, limits: &Limits) -> Result<(), Error> {
    let bad = |problem: String| Error::format(tarball, problem, HINT);
    let file = std::fs::File::open(tarball).map_err(|e| Error::io(tarball, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let (mut count, mut total, mut top): (usize, u64, Option<std::ffi::OsString>) = (0, 0, None);
    // raw entries: the tar crate would read a long-name or pax header whole
    // into memory, whatever size it claims; here each is capped
    let mut long_name: Option<Vec<u8>> = None;
    for entry in archive.entries().map_err(|e| bad(format!("not a readable .tar.gz: {e}")))?.raw(true) {
        let mut entry = entry.map_err(|e| bad(format!("not a readable .tar.gz: {e}")))?;
        count += 1;
        if count > limits.entries {
            return Err(bad(format!("more than {} entries", limits.entries)));
        }
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() || kind.is_pax_global_extensions() {
            let size = entry.header().size().map_err(|e| bad(format!("entry {count}: bad size: {e}")))?;
            if size > MAX_METADATA_BYTES {
                return Err(bad(format!("entry {count}: a {kind:?} header of {size} bytes, over the {MAX_METADATA_BYTES}-byte limit of names and metadata")));
            }
            let mut data = Vec::new();
            (&mut entry).take(size).read_to_end(&mut data).map_err(|e| bad(format!("entry {count}: {e}")))?;
            if kind.is_gnu_longname() {
                long_name = Some(data.split(|&b| b == 0).next().unwrap_or_default().to_vec());
            } else if kind.is_pax_local_extensions() {
                for ext in tar::PaxExtensions::new(&data) {
                    let ext = ext.map_err(|e| bad(format!("entry {count}: a malformed pax header: {e}")))?;
                    if ext.key_bytes() == b"path" {
                        long_name = Some(ext.value_bytes().to_vec());
                    }
                }
            }
            // a global header (git archive writes one) or a long link name: nothing to create
            continue;
        }
        let name = long_name.take().unwrap_or_else(|| entry.path_bytes().into_owned());
        let path = PathBuf::from(std::str::from_utf8(&name).map_err(|_| bad(format!("entry {count}: the name is not UTF-8")))?);
        let shown = path.display().to_string();
        if !path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(bad(format!("entry `{shown}` is not a plain relative path (absolute, or with `..`)")));
        }
        let parts: Vec<_> = path.components().filter(|c| matches!(c, Component::Normal(_))).collect();
        let Some(first) = parts.first() else { continue };
        let first = first.as_os_str().to_os_string();
        match &top {
            None => top = Some(first),
            Some(t) if *t != first => return Err(bad(format!("entry `{shown}` is outside the bundle folder `{}`", t.to_string_lossy()))),
            _ => {}
        }
        let target = dir.join(parts.iter().collect::<PathBuf>());
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!("entry `{shown}` is a {kind:?}, not a regular file or folder (links, devices and FIFOs are refused)")));
        }
        let size = entry.header().size().map_err(|e| bad(format!("entry `{shown}`: bad size: {e}")))?;
        total = total.saturating_add(size);
        if size > limits.file_bytes || total > limits.total_bytes {
            return Err(bad(format!("entry `{shown}` ({size} bytes) passes the limit of {} bytes a file and {} in all", limits.file_bytes, limits.total_bytes)));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(&target).map_err(|e| Error::io(&target, e))?;
        let written = std::io::copy(&mut (&mut entry).take(size), &mut out).map_err(|e| Error::io(&target, e))?;
        if written != size {
            return Err(bad(format!("entry `{shown}` is cut short ({written} of {size} bytes)")));
        }
    }
    if top.is_none() {
        return Err(bad("the archive is empty".into()));
    }
    Ok(())
}
