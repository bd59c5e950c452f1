//! Tokenizers built from GGUF metadata, matching llama.cpp's tokenization.
//!
//! A [`Tokenizer`] is a vocabulary (`vocab.rs`: token strings, attributes,
//! special ids, end-of-generation set) plus a model that turns plain text
//! into ids. Encoding first cuts the text where it spells special tokens
//! (`special.rs`), then hands each remaining piece to the model. Decoding
//! concatenates token bytes; [`StreamDecoder`] does it one token at a time
//! (`stream.rs`). Supported models:
//!
//! - `gpt2`: byte-level BPE (`bpe.rs`) after a pre-tokenizer
//!   (`pretokenize.rs`) chosen by `tokenizer.ggml.pre`: `default`, the GPT-2
//!   family (`gpt-2`, `mpt`, `olmo`, ...), the SmolLM family (`smollm`,
//!   `starcoder`, `command-r`, ...), the Llama 3 family (`llama3`,
//!   `llama-bpe`, `dbrx`, `chatglm-bpe`, `glm4`, ...), the Qwen 2 family
//!   (`qwen2`, `stablelm2`, `hunyuan`, ...), `qwen35`, `falcon`, `bloom` /
//!   `poro-chat` / `gpt3-finnish`, `viking` and `laguna`.
//!
//! - `llama`: SentencePiece with scores (`spm.rs`): `▁`-escaped spaces,
//!   highest-score merges, `<0xNN>` byte fallback, `add_space_prefix`.
//!
//! Character classes (`unicode.rs`, `unicode_table.rs`) are Unicode 15.1 as
//! llama.cpp's own tables have them.

mod bpe;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod unicode;
mod unicode_table;
mod vocab;

pub use stream::{StreamDecoder, Utf8Stream};
pub use vocab::{Attr, SpecialIds};

use crate::gguf::{GgufFile, Value};
use crate::{Error, Result};
use bpe::ByteLevelBpe;
use pretokenize::{PreError, PreTokenizer};
use special::Fragment;
use spm::SentencePiece;
use vocab::{Vocab, VocabInputs};

