//! Tokenizer tests on small hand-made vocabularies (no model file).

use super::unicode::BYTE_TO_CHAR;
use super::*;

const ENDOFTEXT: u32 = 0;
const IM_START: u32 = 1;
const IM_END: u32 = 2;
const TOOL: u32 = 3; // user-defined
const IM: u32 = 4; // a control token that is a prefix of others
const FIRST_BYTE: u32 = 5;

/// A byte-level vocabulary: four special tokens, a control prefix, all 256
/// bytes, then a few merged tokens.
fn spec(pre: &str) -> TokenizerSpec {
    let mut tokens: Vec<String> = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<tool>",
        "<|im",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut types = vec![3, 3, 3, 4, 3];
    for c in BYTE_TO_CHAR {
        tokens.push(c.to_string());
        types.push(1);
    }
    let merges: Vec<String> = [
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for m in &merges {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    TokenizerSpec {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        tokens,
        token_types: Some(types),
        merges,
        special: SpecialIds {
            bos: Some(ENDOFTEXT),
            eos: Some(IM_END),
            ..SpecialIds::default()
        },
        ..TokenizerSpec::default()
    }
}

fn tok() -> Tokenizer {
    Tokenizer::from_spec(spec("smollm")).expect("valid spec")
}

fn byte_id(b: u8) -> u32 {
    FIRST_BYTE + b as u32
}

fn id_of(t: &Tokenizer, text: &str) -> u32 {
    (0..t.n_vocab() as u32)
        .find(|&i| t.token_text(i) == Some(text))
        .expect("token in vocab")
}

#[test]
fn tokenizer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
    check::<StreamDecoder>();
}

#[test]
fn bpe_on_a_tiny_vocab() {
    let t = tok();
    let hello = id_of(&t, "hello");
    let world = id_of(&t, "Ġworld");
    assert_eq!(
        t.encode("hello world", false, false).unwrap(),
        [hello, world]
    );
    assert_eq!(t.decode(&[hello, world], false), "hello world");
    // Digits are split one by one (smollm), each a byte token here.
    assert_eq!(
        t.encode("a42", false, false).unwrap(),
        [byte_id(b'a'), byte_id(b'4'), byte_id(b'2')]
    );
    // Non-ASCII text falls to byte tokens and decodes back.
    let ids = t.encode("héllo 世界 👍", false, false).unwrap();
    assert_eq!(t.decode(&ids, false), "héllo 世界 👍");
}

#[test]
fn special_tokens_follow_parse_special() {
    let t = tok();
    let text = "<|im_start|>user\nhi<|im_end|>";
    let parsed = t.encode(text, false, true).unwrap();
    assert_eq!(parsed[0], IM_START);
    assert_eq!(*parsed.last().unwrap(), IM_END);
    assert_eq!(t.decode(&parsed, true), text);
    // Without render_special, control tokens decode to nothing.
    assert_eq!(t.decode(&parsed, false), "user\nhi");

    let plain = t.encode(text, false, false).unwrap();
    assert!(!plain.contains(&IM_START) && !plain.contains(&IM_END));
    assert_eq!(t.decode(&plain, false), text);

    // The longest special text wins over its prefix "<|im".
    assert_eq!(
        t.encode("<|im_end|><|im", false, true).unwrap(),
        [IM_END, IM]
    );
}

#[test]
fn user_defined_tokens_match_even_without_parse_special() {
    let t = tok();
    let ids = t.encode("a<tool>b", false, false).unwrap();
    assert_eq!(ids, [byte_id(b'a'), TOOL, byte_id(b'b')]);
    // User-defined tokens render even when specials are not rendered.
    assert_eq!(t.decode(&ids, false), "a<tool>b");
}

#[test]
fn add_special_follows_the_metadata_flags() {
    let t = tok();
    // smollm: no BOS unless the metadata asks.
    assert_eq!(t.encode("", true, true).unwrap(), Vec::<u32>::new());
    let t = Tokenizer::from_spec(TokenizerSpec {
        add_bos: Some(true),
        add_eos: Some(true),
        ..spec("smollm")
    })
    .unwrap();
    assert_eq!(t.encode("", true, true).unwrap(), [ENDOFTEXT, IM_END]);
    assert_eq!(
        t.encode("a", true, false).unwrap(),
        [ENDOFTEXT, byte_id(b'a'), IM_END]
    );
    assert_eq!(t.encode("a", false, false).unwrap(), [byte_id(b'a')]);
    // llama3 adds BOS by default.
    let t = Tokenizer::from_spec(spec("llama3")).unwrap();
    assert!(t.add_bos());
    // A model asking for a BOS it lacks is an error, not a panic.
    let t = Tokenizer::from_spec(TokenizerSpec {
        add_bos: Some(true),
        special: SpecialIds::default(),
        tokens: vec!["a".into()],
        token_types: None,
        merges: vec![],
        ..spec("gpt-2")
    })
    .unwrap();
    assert_eq!(t.bos(), None); // default 11 is out of range
    assert!(t.encode("a", true, false).is_err());
}

#[test]
fn end_of_generation_tokens() {
    let t = tok();
    assert!(t.is_eog(IM_END)); // eos, and by text
    assert!(t.is_eog(ENDOFTEXT)); // by text
    assert!(!t.is_eog(IM_START));
    assert!(!t.is_eog(byte_id(b'a')));
    assert!(!t.is_eog(u32::MAX));
    assert_eq!(t.eot(), Some(ENDOFTEXT));
}

#[test]
fn token_bytes_edge_cases() {
    let t = tok();
    assert_eq!(t.token_bytes(byte_id(b' '), false), b" ");
    assert_eq!(t.token_bytes(byte_id(0xE4), false), [0xE4]);
    assert_eq!(t.token_bytes(IM_START, false), b"");
    assert_eq!(t.token_bytes(IM_START, true), b"<|im_start|>");
    assert_eq!(t.token_bytes(99_999, true), b"");
    assert_eq!(t.decode(&[99_999], true), "");
    assert_eq!(t.token_text(99_999), None);
}

#[test]
fn stream_decoder_holds_back_split_characters() {
    let t = tok();
    let text = "a中😀b";
    let ids = t.encode(text, false, false).unwrap();
    // One byte token per UTF-8 byte here.
    assert_eq!(ids.len(), text.len());
    let mut d = t.stream_decoder();
    let outs: Vec<String> = ids.iter().map(|&id| d.push(id)).collect();
    assert_eq!(outs[0], "a");
    assert_eq!(outs[1], "");
    assert_eq!(outs[2], "");
    assert_eq!(outs[3], "中");
    assert_eq!(outs[4..7], ["", "", ""]);
    assert_eq!(outs[7], "😀");
    assert_eq!(outs[8], "b");
    assert_eq!(d.finish(), "");

    // A dangling lead byte comes out as U+FFFD at the end.
    let mut d = StreamDecoder::new(&t);
    assert_eq!(d.push(byte_id(0xE4)), "");
    assert_eq!(d.push(IM_END), ""); // control: nothing
    assert_eq!(d.finish(), "\u{FFFD}");

    let mut d = StreamDecoder::with_special(&t, true);
    assert_eq!(d.push(IM_END), "<|im_end|>");
}

#[test]
fn unsupported_models_and_pre_tokenizers() {
    let err = Tokenizer::from_spec(TokenizerSpec {
        model: "bert".into(),
        ..spec("smollm")
    })
    .unwrap_err();
    assert!(matches!(err, Error::UnsupportedTokenizer(ref m) if m == "bert"));
    assert!(Tokenizer::from_spec(spec("kimi-k2")).is_err());
    assert!(Tokenizer::from_spec(spec("no-such-pre")).is_err());
    let t = Tokenizer::from_spec(TokenizerSpec {
        pre: None,
        ..spec("smollm")
    })
    .unwrap();
    assert_eq!(t.pre_name(), "default");
    assert_eq!(t.model_name(), "gpt2");
}

#[test]
fn bad_vocabularies_are_errors() {
    let dup = TokenizerSpec {
        tokens: vec!["a".into(), "a".into()],
        token_types: None,
        merges: vec![],
        ..spec("gpt2")
    };
    assert!(Tokenizer::from_spec(dup).is_err());
    let short_types = TokenizerSpec {
        token_types: Some(vec![1]),
        ..spec("gpt2")
    };
    assert!(Tokenizer::from_spec(short_types).is_err());
    let empty = TokenizerSpec {
        tokens: vec![],
        token_types: None,
        ..spec("gpt2")
    };
    assert!(Tokenizer::from_spec(empty).is_err());
}

/// A SentencePiece vocabulary: `<unk>`, `<s>`, `</s>`, a control token, the
/// 256 byte tokens, then scored pieces.
fn spm_spec(add_space_prefix: Option<bool>) -> TokenizerSpec {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>", "<turn>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut types = vec![2, 3, 3, 3];
    let mut scores = vec![0.0; 4];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (t, s) in [
        ("\u{2581}", -1.0),
        ("h", -2.0),
        ("i", -2.0),
        ("hi", -1.5),
        ("\u{2581}hi", -0.5),
    ] {
        tokens.push(t.to_string());
        types.push(1);
        scores.push(s);
    }
    TokenizerSpec {
        model: "llama".into(),
        tokens,
        token_types: Some(types),
        scores: Some(scores),
        add_space_prefix,
        ..TokenizerSpec::default()
    }
}

#[test]
fn sentencepiece_prefix_space_specials_and_decode() {
    let t = Tokenizer::from_spec(spm_spec(None)).unwrap();
    let id = |s: &str| {
        (0..t.n_vocab() as u32)
            .find(|&i| t.token_text(i) == Some(s))
            .unwrap()
    };
    let (space_hi, hi, turn) = (id("\u{2581}hi"), id("hi"), id("<turn>"));
    // Defaults: BOS 1, add_bos, add_space_prefix.
    assert_eq!(t.bos(), Some(1));
    assert_eq!(t.eos(), Some(2));
    assert!(t.add_bos() && t.add_space_prefix());
    assert_eq!(t.encode("hi", true, false).unwrap(), vec![1, space_hi]);
    // The prefix space comes back after each special token.
    assert_eq!(
        t.encode("hi<turn>hi", false, true).unwrap(),
        vec![space_hi, turn, space_hi]
    );
    // Byte fallback: "é" is two byte tokens.
    assert_eq!(
        t.encode("hié", false, false).unwrap(),
        vec![space_hi, 4 + 0xC3, 4 + 0xA9]
    );
    // decode drops the space the prefix added, only on the first token.
    assert_eq!(t.decode(&[space_hi, space_hi], false), "hi hi");
    assert_eq!(t.decode(&[1, space_hi], false), " hi");
    let ids = t.encode("hié", false, false).unwrap();
    assert_eq!(t.decode(&ids, false), "hié");

    let t = Tokenizer::from_spec(spm_spec(Some(false))).unwrap();
    assert!(!t.add_space_prefix());
    assert_eq!(t.encode("hi hi", false, false).unwrap(), vec![hi, space_hi]);
    assert_eq!(t.decode(&[space_hi], false), " hi");
}
