//! Special-token partition: cut the text where it spells a special token.
//!
//! As in llama.cpp's `tokenizer_st_partition`, the special tokens are tried
//! one at a time, longest text first; each one splits every text fragment
//! still unclaimed at each of its (non-overlapping, leftmost-first)
//! occurrences. Control and unknown tokens take part only when special text
//! is parsed; user-defined tokens always do.

use super::vocab::{Attr, Vocab};

/// A piece of the input: text still to tokenize, or a special token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// C's `isspace` in the "C" locale, which llama.cpp strips with.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Partition `text` by the vocabulary's special tokens.
pub(crate) fn partition<'t>(
    vocab: &Vocab,
    text: &'t str,
    parse_special: bool,
) -> Vec<Fragment<'t>> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut frags = vec![Fragment::Text(text)];
    for &id in vocab.special_order() {
        let attr = vocab.attr(id);
        if !parse_special && attr.intersects(Attr::CONTROL | Attr::UNKNOWN) {
            continue;
        }
        let Some(needle) = vocab.text(id) else {
            continue;
        };
        if needle.is_empty()
            || !frags
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(needle)))
        {
            continue;
        }
        let mut next = Vec::with_capacity(frags.len() + 2);
        for frag in frags {
            let Fragment::Text(t) = frag else {
                next.push(frag);
                continue;
            };
            let mut rest = t;
            while let Some(at) = rest.find(needle) {
                let mut left = &rest[..at];
                if attr.contains(Attr::LSTRIP) {
                    left = left.trim_end_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
                }
                if !left.is_empty() {
                    next.push(Fragment::Text(left));
                }
                next.push(Fragment::Token(id));
                rest = &rest[at + needle.len()..];
                if attr.contains(Attr::RSTRIP) {
                    rest = rest.trim_start_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
                }
            }
            if !rest.is_empty() {
                next.push(Fragment::Text(rest));
            }
        }
        frags = next;
    }
    frags
}
