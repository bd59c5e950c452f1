//! The objects OpenAI's API answers with: `chat.completion`,
//! `chat.completion.chunk` and `text_completion`, their `usage` and
//! `logprobs`, and the server-sent-event stream a streaming request gets
//! ([`StreamState`] turns the scheduler's events into chunks).

use serde_json::{json, Value};
use strata::scheduler::{FinishReason, Finished, TokenOut};

use crate::error::ApiError;

/// Which endpoint's objects to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

/// What every object of one response carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    /// `chatcmpl-N` or `cmpl-N`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
}

/// How token ids read, for log-probabilities.
pub trait Vocab {
    /// The token's bytes (control tokens rendered as their text).
    fn piece(&self, id: u32) -> Vec<u8>;
    /// Whether the token ends generation (not reported among the
    /// completion's tokens, as OpenAI does not report its own).
    fn is_eog(&self, id: u32) -> bool;
}

impl Vocab for strata::tokenizer::Tokenizer {
    fn piece(&self, id: u32) -> Vec<u8> {
        self.token_bytes(id, true).to_vec()
    }

    fn is_eog(&self, id: u32) -> bool {
        strata::tokenizer::Tokenizer::is_eog(self, id)
    }
}

/// One token's log-probability and its best alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub bytes: Vec<u8>,
    pub logprob: f32,
    pub top: Vec<(Vec<u8>, f32)>,
    /// Characters of the response's text before this token.
    pub offset: usize,
}

/// A log-probability as JSON: a token the mask ruled out has `-inf`, which
/// JSON cannot spell; OpenAI reports such values as -9999.
fn lp(x: f32) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        json!(-9999.0)
    }
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The log-probability of a generated token, if it carries one and is not
/// the end-of-generation token.
pub fn token_logprob(t: &TokenOut, vocab: &dyn Vocab, offset: usize) -> Option<TokenLogprob> {
    let l = t.logprob.as_ref()?;
    if vocab.is_eog(t.id) {
        return None;
    }
    Some(TokenLogprob {
        bytes: vocab.piece(t.id),
        logprob: l.logprob,
        top: l.top.iter().map(|&(id, p)| (vocab.piece(id), p)).collect(),
        offset,
    })
}

/// Chat's `logprobs`: `{"content": [{token, logprob, bytes, top_logprobs}]}`.
pub fn chat_logprobs(entries: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = entries
        .iter()
        .map(|e| {
            let top: Vec<Value> = e
                .top
                .iter()
                .map(|(b, p)| json!({"token": text_of(b), "logprob": lp(*p), "bytes": b}))
                .collect();
            json!({
                "token": text_of(&e.bytes),
                "logprob": lp(e.logprob),
                "bytes": e.bytes,
                "top_logprobs": top,
            })
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// Completions' `logprobs`: parallel arrays `tokens`, `token_logprobs`,
/// `top_logprobs` (one object per token, text to log-probability) and
/// `text_offset`.
pub fn completion_logprobs(entries: &[TokenLogprob]) -> Value {
    let tokens: Vec<String> = entries.iter().map(|e| text_of(&e.bytes)).collect();
    let token_logprobs: Vec<Value> = entries.iter().map(|e| lp(e.logprob)).collect();
    let top: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut m = serde_json::Map::new();
            for (b, p) in &e.top {
                m.entry(text_of(b)).or_insert_with(|| lp(*p));
            }
            Value::Object(m)
        })
        .collect();
    let offsets: Vec<usize> = entries.iter().map(|e| e.offset).collect();
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top,
        "text_offset": offsets,
    })
}

/// `usage`, exact from the scheduler's count.
pub fn usage(f: &Finished) -> Value {
    json!({
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "total_tokens": f.prompt_tokens + f.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": f.cached_tokens},
    })
}

/// How a request that did not end normally is answered: a failure is a
/// 500, a cancellation (the server is stopping) a 503.
pub fn abnormal_end(reason: &FinishReason) -> Option<ApiError> {
    match reason {
        FinishReason::Failed(msg) => Some(ApiError::internal(format!("Generation failed: {msg}"))),
        FinishReason::Cancelled => Some(ApiError::unavailable(
            "The request was cancelled: the server is shutting down.",
        )),
        _ => None,
    }
}

/// A whole `chat.completion`.
pub fn chat_completion(meta: &Meta, f: &Finished, logprobs: Option<&[TokenLogprob]>) -> Value {
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": f.text, "refusal": null},
            "logprobs": logprobs.map(chat_logprobs),
            "finish_reason": f.reason.openai(),
        }],
        "usage": usage(f),
    })
}

/// A whole `text_completion`; `echo` is the prompt's text when asked for.
pub fn text_completion(
    meta: &Meta,
    f: &Finished,
    echo: Option<&str>,
    logprobs: Option<&[TokenLogprob]>,
) -> Value {
    let text = match echo {
        Some(p) => format!("{p}{}", f.text),
        None => f.text.clone(),
    };
    json!({
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "text": text,
            "logprobs": logprobs.map(completion_logprobs),
            "finish_reason": f.reason.openai(),
        }],
        "usage": usage(f),
    })
}

