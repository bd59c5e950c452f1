//! The JSON form of a receipt (`docs/receipts.md`): the same fields as the
//! binary form, digests as lowercase hex, floats in their shortest
//! round-tripping decimal form. The library has no JSON dependency, so
//! this file holds a small writer and a strict reader (bounded depth, no
//! duplicate keys, nothing after the value).

use super::format::{check_counts, check_digests, COMMITMENT_LOGITS_BLAKE3, VERSION};
use super::{malformed, Receipt};
use crate::sampler::SamplerParams;
use crate::shard::Digest;
use crate::Result;

/// The value of the `"format"` key.
const FORMAT: &str = "strata-receipt";
const COMMITMENT: &str = "blake3-logits-f32le";

fn ids(out: &mut String, v: &[u32]) {
    out.push('[');
    for (i, t) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&t.to_string());
    }
    out.push(']');
}

/// A finite f32 in the shortest form that parses back to the same bits
/// (Rust's `Debug` form, a valid JSON number); a non-finite one as a
/// string, which the sampler's checks then refuse.
fn float(v: f32) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else {
        format!("\"{v}\"")
    }
}

pub(super) fn write(r: &Receipt) -> String {
    let s = &r.sampler;
    let mut o = String::new();
    o.push_str(&format!(
        "{{\"format\":\"{FORMAT}\",\"version\":{VERSION},\"numerics_version\":{},\"commitment\":\"{COMMITMENT}\",",
        r.numerics_version
    ));
    o.push_str(&format!(
        "\"model\":\"{}\",\"tokenizer\":\"{}\",\"chat_template\":{},",
        r.model,
        r.tokenizer,
        r.chat_template
            .map_or("null".to_string(), |d| format!("\"{d}\""))
    ));
    o.push_str(&format!(
        "\"sampler\":{{\"temperature\":{},\"top_k\":{},\"top_p\":{},\"min_p\":{},\"repeat_penalty\":{},\"repeat_last_n\":{},\"frequency_penalty\":{},\"presence_penalty\":{},\"seed\":{}}},",
        float(s.temperature),
        s.top_k.min(u32::MAX as usize),
        float(s.top_p),
        float(s.min_p),
        float(s.repeat_penalty),
        s.repeat_last_n.min(u32::MAX as usize),
        float(s.frequency_penalty),
        float(s.presence_penalty),
        s.seed
    ));
    o.push_str("\"prompt_tokens\":");
    ids(&mut o, &r.prompt);
    o.push_str(",\"tokens\":");
    ids(&mut o, &r.tokens);
    o.push_str(",\"commitments\":[");
    for (i, c) in r.commitments.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push('"');
        o.push_str(&c.to_hex());
        o.push('"');
    }
    o.push_str(&format!(
        "],\"root\":\"{}\",\"fingerprint\":\"{}\"}}",
        r.root(),
        r.fingerprint()
    ));
    o
}

/// A parsed JSON value; numbers keep their text.
#[derive(Debug)]
enum Value {
    Null,
    /// `true` or `false` (no receipt field is a boolean).
    Bool,
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

const MAX_DEPTH: usize = 8;

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

fn bad(reason: impl Into<String>) -> crate::Error {
    malformed("json", reason)
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.at < self.s.len() && matches!(self.s[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(bad(format!("expected '{}' at byte {}", c as char, self.at)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(bad(format!(
                "nested deeper than {MAX_DEPTH} at byte {}",
                self.at
            )));
        }
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                let mut fields: Vec<(String, Value)> = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Value::Object(fields));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    if fields.iter().any(|(n, _)| *n == k) {
                        return Err(bad(format!("duplicate key \"{k}\"")));
                    }
                    self.ws();
                    self.expect(b':')?;
                    let v = self.value(depth + 1)?;
                    fields.push((k, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Value::Object(fields));
                        }
                        _ => return Err(bad(format!("expected ',' or '}}' at byte {}", self.at))),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    if items.len() >= super::MAX_POSITIONS {
                        return Err(bad(format!(
                            "an array longer than {} at byte {}",
                            super::MAX_POSITIONS,
                            self.at
                        )));
                    }
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Value::Array(items));
                        }
                        _ => return Err(bad(format!("expected ',' or ']' at byte {}", self.at))),
                    }
                }
            }
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.word("true", Value::Bool),
            Some(b'f') => self.word("false", Value::Bool),
            Some(b'n') => self.word("null", Value::Null),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.at;
                while self.peek().is_some_and(|c| {
                    c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')
                }) {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
                Ok(Value::Number(text.to_string()))
            }
            _ => Err(bad(format!("expected a value at byte {}", self.at))),
        }
    }

    fn word(&mut self, w: &str, v: Value) -> Result<Value> {
        if self.s[self.at..].starts_with(w.as_bytes()) {
            self.at += w.len();
            Ok(v)
        } else {
            Err(bad(format!("unexpected text at byte {}", self.at)))
        }
    }

    fn string(&mut self) -> Result<String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(bad("unterminated string"));
            };
            self.at += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(bad("unterminated string"));
                    };
                    self.at += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex = self
                                .s
                                .get(self.at..self.at + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or_else(|| {
                                    bad(format!("bad \\u escape at byte {}", self.at))
                                })?;
                            self.at += 4;
                            // Receipts hold only ASCII strings; a surrogate
                            // (half of a pair) is refused, not decoded.
                            char::from_u32(hex)
                                .ok_or_else(|| bad(format!("\\u{hex:04x} is not a character")))?
                        }
                        _ => return Err(bad(format!("bad escape at byte {}", self.at - 1))),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return Err(bad("control character in a string")),
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| bad("a string is not UTF-8"))
    }
}

