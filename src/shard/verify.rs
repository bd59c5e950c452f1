//! Remembering which shard files were verified.
//!
//! A node checks a shard file's tensors against the hashes it records before
//! it serves under the parent model's digest. Hashing a large shard at every
//! start is slow, so a successful check leaves a stamp: a small file named by
//! a BLAKE3 of the file's identity (canonical path, size, modification and
//! change times in nanoseconds, device and inode) and the parent digest. A
//! later load of the same, unchanged file finds the stamp and skips the
//! hashing; any write changes the identity, so the file is hashed again.
//!
//! Stamps live in `$STRATA_VERIFY_CACHE_DIR` if set, else
//! `$XDG_CACHE_HOME/strata/verified`, else `$HOME/.cache/strata/verified`.
//! When none can be found or written, every load verifies. Whoever can write
//! there can vouch for a file, as whoever can write the file can change it:
//! the directory needs the same protection as the model files.
//!
//! A stamp is only written for a file whose modification time is at least
//! [`SETTLE`] in the past and whose identity did not change while it was
//! hashed: a write in the same tick of a coarse file-system clock as the
//! check would otherwise leave the times unchanged (git's "racy clean" case).

use std::ffi::OsString;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::digest::Digest;
use crate::gguf::GgufFile;
use crate::Result;

/// How long a file must have been left alone before a stamp vouches for it.
pub const SETTLE: Duration = Duration::from_secs(2);

/// How a shard file's tensors were found to match their recorded hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Every tensor was hashed in this load.
    Hashed,
    /// A stamp from an earlier check of the same, unchanged file was found.
    Cached,
}

