//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`).
//!
//! Vocabulary strings and merges are written in GPT-2's byte alphabet; this
//! module decodes them once to raw bytes, so a word is merged as the bytes it
//! is, and each initial symbol is one byte. Merging follows llama.cpp: the
//! adjacent pair with the lowest merge rank goes first, ties to the leftmost.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::pretokenize::PreTokenizer;
use super::unicode::{char_to_byte, decode_byte_level};

/// The bytes a normal token's text stands for. A character outside the byte
/// alphabet is written as llama.cpp writes it: `[UNK_BYTE_0x<hex>` followed
/// by the whole token text and `]`.
pub(crate) fn piece_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// The byte-level BPE model: vocabulary by bytes, merge ranks, pre-tokenizer.
#[derive(Debug)]
pub(crate) struct ByteLevelBpe {
    pre: PreTokenizer,
    /// A word found whole in the vocabulary becomes that token unmerged.
    ignore_merges: bool,
    /// Token id by the bytes its text stands for (tokens whose text is
    /// outside the byte alphabet, e.g. with a raw space, cannot come out of
    /// BPE and are absent).
    by_bytes: HashMap<Box<[u8]>, u32>,
    /// Each distinct side of a merge, numbered.
    parts: HashMap<Box<[u8]>, u32>,
    /// Rank (position in the merge list) of a pair of parts.
    ranks: HashMap<(u32, u32), u32>,
}

/// A symbol of the word being merged: `len` bytes from `start`; 0 once it
/// has been merged into its left neighbour.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge, ordered by rank then by the left symbol's index. The
/// lengths record the pair as it was when queued, so stale entries can be
/// recognised.
type Candidate = Reverse<(u32, usize, usize, usize, usize)>;