/// Everything a tokenizer is built from: what a GGUF file's `tokenizer.*`
/// metadata holds, as plain values (for tests and for callers without a
/// file). Build with [`Tokenizer::from_spec`].
#[derive(Clone, Debug, Default)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model` (`"gpt2"` or `"llama"`).
    pub model: String,
    /// `tokenizer.ggml.pre`; `None` means llama.cpp's `default`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`; `None`: every token is normal.
    pub token_types: Option<Vec<i64>>,
    /// `tokenizer.ggml.merges`: `"left right"`, highest priority first
    /// (`gpt2` only).
    pub merges: Vec<String>,
    /// `tokenizer.ggml.scores`, by id (`llama` only; `None`: all 0).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.add_space_prefix` (`llama` only; `None`: true).
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.ggml.*_token_id`.
    pub special: SpecialIds,
    /// `tokenizer.ggml.add_bos_token`, `add_eos_token`.
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    /// `general.name` and `general.architecture` (a few models get strip
    /// flags on their special tokens by name, as in llama.cpp).
    pub name: Option<String>,
    pub architecture: Option<String>,
}

/// The model that turns plain text into ids.
#[derive(Debug)]
enum Model {
    Bpe(ByteLevelBpe),
    Spm(SentencePiece),
}

/// A tokenizer: text to token ids and back, as llama.cpp does it.
#[derive(Debug)]
pub struct Tokenizer {
    model_name: String,
    pre_name: String,
    vocab: Vocab,
    model: Model,
}

const K_MODEL: &str = "tokenizer.ggml.model";
const K_PRE: &str = "tokenizer.ggml.pre";
const K_TOKENS: &str = "tokenizer.ggml.tokens";
const K_TYPES: &str = "tokenizer.ggml.token_type";
const K_MERGES: &str = "tokenizer.ggml.merges";
const K_SCORES: &str = "tokenizer.ggml.scores";

fn wrong(key: &str, expected: &'static str, v: &Value) -> Error {
    Error::WrongType {
        key: key.to_string(),
        expected,
        found: v.type_name(),
    }
}

fn opt_str(file: &GgufFile, key: &str) -> Result<Option<String>> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| wrong(key, "a string", v)),
    }
}

fn opt_bool(file: &GgufFile, key: &str) -> Result<Option<bool>> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| wrong(key, "a bool", v)),
    }
}

/// A token id key: absent or negative means none; ids past `u32` can never
/// be in range and read as none too.
fn opt_id(file: &GgufFile, key: &str) -> Result<Option<u32>> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(i) => Ok(u32::try_from(i).ok()),
            None if v.as_u64().is_some() => Ok(None),
            None => Err(wrong(key, "an integer", v)),
        },
    }
}

/// `tokenizer.ggml.scores`: absent, or an array of f32 (or of i32, read as
/// floats, as llama.cpp accepts).
fn scores(file: &GgufFile) -> Result<Option<Vec<f32>>> {
    let Some(v) = file.get(K_SCORES) else {
        return Ok(None);
    };
    let items = v
        .as_array()
        .ok_or_else(|| wrong(K_SCORES, "an array of numbers", v))?;
    items
        .iter()
        .map(|x| match x {
            Value::F32(f) => Ok(*f),
            Value::I32(i) => Ok(*i as f32),
            _ => Err(wrong(K_SCORES, "an array of f32 or i32", x)),
        })
        .collect::<Result<Vec<f32>>>()
        .map(Some)
}

fn string_array(file: &GgufFile, key: &str) -> Result<Vec<String>> {
    let v = file
        .get(key)
        .ok_or_else(|| Error::MissingKey(key.to_string()))?;
    let items = v
        .as_array()
        .ok_or_else(|| wrong(key, "an array of strings", v))?;
    items
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .ok_or_else(|| wrong(key, "an array of strings", x))
        })
        .collect()
}

impl Tokenizer {
    /// Build the tokenizer a GGUF file describes.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        let model = match file.get(K_MODEL) {
            None => return Err(Error::MissingKey(K_MODEL.to_string())),
            Some(v) => v
                .as_str()
                .ok_or_else(|| wrong(K_MODEL, "a string", v))?
                .to_string(),
        };
        if model != "gpt2" && model != "llama" {
            return Err(Error::UnsupportedTokenizer(model));
        }
        let is_bpe = model == "gpt2";
        let token_types = match file.get(K_TYPES) {
            None => None,
            Some(v) => {
                let items = v
                    .as_array()
                    .ok_or_else(|| wrong(K_TYPES, "an array of integers", v))?;
                let types: Result<Vec<i64>> = items
                    .iter()
                    .map(|x| {
                        x.as_i64()
                            .ok_or_else(|| wrong(K_TYPES, "an array of integers", x))
                    })
                    .collect();
                Some(types?)
            }
        };
        let id = |suffix: &str| opt_id(file, &format!("tokenizer.ggml.{suffix}"));
        // The deprecated prefix/suffix/middle keys win over fim_*, as in
        // llama.cpp, which reads them last.
        let fim = |new: &str, old: &str| -> Result<Option<u32>> { Ok(id(old)?.or(id(new)?)) };
        let special = SpecialIds {
            bos: id("bos_token_id")?,
            eos: id("eos_token_id")?,
            eot: id("eot_token_id")?,
            eom: id("eom_token_id")?,
            unk: id("unknown_token_id")?,
            sep: id("seperator_token_id")?,
            pad: id("padding_token_id")?,
            mask: id("mask_token_id")?,
            fim_pre: fim("fim_pre_token_id", "prefix_token_id")?,
            fim_suf: fim("fim_suf_token_id", "suffix_token_id")?,
            fim_mid: fim("fim_mid_token_id", "middle_token_id")?,
            fim_pad: id("fim_pad_token_id")?,
            fim_rep: id("fim_rep_token_id")?,
            fim_sep: id("fim_sep_token_id")?,
        };
        Tokenizer::from_spec(TokenizerSpec {
            model,
            pre: opt_str(file, K_PRE)?,
            tokens: string_array(file, K_TOKENS)?,
            token_types,
            merges: match is_bpe {
                true => string_array(file, K_MERGES)?,
                false => Vec::new(),
            },
            scores: scores(file)?,
            add_space_prefix: opt_bool(file, "tokenizer.ggml.add_space_prefix")?,
            special,
            add_bos: opt_bool(file, "tokenizer.ggml.add_bos_token")?,
            add_eos: opt_bool(file, "tokenizer.ggml.add_eos_token")?,
            name: opt_str(file, "general.name")?,
            architecture: opt_str(file, "general.architecture")?,
        })
    }

    /// Build a tokenizer from plain values.
    pub fn from_spec(spec: TokenizerSpec) -> Result<Tokenizer> {
        match spec.model.as_str() {
            "gpt2" => Self::byte_level_bpe(spec),
            "llama" => Self::sentencepiece(spec),
            _ => Err(Error::UnsupportedTokenizer(spec.model)),
        }
    }

    fn byte_level_bpe(spec: TokenizerSpec) -> Result<Tokenizer> {
        let pre_name = spec.pre.clone().unwrap_or_else(|| "default".to_string());
        let cfg = PreTokenizer::from_name(spec.pre.as_deref()).map_err(|e| match e {
            PreError::Unsupported => {
                Error::Tokenizer(format!("pre-tokenizer '{pre_name}' is not supported yet"))
            }
            PreError::Unknown => Error::Tokenizer(format!("unknown pre-tokenizer '{pre_name}'")),
        })?;
        // llama.cpp's defaults for a gpt2 vocabulary, before the metadata.
        let defaults = SpecialIds {
            bos: (!cfg.no_bos).then_some(11),
            eos: Some(11),
            ..SpecialIds::default()
        };
        let vocab = Vocab::new(
            spec.tokens,
            spec.token_types.as_deref(),
            VocabInputs {
                defaults,
                metadata: &spec.special,
                add_bos_default: cfg.add_bos,
                add_bos: spec.add_bos,
                add_eos: spec.add_eos,
                name: spec.name.as_deref(),
                pre: spec.pre.as_deref(),
                architecture: spec.architecture.as_deref(),
            },
            bpe::piece_bytes,
        )?;
        let bpe = ByteLevelBpe::new(cfg.pre, cfg.ignore_merges, vocab.texts(), &spec.merges);
        Ok(Tokenizer {
            model_name: spec.model,
            pre_name,
            vocab,
            model: Model::Bpe(bpe),
        })
    }

    fn sentencepiece(spec: TokenizerSpec) -> Result<Tokenizer> {
        let pre_name = spec.pre.clone().unwrap_or_else(|| "default".to_string());
        // llama.cpp's defaults for a SentencePiece vocabulary.
        let defaults = SpecialIds {
            bos: Some(1),
            eos: Some(2),
            unk: Some(0),
            ..SpecialIds::default()
        };
        let vocab = Vocab::new(
            spec.tokens,
            spec.token_types.as_deref(),
            VocabInputs {
                defaults,
                metadata: &spec.special,
                add_bos_default: true,
                add_bos: spec.add_bos,
                add_eos: spec.add_eos,
                name: spec.name.as_deref(),
                pre: spec.pre.as_deref(),
                architecture: spec.architecture.as_deref(),
            },
            spm::piece_bytes,
        )?;
        let spm = SentencePiece::new(
            vocab.texts(),
            spec.scores.as_deref(),
            spec.add_space_prefix.unwrap_or(true),
        )?;
        Ok(Tokenizer {
            model_name: spec.model,
            pre_name,
            vocab,
            model: Model::Spm(spm),
        })
    }

    /// Text to ids. `add_special` adds BOS/EOS where the model asks for them
    /// (`tokenizer.ggml.add_bos_token` / `add_eos_token`); `parse_special`
    /// turns text spelling a control token (`<|im_start|>`) into that token.
    /// User-defined tokens are matched either way, as in llama.cpp.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.vocab.add_bos {
            let bos = self.vocab.ids.bos.ok_or_else(|| {
                Error::Tokenizer("the model asks for a BOS token but has none".into())
            })?;
            out.push(bos);
        }
        // SentencePiece: a space is prefixed to text at the start or after
        // a special token (llama.cpp counts the start as "after special").
        let mut after_special = true;
        for frag in special::partition(&self.vocab, text, parse_special) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(t) => match &self.model {
                    Model::Bpe(bpe) => bpe.encode(t, &mut out),
                    Model::Spm(spm) => {
                        spm.encode(t, spm.add_space_prefix && after_special, &mut out)?;
                        after_special = false;
                    }
                },
            }
        }
        if add_special && self.vocab.add_eos {
            let eos = self.vocab.ids.eos.ok_or_else(|| {
                Error::Tokenizer("the model asks for an EOS token but has none".into())
            })?;
            out.push(eos);
        }
        Ok(out)
    }

    /// The bytes of one token, as llama.cpp's `token_to_piece`: control and
    /// unknown tokens are empty unless `render_special`; out-of-range ids
    /// are empty.
    pub fn token_bytes(&self, id: u32, render_special: bool) -> &[u8] {
        self.vocab.pieces().get(id, render_special)
    }

    /// Ids to text: the tokens' bytes concatenated, decoded lossily, as
    /// llama.cpp's `llama_detokenize` (without removing special tokens): for
    /// a SentencePiece model with `add_space_prefix`, one leading space of
    /// the first token is dropped (the one encoding added).
    pub fn decode(&self, ids: &[u32], render_special: bool) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            let piece = self.token_bytes(id, render_special);
            let piece = match piece {
                [b' ', rest @ ..] if i == 0 && self.strips_leading_space() => rest,
                _ => piece,
            };
            bytes.extend_from_slice(piece);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Whether decoding drops the first token's leading space.
    fn strips_leading_space(&self) -> bool {
        matches!(&self.model, Model::Spm(spm) if spm.add_space_prefix)
    }

    /// A streaming decoder over this tokenizer (control tokens not rendered).
    pub fn stream_decoder(&self) -> StreamDecoder {
        StreamDecoder::new(self)
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.len()
    }

    pub fn bos(&self) -> Option<u32> {
        self.vocab.ids.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.vocab.ids.eos
    }

    /// End of turn (`tokenizer.ggml.eot_token_id`, or found by its text).
    pub fn eot(&self) -> Option<u32> {
        self.vocab.ids.eot
    }

    /// All special ids the metadata and the text rules give.
    pub fn special_ids(&self) -> &SpecialIds {
        &self.vocab.ids
    }

    /// Whether `encode(.., add_special = true, ..)` adds BOS / EOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }

    /// End of generation: EOS, EOT, EOM, FIM pad/repo/separator and the
    /// tokens llama.cpp recognises by text (`<|im_end|>`, `<|endoftext|>`,
    /// `<end_of_turn>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.is_eog(id)
    }

    /// The end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        self.vocab.eog_ids().collect()
    }

    /// The vocabulary string of a token (GPT-2 alphabet for byte-level BPE,
    /// `▁` for spaces in SentencePiece).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// The token's attributes (llama.cpp's `llama_token_attr` bits).
    pub fn token_attr(&self, id: u32) -> Attr {
        self.vocab.attr(id)
    }

    /// Whether SentencePiece encoding prefixes a space to the text
    /// (`tokenizer.ggml.add_space_prefix`); false for byte-level BPE.
    pub fn add_space_prefix(&self) -> bool {
        matches!(&self.model, Model::Spm(spm) if spm.add_space_prefix)
    }

    /// `tokenizer.ggml.model`.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// `tokenizer.ggml.pre` (`"default"` when the file names none).
    pub fn pre_name(&self) -> &str {
        &self.pre_name
    }
}

#[cfg(test)]
mod tests;
