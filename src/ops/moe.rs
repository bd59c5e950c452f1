//! Expert routing of a mixture-of-experts layer, as ggml's CPU backend
//! computes it for llama.cpp's `build_moe_ffn` with softmax gating:
//!
//! 1. `probs = soft_max(logits)` over the experts (ggml's
//!    `ggml_vec_soft_max_f32` on AVX2: `exp(x - max)` with the polynomial
//!    exp on each full group of eight from the start, the C library's
//!    `expf` on the rest, the sum of each group's horizontal sum in f64,
//!    then every value times `(float)(1/sum)`);
//! 2. the `k` largest by `ggml_argsort` (descending) — a `std::sort` of the
//!    indices with `probs[a] > probs[b]`, so ties fall where libstdc++'s
//!    introsort leaves them; [`sort_desc`] is that algorithm step for step;
//! 3. `weights = probs[selected]`, optionally divided by their sum (summed
//!    in f64, rounded to f32, clamped below at 2^-14) and scaled.

use super::act::ggml_v_expf;

/// How the selected experts' weights are post-processed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gating {
    /// Divide the selected weights by their sum (`expert_weights_norm`).
    pub norm: bool,
    /// Multiply them by this unless it is 0 or 1 (`expert_weights_scale`).
    pub scale: f32,
}

/// Horizontal sum of 8 lanes as ggml's AVX code does it: high half + low
/// half, then `(t0 + t2) + (t1 + t3)`.
fn hsum8(x: &[f32]) -> f32 {
    let t: [f32; 4] = std::array::from_fn(|i| x[i + 4] + x[i]);
    (t[0] + t[2]) + (t[1] + t[3])
}

/// `ggml_soft_max` of one row, in place.
pub fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let body = row.len() - row.len() % 8;
    let mut sum = 0f64;
    for c in row[..body].chunks_exact_mut(8) {
        for v in c.iter_mut() {
            *v = ggml_v_expf(*v - max);
        }
        sum += hsum8(c) as f64;
    }
    for v in &mut row[body..] {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in row {
        *v *= inv;
    }
}

/// Sort `idx` so that `key[idx[i]]` descends, exactly as libstdc++'s
/// `std::sort(idx, idx + n, [&](a, b) { return key[a] > key[b]; })` orders
/// them: introsort (median-of-three pivot, unguarded partition, heap sort
/// past `2·floor(log2 n)` levels) down to runs of 16, then one insertion
/// sort. Equal keys end where that algorithm puts them.
pub fn sort_desc(idx: &mut [i32], key: &[f32]) {
    let less = |a: i32, b: i32| key[a as usize] > key[b as usize];
    let n = idx.len();
    if n < 2 {
        return;
    }
    let depth = 2 * (usize::BITS - 1 - n.leading_zeros()) as usize;
    introsort_loop(idx, 0, n, depth, &less);
    final_insertion_sort(idx, &less);
}

const THRESHOLD: usize = 16;

fn introsort_loop(
    v: &mut [i32],
    first: usize,
    mut last: usize,
    mut depth: usize,
    less: &impl Fn(i32, i32) -> bool,
) {
    while last - first > THRESHOLD {
        if depth == 0 {
            heap_sort(&mut v[first..last], less);
            return;
        }
        depth -= 1;
        let cut = partition_pivot(v, first, last, less);
        if cut >= last {
            // Only keys that are not totally ordered (NaN) get here: the
            // guards below stopped a scan that libstdc++ leaves unguarded.
            heap_sort(&mut v[first..last], less);
            return;
        }
        introsort_loop(v, cut, last, depth, less);
        last = cut;
    }
}

fn partition_pivot(
    v: &mut [i32],
    first: usize,
    last: usize,
    less: &impl Fn(i32, i32) -> bool,
) -> usize {
    let mid = first + (last - first) / 2;
    move_median_to_first(v, first, first + 1, mid, last - 1, less);
    // Unguarded partition of first+1..last around v[first].
    let (mut lo, mut hi) = (first + 1, last);
    let pivot = first;
    // The scans are unguarded in libstdc++ (the median of three stops
    // them); the bounds here only matter for keys with NaN, which are not
    // totally ordered, and change nothing otherwise.
    loop {
        while lo < last && less(v[lo], v[pivot]) {
            lo += 1;
        }
        if lo == last {
            return lo;
        }
        hi -= 1;
        while hi > first && less(v[pivot], v[hi]) {
            hi -= 1;
        }
        if lo >= hi {
            return lo;
        }
        v.swap(lo, hi);
        lo += 1;
    }
}

fn move_median_to_first(
    v: &mut [i32],
    result: usize,
    a: usize,
    b: usize,
    c: usize,
    less: &impl Fn(i32, i32) -> bool,
) {
    let m = if less(v[a], v[b]) {
        if less(v[b], v[c]) {
            b
        } else if less(v[a], v[c]) {
            c
        } else {
            a
        }
    } else if less(v[a], v[c]) {
        a
    } else if less(v[b], v[c]) {
        c
    } else {
        b
    };
    v.swap(result, m);
}

