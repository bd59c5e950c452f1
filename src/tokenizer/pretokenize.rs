//! Pre-tokenizers: split text into the words BPE runs on, as llama.cpp does.
//!
//! llama.cpp describes each pre-tokenizer (`tokenizer.ggml.pre`) as a list of
//! regexes applied one after another, each splitting the pieces the previous
//! one produced (text between matches stays a piece of its own). Some of
//! those regexes it runs through hand-written matchers (GPT-2, Llama 3,
//! Qwen 2), the rest through `std::regex`. The `regex` crate has no
//! lookahead, so every regex here is a hand-written scanner over code points
//! that reproduces llama.cpp's result, quirks included (for instance
//! `\s+(?!\S)` ends a whitespace run one character early only when a
//! non-space follows inside the same piece).

use super::unicode::CharFlags;

/// One split step. Names give the regex each reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    ///  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// with `max_digits` in place of 3 and, when `marks` is set, `\p{M}`
    /// counted with the letters (Qwen 3.5).
    Llama3 { max_digits: usize, marks: bool },
    /// `\p{N}`: every number character alone.
    EachNumber,
    /// `\p{N}+`
    NumberRuns,
    /// `[\p{P}\$\+<=>\^~\|]+`, plus the backtick when `backtick` is set.
    PunctuationRuns { backtick: bool },
    /// `[0-9][0-9][0-9]`
    DigitTriples,
    /// ` ?[^(\s|.,!?…。，、।۔،)]+` (BLOOM, Poro, Viking).
    BloomWords,
    /// `[^\n]+|[\n]+`
    Newlines,
}

/// A pre-tokenizer: the named regex pipeline of `tokenizer.ggml.pre`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreTokenizer {
    /// llama.cpp's fallback for a missing or `default` name.
    Default,
    Gpt2,
    /// GPT-2 after splitting off every digit (SmolLM, StarCoder, Command-R).
    Smollm,
    Llama3,
    Qwen2,
    Qwen35,
    Falcon,
    Bloom,
    Viking,
    Laguna,
}

/// What a `tokenizer.ggml.pre` name implies beyond its regexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PreConfig {
    pub pre: PreTokenizer,
    /// A word found whole in the vocabulary is one token, merges unused.
    pub ignore_merges: bool,
    /// `add_bos` default before the metadata flag (true for Llama 3).
    pub add_bos: bool,
    /// The model has no BOS token whatever the default says (ChatGLM).
    pub no_bos: bool,
}

impl PreConfig {
    fn new(pre: PreTokenizer) -> PreConfig {
        PreConfig {
            pre,
            ignore_merges: false,
            add_bos: false,
            no_bos: false,
        }
    }
}

/// Names llama.cpp knows whose pre-tokenizers this module does not implement.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "deepseek-llm",
    "deepseek-coder",
    "deepseek-v3",
    "spark2_5",
    "youtu",
    "jais-2",
    "gemma4",
    "granite-embed-multi-311m",
    "mmbert",
    "sarvam-moe",
    "whitespace",
    "tekken",
    "chameleon",
    "gpt-4o",
    "llama4",
    "kanana2",
    "talkie",
    "granite-embed-multi-97m",
    "tiny_aya",
    "cohere2moe",
    "superbpe",
    "bailingmoe",
    "bailingmoe2",
    "llada-moe",
    "seed-coder",
    "hunyuan-dense",
    "hy_v4",
    "joyai-llm",
    "kimi-k2",
    "ufakzeka",
    "afmoe",
    "minimax-m2",
    "minicpm5",
];

/// Why a pre-tokenizer name was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PreError {
    /// llama.cpp knows it; this crate does not implement it yet.
    Unsupported,
    /// llama.cpp does not know it either.
    Unknown,
}

