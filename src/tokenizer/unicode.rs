//! Character classes for the pre-tokenizers and the GPT-2 byte alphabet.
//!
//! Categories come from `unicode_table.rs`, generated from the table
//! llama.cpp itself uses (Unicode 15.1), so that `\p{L}`, `\p{N}` and friends
//! mean exactly what they mean there. `\s` is the Unicode `White_Space`
//! property, as in llama.cpp.

use super::unicode_table::CATEGORY_RANGES;

/// The general category of a code point, folded the way the split regexes
/// see it: `\p{N}`, `\p{L}`, `\p{Z}`, `\p{M}`, `\p{P}`, `\p{S}`, `\p{C}`
/// (control, format, private use, surrogate) and unassigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Category {
    Undefined,
    Number,
    Letter,
    Separator,
    Mark,
    Punctuation,
    Symbol,
    Control,
}

/// The classes of one code point, or of "no code point" (a position past the
/// end of the piece being split: then every predicate is false and
/// `exists` is false).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CharFlags {
    pub exists: bool,
    pub letter: bool,
    pub number: bool,
    pub mark: bool,
    pub punctuation: bool,
    pub symbol: bool,
    pub whitespace: bool,
}

impl CharFlags {
    /// The flags of `c`.
    pub fn of(c: char) -> CharFlags {
        let cat = category(c);
        CharFlags {
            exists: true,
            letter: cat == Category::Letter,
            number: cat == Category::Number,
            mark: cat == Category::Mark,
            punctuation: cat == Category::Punctuation,
            symbol: cat == Category::Symbol,
            whitespace: is_whitespace(c),
        }
    }
}

/// The general category of `c` (binary search in the generated ranges).
pub(crate) fn category(c: char) -> Category {
    let cp = c as u32;
    let idx = CATEGORY_RANGES.partition_point(|&(start, _)| start <= cp);
    // The first range starts at 0, so idx >= 1 for every code point.
    CATEGORY_RANGES[idx.saturating_sub(1)].1
}

/// Unicode `White_Space` (the 25 code points llama.cpp treats as `\s`).
pub(crate) fn is_whitespace(c: char) -> bool {
    matches!(
        c as u32,
        0x09..=0x0D
            | 0x20
            | 0x85
            | 0xA0
            | 0x1680
            | 0x2000..=0x200A
            | 0x2028
            | 0x2029
            | 0x202F
            | 0x205F
            | 0x3000
    )
}

/// Whether GPT-2's byte alphabet lets byte `b` stand for itself: the
/// printable `!`..`~`, `¡`..`¬` and `®`..`ÿ`.
const fn is_printable_byte(b: usize) -> bool {
    (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE
}

/// The other 68 bytes, in increasing order; the k-th of them is written as
/// the code point U+0100 + k.
const fn shifted_bytes() -> [u8; 68] {
    let mut out = [0u8; 68];
    let mut n = 0;
    let mut b = 0usize;
    while b < 256 {
        if !is_printable_byte(b) {
            out[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    out
}

const SHIFTED_BYTES: [u8; 68] = shifted_bytes();

#[cfg(test)]
const fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut b = 0usize;
    while b < 256 {
        table[b] = if is_printable_byte(b) {
            b as u8 as char
        } else {
            let mut k = 0;
            while SHIFTED_BYTES[k] as usize != b {
                k += 1;
            }
            match char::from_u32(0x100 + k as u32) {
                Some(c) => c,
                None => '\0',
            }
        };
        b += 1;
    }
    table
}

/// GPT-2's reversible byte-to-character mapping, indexed by byte.
#[cfg(test)]
pub(crate) static BYTE_TO_CHAR: [char; 256] = byte_to_char_table();

/// The byte a GPT-2 alphabet character stands for.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 0x100 && is_printable_byte(cp as usize) {
        Some(cp as u8)
    } else if (0x100..0x100 + SHIFTED_BYTES.len() as u32).contains(&cp) {
        Some(SHIFTED_BYTES[(cp - 0x100) as usize])
    } else {
        None
    }
}

/// Decode a byte-level BPE token text to the bytes it stands for; `None` if a
/// character is outside the GPT-2 alphabet.
pub(crate) fn decode_byte_level(text: &str) -> Option<Vec<u8>> {
    text.chars().map(char_to_byte).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_round_trips() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = BYTE_TO_CHAR[b as usize];
            assert!(seen.insert(c), "duplicate char for byte {b}");
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(BYTE_TO_CHAR[b' ' as usize], 'Ġ');
        assert_eq!(BYTE_TO_CHAR[b'\n' as usize], 'Ċ');
        assert_eq!(BYTE_TO_CHAR[0xAD], 'Ń'); // the last of the 68 shifted bytes
        assert_eq!(char_to_byte('a'), Some(b'a'));
        assert_eq!(char_to_byte(' '), None);
        assert_eq!(char_to_byte('中'), None);
    }

    #[test]
    fn categories() {
        assert_eq!(category('a'), Category::Letter);
        assert_eq!(category('Ж'), Category::Letter);
        assert_eq!(category('中'), Category::Letter);
        assert_eq!(category('7'), Category::Number);
        assert_eq!(category('½'), Category::Number);
        assert_eq!(category('٣'), Category::Number);
        assert_eq!(category('\u{301}'), Category::Mark);
        assert_eq!(category('!'), Category::Punctuation);
        assert_eq!(category('$'), Category::Symbol);
        assert_eq!(category('😀'), Category::Symbol);
        assert_eq!(category('\u{200D}'), Category::Control);
        assert_eq!(category('\u{378}'), Category::Undefined);
        // Unicode 15.1 (CJK Extension I) is assigned; 16.0 is not.
        assert_eq!(category('\u{2EBF0}'), Category::Letter);
        assert_eq!(category('\u{1C89}'), Category::Undefined);
        assert!(is_whitespace('\u{3000}'));
        assert!(!is_whitespace('\u{1C}'));
        assert!(!is_whitespace('\u{200B}'));
    }
}
