//! The Merkle tree over a receipt's commitments (BLAKE3, RFC 6962's shape):
//! a leaf is `H(0x00 ‖ position u64 ‖ token u32 ‖ commitment)`, an inner
//! node `H(0x01 ‖ left ‖ right)`, a tree of `n > 1` leaves splits at the
//! largest power of two below `n`, and the empty tree is `H("")`. A proof
//! for one leaf lets a checker who holds only the root (through the
//! fingerprint) confirm one position's token and commitment.

use crate::shard::Digest;

/// The leaf of generated token `token` whose logits are at `position`.
pub fn leaf(position: u64, token: u32, commitment: &Digest) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(&[0]);
    h.update(&position.to_le_bytes());
    h.update(&token.to_le_bytes());
    h.update(&commitment.0);
    Digest(*h.finalize().as_bytes())
}

fn node(left: &Digest, right: &Digest) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(&[1]);
    h.update(&left.0);
    h.update(&right.0);
    Digest(*h.finalize().as_bytes())
}

/// Largest power of two strictly below `n` (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root over `leaves`.
pub fn root(leaves: &[Digest]) -> Digest {
    match leaves.len() {
        0 => Digest::of(b""),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The sibling hashes from leaf `index` up to the root (nearest first);
/// `None` if `index` is not a leaf.
pub fn proof(leaves: &[Digest], index: usize) -> Option<Vec<Digest>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, mut i) = (0, leaves.len(), index);
    // Walk down, recording the other side at each split, then reverse.
    while hi - lo > 1 {
        let k = split(hi - lo);
        if i < k {
            path.push(root(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            path.push(root(&leaves[lo..lo + k]));
            lo += k;
            i -= k;
        }
    }
    path.reverse();
    Some(path)
}

/// Whether `path` (from [`proof`]) leads from `leaf` at `index` of a tree
/// of `n` leaves to `root`.
pub fn check_proof(leaf: &Digest, index: usize, n: usize, path: &[Digest], root: &Digest) -> bool {
    if index >= n {
        return false;
    }
    // The sides taken on the way down, recomputed from index and n.
    let mut sides = Vec::new();
    let (mut lo, mut hi, mut i) = (0, n, index);
    while hi - lo > 1 {
        let k = split(hi - lo);
        let left = i < k;
        sides.push(left);
        if left {
            hi = lo + k;
        } else {
            lo += k;
            i -= k;
        }
    }
    if sides.len() != path.len() {
        return false;
    }
    let mut h = *leaf;
    for (sib, left) in path.iter().zip(sides.iter().rev()) {
        h = if *left { node(&h, sib) } else { node(sib, &h) };
    }
    h == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Digest> {
        (0..n)
            .map(|i| leaf(i as u64, i as u32 * 7, &Digest::of(&[i as u8])))
            .collect()
    }

    #[test]
    fn every_proof_checks_and_a_changed_leaf_does_not() {
        for n in 1..20 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = proof(&l, i).unwrap();
                assert!(check_proof(&l[i], i, n, &p, &r), "n {n} i {i}");
                let other = Digest::of(b"other");
                assert!(!check_proof(&other, i, n, &p, &r), "n {n} i {i}");
                if n > 1 {
                    assert!(!check_proof(&l[i], (i + 1) % n, n, &p, &r), "n {n} i {i}");
                }
            }
            assert!(proof(&l, n).is_none());
        }
    }

    #[test]
    fn the_root_depends_on_every_leaf_and_its_place() {
        let l = leaves(5);
        let r = root(&l);
        for i in 0..5 {
            let mut m = l.clone();
            m[i] = Digest::of(b"x");
            assert_ne!(root(&m), r);
        }
        let mut swapped = l.clone();
        swapped.swap(1, 2);
        assert_ne!(root(&swapped), r);
        assert_eq!(root(&[]), Digest::of(b""));
        assert_eq!(root(&l[..1]), l[0]);
    }
}