fn final_insertion_sort(v: &mut [i32], less: &impl Fn(i32, i32) -> bool) {
    if v.len() > THRESHOLD {
        insertion_sort(&mut v[..THRESHOLD], less);
        for i in THRESHOLD..v.len() {
            linear_insert(v, i, less);
        }
    } else {
        insertion_sort(v, less);
    }
}

fn insertion_sort(v: &mut [i32], less: &impl Fn(i32, i32) -> bool) {
    for i in 1..v.len() {
        if less(v[i], v[0]) {
            let val = v[i];
            v.copy_within(0..i, 1);
            v[0] = val;
        } else {
            linear_insert(v, i, less);
        }
    }
}

/// `__unguarded_linear_insert`: move `v[i]` down past larger elements
/// (bounded at the start, which only keys with NaN reach).
fn linear_insert(v: &mut [i32], mut i: usize, less: &impl Fn(i32, i32) -> bool) {
    let val = v[i];
    while i > 0 && less(val, v[i - 1]) {
        v[i] = v[i - 1];
        i -= 1;
    }
    v[i] = val;
}

/// libstdc++'s `__partial_sort(first, last, last)`: make_heap, sort_heap.
fn heap_sort(v: &mut [i32], less: &impl Fn(i32, i32) -> bool) {
    let len = v.len();
    if len >= 2 {
        let mut parent = (len - 2) / 2;
        loop {
            let value = v[parent];
            adjust_heap(v, parent, len, value, less);
            if parent == 0 {
                break;
            }
            parent -= 1;
        }
    }
    let mut last = len;
    while last > 1 {
        last -= 1;
        let value = v[last];
        v[last] = v[0];
        adjust_heap(&mut v[..last], 0, last, value, less);
    }
}

fn adjust_heap(
    v: &mut [i32],
    mut hole: usize,
    len: usize,
    value: i32,
    less: &impl Fn(i32, i32) -> bool,
) {
    let top = hole;
    let mut child = hole;
    while child < (len.saturating_sub(1)) / 2 {
        child = 2 * (child + 1);
        if less(v[child], v[child - 1]) {
            child -= 1;
        }
        v[hole] = v[child];
        hole = child;
    }
    if len & 1 == 0 && len >= 2 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        v[hole] = v[child - 1];
        hole = child - 1;
    }
    // __push_heap
    let mut parent = hole.wrapping_sub(1) / 2;
    while hole > top && less(v[parent], value) {
        v[hole] = v[parent];
        hole = parent;
        parent = hole.wrapping_sub(1) / 2;
    }
    v[hole] = value;
}

