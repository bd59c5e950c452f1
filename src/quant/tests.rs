//! Format-independent tests: layouts, round trips, dot products against the
//! dequantized values, and error handling at the public entry points.

use super::testutil::{random_blocks, Rng};
use super::*;

/// Every type with a block format.
fn block_types() -> Vec<GgmlType> {
    GgmlType::all().filter(|&t| is_supported(t)).collect()
}

#[test]
fn block_structs_match_ggml_sizes_and_have_alignment_one() {
    fn check<B: BlockFormat>() {
        assert_eq!(std::mem::size_of::<B>(), B::TYPE.type_size(), "{}", B::TYPE);
        assert_eq!(B::BLOCK_SIZE, B::TYPE.block_size(), "{}", B::TYPE);
        assert_eq!(std::mem::align_of::<B>(), 1, "{}", B::TYPE);
    }
    check::<F32>();
    check::<F16>();
    check::<BF16>();
    check::<BlockQ4_0>();
    check::<BlockQ4_1>();
    check::<BlockQ5_0>();
    check::<BlockQ5_1>();
    check::<BlockQ8_0>();
    check::<BlockQ8_1>();
    check::<BlockQ8K>();
    check::<BlockQ2K>();
    check::<BlockQ3K>();
    check::<BlockQ4K>();
    check::<BlockQ5K>();
    check::<BlockQ6K>();
    assert_eq!(block_types().len(), 15);
}

#[test]
fn vec_dot_types_match_ggml_cpu() {
    use GgmlType::*;
    let want = [
        (F32, F32),
        (F16, F16),
        (BF16, BF16),
        (Q4_0, Q8_0),
        (Q5_0, Q8_0),
        (Q8_0, Q8_0),
        (Q4_1, Q8_1),
        (Q5_1, Q8_1),
        (Q2_K, Q8_K),
        (Q3_K, Q8_K),
        (Q4_K, Q8_K),
        (Q5_K, Q8_K),
        (Q6_K, Q8_K),
    ];
    for (w, a) in want {
        assert_eq!(vec_dot_type(w), a, "{w}");
    }
}

/// Quantize -> dequantize stays within the format's step size.
#[test]
fn round_trips_stay_within_one_step() {
    use GgmlType::*;
    let mut rng = Rng::new(1);
    for ty in [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q8_K] {
        for reference in [false, true] {
            let bs = ty.block_size().max(32);
            let n = bs * 8;
            let x = rng.values(n, 0.7);
            let mut bytes = vec![0u8; n / ty.block_size() * ty.type_size()];
            if reference {
                quantize_reference(ty, &x, &mut bytes).unwrap();
            } else {
                quantize(ty, &x, &mut bytes).unwrap();
            }
            let mut y = vec![0f32; n];
            dequantize(ty, &bytes, &mut y).unwrap();
            for (xb, yb) in x.chunks(bs).zip(y.chunks(bs)) {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let (lo, hi) = xb
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                // Allowed error: half a step (a full step on Q4_0/Q5_0's
                // clipped positive end) plus the f16 rounding of the scales.
                let tol = match ty {
                    F32 => 0.0,
                    F16 => amax * 2f32.powi(-11),
                    BF16 => amax * 2f32.powi(-8),
                    Q4_0 => amax / 8.0 * 1.01,
                    Q5_0 => amax / 16.0 * 1.01,
                    Q4_1 => (hi - lo) / 15.0 * 0.51 + (hi - lo + lo.abs()) * 2f32.powi(-10),
                    Q5_1 => (hi - lo) / 31.0 * 0.51 + (hi - lo + lo.abs()) * 2f32.powi(-10),
                    Q8_0 | Q8_1 => amax / 127.0 * 0.51 + amax * 2f32.powi(-10),
                    Q8_K => amax / 127.0 * 0.501,
                    _ => unreachable!(),
                };
                for (a, b) in xb.iter().zip(yb) {
                    assert!(
                        (a - b).abs() <= tol,
                        "{ty} ref={reference}: {a} -> {b} (tol {tol})"
                    );
                }
            }
        }
    }
}

/// The x86 activation quantizer and the file-writing reference differ only
/// in tie rounding and the inverse scale: never by more than one quant.
#[test]
fn q8_activation_and_reference_quantizers_differ_by_at_most_one() {
    let mut rng = Rng::new(2);
    let x = rng.values(32 * 64, 1.0);
    let mut a = vec![0u8; 64 * 34];
    let mut r = vec![0u8; 64 * 34];
    quantize(GgmlType::Q8_0, &x, &mut a).unwrap();
    quantize_reference(GgmlType::Q8_0, &x, &mut r).unwrap();
    for (ba, br) in a.chunks(34).zip(r.chunks(34)) {
        assert_eq!(ba[..2], br[..2]);
        for (p, q) in ba[2..].iter().zip(&br[2..]) {
            assert!((*p as i8 as i32 - *q as i8 as i32).abs() <= 1);
        }
    }
}

