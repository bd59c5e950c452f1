//! The vocabulary: token strings, their attributes, the special ids and the
//! rules llama.cpp applies to them at load time (end-of-generation tokens,
//! tokens recognised by their text, strip flags). Independent of the
//! tokenizer model, so SentencePiece can share it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::{Error, Result};

/// Token attributes, numbered as llama.cpp's `llama_token_attr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attr(u16);

impl Attr {
    pub const UNDEFINED: Attr = Attr(0);
    pub const UNKNOWN: Attr = Attr(1 << 0);
    pub const UNUSED: Attr = Attr(1 << 1);
    pub const NORMAL: Attr = Attr(1 << 2);
    pub const CONTROL: Attr = Attr(1 << 3);
    pub const USER_DEFINED: Attr = Attr(1 << 4);
    pub const BYTE: Attr = Attr(1 << 5);
    pub const LSTRIP: Attr = Attr(1 << 7);
    pub const RSTRIP: Attr = Attr(1 << 8);

    /// The attribute of a GGUF `tokenizer.ggml.token_type` value (1 normal,
    /// 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    pub fn from_token_type(t: i64) -> Attr {
        match t {
            1 => Attr::NORMAL,
            2 => Attr::UNKNOWN,
            3 => Attr::CONTROL,
            4 => Attr::USER_DEFINED,
            5 => Attr::UNUSED,
            6 => Attr::BYTE,
            _ => Attr::UNDEFINED,
        }
    }

    pub fn bits(self) -> u16 {
        self.0
    }

    pub fn contains(self, other: Attr) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: Attr) -> bool {
        self.0 & other.0 != 0
    }

    fn set(&mut self, other: Attr, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }
}

impl std::ops::BitOr for Attr {
    type Output = Attr;
    fn bitor(self, rhs: Attr) -> Attr {
        Attr(self.0 | rhs.0)
    }
}

/// Special token ids, as read from `tokenizer.ggml.*_token_id`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// Texts that mark a token as end of generation (llama.cpp's list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Token bytes as `token_to_piece` gives them with specials rendered, flat.
#[derive(Debug)]
pub(crate) struct Pieces {
    data: Vec<u8>,
    /// `ends[i]` is where piece `i` ends in `data`.
    ends: Vec<usize>,
    /// Control and unknown tokens: empty unless specials are rendered.
    hidden: Vec<bool>,
}

