//! SentencePiece with scores (`tokenizer.ggml.model = "llama"`), as
//! llama.cpp's `llm_tokenizer_spm` runs it.
//!
//! Spaces are written as `▁` (U+2581) before merging, and a fragment that
//! follows BOS, a special token or the start of the text gets a leading
//! space when `add_space_prefix` is set. Each UTF-8 character starts as one
//! symbol; the adjacent pair whose concatenation is a token with the highest
//! score is merged first (ties to the leftmost), until no pair forms a
//! token. A final symbol that is not a token (a character outside the
//! vocabulary) is written as its bytes, each the `<0xNN>` byte token.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::{Error, Result};

/// The SentencePiece model: token ids by text, scores, byte tokens.
#[derive(Debug)]
pub(crate) struct SentencePiece {
    by_text: HashMap<Box<str>, u32>,
    /// `tokenizer.ggml.scores`, by id.
    scores: Vec<f32>,
    /// The `<0xNN>` token of each byte (or the byte itself as a token, as
    /// llama.cpp falls back to); `None` when the vocabulary has neither.
    byte_tokens: Box<[Option<u32>; 256]>,
    /// `tokenizer.ggml.add_space_prefix` (default true).
    pub(crate) add_space_prefix: bool,
}

/// A symbol of the text being merged: `len` bytes from `start`; 0 once it
/// has been merged into its left neighbour.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of `left` and `right` whose text (`size` bytes) is a
/// token with `score`.
#[derive(Clone, Copy, Debug)]
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bigram {
    /// The heap's top is the highest score, then the leftmost pair (as
    /// llama.cpp's `llm_bigram_spm::comparator`).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// `text` with every space written as `▁`.
pub(crate) fn escape_whitespace(text: &str) -> String {
    text.replace(' ', "\u{2581}")
}

/// A normal token's bytes: `▁` back to a space.
pub(crate) fn piece_bytes(text: &str) -> Vec<u8> {
    text.replace('\u{2581}', " ").into_bytes()
}

impl SentencePiece {
    pub(crate) fn new(
        texts: &[String],
        scores: Option<&[f32]>,
        add_space_prefix: bool,
    ) -> Result<SentencePiece> {
        let n = texts.len();
        let scores = match scores {
            None => vec![0.0; n],
            Some(s) if s.len() < n => {
                return Err(Error::Tokenizer(format!(
                    "{} token scores for {n} tokens",
                    s.len()
                )))
            }
            Some(s) => s[..n].to_vec(),
        };
        let by_text: HashMap<Box<str>, u32> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str().into(), i as u32))
            .collect();
        let mut byte_tokens = Box::new([None; 256]);
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            *slot = by_text.get(hex.as_str()).copied().or_else(|| {
                // llama.cpp falls back to the byte as a one-byte string.
                std::str::from_utf8(&[b as u8])
                    .ok()
                    .and_then(|s| by_text.get(s).copied())
            });
        }
        Ok(SentencePiece {
            by_text,
            scores,
            byte_tokens,
            add_space_prefix,
        })
    }

    fn token(&self, text: &str) -> Option<u32> {
        self.by_text.get(text).copied()
    }

    /// Tokenize one fragment of plain text (spaces not yet escaped), with a
    /// leading space added first when `prefix_space`.
    pub(crate) fn encode(&self, text: &str, prefix_space: bool, out: &mut Vec<u32>) -> Result<()> {
        let mut s = String::with_capacity(text.len() + 3);
        if prefix_space {
            s.push(' ');
        }
        s.push_str(text);
        let text = escape_whitespace(&s);
        if text.is_empty() {
            return Ok(());
        }

        // One symbol per character.
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        let mut chars = text.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            let i = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: chars.peek().map(|_| i + 1),
            });
        }

        let mut queue = BinaryHeap::new();
        let push = |queue: &mut BinaryHeap<Bigram>,
                    symbols: &[Symbol],
                    l: Option<usize>,
                    r: Option<usize>| {
            let (Some(l), Some(r)) = (l, r) else {
                return;
            };
            let (a, b) = (symbols[l], symbols[r]);
            let piece = &text[a.start..b.start + b.len];
            if let Some(id) = self.token(piece) {
                queue.push(Bigram {
                    left: l,
                    right: r,
                    score: self.scores[id as usize],
                    size: piece.len(),
                });
            }
        };
        for i in 1..symbols.len() {
            push(&mut queue, &symbols, Some(i - 1), Some(i));
        }
        while let Some(bigram) = queue.pop() {
            let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
            // A pair that no longer exists as it was when queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
                continue;
            }
            symbols[bigram.left].len += r.len;
            symbols[bigram.right].len = 0;
            symbols[bigram.left].next = r.next;
            if let Some(next) = r.next {
                symbols[next].prev = Some(bigram.left);
            }
            let left = symbols[bigram.left];
            push(&mut queue, &symbols, left.prev, Some(bigram.left));
            push(&mut queue, &symbols, Some(bigram.left), left.next);
        }

        let mut i = Some(0);
        while let Some(k) = i {
            let sym = symbols[k];
            let piece = &text[sym.start..sym.start + sym.len];
            match self.token(piece) {
                Some(id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        let id = self.byte_tokens[b as usize].ok_or_else(|| {
                            Error::Tokenizer(format!(
                                "byte 0x{b:02X} has no token (<0x{b:02X}>) in the vocabulary"
                            ))
                        })?;
                        out.push(id);
                    }
                }
            }
            i = sym.next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(tokens: &[(&str, f32)], add_space_prefix: bool) -> (Vec<String>, SentencePiece) {
        let mut texts: Vec<String> = (0..256).map(|b| format!("<0x{b:02X}>")).collect();
        let mut scores = vec![0.0; 256];
        for (t, s) in tokens {
            texts.push(t.to_string());
            scores.push(*s);
        }
        let m = SentencePiece::new(&texts, Some(&scores), add_space_prefix).unwrap();
        (texts, m)
    }

    fn encode(texts: &[String], m: &SentencePiece, s: &str) -> Vec<String> {
        let mut ids = Vec::new();
        m.encode(s, m.add_space_prefix, &mut ids).unwrap();
        ids.iter().map(|&i| texts[i as usize].clone()).collect()
    }

    #[test]
    fn highest_score_merges_first_and_unknown_characters_become_bytes() {
        let (texts, m) = model(
            &[
                ("a", -1.0),
                ("b", -1.0),
                ("c", -1.0),
                ("ab", -5.0),
                ("bc", -2.0),
                ("\u{2581}", -1.0),
                ("\u{2581}a", -3.0),
            ],
            true,
        );
        // "bc" outscores "ab"; "▁a" is merged first of all pairs with "▁".
        assert_eq!(encode(&texts, &m, "abc"), ["\u{2581}a", "bc"]);
        // "é" is not in the vocabulary: its two UTF-8 bytes.
        assert_eq!(encode(&texts, &m, "é"), ["\u{2581}", "<0xC3>", "<0xA9>"]);
    }

    #[test]
    fn ties_go_to_the_leftmost_pair() {
        let (texts, m) = model(&[("a", 0.0), ("aa", -1.0)], false);
        assert_eq!(encode(&texts, &m, "aaa"), ["aa", "a"]);
    }

    #[test]
    fn spaces_are_escaped_and_pieces_unescaped() {
        assert_eq!(escape_whitespace("a b  c"), "a\u{2581}b\u{2581}\u{2581}c");
        assert_eq!(piece_bytes("\u{2581}hello\u{2581}"), b" hello ");
    }
}
