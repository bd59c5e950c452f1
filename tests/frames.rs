//! Activation frames: round trips, and every corrupted field rejected with
//! the right error, never a panic.

use strata::shard::{DType, Digest, Frame, FrameKind};
use strata::Error;

fn model() -> Digest {
    Digest::of(b"model")
}

fn hidden() -> Frame {
    let v: Vec<f32> = (0..3 * 8).map(|i| i as f32 * 0.25 - 2.0).collect();
    Frame::floats(FrameKind::Hidden, DType::F32, model(), 10, 7, 5, 8, &v).unwrap()
}

/// Re-encode with a fixed-up checksum, so a test reaches the field checks.
fn reseal(mut b: Vec<u8>) -> Vec<u8> {
    let body = b.len() - 32;
    let sum = *blake3::hash(&b[..body]).as_bytes();
    b[body..].copy_from_slice(&sum);
    b
}

#[test]
fn round_trips_in_every_dtype() {
    let v: Vec<f32> = vec![1.0, -2.5, 0.125, 3.0e-3];
    for dt in [DType::F32, DType::F16, DType::BF16] {
        let f = Frame::floats(FrameKind::Hidden, dt, model(), 3, 1, 0, 2, &v).unwrap();
        let g = Frame::decode(&f.encode()).unwrap();
        assert_eq!(f, g);
        let back = g.values().unwrap();
        for (a, b) in v.iter().zip(&back) {
            assert!((a - b).abs() <= a.abs() * 1e-2, "{dt:?}");
        }
    }
    let t = Frame::tokens(model(), 9, 0, &[1, 2, 3]);
    assert_eq!(
        Frame::decode(&t.encode()).unwrap().token_ids().unwrap(),
        vec![1, 2, 3]
    );
    assert_eq!(hidden().encoded_len(), 80 + 3 * 8 * 4 + 32);
}

#[test]
fn every_header_field_is_validated() {
    let good = hidden().encode();
    let cases: Vec<(&str, Box<dyn Fn(&mut Vec<u8>)>, fn(&Error) -> bool)> = vec![
        ("magic", Box::new(|b| b[0] = b'X'), |e| {
            matches!(e, Error::FrameMalformed { field: "magic", .. })
        }),
        ("version", Box::new(|b| b[4] = 2), |e| {
            matches!(
                e,
                Error::FrameMalformed {
                    field: "version",
                    ..
                }
            )
        }),
        ("kind", Box::new(|b| b[6] = 9), |e| {
            matches!(e, Error::FrameMalformed { field: "kind", .. })
        }),
        ("dtype", Box::new(|b| b[7] = 9), |e| {
            matches!(e, Error::FrameMalformed { field: "dtype", .. })
        }),
        ("dtype/kind", Box::new(|b| b[7] = 3), |e| {
            matches!(e, Error::FrameMalformed { field: "dtype", .. })
        }),
        ("reserved", Box::new(|b| b[44] = 1), |e| {
            matches!(
                e,
                Error::FrameMalformed {
                    field: "reserved",
                    ..
                }
            )
        }),
        (
            "count zero",
            Box::new(|b| b[64..68].copy_from_slice(&0u32.to_le_bytes())),
            |e| {
                matches!(
                    e,
                    Error::FrameMalformed {
                        field: "token count",
                        ..
                    }
                )
            },
        ),
        ("count", Box::new(|b| b[64] = 4), |e| {
            matches!(
                e,
                Error::FrameMalformed {
                    field: "payload length",
                    ..
                }
            )
        }),
        (
            "width zero",
            Box::new(|b| b[68..72].copy_from_slice(&0u32.to_le_bytes())),
            |e| matches!(e, Error::FrameMalformed { field: "width", .. }),
        ),
        ("width", Box::new(|b| b[68] = 9), |e| {
            matches!(
                e,
                Error::FrameMalformed {
                    field: "payload length",
                    ..
                }
            )
        }),
    ];
    for (name, corrupt, is_right) in cases {
        let mut b = good.clone();
        corrupt(&mut b);
        let b = reseal(b);
        match Frame::decode(&b) {
            Err(e) => assert!(is_right(&e), "{name}: wrong error {e}"),
            Ok(_) => panic!("{name}: accepted"),
        }
    }
}