/// vec_dot equals the dot product of the dequantized rows (up to float
/// rounding and Q8_1's f16 sum) for every weight type.
#[test]
fn vec_dot_matches_dot_of_dequantized_rows() {
    let mut rng = Rng::new(3);
    for ty in block_types() {
        let at = vec_dot_type(ty);
        for &nb in &[1usize, 3, 8] {
            let n = nb * ty.block_size().max(at.block_size()).max(256);
            let w = random_blocks(&mut rng, ty, n / ty.block_size());
            let x = rng.values(n, 1.3);
            let mut a = vec![0u8; n / at.block_size() * at.type_size()];
            if quantize(at, &x, &mut a).is_err() {
                a = random_blocks(&mut rng, at, n / at.block_size());
            }
            let mut wf = vec![0f32; n];
            let mut af = vec![0f32; n];
            dequantize(ty, &w, &mut wf).unwrap();
            dequantize(at, &a, &mut af).unwrap();
            let exact: f64 = wf.iter().zip(&af).map(|(&p, &q)| p as f64 * q as f64).sum();
            let mag: f64 = wf
                .iter()
                .zip(&af)
                .map(|(&p, &q)| (p as f64 * q as f64).abs())
                .sum();
            let got = vec_dot(ty, n, &w, &a);
            let tol = if matches!(at, GgmlType::Q8_1) {
                2e-3
            } else {
                1e-5
            } * mag
                + 1e-6;
            assert!(
                (got as f64 - exact).abs() <= tol,
                "{ty} x {at}, n={n}: vec_dot {got} vs {exact} (tol {tol})"
            );
        }
    }
}

#[test]
fn blocks_are_read_at_odd_addresses() {
    let mut rng = Rng::new(4);
    for ty in block_types() {
        let nb = 3;
        let blocks = random_blocks(&mut rng, ty, nb);
        let mut shifted = vec![0u8; blocks.len() + 1];
        shifted[1..].copy_from_slice(&blocks);
        let n = nb * ty.block_size();
        let mut a = vec![0f32; n];
        let mut b = vec![0f32; n];
        dequantize(ty, &blocks, &mut a).unwrap();
        dequantize(ty, &shifted[1..], &mut b).unwrap();
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn size_mismatches_are_errors_not_panics() {
    for ty in block_types() {
        let ts = ty.type_size();
        let bs = ty.block_size();
        let src = vec![0u8; 2 * ts];
        // Too few / too many output values, and bytes not a whole block.
        assert!(dequantize(ty, &src, &mut vec![0f32; bs]).is_err(), "{ty}");
        assert!(
            dequantize(ty, &src, &mut vec![0f32; 3 * bs]).is_err(),
            "{ty}"
        );
        assert!(
            dequantize(ty, &src[..2 * ts - 1], &mut vec![0f32; 2 * bs]).is_err(),
            "{ty}"
        );
        if bs > 1 {
            assert!(
                dequantize(ty, &src, &mut vec![0f32; 2 * bs - 1]).is_err(),
                "{ty}"
            );
        }
        assert!(
            dequantize(ty, &src, &mut vec![0f32; 2 * bs]).is_ok(),
            "{ty}"
        );
        // Wrong output size for quantize.
        let x = vec![0f32; 2 * bs];
        assert!(
            quantize(ty, &x, &mut vec![0u8; 2 * ts + 1]).is_err(),
            "{ty}"
        );
        assert!(quantize(ty, &x, &mut vec![0u8; ts]).is_err(), "{ty}");
        // Short rows and n not a whole number of blocks.
        let at = vec_dot_type(ty);
        let a = vec![0u8; 2 * bs / at.block_size() * at.type_size()];
        assert!(try_vec_dot(ty, 2 * bs, &src, &a).is_ok(), "{ty}");
        assert!(try_vec_dot(ty, 2 * bs, &src[..ts], &a).is_err(), "{ty}");
        assert!(
            try_vec_dot(ty, 2 * bs, &src, &a[..a.len() - 1]).is_err(),
            "{ty}"
        );
        if bs > 1 {
            assert!(try_vec_dot(ty, bs + 1, &src, &a).is_err(), "{ty}");
        }
    }
}

#[test]
fn unsupported_types_are_errors() {
    use GgmlType::*;
    for ty in [I8, I16, I32, I64, F64] {
        assert!(!is_supported(ty));
        assert!(dequantize(ty, &[0; 8], &mut [0.0; 1]).is_err());
        assert!(quantize(ty, &[0.0], &mut [0; 8]).is_err());
        assert!(try_vec_dot(ty, 1, &[0; 8], &[0; 8]).is_err());
    }
    // K-quants are read-only here.
    for ty in [Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
        let mut out = vec![0u8; ty.type_size()];
        let err = quantize(ty, &[0.5; 256], &mut out).unwrap_err();
        assert!(matches!(err, crate::Error::InvalidParameter { .. }), "{ty}");
    }
}

#[cfg(not(debug_assertions))]
#[test]
fn vec_dot_returns_nan_on_bad_sizes_in_release() {
    assert!(vec_dot(GgmlType::Q8_0, 32, &[0; 10], &[0; 34]).is_nan());
    assert!(vec_dot(GgmlType::I32, 1, &[0; 4], &[0; 4]).is_nan());
}

#[test]
fn zero_rows_quantize_to_zero_and_dot_to_zero() {
    use GgmlType::*;
    for ty in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q8_K] {
        let n = ty.block_size();
        let mut b = vec![0xAAu8; ty.type_size()];
        quantize(ty, &vec![0.0; n], &mut b).unwrap();
        let mut y = vec![1f32; n];
        dequantize(ty, &b, &mut y).unwrap();
        assert!(y.iter().all(|&v| v == 0.0), "{ty}");
    }
}