impl PreTokenizer {
    /// Look up a `tokenizer.ggml.pre` name (`None` or empty: `default`, as in
    /// llama.cpp).
    pub(crate) fn from_name(name: Option<&str>) -> Result<PreConfig, PreError> {
        use PreTokenizer as P;
        let name = match name {
            None | Some("") => return Ok(PreConfig::new(P::Default)),
            Some(n) => n,
        };
        let cfg = match name {
            "default" => PreConfig::new(P::Default),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => PreConfig {
                ignore_merges: true,
                add_bos: true,
                ..PreConfig::new(P::Llama3)
            },
            "dbrx" | "smaug-bpe" => PreConfig::new(P::Llama3),
            "chatglm-bpe" => PreConfig {
                no_bos: true,
                ..PreConfig::new(P::Llama3)
            },
            "glm4" | "glm5" => PreConfig {
                no_bos: true,
                ignore_merges: true,
                ..PreConfig::new(P::Llama3)
            },
            "falcon" => PreConfig::new(P::Falcon),
            "mpt" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en"
            | "jina-v2-code" | "roberta-bpe" | "olmo" | "jais" | "exaone4" | "trillion"
            | "granite-docling" => PreConfig::new(P::Gpt2),
            "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => PreConfig::new(P::Smollm),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "megrez"
            | "hunyuan" | "solar-open" | "grok-2" => PreConfig::new(P::Qwen2),
            "qwen35" => PreConfig::new(P::Qwen35),
            "poro-chat" | "bloom" | "gpt3-finnish" => PreConfig::new(P::Bloom),
            "viking" => PreConfig::new(P::Viking),
            "laguna" => PreConfig::new(P::Laguna),
            other if KNOWN_UNSUPPORTED.contains(&other) => return Err(PreError::Unsupported),
            _ => return Err(PreError::Unknown),
        };
        Ok(cfg)
    }

    fn passes(self) -> &'static [Pass] {
        use Pass::*;
        match self {
            PreTokenizer::Default => &[
                PunctuationRuns { backtick: false },
                Gpt2,
                NumberRuns,
                DigitTriples,
            ],
            PreTokenizer::Gpt2 => &[Gpt2],
            PreTokenizer::Smollm => &[EachNumber, Gpt2],
            PreTokenizer::Llama3 => &[Llama3 {
                max_digits: 3,
                marks: false,
            }],
            PreTokenizer::Qwen2 => &[Llama3 {
                max_digits: 1,
                marks: false,
            }],
            PreTokenizer::Qwen35 => &[Llama3 {
                max_digits: 1,
                marks: true,
            }],
            PreTokenizer::Falcon => &[PunctuationRuns { backtick: true }, Gpt2, DigitTriples],
            PreTokenizer::Bloom => &[BloomWords],
            PreTokenizer::Viking => &[BloomWords, EachNumber],
            PreTokenizer::Laguna => &[
                Newlines,
                Llama3 {
                    max_digits: 1,
                    marks: false,
                },
            ],
        }
    }

    /// Split `text` into words. The words cover `text` exactly, in order.
    pub(crate) fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut chars = Vec::with_capacity(text.len());
        let mut offsets = Vec::with_capacity(text.len() + 1);
        for (i, c) in text.char_indices() {
            chars.push(c);
            offsets.push(i);
        }
        offsets.push(text.len());
        let flags: Vec<CharFlags> = chars.iter().map(|&c| CharFlags::of(c)).collect();

        let mut pieces = if chars.is_empty() {
            Vec::new()
        } else {
            vec![(0, chars.len())]
        };
        for &pass in self.passes() {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for &(start, end) in &pieces {
                let piece = Piece {
                    chars: &chars,
                    flags: &flags,
                    start,
                    end,
                };
                let mut cuts = Cutter {
                    prev: start,
                    out: &mut next,
                };
                pass.run(&piece, &mut cuts);
                cuts.cut(end);
            }
            pieces = next;
        }
        pieces
            .into_iter()
            .map(|(s, e)| &text[offsets[s]..offsets[e]])
            .collect()
    }
}

/// The code points `start..end` of the text, with out-of-piece positions
/// reading as "nothing".
struct Piece<'a> {
    chars: &'a [char],
    flags: &'a [CharFlags],
    start: usize,
    end: usize,
}