/// The fields of an object, taken by name; unknown keys are refused.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn take(&mut self, key: &'static str) -> Result<Value> {
        let i = self
            .0
            .iter()
            .position(|(k, _)| k == key)
            .ok_or_else(|| malformed(key, "missing"))?;
        Ok(self.0.swap_remove(i).1)
    }

    fn done(self) -> Result<()> {
        match self.0.first() {
            Some((k, _)) => Err(bad(format!("unknown key \"{k}\""))),
            None => Ok(()),
        }
    }
}

fn object(v: Value, field: &'static str) -> Result<Fields> {
    match v {
        Value::Object(f) => Ok(Fields(f)),
        _ => Err(malformed(field, "not an object")),
    }
}

fn string(v: Value, field: &'static str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(malformed(field, "not a string")),
    }
}

fn number<T: std::str::FromStr>(v: Value, field: &'static str) -> Result<T> {
    match v {
        Value::Number(n) => n
            .parse()
            .map_err(|_| malformed(field, format!("'{n}' is not a valid value"))),
        _ => Err(malformed(field, "not a number")),
    }
}

fn float_of(v: Value, field: &'static str) -> Result<f32> {
    match v {
        // Non-finite values are written as strings ("NaN", "inf").
        Value::String(s) => s
            .parse()
            .map_err(|_| malformed(field, format!("'{s}' is not a number"))),
        v => number(v, field),
    }
}

fn digest(v: Value, field: &'static str) -> Result<Digest> {
    let s = string(v, field)?;
    Digest::from_hex(&s).map_err(|_| malformed(field, format!("'{s}' is not 64 hex digits")))
}

fn array(v: Value, field: &'static str) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(malformed(field, "not an array")),
    }
}

fn id_list(v: Value, field: &'static str) -> Result<Vec<u32>> {
    array(v, field)?
        .into_iter()
        .map(|x| number::<u32>(x, field))
        .collect()
}

pub(super) fn read(text: &str) -> Result<Receipt> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
    };
    let v = p.value(0)?;
    p.ws();
    if p.at != p.s.len() {
        return Err(bad(format!("text after the object at byte {}", p.at)));
    }
    let mut f = object(v, "json")?;
    let format = string(f.take("format")?, "format")?;
    if format != FORMAT {
        return Err(malformed("format", format!("'{format}' is not '{FORMAT}'")));
    }
    let version: u16 = number(f.take("version")?, "version")?;
    if version != VERSION {
        return Err(malformed(
            "version",
            format!("{version} (this library reads {VERSION})"),
        ));
    }
    let numerics_version = number(f.take("numerics_version")?, "numerics_version")?;
    let commitment = string(f.take("commitment")?, "commitment")?;
    if commitment != COMMITMENT {
        return Err(malformed(
            "commitment",
            format!("'{commitment}' (this library knows '{COMMITMENT}', kind {COMMITMENT_LOGITS_BLAKE3})"),
        ));
    }
    let model = digest(f.take("model")?, "model")?;
    let tokenizer = digest(f.take("tokenizer")?, "tokenizer")?;
    let chat_template = match f.take("chat_template")? {
        Value::Null => None,
        v => Some(digest(v, "chat_template")?),
    };
    let mut s = object(f.take("sampler")?, "sampler")?;
    let sampler = SamplerParams {
        temperature: float_of(s.take("temperature")?, "temperature")?,
        top_k: number::<u32>(s.take("top_k")?, "top_k")? as usize,
        top_p: float_of(s.take("top_p")?, "top_p")?,
        min_p: float_of(s.take("min_p")?, "min_p")?,
        repeat_penalty: float_of(s.take("repeat_penalty")?, "repeat_penalty")?,
        repeat_last_n: number::<u32>(s.take("repeat_last_n")?, "repeat_last_n")? as usize,
        frequency_penalty: float_of(s.take("frequency_penalty")?, "frequency_penalty")?,
        presence_penalty: float_of(s.take("presence_penalty")?, "presence_penalty")?,
        seed: number(s.take("seed")?, "seed")?,
    };
    s.done()?;
    let prompt = id_list(f.take("prompt_tokens")?, "prompt_tokens")?;
    let tokens = id_list(f.take("tokens")?, "tokens")?;
    check_counts(prompt.len(), tokens.len())?;
    let commitments: Vec<Digest> = array(f.take("commitments")?, "commitments")?
        .into_iter()
        .map(|c| digest(c, "commitments"))
        .collect::<Result<_>>()?;
    if commitments.len() != tokens.len() {
        return Err(malformed(
            "commitments",
            format!(
                "{} commitments for {} generated tokens",
                commitments.len(),
                tokens.len()
            ),
        ));
    }
    let root = digest(f.take("root")?, "root")?;
    let fingerprint = digest(f.take("fingerprint")?, "fingerprint")?;
    f.done()?;
    let r = Receipt {
        numerics_version,
        model,
        tokenizer,
        chat_template,
        sampler,
        prompt,
        tokens,
        commitments,
    };
    check_digests(&r, &root, &fingerprint)?;
    Ok(r)
}