/// One server-sent event.
pub fn sse(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// The event that ends every stream.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

/// Turns one request's events into the chunks of its stream.
#[derive(Debug)]
pub struct StreamState {
    endpoint: Endpoint,
    meta: Meta,
    include_usage: bool,
    logprobs: bool,
    /// Characters sent so far (the offset of the next token's text).
    chars: usize,
    /// Log-probabilities of tokens whose text has not been sent yet.
    pending: Vec<TokenLogprob>,
}

impl StreamState {
    pub fn new(endpoint: Endpoint, meta: Meta, include_usage: bool, logprobs: bool) -> StreamState {
        StreamState {
            endpoint,
            meta,
            include_usage,
            logprobs,
            chars: 0,
            pending: Vec::new(),
        }
    }

    fn object(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completion => "text_completion",
        }
    }

    fn wrap(&self, choices: Value) -> Value {
        let mut v = json!({
            "id": self.meta.id,
            "object": self.object(),
            "created": self.meta.created,
            "model": self.meta.model,
            "choices": choices,
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// A chunk carrying `text` (chat: as `delta.content`), the pending
    /// log-probabilities, and `finish`.
    fn chunk(&mut self, text: &str, finish: Option<&str>) -> Value {
        let logprobs = if self.logprobs && finish.is_none() {
            let entries = std::mem::take(&mut self.pending);
            Some(match self.endpoint {
                Endpoint::Chat => chat_logprobs(&entries),
                Endpoint::Completion => completion_logprobs(&entries),
            })
        } else {
            None
        };
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let delta = if finish.is_some() {
                    json!({})
                } else {
                    json!({"content": text})
                };
                json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
            }
            Endpoint::Completion => {
                json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish})
            }
        };
        self.chars += text.chars().count();
        self.wrap(json!([choice]))
    }

    /// The chunks before any token: chat's role announcement; for a
    /// completion with `echo`, the prompt's text.
    pub fn start(&mut self, echo: Option<&str>) -> Vec<Value> {
        match self.endpoint {
            Endpoint::Chat => {
                let choice = json!({
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": null,
                    "finish_reason": null,
                });
                vec![self.wrap(json!([choice]))]
            }
            Endpoint::Completion => match echo {
                Some(p) if !p.is_empty() => {
                    let saved = std::mem::replace(&mut self.logprobs, false);
                    let c = self.chunk(p, None);
                    self.logprobs = saved;
                    vec![c]
                }
                _ => Vec::new(),
            },
        }
    }

    /// A token: a chunk when it completes text (its log-probability, and
    /// those of tokens before it whose text was held back, go with it).
    pub fn token(&mut self, t: &TokenOut, vocab: &dyn Vocab) -> Option<Value> {
        if self.logprobs {
            if let Some(e) = token_logprob(t, vocab, self.chars) {
                self.pending.push(e);
            }
        }
        if t.text.is_empty() {
            return None;
        }
        Some(self.chunk(&t.text, None))
    }

    /// The end: text held back until now, then the chunk with
    /// `finish_reason`, then (if asked for) the usage chunk. A request
    /// that failed or was cancelled ends with an error object instead of a
    /// finish reason (OpenAI's clients raise it).
    pub fn done(&mut self, f: &Finished) -> Vec<Value> {
        let mut out = Vec::new();
        if !f.tail.is_empty() || !self.pending.is_empty() {
            out.push(self.chunk(&f.tail, None));
        }
        if let Some(e) = abnormal_end(&f.reason) {
            out.push(e.body());
            return out;
        }
        out.push(self.chunk("", Some(f.reason.openai())));
        if self.include_usage {
            out.push(json!({
                "id": self.meta.id,
                "object": self.object(),
                "created": self.meta.created,
                "model": self.meta.model,
                "choices": [],
                "usage": usage(f),
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata::scheduler::Logprob;

    /// Token `i` reads as the letter `'a' + i`; token 0 is end of
    /// generation.
    struct Letters;
    impl Vocab for Letters {
        fn piece(&self, id: u32) -> Vec<u8> {
            vec![b'a' + id as u8]
        }
        fn is_eog(&self, id: u32) -> bool {
            id == 0
        }
    }

    fn meta() -> Meta {
        Meta {
            id: "chatcmpl-7".into(),
            created: 1700000000,
            model: "m".into(),
        }
    }

    fn tok(id: u32, text: &str, lp: Option<f32>) -> TokenOut {
        TokenOut {
            id,
            text: text.into(),
            logprob: lp.map(|l| Logprob {
                logprob: l,
                top: vec![(id, l), (2, f32::NEG_INFINITY)],
            }),
        }
    }

    fn finished(reason: FinishReason, text: &str, tail: &str) -> Finished {
        Finished {
            reason,
            prompt_tokens: 10,
            cached_tokens: 4,
            completion_tokens: 3,
            text: text.into(),
            tail: tail.into(),
            tokens: vec![1, 3, 0],
            time_to_first_token_ms: 1.0,
            total_ms: 2.0,
        }
    }

    #[test]
    fn chat_stream_has_openai_shape() {
        let mut s = StreamState::new(Endpoint::Chat, meta(), false, false);
        let first = s.start(None);
        assert_eq!(first.len(), 1);
        let c = &first[0];
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], "chatcmpl-7");
        assert_eq!(c["created"], 1700000000);
        assert_eq!(c["model"], "m");
        assert_eq!(
            c["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
        assert!(c.get("usage").is_none(), "no usage key unless asked for");

        let c = s.token(&tok(1, "He", None), &Letters).unwrap();
        assert_eq!(c["choices"][0]["delta"], json!({"content": "He"}));
        assert!(s.token(&tok(3, "", None), &Letters).is_none());
        let end = s.done(&finished(FinishReason::StopString, "Hello", "llo"));
        assert_eq!(end.len(), 2);
        assert_eq!(end[0]["choices"][0]["delta"], json!({"content": "llo"}));
        assert_eq!(end[1]["choices"][0]["delta"], json!({}));
        assert_eq!(end[1]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn include_usage_adds_a_last_chunk_and_nulls() {
        let mut s = StreamState::new(Endpoint::Chat, meta(), true, false);
        let first = s.start(None);
        assert_eq!(first[0]["usage"], Value::Null);
        assert!(first[0].as_object().unwrap().contains_key("usage"));
        let end = s.done(&finished(FinishReason::MaxTokens, "x", ""));
        assert_eq!(end.len(), 2);
        assert_eq!(end[0]["choices"][0]["finish_reason"], "length");
        assert_eq!(end[0]["usage"], Value::Null);
        assert_eq!(end[1]["choices"], json!([]));
        assert_eq!(
            end[1]["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                   "prompt_tokens_details": {"cached_tokens": 4}})
        );
    }

    #[test]
    fn held_back_logprobs_travel_with_the_next_text() {
        let mut s = StreamState::new(Endpoint::Chat, meta(), false, true);
        s.start(None);
        assert!(s.token(&tok(1, "", Some(-0.5)), &Letters).is_none());
        let c = s.token(&tok(3, "bd", Some(-1.0)), &Letters).unwrap();
        let content = &c["choices"][0]["logprobs"]["content"];
        assert_eq!(content.as_array().unwrap().len(), 2);
        assert_eq!(content[0]["token"], "b");
        assert_eq!(content[0]["bytes"], json!([98]));
        assert_eq!(content[0]["logprob"], json!(-0.5));
        assert_eq!(content[1]["top_logprobs"][1]["logprob"], json!(-9999.0));
        // The end-of-generation token is not reported.
        assert!(s.token(&tok(0, "", Some(-0.1)), &Letters).is_none());
        let end = s.done(&finished(FinishReason::EndOfGeneration, "bd", ""));
        assert_eq!(end.len(), 1);
        assert_eq!(end[0]["choices"][0]["logprobs"], Value::Null);
    }

    #[test]
    fn completion_stream_and_logprobs() {
        let m = Meta {
            id: "cmpl-1".into(),
            ..meta()
        };
        let mut s = StreamState::new(Endpoint::Completion, m, false, true);
        let first = s.start(Some("Hi"));
        assert_eq!(first[0]["object"], "text_completion");
        assert_eq!(first[0]["choices"][0]["text"], "Hi");
        assert_eq!(first[0]["choices"][0]["logprobs"], Value::Null);
        let c = s.token(&tok(1, "b", Some(-0.25)), &Letters).unwrap();
        let l = &c["choices"][0]["logprobs"];
        assert_eq!(l["tokens"], json!(["b"]));
        assert_eq!(l["token_logprobs"], json!([-0.25]));
        assert_eq!(l["top_logprobs"], json!([{"b": -0.25, "c": -9999.0}]));
        assert_eq!(l["text_offset"], json!([2]));
        let end = s.done(&finished(FinishReason::MaxTokens, "b", ""));
        assert_eq!(end[0]["choices"][0]["text"], "");
        assert_eq!(end[0]["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn failures_end_the_stream_with_an_error_object() {
        let mut s = StreamState::new(Endpoint::Chat, meta(), true, false);
        let end = s.done(&finished(FinishReason::Failed("mask".into()), "", ""));
        assert_eq!(end.len(), 1);
        assert_eq!(end[0]["error"]["type"], "server_error");
        assert!(end[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mask"));
    }

    #[test]
    fn whole_objects() {
        let f = finished(FinishReason::EndOfGeneration, "Hello", "");
        let c = chat_completion(&meta(), &f, None);
        assert_eq!(c["object"], "chat.completion");
        assert_eq!(c["choices"][0]["message"]["role"], "assistant");
        assert_eq!(c["choices"][0]["message"]["content"], "Hello");
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        assert_eq!(c["choices"][0]["logprobs"], Value::Null);
        assert_eq!(c["usage"]["total_tokens"], 13);
        let t = text_completion(&meta(), &f, Some("Say "), None);
        assert_eq!(t["object"], "text_completion");
        assert_eq!(t["choices"][0]["text"], "Say Hello");
        assert_eq!(sse(&json!({"a": 1})), "data: {\"a\":1}\n\n");
    }
}