/// Route one token: `logits` (`[n_expert]`, overwritten by the
/// probabilities) → the `k` experts chosen, best first, into `experts`,
/// and their weights into `weights`. `idx` is scratch of `n_expert`.
pub fn route(
    logits: &mut [f32],
    k: usize,
    gating: Gating,
    idx: &mut Vec<i32>,
    experts: &mut [usize],
    weights: &mut [f32],
) {
    softmax(logits);
    idx.clear();
    idx.extend(0..logits.len() as i32);
    sort_desc(idx, logits);
    for j in 0..k {
        experts[j] = idx[j] as usize;
        weights[j] = logits[idx[j] as usize];
    }
    if gating.norm {
        let sum = weights[..k].iter().map(|&w| w as f64).sum::<f64>() as f32;
        let sum = sum.max(6.103_515_6e-5);
        for w in &mut weights[..k] {
            *w /= sum;
        }
    }
    if gating.scale != 0.0 && gating.scale != 1.0 {
        for w in &mut weights[..k] {
            *w *= gating.scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Heap sort alone (the introsort's fallback) against a plain sort.
    #[test]
    fn heap_sort_sorts() {
        let key: Vec<f32> = (0..37).map(|i| ((i * 7919) % 23) as f32).collect();
        let mut v: Vec<i32> = (0..37).collect();
        heap_sort(&mut v, &|a, b| key[a as usize] > key[b as usize]);
        assert!(v
            .windows(2)
            .all(|w| key[w[0] as usize] >= key[w[1] as usize]));
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..37).collect::<Vec<_>>());
    }

    #[test]
    fn sort_desc_orders_and_keeps_a_permutation() {
        let mut seed = 7u64;
        for n in [1usize, 2, 5, 8, 16, 17, 40, 128, 300] {
            for distinct in [3usize, 1000] {
                let key: Vec<f32> = (0..n)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        ((seed >> 33) as usize % distinct) as f32
                    })
                    .collect();
                let mut v: Vec<i32> = (0..n as i32).collect();
                sort_desc(&mut v, &key);
                assert!(v
                    .windows(2)
                    .all(|w| key[w[0] as usize] >= key[w[1] as usize]));
                let mut s = v.clone();
                s.sort();
                assert_eq!(s, (0..n as i32).collect::<Vec<_>>());
            }
        }
    }

    /// The orders libstdc++'s `std::sort` (GCC 12) gives 20 key sets with
    /// many ties (17 to 300 keys, 2 to 1000 distinct values, drawn by the
    /// LCG below; the C++ program that printed them builds the same keys
    /// and sorts `0..n` with `key[a] > key[b]`). Two orders are written
    /// out; all 20 are checked through an FNV-1a hash of their text.
    /// The tie-heavy key sets of the libstdc++ checks below: 17 to 300
    /// keys of 2 to 1000 distinct values, drawn by an LCG (the C++ program
    /// that printed the expected orders draws the same keys), each sorted
    /// by `sort` and written as `"n d: i0 i1 ..."`.
    fn orders(sort: impl Fn(&mut [i32], &[f32])) -> Vec<String> {
        let mut text = Vec::new();
        let mut seed = 7u64;
        for n in [17usize, 20, 40, 128, 300] {
            for d in [2u64, 3, 5, 1000] {
                let key: Vec<f32> = (0..n)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        ((seed >> 33) % d) as f32
                    })
                    .collect();
                let mut v: Vec<i32> = (0..n as i32).collect();
                sort(&mut v, &key);
                let items: String = v.iter().map(|x| format!(" {x}")).collect();
                text.push(format!("{n} {d}:{items}"));
            }
        }
        text
    }

    fn fnv1a(lines: &[String]) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in lines.join("\n").bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        h
    }

    /// (`scripts/libstdcxx_sort_orders.cpp` prints the expected orders.)
    /// The orders libstdc++'s (GCC 12) `std::sort(idx, idx + n, [&](a, b)
    /// { return key[a] > key[b]; })` gives: two written out, all 20 checked
    /// through an FNV-1a hash of their text.
    #[test]
    fn ties_fall_where_libstdcxx_sort_puts_them() {
        let text = orders(sort_desc);
        assert_eq!(
            text[4],
            "20 2: 1 17 16 15 14 12 11 10 9 8 3 2 7 6 5 13 4 0 18 19"
        );
        assert_eq!(
            text[5],
            "20 3: 1 3 16 5 6 7 19 17 11 9 8 4 10 12 13 14 15 2 18 0"
        );
        assert_eq!(fnv1a(&text), 0x30e7_3d9b_7045_7bba);
    }

    /// The introsort's heap-sort fallback against libstdc++'s
    /// `std::partial_sort(idx, idx + n, idx + n, ...)`, the same
    /// `__partial_sort` call.
    #[test]
    fn heap_fallback_matches_libstdcxx_partial_sort() {
        let text = orders(|v, key| heap_sort(v, &|a, b| key[a as usize] > key[b as usize]));
        assert_eq!(
            text[4],
            "20 2: 8 10 16 15 12 17 9 2 11 3 1 14 7 18 4 19 5 0 6 13"
        );
        assert_eq!(fnv1a(&text), 0x0fb5_cdde_8dd6_7948);
    }

    /// Keys with NaN (a corrupt router) are not totally ordered; the sort
    /// still ends, with a permutation, and routing does not panic.
    #[test]
    fn nan_keys_do_not_panic() {
        for n in [5usize, 17, 64, 200] {
            let key: Vec<f32> = (0..n)
                .map(|i| {
                    if i % 3 == 0 {
                        f32::NAN
                    } else {
                        (i * 37 % 11) as f32
                    }
                })
                .collect();
            let mut v: Vec<i32> = (0..n as i32).collect();
            sort_desc(&mut v, &key);
            let mut s = v.clone();
            s.sort();
            assert_eq!(s, (0..n as i32).collect::<Vec<_>>());
            let mut l = key.clone();
            l[1] = f32::INFINITY;
            let (mut e, mut w) = (vec![0usize; 4], vec![0f32; 4]);
            let g = Gating {
                norm: true,
                scale: 0.0,
            };
            route(&mut l, 4, g, &mut Vec::new(), &mut e, &mut w);
            assert!(e.iter().all(|&x| x < n));
        }
    }

    /// Up to 16 keys libstdc++ runs only the insertion sort, which keeps
    /// equal keys in index order.
    #[test]
    fn small_sorts_keep_ties_in_index_order() {
        let key = [0.5f32, 0.25, 0.5, 0.25, 0.5, 0.125, 0.5, 0.25];
        let mut v: Vec<i32> = (0..8).collect();
        sort_desc(&mut v, &key);
        assert_eq!(v, [0, 2, 4, 6, 1, 3, 7, 5]);
    }

    #[test]
    fn softmax_sums_to_one_and_routing_normalizes() {
        let mut l: Vec<f32> = (0..13).map(|i| (i as f32 * 0.37).sin()).collect();
        let best = (0..13)
            .max_by(|&a, &b| l[a].partial_cmp(&l[b]).unwrap())
            .unwrap();
        let (mut e, mut w) = ([0usize; 3], [0f32; 3]);
        let g = Gating {
            norm: true,
            scale: 0.0,
        };
        route(&mut l, 3, g, &mut Vec::new(), &mut e, &mut w);
        assert!((l.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(e[0], best);
        assert!(w[0] >= w[1] && w[1] >= w[2]);
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