impl Piece<'_> {
    fn char_at(&self, pos: usize) -> Option<char> {
        (self.start <= pos && pos < self.end).then(|| self.chars[pos])
    }

    fn flags_at(&self, pos: usize) -> CharFlags {
        if self.start <= pos && pos < self.end {
            self.flags[pos]
        } else {
            CharFlags::default()
        }
    }

    fn is_newline(&self, pos: usize) -> bool {
        matches!(self.char_at(pos), Some('\r' | '\n'))
    }
}

/// Collects the split points of one piece; empty words are never emitted.
struct Cutter<'o> {
    prev: usize,
    out: &'o mut Vec<(usize, usize)>,
}

impl Cutter<'_> {
    /// End the current word at `end` (no-op when it would be empty).
    fn cut(&mut self, end: usize) {
        if end > self.prev {
            self.out.push((self.prev, end));
            self.prev = end;
        }
    }
}

impl Pass {
    fn run(self, p: &Piece, cuts: &mut Cutter) {
        match self {
            Pass::Gpt2 => split_gpt2(p, cuts),
            Pass::Llama3 { max_digits, marks } => split_llama3(p, cuts, max_digits, marks),
            Pass::EachNumber => {
                for pos in p.start..p.end {
                    if p.flags[pos].number {
                        cuts.cut(pos);
                        cuts.cut(pos + 1);
                    }
                }
            }
            Pass::NumberRuns => match_runs(p, cuts, |_, f| f.number),
            Pass::PunctuationRuns { backtick } => match_runs(p, cuts, |c, f| {
                f.punctuation
                    || matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
                    || (backtick && c == '`')
            }),
            Pass::DigitTriples => {
                let mut pos = p.start;
                while pos < p.end {
                    if pos + 3 <= p.end && p.chars[pos..pos + 3].iter().all(char::is_ascii_digit) {
                        cuts.cut(pos);
                        cuts.cut(pos + 3);
                        pos += 3;
                    } else {
                        pos += 1;
                    }
                }
            }
            Pass::BloomWords => split_bloom(p, cuts),
            Pass::Newlines => {
                for pos in p.start + 1..p.end {
                    if (p.chars[pos] == '\n') != (p.chars[pos - 1] == '\n') {
                        cuts.cut(pos);
                    }
                }
            }
        }
    }
}

/// `[class]+`: every maximal run of characters in the class is a word.
fn match_runs(p: &Piece, cuts: &mut Cutter, in_class: impl Fn(char, CharFlags) -> bool) {
    let mut pos = p.start;
    while pos < p.end {
        if in_class(p.chars[pos], p.flags[pos]) {
            cuts.cut(pos);
            while pos < p.end && in_class(p.chars[pos], p.flags[pos]) {
                pos += 1;
            }
            cuts.cut(pos);
        } else {
            pos += 1;
        }
    }
}

