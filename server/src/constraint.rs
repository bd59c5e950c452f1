//! Constrained decoding through llguidance (JSON object / JSON schema).
//!
//! [`JsonConstraints`] is built once per model: it turns Strata's vocabulary
//! into llguidance's token trie (the slow part) and keeps the parser
//! factory. Each request then asks it for a [`strata::scheduler::Constraint`]
//! that masks the logits to the tokens that keep the output valid JSON (any
//! object for `response_format: json_object`, or one that matches a JSON
//! schema for `json_schema`).
//!
//! Control and end-of-generation tokens are marked special in the trie, so
//! the grammar never lets them into the JSON text; the end-of-generation
//! tokens are offered only once the JSON value is complete.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use strata::scheduler::Constraint;
use strata::tokenizer::Attr;

/// The token environment llguidance works over: Strata's vocabulary as a
/// trie. Tokenization (used only for text the grammar itself forces) is the
/// trie's greedy one, declared non-canonical so llguidance never forces a
/// token sequence on the strength of it.
struct StrataTokEnv {
    trie: TokTrie,
}

impl TokenizerEnv for StrataTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.greedy_tokenize(s)
    }

    fn tokenize_is_canonical(&self) -> bool {
        false
    }
}

/// Per-model state for JSON-constrained decoding: the token trie and the
/// llguidance parser factory, shared by every request.
pub struct JsonConstraints {
    factory: ParserFactory,
    /// Size of the logit rows (the bitmask covers this many tokens).
    n_vocab: usize,
    eog: Vec<u32>,
}

impl std::fmt::Debug for JsonConstraints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonConstraints")
            .field("n_vocab", &self.n_vocab)
            .field("eog", &self.eog)
            .finish_non_exhaustive()
    }
}

// Built once per model and shared by the server's tasks.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<JsonConstraints>();
};

/// Whether a token is one the JSON text must never contain.
fn is_special(tok: &strata::tokenizer::Tokenizer, id: u32) -> bool {
    tok.is_eog(id)
        || tok
            .token_attr(id)
            .intersects(Attr::CONTROL | Attr::UNKNOWN | Attr::UNUSED)
}

impl JsonConstraints {
    /// Build the token trie and parser factory for `model` (seconds for a
    /// large vocabulary; do it once per model).
    pub fn new(model: &strata::Model) -> Result<JsonConstraints, String> {
        let tok = model.tokenizer();
        // The logit rows may be longer than the tokenizer's list (padding
        // rows in the output head): those ids get no bytes and are never
        // allowed.
        let n_vocab = model.config().n_vocab.max(tok.n_vocab());
        let eog: Vec<u32> = tok
            .eog_ids()
            .into_iter()
            .filter(|&id| (id as usize) < n_vocab)
            .collect();
        let eos = tok
            .eos()
            .filter(|&id| (id as usize) < n_vocab)
            .or_else(|| eog.first().copied())
            .ok_or("the model has no end-of-generation token to end JSON output with")?;
        // The trie numbers tokens in 24 bits.
        let n_vocab_u32 = u32::try_from(n_vocab)
            .ok()
            .filter(|&n| n < 0xff_ffff)
            .ok_or_else(|| {
                format!("a vocabulary of {n_vocab} tokens is too large for constrained decoding")
            })?;

        let mut words: Vec<Vec<u8>> = Vec::with_capacity(n_vocab);
        for id in 0..n_vocab_u32 {
            if id as usize >= tok.n_vocab() {
                words.push(Vec::new());
            } else if is_special(tok, id) {
                // llguidance's convention: a special token is 0xFF then its
                // name; no JSON byte sequence starts with 0xFF.
                let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                let name = tok.token_bytes(id, true);
                if name.is_empty() {
                    w.extend_from_slice(format!("<[{id}]>").as_bytes());
                } else {
                    w.extend_from_slice(name);
                }
                words.push(w);
            } else {
                words.push(tok.token_bytes(id, false).to_vec());
            }
        }

        let info = TokRxInfo {
            vocab_size: n_vocab_u32,
            tok_eos: eos,
            tok_bos: tok.bos().filter(|&id| id < n_vocab_u32),
            tok_pad: tok.special_ids().pad.filter(|&id| id < n_vocab_u32),
            tok_unk: tok.special_ids().unk.filter(|&id| id < n_vocab_u32),
            tok_end_of_turn: tok.eot().filter(|&id| id < n_vocab_u32),
        };
        let mut ends = vec![eos];
        ends.extend(eog.iter().copied().filter(|&id| id != eos));
        // The trie asserts its invariants (sizes, ids): a vocabulary it
        // cannot hold is an error, not a crash of the server.
        let built = std::panic::catch_unwind(|| {
            let trie = TokTrie::from(&info, &words).with_eos_tokens(&ends);
            let env: TokEnv = Arc::new(StrataTokEnv { trie });
            ParserFactory::new_simple(&env)
        });
        let mut factory = match built {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return Err(format!("constrained decoding setup failed: {e}")),
            Err(_) => {
                return Err(
                    "constrained decoding setup failed: the vocabulary does not \
                            fit llguidance's token trie"
                        .to_string(),
                )
            }
        };
        factory.quiet();
        // Errors go to clients: the message, without llguidance's dump of
        // the parser state and grammar.
        factory.limits_mut().verbose_errors = false;
        Ok(JsonConstraints {
            factory,
            n_vocab,
            eog: ends,
        })
    }