#[test]
fn lengths_and_checksum() {
    let good = hidden().encode();
    // Payload length announcing more than the frame holds, or absurdly much.
    let mut b = good.clone();
    b[72..80].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(
        Frame::decode(&b),
        Err(Error::FrameMalformed {
            field: "payload length",
            ..
        })
    ));
    let mut b = good.clone();
    b[72..80].copy_from_slice(&100u64.to_le_bytes());
    assert!(matches!(
        Frame::decode(&reseal(b)),
        Err(Error::FrameMalformed {
            field: "length",
            ..
        })
    ));
    // Truncated anywhere, and extended.
    for n in 0..good.len() {
        assert!(Frame::decode(&good[..n]).is_err(), "prefix {n}");
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(Frame::decode(&longer).is_err());
    // Any flipped payload or checksum bit: checksum error.
    for i in (80..good.len()).step_by(7) {
        let mut b = good.clone();
        b[i] ^= 0x10;
        assert!(
            matches!(Frame::decode(&b), Err(Error::FrameChecksum)),
            "byte {i}"
        );
    }
    // Every single-bit flip anywhere is an error, never a panic.
    for bit in 0..good.len() * 8 {
        let mut b = good.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(Frame::decode(&b).is_err(), "bit {bit} flipped and accepted");
    }
}

#[test]
fn context_checks_name_the_field() {
    let f = hidden();
    let m = model();
    f.check(&m, 10, 8, 5).unwrap();
    assert!(matches!(
        f.check(&Digest::of(b"other"), 10, 8, 5),
        Err(Error::FrameWrongModel { .. })
    ));
    assert!(matches!(
        f.check(&m, 11, 8, 5),
        Err(Error::FrameWrongBoundary {
            expected: 11,
            found: 10
        })
    ));
    assert!(matches!(
        f.check(&m, 10, 16, 5),
        Err(Error::FrameWrongWidth {
            expected: 16,
            found: 8
        })
    ));
    assert!(matches!(
        f.check(&m, 10, 8, 4),
        Err(Error::FrameWrongPosition {
            held: 4,
            found: 5,
            ..
        })
    ));
    assert!(matches!(
        f.check(&m, 0, 8, 5),
        Err(Error::FrameWrongKind { .. })
    ));
    let t = Frame::tokens(m, 1, 0, &[1]);
    assert!(matches!(
        t.check(&m, 10, 8, 0),
        Err(Error::FrameWrongKind { .. })
    ));
    assert!(t.values().is_err());
    assert!(f.token_ids().is_err());
}

#[test]
fn counts_whose_byte_size_overflows_are_rejected() {
    // 2^31 rows of 2^31 f32 values: 2^64 bytes, which wraps a u64 to 0, so
    // an empty payload would match the announced length.
    let mut b = hidden().encode();
    b[64..68].copy_from_slice(&(1u32 << 31).to_le_bytes());
    b[68..72].copy_from_slice(&(1u32 << 31).to_le_bytes());
    b[72..80].copy_from_slice(&0u64.to_le_bytes());
    b.drain(80..80 + 3 * 8 * 4);
    let b = reseal(b);
    assert_eq!(b.len(), 80 + 32);
    match Frame::decode(&b) {
        Err(Error::FrameMalformed {
            field: "payload length",
            reason,
        }) => assert!(reason.contains("overflow"), "{reason}"),
        other => panic!("accepted or wrong error: {other:?}"),
    }
}

/// Token ids travel only as u32, and float rows never as u32: a frame that
/// mixes them is refused when it is built, decoded or read, and a node
/// refuses it too.
#[test]
fn token_ids_in_a_float_dtype_are_refused() {
    let ids = Frame::tokens(model(), 9, 0, &[1, 2, 3, 4]);
    // Built directly.
    for dt in [DType::F32, DType::F16, DType::BF16, DType::U32] {
        let r = Frame::floats(FrameKind::Tokens, dt, model(), 0, 9, 0, 1, &[1.0, 2.0]);
        assert!(
            matches!(r, Err(Error::InvalidParameter { name: "dtype", .. })),
            "tokens as {dt:?}: {r:?}"
        );
    }
    let r = Frame::floats(
        FrameKind::Hidden,
        DType::U32,
        model(),
        3,
        9,
        0,
        2,
        &[1.0, 2.0],
    );
    assert!(
        matches!(r, Err(Error::InvalidParameter { name: "dtype", .. })),
        "{r:?}"
    );
    // Decoded: the dtype byte of a token frame set to each float dtype (the
    // payload length still fits an f32 frame of width 1).
    for dt in [DType::F32, DType::F16, DType::BF16] {
        let mut b = ids.encode();
        b[7] = dt as u8;
        let r = Frame::decode(&reseal(b));
        assert!(
            matches!(r, Err(Error::FrameMalformed { field: "dtype", .. })),
            "decoded token frame as {dt:?}: {r:?}"
        );
    }
    // Read: a frame assembled in memory with the wrong dtype.
    let forged = Frame {
        dtype: DType::F32,
        ..ids.clone()
    };
    assert!(forged.token_ids().is_err());
    let forged_hidden = Frame {
        kind: FrameKind::Hidden,
        dtype: DType::U32,
        ..ids
    };
    assert!(forged_hidden.values().is_err());
}
