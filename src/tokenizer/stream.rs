//! Streaming detokenization: token pieces in, complete UTF-8 text out.
//!
//! A character can span tokens (byte-level BPE often splits an emoji or a
//! CJK character over two or three), so bytes of an unfinished sequence are
//! held back until the sequence completes. Bytes that can never form a
//! character become U+FFFD, as `String::from_utf8_lossy` would write them.

use std::sync::Arc;

use super::vocab::Pieces;
use super::Tokenizer;

/// Assembles UTF-8 text from byte chunks, holding back an incomplete
/// trailing sequence. Needs no tokenizer; see [`StreamDecoder`] for ids.
#[derive(Clone, Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn new() -> Utf8Stream {
        Utf8Stream::default()
    }

    /// Add bytes; return the text they complete.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // `good` is valid UTF-8 by construction.
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[n..];
                        }
                        None => {
                            // An unfinished sequence at the end: keep it.
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let drop_to = self.pending.len() - keep;
        self.pending.drain(..drop_to);
        out
    }

    /// Bytes held back, waiting for the rest of their character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Flush: held-back bytes become U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Decodes generated token ids one at a time into text.
///
/// Owns a handle to the tokenizer's piece table, so it can outlive borrows
/// of the tokenizer (a generation loop holding `&mut` its session).
#[derive(Clone, Debug)]
pub struct StreamDecoder {
    pieces: Arc<Pieces>,
    render_special: bool,
    utf8: Utf8Stream,
}

impl StreamDecoder {
    /// A decoder that, like `token_to_piece(special = false)`, writes control
    /// tokens as nothing.
    pub fn new(tokenizer: &Tokenizer) -> StreamDecoder {
        StreamDecoder::with_special(tokenizer, false)
    }

    /// A decoder that writes control tokens' text when `render_special`.
    pub fn with_special(tokenizer: &Tokenizer, render_special: bool) -> StreamDecoder {
        StreamDecoder {
            pieces: Arc::clone(tokenizer.vocab.pieces()),
            render_special,
            utf8: Utf8Stream::new(),
        }
    }

    /// Add a token; return the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        let bytes = self.pieces.get(id, self.render_special);
        self.utf8.push_bytes(bytes)
    }

    /// End of stream: whatever is held back, lossily.
    pub fn finish(&mut self) -> String {
        self.utf8.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_split_characters() {
        let mut s = Utf8Stream::new();
        let emoji = "😀".as_bytes(); // 4 bytes
        assert_eq!(s.push_bytes(b"a"), "a");
        assert_eq!(s.push_bytes(&emoji[..1]), "");
        assert_eq!(s.push_bytes(&emoji[1..3]), "");
        assert_eq!(s.pending().len(), 3);
        assert_eq!(s.push_bytes(&emoji[3..]), "😀");
        let han = "中".as_bytes();
        assert_eq!(s.push_bytes(&[b'x', han[0], han[1]]), "x");
        assert_eq!(s.push_bytes(&[han[2], b'!']), "中!");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement() {
        let mut s = Utf8Stream::new();
        assert_eq!(s.push_bytes(&[0xFF, b'a']), "\u{FFFD}a");
        // A lead byte followed by a non-continuation is invalid at once.
        assert_eq!(s.push_bytes(&[0xE4, b'b']), "\u{FFFD}b");
        assert_eq!(s.push_bytes(&[0xE4, 0xB8]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }

    #[test]
    fn matches_lossy_decoding_of_the_whole() {
        let text = "héllo 世界 👨‍👩‍👧 🇫🇷 ok";
        let bytes: Vec<u8> = text.bytes().chain([0xC3, 0x28, 0xF0, 0x9F]).collect();
        for chunk in 1..6 {
            let mut s = Utf8Stream::new();
            let mut out = String::new();
            for c in bytes.chunks(chunk) {
                out.push_str(&s.push_bytes(c));
            }
            out.push_str(&s.finish());
            assert_eq!(out, String::from_utf8_lossy(&bytes), "chunk {chunk}");
        }
    }
}