    /// Tokens the bitmask covers.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// A constraint for one request: `None` is any JSON object
    /// (`json_object`), `Some(schema)` a value that matches the JSON schema.
    /// A schema llguidance cannot compile is an `Err` with its message.
    pub fn constraint(
        &self,
        schema: Option<&serde_json::Value>,
    ) -> Result<Box<dyn Constraint>, String> {
        let schema = match schema {
            Some(s) => s.clone(),
            None => serde_json::json!({ "type": "object" }),
        };
        let grammar = TopLevelGrammar::from_json_schema(schema);
        let parser =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.factory.create_parser(grammar)))
                .map_err(|_| "invalid JSON schema: llguidance failed to compile it".to_string())?
                .map_err(|e| format!("invalid JSON schema: {e}"))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(format!("invalid JSON schema: {e}"));
        }
        Ok(Box::new(JsonConstraint {
            matcher,
            eog: self.eog.clone(),
            n_vocab: self.n_vocab,
            ended: false,
        }))
    }
}

/// One request's JSON constraint.
struct JsonConstraint {
    matcher: Matcher,
    eog: Vec<u32>,
    n_vocab: usize,
    /// An end-of-generation token was accepted.
    ended: bool,
}

impl Constraint for JsonConstraint {
    fn allowed(&mut self, allowed: &mut [u32]) -> Result<(), String> {
        if self.ended {
            return Err("the JSON output has already ended".to_string());
        }
        let mask = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| format!("constrained decoding: {e}"))?;
        let words = mask.as_slice();
        let n = allowed.len().min(words.len());
        allowed[..n].copy_from_slice(&words[..n]);
        // Nothing past the logit row (the mask may have a spare word).
        let covered = allowed.len() * 32;
        if covered > self.n_vocab {
            if let Some(last) = allowed.get_mut(self.n_vocab / 32) {
                let keep = self.n_vocab % 32;
                if keep != 0 {
                    *last &= (1u32 << keep) - 1;
                }
            }
            for w in allowed.iter_mut().skip(self.n_vocab.div_ceil(32)) {
                *w = 0;
            }
        }
        if allowed.iter().all(|&w| w == 0) {
            return Err("constrained decoding: no token can continue the JSON".to_string());
        }
        Ok(())
    }

    fn accept(&mut self, token: u32) -> Result<(), String> {
        if self.ended {
            return Err("the JSON output has already ended".to_string());
        }
        if self.eog.contains(&token) && self.matcher.is_stopped() && !self.matcher.is_error() {
            // The value was complete and nothing could follow: the mask
            // offered only the end tokens.
            self.ended = true;
            return Ok(());
        }
        self.matcher
            .consume_token(token)
            .map_err(|e| format!("constrained decoding: token {token} refused: {e}"))?;
        if self.eog.contains(&token) {
            self.ended = true;
        }
        Ok(())
    }

    fn is_finished(&self) -> bool {
        self.ended || self.matcher.is_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use strata::{LoadOptions, Model, Session, SessionOptions};

    fn load(file: &str) -> Arc<Model> {
        let path = strata::model_cache::dir().join(file);
        assert!(
            path.exists(),
            "{} is missing: run scripts/fetch-models.sh or set STRATA_MODELS_DIR",
            path.display()
        );
        Arc::new(Model::load(&path, &LoadOptions::default()).expect("model loads"))
    }

    fn smollm2() -> Arc<Model> {
        load("SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    fn chatml(user: &str) -> String {
        format!(
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by \
             Hugging Face<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        )
    }

    struct Run {
        text: String,
        tokens: Vec<u32>,
        finished: bool,
        mask_times: Vec<Duration>,
    }

    /// Greedy decoding under `c`: logits masked by `allowed`, argmax,
    /// `accept`, until the constraint finishes or `max` tokens.
    fn greedy(model: &Arc<Model>, prompt: &str, c: &mut dyn Constraint, max: usize) -> Run {
        let tok = model.tokenizer();
        let ids = tok.encode(prompt, true, true).expect("prompt encodes");
        let mut session = Session::new(model.clone(), &SessionOptions::default()).unwrap();
        let mut logits = session.feed(&ids).unwrap();
        let n_vocab = logits.len();
        let mut mask = vec![0u32; n_vocab.div_ceil(32)];
        let mut out = Vec::new();
        let mut mask_times = Vec::new();
        for _ in 0..max {
            mask.iter_mut().for_each(|w| *w = 0);
            let t0 = Instant::now();
            c.allowed(&mut mask).expect("a mask");
            mask_times.push(t0.elapsed());
            let mut best: Option<(usize, f32)> = None;
            for (t, &l) in logits.iter().enumerate() {
                if bit(&mask, t as u32) && best.is_none_or(|(_, b)| l > b) {
                    best = Some((t, l));
                }
            }
            let (t, _) = best.expect("some token is allowed");
            let t = t as u32;
            c.accept(t).expect("the chosen token is accepted");
            out.push(t);
            if c.is_finished() || tok.is_eog(t) {
                break;
            }
            logits = session.feed(&[t]).unwrap();
        }
        let text: Vec<u32> = out.iter().copied().filter(|&t| !tok.is_eog(t)).collect();
        Run {
            text: tok.decode(&text, false),
            tokens: out,
            finished: c.is_finished(),
            mask_times,
        }
    }

    fn bit(mask: &[u32], t: u32) -> bool {
        mask[t as usize / 32] >> (t % 32) & 1 == 1
    }

    fn report(label: &str, times: &[Duration]) {
        let total: Duration = times.iter().sum();
        let max = times.iter().max().copied().unwrap_or_default();
        let mut sorted = times.to_vec();
        sorted.sort();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
        eprintln!(
            "{label}: {} masks, mean {:.3} ms, median {:.3} ms, max {:.3} ms",
            times.len(),
            total.as_secs_f64() * 1e3 / times.len().max(1) as f64,
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }

    #[test]
    fn json_object_from_smollm2() {
        let model = smollm2();
        let t0 = Instant::now();
        let jc = JsonConstraints::new(&model).unwrap();
        eprintln!("SmolLM2 trie + factory: {:?}", t0.elapsed());
        let mut c = jc.constraint(None).unwrap();
        let run = greedy(
            &model,
            &chatml("Describe a cat as a short JSON object with its name, color and age."),
            c.as_mut(),
            400,
        );
        eprintln!(
            "json_object output: {:?} ({} tokens)",
            run.text,
            run.tokens.len()
        );
        report("SmolLM2 json_object", &run.mask_times);
        assert!(run.finished, "the constraint ended the output");
        let v: serde_json::Value = serde_json::from_str(&run.text).expect("valid JSON");
        let obj = v.as_object().expect("a JSON object");
        assert!(!obj.is_empty(), "the cat has some property: {v}");
    }

    #[test]
    fn json_schema_from_smollm2() {
        let model = smollm2();
        let jc = JsonConstraints::new(&model).unwrap();
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": false
        });
        let mut c = jc.constraint(Some(&schema)).unwrap();
        let run = greedy(
            &model,
            &chatml("Give me a JSON object for a person named Alice who is 30 years old."),
            c.as_mut(),
            200,
        );
        eprintln!(
            "json_schema output: {:?} ({} tokens)",
            run.text,
            run.tokens.len()
        );
        report("SmolLM2 json_schema", &run.mask_times);
        assert!(run.finished, "the constraint ended the output");
        let v: serde_json::Value = serde_json::from_str(&run.text).expect("valid JSON");
        let obj = v.as_object().expect("a JSON object");
        assert!(obj["name"].is_string(), "name is a string: {v}");
        assert!(
            obj["age"].is_i64() || obj["age"].is_u64(),
            "age is an integer: {v}"
        );
        assert_eq!(obj.len(), 2, "no other keys: {v}");
    }

    #[test]
    fn refuses_tokens_outside_the_grammar() {
        let model = smollm2();
        let tok = model.tokenizer();
        let jc = JsonConstraints::new(&model).unwrap();
        let mut c = jc.constraint(None).unwrap();
        let mut mask = vec![0u32; jc.n_vocab().div_ceil(32)];
        c.allowed(&mut mask).unwrap();
        // The output starts with an object (optionally after whitespace).
        let brace = tok.encode("{", false, false).unwrap();
        assert_eq!(brace.len(), 1);
        assert!(bit(&mask, brace[0]));
        let word = tok.encode("hello", false, false).unwrap();
        assert!(!bit(&mask, word[0]), "text outside JSON is masked");
        for &e in &tok.eog_ids() {
            assert!(!bit(&mask, e), "no end before the object");
        }
        let bad = c.accept(word[0]).err().expect("a masked token is refused");
        eprintln!("refused: {bad}");
        assert!(bad.len() < 1000, "a short message: {bad}");
        // The error is sticky: nothing more is allowed.
        mask.iter_mut().for_each(|w| *w = 0);
        assert!(c.allowed(&mut mask).is_err());
    }

    #[test]
    fn special_tokens_never_inside_json() {
        special_tokens_masked(&smollm2());
        special_tokens_masked(&load("gemma-3-270m-q4_k_m.gguf"));
    }

    fn special_tokens_masked(model: &Model) {
        let tok = model.tokenizer();
        let jc = JsonConstraints::new(model).unwrap();
        let mut c = jc.constraint(None).unwrap();
        let mut mask = vec![0u32; jc.n_vocab().div_ceil(32)];
        // Walk into a string value, where nearly any text is allowed.
        for t in tok.encode("{\"a\": \"", false, false).unwrap() {
            c.accept(t).unwrap();
        }
        c.allowed(&mut mask).unwrap();
        let n_allowed = (0..jc.n_vocab() as u32).filter(|&t| bit(&mask, t)).count();
        assert!(n_allowed > 1000, "string content is open: {n_allowed}");
        let mut n_special = 0;
        for id in 0..tok.n_vocab() as u32 {
            if is_special(tok, id) {
                n_special += 1;
                assert!(
                    !bit(&mask, id),
                    "special token {id} allowed inside a string"
                );
            }
        }
        assert!(
            n_special >= tok.eog_ids().len(),
            "{n_special} special tokens"
        );
        // The chat markers are among them.
        for marker in ["<|im_start|>", "<start_of_turn>"] {
            if let Some(id) = (0..tok.n_vocab() as u32).find(|&t| tok.token_text(t) == Some(marker))
            {
                assert!(is_special(tok, id) && !bit(&mask, id), "{marker}");
            }
        }
        for &e in &tok.eog_ids() {
            assert!(!bit(&mask, e), "no end inside a string");
        }
        // Close the object: nothing can follow it, so the constraint is
        // finished; asked anyway, it offers only the end tokens.
        for t in tok.encode("x\"}", false, false).unwrap() {
            assert!(!c.is_finished());
            c.accept(t).unwrap();
        }
        assert!(c.is_finished(), "a complete object ends the output");
        mask.iter_mut().for_each(|w| *w = 0);
        c.allowed(&mut mask).unwrap();
        let offered: Vec<u32> = (0..jc.n_vocab() as u32)
            .filter(|&t| bit(&mask, t))
            .collect();
        assert!(!offered.is_empty());
        assert!(offered.iter().all(|&t| tok.is_eog(t)), "{offered:?}");
        c.accept(offered[0]).unwrap();
        assert!(c.is_finished());
        assert!(c.accept(offered[0]).is_err(), "nothing after the end");
    }

    #[test]
    fn invalid_schema_is_an_error() {
        let model = smollm2();
        let jc = JsonConstraints::new(&model).unwrap();
        let bad = serde_json::json!({"type": "no-such-type"});
        let e = jc.constraint(Some(&bad)).err().expect("refused");
        eprintln!("unknown type: {e}");
        assert!(e.contains("invalid JSON schema"), "{e}");
        let unsat = serde_json::json!({"type": "integer", "minimum": 5, "maximum": 1});
        let e = jc.constraint(Some(&unsat)).err().expect("refused");
        eprintln!("unsatisfiable: {e}");
        assert!(e.contains("invalid JSON schema"), "{e}");
        // The factory still serves valid schemas after refusing one.
        assert!(jc
            .constraint(Some(&serde_json::json!({"type": "array"})))
            .is_ok());
    }

    #[test]
    fn gemma3_json_schema_and_mask_time() {
        let model = load("gemma-3-270m-q4_k_m.gguf");
        let t0 = Instant::now();
        let jc = JsonConstraints::new(&model).unwrap();
        eprintln!("Gemma 3 trie + factory: {:?}", t0.elapsed());
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": false
        });
        let mut c = jc.constraint(Some(&schema)).unwrap();
        let prompt = "<start_of_turn>user\nGive me a JSON object for a person named Alice who \
                      is 30 years old.<end_of_turn>\n<start_of_turn>model\n";
        let run = greedy(&model, prompt, c.as_mut(), 200);
        eprintln!(
            "gemma json_schema output: {:?} ({} tokens)",
            run.text,
            run.tokens.len()
        );
        report("Gemma 3 json_schema", &run.mask_times);
        assert!(run.finished, "the constraint ended the output");
        let v: serde_json::Value = serde_json::from_str(&run.text).expect("valid JSON");
        assert!(v["name"].is_string(), "{v}");
        assert!(v["age"].is_i64() || v["age"].is_u64(), "{v}");
    }

    /// Mask time along a fixed JSON text (strings, numbers, an array, a
    /// nested object), so the figure does not depend on what a model says.
    fn mask_times_along(model: &Model, jc: &JsonConstraints) -> Vec<Duration> {
        let text = r#"{"name": "Felix the cat", "age": 7, "colors": ["black", "white"], "indoor": true, "owner": {"name": "Ann", "city": "Oslo"}, "weight_kg": 4.5}"#;
        let ids = model.tokenizer().encode(text, false, false).unwrap();
        let mut c = jc.constraint(None).unwrap();
        let mut mask = vec![0u32; jc.n_vocab().div_ceil(32)];
        let mut times = Vec::new();
        for &t in &ids {
            mask.iter_mut().for_each(|w| *w = 0);
            let t0 = Instant::now();
            c.allowed(&mut mask).unwrap();
            times.push(t0.elapsed());
            assert!(bit(&mask, t), "token {t} of the text is allowed");
            c.accept(t).unwrap();
        }
        assert!(c.is_finished());
        times
    }

    #[test]
    fn mask_time_per_token() {
        for file in [
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "gemma-3-270m-q4_k_m.gguf",
        ] {
            let model = load(file);
            let jc = JsonConstraints::new(&model).unwrap();
            let times = mask_times_along(&model, &jc);
            report(
                &format!("{file} ({} tokens) fixed text", jc.n_vocab()),
                &times,
            );
        }
    }
}