impl Pieces {
    pub(crate) fn get(&self, id: u32, render_special: bool) -> &[u8] {
        let i = id as usize;
        if i >= self.ends.len() || (!render_special && self.hidden[i]) {
            return &[];
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

/// Everything known about the tokens, model-independent.
#[derive(Debug)]
pub(crate) struct Vocab {
    texts: Vec<String>,
    attrs: Vec<Attr>,
    pub(crate) ids: SpecialIds,
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    eog: BTreeSet<u32>,
    /// Tokens the special partition looks for, longest text first.
    special_order: Vec<u32>,
    pieces: Arc<Pieces>,
}

/// What the vocabulary is built from, beyond token strings and types.
pub(crate) struct VocabInputs<'a> {
    /// Ids before the metadata is read (the model type's defaults).
    pub defaults: SpecialIds,
    /// Ids from the metadata, applied over the defaults when in range.
    pub metadata: &'a SpecialIds,
    pub add_bos_default: bool,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    /// `general.name`, `tokenizer.ggml.pre`, `general.architecture`: some
    /// models get strip flags on their special tokens by name.
    pub name: Option<&'a str>,
    pub pre: Option<&'a str>,
    pub architecture: Option<&'a str>,
}

impl Vocab {
    /// Build the vocabulary; `normal_piece` renders a normal token's text
    /// as bytes (model-specific).
    pub(crate) fn new(
        mut texts: Vec<String>,
        token_types: Option<&[i64]>,
        inputs: VocabInputs<'_>,
        normal_piece: impl Fn(&str) -> Vec<u8>,
    ) -> Result<Vocab> {
        let n = texts.len();
        if n == 0 {
            return Err(Error::Tokenizer("the vocabulary is empty".into()));
        }
        if n > u32::MAX as usize {
            return Err(Error::Tokenizer(format!(
                "vocabulary of {n} tokens is too large"
            )));
        }
        for (i, t) in texts.iter_mut().enumerate() {
            if t.is_empty() {
                *t = format!("[EMPTY_{i}]");
            }
        }
        let mut attrs = match token_types {
            None => vec![Attr::NORMAL; n],
            Some(types) if types.len() < n => {
                return Err(Error::Tokenizer(format!(
                    "{} token types for {n} tokens",
                    types.len()
                )))
            }
            Some(types) => types[..n]
                .iter()
                .map(|&t| Attr::from_token_type(t))
                .collect(),
        };
        let mut by_text: HashMap<&str, u32> = HashMap::with_capacity(n);
        for (i, t) in texts.iter().enumerate() {
            if by_text.insert(t.as_str(), i as u32).is_some() {
                return Err(Error::Tokenizer(format!(
                    "token text {t:?} appears more than once (id {i})"
                )));
            }
        }
        let find = |t: &str| by_text.get(t).copied();

        // Special ids: defaults that fit, then metadata ids that fit.
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let mut ids = SpecialIds::default();
        let d = &inputs.defaults;
        let m = inputs.metadata;
        let over = |def: Option<u32>, meta: Option<u32>| in_range(meta).or(in_range(def));
        ids.bos = over(d.bos, m.bos);
        ids.eos = over(d.eos, m.eos);
        ids.eot = over(d.eot, m.eot);
        ids.eom = over(d.eom, m.eom);
        ids.unk = over(d.unk, m.unk);
        ids.sep = over(d.sep, m.sep);
        ids.pad = over(d.pad, m.pad);
        ids.mask = over(d.mask, m.mask);
        ids.fim_pre = over(d.fim_pre, m.fim_pre);
        ids.fim_suf = over(d.fim_suf, m.fim_suf);
        ids.fim_mid = over(d.fim_mid, m.fim_mid);
        ids.fim_pad = over(d.fim_pad, m.fim_pad);
        ids.fim_rep = over(d.fim_rep, m.fim_rep);
        ids.fim_sep = over(d.fim_sep, m.fim_sep);

        // Tokens recognised by their text when the metadata names none; they
        // become control. Where several texts match, llama.cpp takes the
        // first in hash-map order; here the lowest id.
        {
            let slots: [(&mut Option<u32>, &[&str]); 8] = [
                (&mut ids.eot, EOT_TEXTS),
                (&mut ids.eom, EOM_TEXTS),
                (&mut ids.fim_pre, FIM_PRE_TEXTS),
                (&mut ids.fim_suf, FIM_SUF_TEXTS),
                (&mut ids.fim_mid, FIM_MID_TEXTS),
                (&mut ids.fim_pad, FIM_PAD_TEXTS),
                (&mut ids.fim_rep, FIM_REP_TEXTS),
                (&mut ids.fim_sep, FIM_SEP_TEXTS),
            ];
            for (slot, names) in slots {
                if slot.is_some() {
                    continue;
                }
                let found = names.iter().filter_map(|t| find(t)).min();
                if let Some(id) = found {
                    *slot = Some(id);
                    attrs[id as usize].set(Attr::CONTROL, true);
                }
            }
        }

        // Control tokens named "unused" are unused.
        for (t, a) in texts.iter().zip(attrs.iter_mut()) {
            if a.contains(Attr::CONTROL) && t.contains("unused") {
                a.set(Attr::UNUSED, true);
            }
        }

        // End-of-generation tokens.
        let mut eog: BTreeSet<u32> = [ids.fim_pad, ids.fim_rep, ids.fim_sep]
            .into_iter()
            .flatten()
            .collect();
        for t in EOG_TEXTS {
            if let Some(id) = find(t) {
                eog.insert(id);
                attrs[id as usize].set(Attr::CONTROL, true);
            }
        }
        // gpt-oss: these always render.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = find(t) {
                attrs[id as usize] = Attr::USER_DEFINED;
            }
        }
        eog.extend([ids.eos, ids.eot, ids.eom].into_iter().flatten());
        // o200k_harmony / solar-open: "<|end|>" ends a message, not the turn.
        let has = |eog: &BTreeSet<u32>, t: &str| find(t).is_some_and(|id| eog.contains(&id));
        let call = has(&eog, "<|call|>") || has(&eog, "<|calls|>");
        let end_is_message =
            has(&eog, "<|end|>") && call && (has(&eog, "<|return|>") || has(&eog, "<|flush|>"));
        if let Some(end) = find("<|end|>").filter(|_| end_is_message) {
            eog.remove(&end);
            attrs[end as usize] = Attr::USER_DEFINED;
        }
        // Gemma 4 and PLaMo have an ordinary "</s>".
        let plain_s =
            (has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>")) && has(&eog, "</s>");
        if let Some(s) = find("</s>").filter(|_| plain_s) {
            eog.remove(&s);
            attrs[s as usize] = Attr::NORMAL;
        }

        let mut special_order: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                attrs[i as usize].intersects(Attr::CONTROL | Attr::USER_DEFINED | Attr::UNKNOWN)
            })
            .collect();
        // Longest first. llama.cpp's sort leaves the order of equal lengths
        // unspecified; a stable sort (lower id first) only matters for two
        // equal-length special texts that overlap in the input.
        special_order.sort_by_key(|&i| std::cmp::Reverse(texts[i as usize].len()));