/// The stamp directory (it may not exist yet), or `None` when no variable
/// names one.
pub fn cache_dir() -> Option<PathBuf> {
    resolve(
        std::env::var_os("STRATA_VERIFY_CACHE_DIR"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// The directory rule as a pure function of the three variables (empty
/// counts as unset).
fn resolve(
    own: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    match own.filter(|s| !s.is_empty()) {
        Some(d) => Some(PathBuf::from(d)),
        None => crate::model_cache::strata_cache(xdg_cache_home, home).map(|d| d.join("verified")),
    }
}

/// Run `check` unless a stamp for `file` (opened from a path) and `parent`
/// is in `dir`; after a successful check, leave one if the file qualifies.
/// A file parsed from memory is always checked.
pub(crate) fn verify_cached(
    file: &GgufFile,
    parent: &Digest,
    dir: Option<&Path>,
    check: impl FnOnce() -> Result<()>,
) -> Result<Verified> {
    let stamp = file.source().and_then(|(path, meta)| {
        let path = std::fs::canonicalize(path).ok()?;
        let text = identity(&path, meta, parent);
        let name = Digest::of(text.as_bytes()).to_hex();
        Some((path, meta, dir?.join(name), text))
    });
    if let Some((_, _, at, text)) = &stamp {
        if std::fs::read(at).is_ok_and(|found| found == text.as_bytes()) {
            return Ok(Verified::Cached);
        }
    }
    check()?;
    if let Some((path, meta, at, text)) = &stamp {
        // The file as it is now must be the file that was mapped and hashed.
        let unchanged =
            std::fs::metadata(path).is_ok_and(|now| identity(path, &now, parent) == *text);
        if unchanged && settled(meta.modified().ok(), SystemTime::now()) {
            // Best effort: without a stamp the next load hashes again.
            let _ = write_stamp(at, text);
        }
    }
    Ok(Verified::Hashed)
}

/// Whether a file last modified at `mtime` is old enough at `now` for a
/// later write to change its modification time.
fn settled(mtime: Option<SystemTime>, now: SystemTime) -> bool {
    mtime
        .and_then(|m| now.duration_since(m).ok())
        .is_some_and(|age| age >= SETTLE)
}

/// Write the stamp through a temporary file, so that a reader sees either
/// nothing or the whole text.
fn write_stamp(at: &Path, text: &str) -> std::io::Result<()> {
    let dir = at.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = at.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, at).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The identity of a file and the parent digest it was checked against, as
/// the text a stamp holds.
fn identity(canonical: &Path, meta: &Metadata, parent: &Digest) -> String {
    let (mtime, ctime, dev, ino) = times_and_inode(meta);
    format!(
        "strata shard verification v1\npath: {}\nsize: {}\nmtime_ns: {mtime}\n\
         ctime_ns: {ctime}\ndev: {dev}\ninode: {ino}\nparent: {parent}\n",
        canonical.display(),
        meta.len(),
    )
}

#[cfg(unix)]
fn times_and_inode(meta: &Metadata) -> (i128, i128, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    (
        ns(meta.mtime(), meta.mtime_nsec()),
        ns(meta.ctime(), meta.ctime_nsec()),
        meta.dev(),
        meta.ino(),
    )
}

#[cfg(not(unix))]
fn times_and_inode(meta: &Metadata) -> (i128, i128, u64, u64) {
    let ns = |t: std::io::Result<SystemTime>| {
        t.ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(-1, |d| d.as_nanos() as i128)
    };
    (ns(meta.modified()), ns(meta.created()), 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use std::fs::File;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("strata-verify-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A small GGUF file whose modification time is an hour ago.
    fn settled_file(dir: &Path) -> PathBuf {
        let w = crate::synth::synth_model(
            &crate::synth::SynthSpec::tiny(crate::quant::GgmlType::Q8_0),
            None,
        )
        .unwrap();
        let path = dir.join("model.gguf");
        w.write_file(&path).unwrap();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        path
    }

    fn run(file: &GgufFile, dir: Option<&Path>, ok: bool) -> (Result<Verified>, bool) {
        let mut called = false;
        let r = verify_cached(file, &Digest([7; 32]), dir, || {
            called = true;
            if ok {
                Ok(())
            } else {
                Err(Error::invalid("test", "check failed"))
            }
        });
        (r, called)
    }

    #[test]
    fn a_passed_check_is_remembered_and_a_failed_one_is_not() {
        let d = temp("remember");
        let (path, cache) = (settled_file(&d), d.join("cache"));
        let file = GgufFile::open(&path).unwrap();
        assert!(run(&file, Some(&cache), false).0.is_err());
        let (r, called) = run(&file, Some(&cache), true);
        assert_eq!((r.unwrap(), called), (Verified::Hashed, true));
        let (r, called) = run(&file, Some(&cache), true);
        assert_eq!((r.unwrap(), called), (Verified::Cached, false));
        // Another parent digest is another stamp.
        let mut called = false;
        let r = verify_cached(&file, &Digest([8; 32]), Some(&cache), || {
            called = true;
            Ok(())
        });
        assert_eq!((r.unwrap(), called), (Verified::Hashed, true));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn files_from_memory_and_unwritable_caches_are_checked_every_time() {
        let d = temp("uncached");
        let path = settled_file(&d);
        let mem = GgufFile::from_bytes(std::fs::read(&path).unwrap()).unwrap();
        for _ in 0..2 {
            let (r, called) = run(&mem, Some(&d), true);
            assert_eq!((r.unwrap(), called), (Verified::Hashed, true));
        }
        // A plain file where the directory should be: nothing can be written.
        let blocked = d.join("not-a-dir");
        std::fs::write(&blocked, b"x").unwrap();
        let file = GgufFile::open(&path).unwrap();
        for dir in [Some(blocked.join("cache")), None] {
            for _ in 0..2 {
                let (r, called) = run(&file, dir.as_deref(), true);
                assert_eq!((r.unwrap(), called), (Verified::Hashed, true));
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_stamp_is_not_trusted() {
        let d = temp("damaged");
        let (path, cache) = (settled_file(&d), d.join("cache"));
        let file = GgufFile::open(&path).unwrap();
        run(&file, Some(&cache), true).0.unwrap();
        let stamps: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
        assert_eq!(stamps.len(), 1);
        let stamp = stamps[0].as_ref().unwrap().path();
        let text = std::fs::read_to_string(&stamp).unwrap();
        std::fs::write(&stamp, &text[..text.len() / 2]).unwrap();
        let (r, called) = run(&file, Some(&cache), true);
        assert_eq!((r.unwrap(), called), (Verified::Hashed, true));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn only_settled_files_are_stamped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(settled(Some(now - SETTLE), now));
        assert!(settled(Some(now - Duration::from_secs(3600)), now));
        assert!(!settled(Some(now - Duration::from_millis(1500)), now));
        assert!(!settled(Some(now), now));
        assert!(!settled(Some(now + Duration::from_secs(5)), now));
        assert!(!settled(None, now));
    }

    #[test]
    fn cache_dir_rule() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            resolve(s("/v"), s("/x"), s("/h")),
            Some(PathBuf::from("/v"))
        );
        assert_eq!(
            resolve(s(""), s("/x"), s("/h")),
            Some(PathBuf::from("/x/strata/verified"))
        );
        assert_eq!(
            resolve(None, s(""), s("/h")),
            Some(PathBuf::from("/h/.cache/strata/verified"))
        );
        assert_eq!(resolve(None, None, None), None);
    }
}