impl ByteLevelBpe {
    /// Build from vocabulary strings and `"left right"` merge strings.
    pub(crate) fn new(
        pre: PreTokenizer,
        ignore_merges: bool,
        tokens: &[String],
        merges: &[String],
    ) -> ByteLevelBpe {
        let mut by_bytes = HashMap::with_capacity(tokens.len());
        for (id, text) in tokens.iter().enumerate() {
            if let Some(bytes) = decode_byte_level(text) {
                by_bytes.insert(bytes.into_boxed_slice(), id as u32);
            }
        }
        let mut parts: HashMap<Box<[u8]>, u32> = HashMap::new();
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            // Split at the first space after the first byte, as llama.cpp
            // does; a merge whose sides leave the byte alphabet never applies.
            let Some(space) = merge.bytes().skip(1).position(|b| b == b' ').map(|i| i + 1) else {
                continue;
            };
            let (Some(left), Some(right)) = (
                decode_byte_level(&merge[..space]),
                decode_byte_level(&merge[space + 1..]),
            ) else {
                continue;
            };
            let mut intern = |bytes: Vec<u8>| {
                let n = parts.len() as u32;
                *parts.entry(bytes.into_boxed_slice()).or_insert(n)
            };
            let key = (intern(left), intern(right));
            ranks.entry(key).or_insert(rank as u32);
        }
        ByteLevelBpe {
            pre,
            ignore_merges,
            by_bytes,
            parts,
            ranks,
        }
    }

    /// Tokenize plain text (no special-token handling) onto `out`.
    pub(crate) fn encode(&self, text: &str, out: &mut Vec<u32>) {
        for word in self.pre.split(text) {
            self.encode_word(word.as_bytes(), out);
        }
    }

    fn rank(&self, left: &[u8], right: &[u8]) -> Option<u32> {
        let l = *self.parts.get(left)?;
        let r = *self.parts.get(right)?;
        self.ranks.get(&(l, r)).copied()
    }

    fn encode_word(&self, word: &[u8], out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if self.ignore_merges {
            if let Some(&id) = self.by_bytes.get(word) {
                out.push(id);
                return;
            }
        }
        let n = word.len();
        let mut syms: Vec<Symbol> = (0..n)
            .map(|i| Symbol {
                start: i,
                len: 1,
                prev: i.checked_sub(1),
                next: (i + 1 < n).then_some(i + 1),
            })
            .collect();
        let mut queue: BinaryHeap<Candidate> = BinaryHeap::new();
        let push = |queue: &mut BinaryHeap<Candidate>, syms: &[Symbol], l: usize, r: usize| {
            let (a, b) = (syms[l], syms[r]);
            let left = &word[a.start..a.start + a.len];
            let right = &word[b.start..b.start + b.len];
            if let Some(rank) = self.rank(left, right) {
                queue.push(Reverse((rank, l, r, a.len, b.len)));
            }
        };
        for i in 1..n {
            push(&mut queue, &syms, i - 1, i);
        }
        while let Some(Reverse((_, l, r, l_len, r_len))) = queue.pop() {
            if syms[l].len == 0 || syms[r].len == 0 || syms[l].len != l_len || syms[r].len != r_len
            {
                continue; // stale: one side has changed since it was queued
            }
            let right = syms[r];
            syms[l].len += right.len;
            syms[r].len = 0;
            syms[l].next = right.next;
            if let Some(nx) = right.next {
                syms[nx].prev = Some(l);
            }
            if let Some(pv) = syms[l].prev {
                push(&mut queue, &syms, pv, l);
            }
            if let Some(nx) = syms[l].next {
                push(&mut queue, &syms, l, nx);
            }
        }
        for s in syms.iter().filter(|s| s.len > 0) {
            let bytes = &word[s.start..s.start + s.len];
            if let Some(&id) = self.by_bytes.get(bytes) {
                out.push(id);
                continue;
            }
            // Not in the vocabulary: llama.cpp looks each byte of the
            // symbol's alphabet spelling up as a one-character token. Only
            // the printable ASCII bytes are spelt with one byte; the pieces
            // of the others never name a token and are dropped.
            for &b in bytes {
                if (0x21..=0x7E).contains(&b) {
                    if let Some(&id) = self.by_bytes.get(&[b][..]) {
                        out.push(id);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merges_by_rank_then_leftmost() {
        // Vocabulary in GPT-2 alphabet: "Ġ" is the space byte.
        let tokens = strings(&["a", "b", "c", "Ġ", "ab", "bc", "abc", "Ġa", "Ġab"]);
        let merges = strings(&["b c", "a b", "ab c", "Ġ a", "Ġa b"]);
        let bpe = ByteLevelBpe::new(PreTokenizer::Gpt2, false, &tokens, &merges);
        let enc = |s: &str| {
            let mut out = Vec::new();
            bpe.encode(s, &mut out);
            out
        };
        // "abc": "b c" (rank 0) first -> a, bc; no "a bc" merge.
        assert_eq!(enc("abc"), [0, 5]);
        // "ab": only "a b".
        assert_eq!(enc("ab"), [4]);
        // " ab": "a b" (rank 1) beats "Ġ a" (rank 3), and "Ġ ab" is no merge.
        assert_eq!(enc(" ab"), [3, 4]);
        // " a": "Ġ a" merges; " a b" would need "Ġa b" to outrank "a b".
        assert_eq!(enc(" a"), [7]);
        // "aa": nothing merges.
        assert_eq!(enc("aa"), [0, 0]);
    }

    #[test]
    fn leftmost_wins_a_tie() {
        let tokens = strings(&["a", "aa"]);
        let merges = strings(&["a a"]);
        let bpe = ByteLevelBpe::new(PreTokenizer::Gpt2, false, &tokens, &merges);
        let mut out = Vec::new();
        bpe.encode("aaa", &mut out);
        assert_eq!(out, [1, 0]);
    }

    #[test]
    fn unknown_bytes_fall_back_or_drop() {
        // "x" and "y" known, "xy" has a merge but is not a token: it falls
        // back to the single ASCII bytes. "é" (two bytes) has no tokens at
        // all and is dropped, as in llama.cpp.
        let tokens = strings(&["x", "y"]);
        let merges = strings(&["x y"]);
        let bpe = ByteLevelBpe::new(PreTokenizer::Gpt2, false, &tokens, &merges);
        let mut out = Vec::new();
        bpe.encode("xy é", &mut out);
        assert_eq!(out, [0, 1]);
    }

    #[test]
    fn ignore_merges_takes_whole_words() {
        let tokens = strings(&["h", "e", "he", "hello"]);
        let merges = strings(&["h e"]);
        let plain = ByteLevelBpe::new(PreTokenizer::Llama3, false, &tokens, &merges);
        let whole = ByteLevelBpe::new(PreTokenizer::Llama3, true, &tokens, &merges);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        plain.encode("hello", &mut a);
        whole.encode("hello", &mut b);
        assert_eq!(a, [2]); // "he" then l, l, o have no tokens: dropped
        assert_eq!(b, [3]);
    }
}