        // Pieces, with specials rendered.
        let mut data = Vec::new();
        let mut ends = Vec::with_capacity(n);
        let mut hidden = Vec::with_capacity(n);
        for (t, &a) in texts.iter().zip(&attrs) {
            if a.intersects(Attr::UNKNOWN | Attr::CONTROL | Attr::USER_DEFINED) {
                data.extend_from_slice(t.as_bytes());
            } else if a.contains(Attr::NORMAL) {
                data.extend(normal_piece(t));
            } else if a.contains(Attr::BYTE) {
                data.push(byte_token_value(t));
            }
            ends.push(data.len());
            hidden.push(a.intersects(Attr::UNKNOWN | Attr::CONTROL));
        }

        // Strip flags some models set by name.
        let name = inputs.name.unwrap_or("").to_ascii_lowercase();
        let pre = inputs.pre.unwrap_or("");
        let arch = inputs.architecture.unwrap_or("");
        let contains_any = |s: &str, subs: &[&str]| subs.iter().any(|x| s.contains(x));
        if contains_any(pre, &["jina-v2-de", "jina-v2-es", "jina-v2-code", "mmbert"])
            || contains_any(arch, &["nomic-bert-moe", "jina-bert-v3"])
        {
            if let Some(id) = find("<mask>") {
                attrs[id as usize].set(Attr::LSTRIP, true);
            }
        } else if contains_any(&name, &["phi-3", "phi3"]) {
            for &id in &special_order {
                attrs[id as usize].set(Attr::RSTRIP, true);
            }
            if let Some(id) = find("</s>") {
                attrs[id as usize].set(Attr::RSTRIP, true);
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(id) = find(t) {
                    attrs[id as usize].set(Attr::RSTRIP, false);
                }
            }
        } else if name.contains("modern-bert") {
            if let Some(id) = find("[MASK]") {
                attrs[id as usize].set(Attr::LSTRIP, true);
            }
        }

        let add_bos = inputs.add_bos.unwrap_or(inputs.add_bos_default);
        let add_eos = inputs.add_eos.unwrap_or(false);
        Ok(Vocab {
            texts,
            attrs,
            ids,
            add_bos,
            add_eos,
            eog,
            special_order,
            pieces: Arc::new(Pieces { data, ends, hidden }),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    pub(crate) fn texts(&self) -> &[String] {
        &self.texts
    }

    pub(crate) fn text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    pub(crate) fn attr(&self, id: u32) -> Attr {
        self.attrs.get(id as usize).copied().unwrap_or_default()
    }

    pub(crate) fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    pub(crate) fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }

    pub(crate) fn special_order(&self) -> &[u32] {
        &self.special_order
    }

    pub(crate) fn pieces(&self) -> &Arc<Pieces> {
        &self.pieces
    }
}

/// The byte a byte-type token (`<0xAB>`) stands for: the two characters
/// after `<0x`, read as hex (0 where they are not).
fn byte_token_value(text: &str) -> u8 {
    let digits = text.as_bytes().get(3..text.len().min(5)).unwrap_or(&[]);
    let mut v: u32 = 0;
    for &b in digits {
        match (b as char).to_digit(16) {
            Some(d) => v = v * 16 + d,
            None => break,
        }
    }
    v as u8
}
