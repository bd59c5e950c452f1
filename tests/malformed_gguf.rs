//! Malformed GGUF files give errors, never a panic or a crash: truncations of
//! the real model at every KiB of its header region, random bit flips in the
//! header, and absurd counts.

mod common;

use std::sync::Arc;

use strata::gguf::GgufFile;
use strata::{LoadOptions, Model};

/// Parse and, if the header parses, build a model (which reads metadata,
/// tensor shapes and the tokenizer): every path must return, not panic.
fn try_load(bytes: Vec<u8>) -> Result<(), strata::Error> {
    let file = Arc::new(GgufFile::from_bytes(bytes)?);
    Model::from_file(
        file,
        &LoadOptions {
            n_threads: Some(1),
            layers: None,
            ..Default::default()
        },
    )
    .map(|_| ())
}

fn real_bytes() -> (Vec<u8>, usize) {
    let bytes = std::fs::read(common::smollm2()).unwrap();
    let header = GgufFile::from_bytes(bytes.clone()).unwrap().data_offset() as usize;
    (bytes, header)
}

#[test]
fn truncation_at_every_kib_of_the_header_is_an_error() {
    let (bytes, header) = real_bytes();
    let mut n = 0;
    for cut in (0..header + 4096).step_by(1024) {
        let r = GgufFile::from_bytes(bytes[..cut].to_vec());
        assert!(r.is_err(), "a file cut at {cut} bytes parsed");
        n += 1;
    }
    eprintln!("{n} truncations of a {header}-byte header region, all rejected");
}

#[test]
fn random_bit_flips_in_the_header_never_panic() {
    let (bytes, header) = real_bytes();
    // Only the header region and the first tensors matter here: keep the
    // images small so 300 full loads stay fast.
    let keep = bytes.len();
    let mut state = 0x5eed_u64;
    let mut errors = 0;
    for _ in 0..300 {
        let mut b = bytes[..keep].to_vec();
        for _ in 0..4 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let bit = (state >> 17) as usize % (header * 8);
            b[bit / 8] ^= 1 << (bit % 8);
        }
        let r = std::panic::catch_unwind(|| try_load(b));
        let r = r.expect("loading a corrupted file panicked");
        errors += r.is_err() as usize;
    }
    eprintln!("300 corrupted headers: {errors} rejected with an error, the rest loaded");
}

#[test]
fn absurd_counts_are_rejected() {
    let (bytes, _) = real_bytes();
    for (at, value) in [
        (8usize, u64::MAX),
        (8, 1 << 40),
        (16, u64::MAX),
        (16, 1 << 33),
    ] {
        let mut b = bytes.clone();
        b[at..at + 8].copy_from_slice(&value.to_le_bytes());
        match GgufFile::from_bytes(b) {
            Err(e) => eprintln!("count {value} at offset {at}: {e}"),
            Ok(_) => panic!("count {value} at offset {at} was accepted"),
        }
    }
    // The first key's length set to 2^62.
    let mut b = bytes.clone();
    b[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(matches!(
        GgufFile::from_bytes(b),
        Err(strata::Error::Truncated { .. })
    ));
}