/// The contraction at `pos` (`'s`, `'t`, `'m`, `'d`, `'re`, `'ve`, `'ll`),
/// if any: its length. `fold` lower-cases ASCII first (Llama 3's `(?i:..)`).
fn contraction_len(p: &Piece, pos: usize, fold: bool) -> Option<usize> {
    if p.chars[pos] != '\'' || pos + 1 >= p.end {
        return None;
    }
    let lower = |c: char| if fold { c.to_ascii_lowercase() } else { c };
    let c1 = lower(p.chars[pos + 1]);
    if matches!(c1, 's' | 't' | 'm' | 'd') {
        return Some(2);
    }
    if pos + 2 < p.end {
        let c2 = lower(p.chars[pos + 2]);
        if matches!((c1, c2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
            return Some(3);
        }
    }
    None
}

/// Number of whitespace characters from `pos` on.
fn whitespace_run(p: &Piece, pos: usize) -> usize {
    let mut n = 0;
    while p.flags_at(pos + n).whitespace {
        n += 1;
    }
    n
}

fn split_gpt2(p: &Piece, cuts: &mut Cutter) {
    let mut pos = p.start;
    while pos < p.end {
        if let Some(len) = contraction_len(p, pos, false) {
            pos += len;
            cuts.cut(pos);
            continue;
        }
        let lead = usize::from(p.chars[pos] == ' ');
        let f = p.flags_at(pos + lead);
        // ` ?\p{L}+` / ` ?\p{N}+` / ` ?[^\s\p{L}\p{N}]+`
        let class: Option<fn(CharFlags) -> bool> = if f.letter {
            Some(|f| f.letter)
        } else if f.number {
            Some(|f| f.number)
        } else if f.exists && !f.whitespace {
            Some(|f| f.exists && !(f.whitespace || f.letter || f.number))
        } else {
            None
        };
        if let Some(in_class) = class {
            pos += lead;
            while in_class(p.flags_at(pos)) {
                pos += 1;
            }
            cuts.cut(pos);
            continue;
        }
        let n = whitespace_run(p, pos);
        if n > 1 && pos + n < p.end {
            // `\s+(?!\S)`: leave the last space to lead the next word.
            pos += n - 1;
        } else if n > 0 {
            pos += n;
        } else {
            pos += 1;
        }
        cuts.cut(pos);
    }
}

fn split_llama3(p: &Piece, cuts: &mut Cutter, max_digits: usize, marks: bool) {
    let wordish = |f: CharFlags| f.letter || (marks && f.mark);
    let mut pos = p.start;
    while pos < p.end {
        let c = p.chars[pos];
        let f = p.flags[pos];
        if let Some(len) = contraction_len(p, pos, true) {
            pos += len;
            cuts.cut(pos);
            continue;
        }
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if !(c == '\r' || c == '\n' || f.number) && (wordish(f) || wordish(p.flags_at(pos + 1))) {
            pos += 1;
            while wordish(p.flags_at(pos)) {
                pos += 1;
            }
            cuts.cut(pos);
            continue;
        }
        // `\p{N}{1,max}`
        if f.number {
            let mut run = 0;
            while p.flags_at(pos).number {
                pos += 1;
                run += 1;
                if run == max_digits {
                    cuts.cut(pos);
                    run = 0;
                }
            }
            cuts.cut(pos);
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let lead = usize::from(c == ' ');
        let other = |f: CharFlags| !(f.whitespace || f.letter || f.number || (marks && f.mark));
        if other(p.flags_at(pos + lead)) {
            pos += lead;
            while p.flags_at(pos).exists && other(p.flags_at(pos)) {
                pos += 1;
            }
            while p.is_newline(pos) {
                pos += 1;
            }
            cuts.cut(pos);
            continue;
        }
        // `\s*[\r\n]+`, `\s+(?!\S)`, `\s+`
        let n = whitespace_run(p, pos);
        let last_newline = (0..n).rev().find(|&k| p.is_newline(pos + k));
        if let Some(k) = last_newline {
            pos += k + 1;
        } else if n > 1 && pos + n < p.end {
            pos += n - 1;
        } else if n > 0 {
            pos += n;
        } else {
            pos += 1;
        }
        cuts.cut(pos);
    }
}

fn split_bloom(p: &Piece, cuts: &mut Cutter) {
    let in_word = |pos: usize| {
        let f = p.flags_at(pos);
        f.exists
            && !f.whitespace
            && !matches!(
                p.chars[pos],
                '(' | '|'
                    | '.'
                    | ','
                    | '!'
                    | '?'
                    | '…'
                    | '。'
                    | '，'
                    | '、'
                    | '।'
                    | '۔'
                    | '،'
                    | ')'
            )
    };
    let mut pos = p.start;
    while pos < p.end {
        let start = pos;
        if p.chars[pos] == ' ' && in_word(pos + 1) {
            pos += 1;
        }
        if in_word(pos) {
            cuts.cut(start);
            while in_word(pos) {
                pos += 1;
            }
            cuts.cut(pos);
        } else {
            pos = start + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pre: PreTokenizer, text: &str) -> Vec<&str> {
        let words = pre.split(text);
        assert_eq!(words.concat(), text, "words must cover the text");
        words
    }

    #[test]
    fn gpt2_words_spaces_and_contractions() {
        let p = PreTokenizer::Gpt2;
        assert_eq!(split(p, "Hello world"), ["Hello", " world"]);
        assert_eq!(
            split(p, "I'm sure they'll've done"),
            ["I", "'m", " sure", " they", "'ll", "'ve", " done"]
        );
        // Case-sensitive: 'S is not a contraction for GPT-2.
        assert_eq!(split(p, "IT'S"), ["IT", "'", "S"]);
        assert_eq!(split(p, "a   b"), ["a", "  ", " b"]);
        assert_eq!(split(p, "a   "), ["a", "   "]);
        assert_eq!(split(p, "x\n\ny"), ["x", "\n", "\n", "y"]);
        assert_eq!(
            split(p, "price: $12.50!"),
            ["price", ":", " $", "12", ".", "50", "!"]
        );
        assert_eq!(split(p, " "), [" "]);
        assert_eq!(split(p, ""), Vec::<&str>::new());
    }

    #[test]
    fn smollm_splits_every_digit_first() {
        let p = PreTokenizer::Smollm;
        assert_eq!(split(p, "in 2024"), ["in", " ", "2", "0", "2", "4"]);
        assert_eq!(split(p, "x²+½"), ["x", "²", "+", "½"]);
        assert_eq!(split(p, "a1b"), ["a", "1", "b"]);
    }

    #[test]
    fn llama3_rules() {
        let p = PreTokenizer::Llama3;
        assert_eq!(split(p, "1234567"), ["123", "456", "7"]);
        assert_eq!(split(p, "IT'S ok"), ["IT", "'S", " ok"]);
        assert_eq!(split(p, "hi!!\n\nyo"), ["hi", "!!\n\n", "yo"]);
        assert_eq!(split(p, "a  \n  b"), ["a", "  \n", " ", " b"]);
        assert_eq!(split(p, "(x)"), ["(x", ")"]);
        assert_eq!(split(p, "\tfoo"), ["\tfoo"]);
        assert_eq!(split(p, "你好世界"), ["你好世界"]);
    }

    #[test]
    fn qwen2_single_digits_and_qwen35_marks() {
        assert_eq!(split(PreTokenizer::Qwen2, "v12"), ["v", "1", "2"]);
        // U+0301 is a combining mark: Qwen 3.5 keeps it with the letters.
        assert_eq!(split(PreTokenizer::Qwen2, "e\u{301}x"), ["e", "\u{301}x"]);
        assert_eq!(split(PreTokenizer::Qwen35, "e\u{301}x"), ["e\u{301}x"]);
    }

    #[test]
    fn default_pipeline() {
        let p = PreTokenizer::Default;
        assert_eq!(split(p, "a+=b"), ["a", "+=", "b"]);
        assert_eq!(split(p, "12345"), ["123", "45"]);
    }

    #[test]
    fn emoji_and_cjk() {
        let p = PreTokenizer::Gpt2;
        assert_eq!(split(p, "ok 👍🏽 中文"), ["ok", " 👍🏽", " 中文"]);
        let family = "👨\u{200D}👩\u{200D}👧";
        assert_eq!(split(p, family), [family]);
    }

    #[test]
    fn bloom_words() {
        // Text between matches stays one piece: "! (".
        assert_eq!(
            split(PreTokenizer::Bloom, "Hei, maailma! (x)"),
            ["Hei", ",", " maailma", "! (", "x", ")"]
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            PreTokenizer::from_name(Some("smollm")).map(|c| c.pre),
            Ok(PreTokenizer::Smollm)
        );
        assert_eq!(
            PreTokenizer::from_name(None).map(|c| c.pre),
            Ok(PreTokenizer::Default)
        );
        let l3 = PreTokenizer::from_name(Some("llama-bpe")).unwrap();
        assert!(l3.ignore_merges && l3.add_bos);
        assert_eq!(
            PreTokenizer::from_name(Some("kimi-k2")),
            Err(PreError::Unsupported)
        );
        assert_eq!(
            PreTokenizer::from_name(Some("nope")),
            Err(PreError::Unknown)
        );
    }
}
