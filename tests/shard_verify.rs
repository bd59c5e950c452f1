//! Shard files are verified when loaded: a tensor whose bytes differ from the
//! hash the parent recorded is refused by name, an intact shard loads, a
//! second load of the unchanged file is served by the verification stamp,
//! and a file changed after it was stamped is hashed (and refused) again.
//!
//! Stamps go to a directory of this test process (`STRATA_VERIFY_CACHE_DIR`),
//! never the user's cache.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use strata::ffi::strata_status;
use strata::gguf::GgufFile;
use strata::quant::GgmlType;
use strata::shard::{self, Verified};
use strata::synth::{synth_model, SynthSpec};
use strata::{Error, LoadOptions, Model};

/// Point the stamp cache at a fresh directory of this process, once, before
/// any test loads a shard.
fn cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("strata-verify-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::env::set_var("STRATA_VERIFY_CACHE_DIR", &d);
        d
    })
}

/// A tiny two-layer model split into two shard files under a directory of
/// its own. Their modification time is set an hour back: a file modified
/// within the last moments is not stamped (a later write in the same clock
/// tick would leave its time unchanged).
fn shards(name: &str) -> Vec<PathBuf> {
    cache_dir();
    let dir =
        std::env::temp_dir().join(format!("strata-shard-verify-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let w = synth_model(&SynthSpec::tiny(GgmlType::Q8_0), None).unwrap();
    let whole = GgufFile::from_bytes(w.to_bytes()).unwrap();
    let files = shard::split(&whole, &shard::even_ranges(2, 2).unwrap(), &dir, "tiny").unwrap();
    for f in &files {
        set_mtime(f, SystemTime::now() - Duration::from_secs(3600));
    }
    files
}

fn set_mtime(path: &Path, t: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Flip one bit in the middle of `tensor`'s data, in place (same size).
fn alter(path: &Path, tensor: &str) {
    let at = {
        let f = GgufFile::open(path).unwrap();
        let t = f.tensor(tensor).expect("the shard holds the tensor");
        f.data_offset() + t.offset + t.size / 2
    };
    let mut f = File::options().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0x10;
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&b).unwrap();
}

fn load(path: &Path) -> strata::Result<Model> {
    Model::load(
        path,
        &LoadOptions {
            n_threads: Some(1),
            ..Default::default()
        },
    )
}

fn verification(m: &Model) -> Option<Verified> {
    m.shard_info().and_then(|s| s.verification())
}

fn assert_mismatch(r: strata::Result<Model>, want: &str) {
    match r {
        Err(e @ Error::ShardTensorMismatch { .. }) => {
            let Error::ShardTensorMismatch { tensor } = &e else {
                unreachable!()
            };
            assert_eq!(tensor, want);
            assert!(e.to_string().contains(want), "{e}");
            assert_eq!(
                strata_status::of(&e),
                strata_status::STRATA_SHARD_TENSOR_MISMATCH
            );
        }
        Err(e) => panic!("expected a mismatch of {want}, got: {e}"),
        Ok(_) => panic!("an altered shard loaded"),
    }
}

#[test]
fn an_altered_tensor_is_refused_by_name() {
    let files = shards("altered");
    let name = "blk.0.attn_q.weight";
    alter(&files[0], name);
    assert_mismatch(load(&files[0]), name);
    // Refused again: a failed check leaves no stamp.
    assert_mismatch(load(&files[0]), name);
    // The other shard is intact and loads.
    let m = load(&files[1]).unwrap();
    assert_eq!(verification(&m), Some(Verified::Hashed));
}

#[test]
fn an_intact_shard_loads_and_its_second_load_uses_the_stamp() {
    let files = shards("intact");
    let first = load(&files[1]).unwrap();
    assert_eq!(verification(&first), Some(Verified::Hashed));
    let parent = first.shard_info().unwrap().parent;
    assert_eq!(first.digest(), parent);
    let second = load(&files[1]).unwrap();
    assert_eq!(verification(&second), Some(Verified::Cached));
    assert_eq!(second.digest(), parent);
    // The stamp belongs to the file: its sibling is still hashed.
    assert_eq!(
        verification(&load(&files[0]).unwrap()),
        Some(Verified::Hashed)
    );
}

#[test]
fn a_change_after_verification_is_hashed_again_and_refused() {
    let files = shards("changed");
    let f = &files[0];
    load(f).unwrap();
    assert_eq!(verification(&load(f).unwrap()), Some(Verified::Cached));
    let size = std::fs::metadata(f).unwrap().len();
    let name = "token_embd.weight";
    alter(f, name);
    // Same size, another modification time (still an hour back).
    set_mtime(f, SystemTime::now() - Duration::from_secs(3000));
    assert_eq!(std::fs::metadata(f).unwrap().len(), size);
    assert_mismatch(load(f), name);
}
