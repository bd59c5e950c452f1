//! Request bodies of `/v1/chat/completions` and `/v1/completions`, read
//! from JSON and checked field by field: a wrong type or a value out of
//! range is a 400 that names the field. Fields this server does not know
//! are ignored, as OpenAI's API ignores them; fields it knows but cannot
//! honour (`n` above 1, `logit_bias`, `tools`, `suffix`) are refused rather
//! than silently dropped.

use serde_json::{Map, Value};
use strata::sampler::SamplerParams;
use strata::scheduler::MAX_TOP_LOGPROBS;

use crate::error::ApiError;

/// Most stop strings a request may give (OpenAI's limit).
pub const MAX_STOP: usize = 4;

/// `response_format`.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching `schema` (`None`: the request gave no schema, so any
    /// JSON value).
    JsonSchema {
        name: String,
        schema: Option<Value>,
        strict: bool,
    },
}

/// Sampling fields, as given (`None`: not given).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Extension (llama.cpp, vLLM): keep the K most likely tokens.
    pub top_k: Option<usize>,
    /// Extension (llama.cpp, vLLM).
    pub min_p: Option<f32>,
    /// Extension (vLLM's name): llama.cpp-style repetition penalty.
    pub repetition_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub seed: Option<u64>,
}

/// OpenAI's default temperature.
pub const DEFAULT_TEMPERATURE: f32 = 1.0;

impl Sampling {
    /// The sampler for a request. `window` is how many recent tokens the
    /// penalties look at (the server passes the context size, so that they
    /// cover the whole sequence as OpenAI's do); `seed` is used when the
    /// request gave none.
    pub fn sampler(&self, window: usize, seed: u64) -> SamplerParams {
        let mut p = SamplerParams::greedy();
        p.temperature = self.temperature.unwrap_or(DEFAULT_TEMPERATURE);
        p.top_p = self.top_p.unwrap_or(1.0);
        p.top_k = self.top_k.unwrap_or(0);
        p.min_p = self.min_p.unwrap_or(0.0);
        p.repeat_penalty = self.repetition_penalty.unwrap_or(1.0);
        p.frequency_penalty = self.frequency_penalty.unwrap_or(0.0);
        p.presence_penalty = self.presence_penalty.unwrap_or(0.0);
        p.repeat_last_n = window;
        p.seed = self.seed.unwrap_or(seed);
        p
    }
}

/// What both endpoints take besides their prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    pub model: Option<String>,
    /// `max_completion_tokens` (chat) or `max_tokens`; `None`: the rest of
    /// the context.
    pub max_tokens: Option<usize>,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `Some(k)`: report each token's log-probability and its `k` most
    /// likely alternatives.
    pub logprobs: Option<usize>,
    pub response_format: ResponseFormat,
}

/// A chat message, its content flattened to text.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub common: Common,
}

/// `prompt` of `/v1/completions`.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    /// Put the prompt's text before the completion's.
    pub echo: bool,
    pub common: Common,
}

/// Parse a body: JSON, then an object.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!(
            "The request body is not valid JSON ({e}); send a JSON object."
        ))
    })?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::invalid(format!(
            "The request body must be a JSON object, got {}.",
            type_name(&other)
        ))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed access to a body's fields; `null` reads as absent.
struct Fields<'a>(&'a Map<String, Value>);

fn wrong_type(name: &str, want: &str, got: &Value) -> ApiError {
    ApiError::invalid_param(
        name,
        format!("'{name}' must be {want}, got {}.", type_name(got)),
    )
}

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(wrong_type(name, "a boolean", v)),
        }
    }

    fn str(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(wrong_type(name, "a string", v)),
        }
    }

    /// A number in `lo..=hi`.
    fn number(&self, name: &str, lo: f32, hi: f32) -> Result<Option<f32>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let x = v.as_f64().ok_or_else(|| wrong_type(name, "a number", v))?;
        if !(lo as f64..=hi as f64).contains(&x) {
            return Err(ApiError::invalid_param(
                name,
                format!("'{name}' must be between {lo} and {hi}, got {x}."),
            ));
        }
        Ok(Some(x as f32))
    }

    /// A whole number in `lo..=hi`.
    fn integer(&self, name: &str, lo: i128, hi: i128) -> Result<Option<i128>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let x = integer_of(v).ok_or_else(|| wrong_type(name, "an integer", v))?;
        if !(lo..=hi).contains(&x) {
            return Err(ApiError::invalid_param(
                name,
                format!("'{name}' must be between {lo} and {hi}, got {x}."),
            ));
        }
        Ok(Some(x))
    }

    fn count(&self, name: &str, lo: usize) -> Result<Option<usize>, ApiError> {
        Ok(self
            .integer(name, lo as i128, u64::MAX as i128)?
            .map(|x| usize::try_from(x).unwrap_or(usize::MAX)))
    }
}

/// A JSON number that is a whole number (`3` or `3.0`).
fn integer_of(v: &Value) -> Option<i128> {
    if let Some(i) = v.as_i64() {
        return Some(i as i128);
    }
    if let Some(u) = v.as_u64() {
        return Some(u as i128);
    }
    let f = v.as_f64()?;
    // `as` saturates: 1e300 reads as i128::MAX, out of every range.
    (f.fract() == 0.0).then_some(f as i128)
}

fn stop_of(f: &Fields) -> Result<Vec<String>, ApiError> {
    let list = match f.get("stop") {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            if a.len() > MAX_STOP {
                return Err(ApiError::invalid_param(
                    "stop",
                    format!(
                        "'stop' may hold at most {MAX_STOP} strings, got {}.",
                        a.len()
                    ),
                ));
            }
            a.iter()
                .map(|s| match s {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(wrong_type("stop", "a string or an array of strings", other)),
                })
                .collect::<Result<_, _>>()?
        }
        Some(v) => return Err(wrong_type("stop", "a string or an array of strings", v)),
    };
    // An empty stop string would end every generation at once; OpenAI
    // ignores it.
    Ok(list.into_iter().filter(|s| !s.is_empty()).collect())
}

fn response_format_of(f: &Fields) -> Result<ResponseFormat, ApiError> {
    let Some(v) = f.get("response_format") else {
        return Ok(ResponseFormat::Text);
    };
    let Value::Object(m) = v else {
        return Err(wrong_type("response_format", "an object", v));
    };
    let rf = Fields(m);
    let ty = rf
        .str("type")
        .map_err(|e| e.with_param("response_format.type"))?
        .ok_or_else(|| {
            ApiError::invalid_param(
                "response_format.type",
                "'response_format' needs a 'type': \"text\", \"json_object\" or \"json_schema\".",
            )
        })?;
    match ty {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let js = match rf.get("json_schema") {
                Some(Value::Object(js)) => js,
                Some(v) => return Err(wrong_type("response_format.json_schema", "an object", v)),
                None => {
                    return Err(ApiError::invalid_param(
                        "response_format.json_schema",
                        "'response_format' of type \"json_schema\" needs a 'json_schema' object.",
                    ))
                }
            };
            let jf = Fields(js);
            let name = jf
                .str("name")
                .map_err(|e| e.with_param("response_format.json_schema.name"))?
                .unwrap_or("response")
                .to_string();
            let schema = match jf.get("schema") {
                None => None,
                Some(s @ Value::Object(_)) | Some(s @ Value::Bool(_)) => Some(s.clone()),
                Some(v) => {
                    return Err(wrong_type(
                        "response_format.json_schema.schema",
                        "an object (a JSON Schema)",
                        v,
                    ))
                }
            };
            let strict = jf
                .bool("strict")
                .map_err(|e| e.with_param("response_format.json_schema.strict"))?
                .unwrap_or(false);
            Ok(ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            })
        }
        other => Err(ApiError::invalid_param(
            "response_format.type",
            format!(
                "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\", \
                 got \"{other}\"."
            ),
        )),
    }
}

/// Refuse a field that is known but cannot be honoured when it asks for
/// something (`null`, `{}` and `[]` ask for nothing).
fn unsupported(f: &Fields, name: &str) -> Result<(), ApiError> {
    let asks = match f.get(name) {
        None => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    if asks {
        return Err(ApiError::invalid_param(
            name,
            format!("'{name}' is not supported by this server."),
        ));
    }
    Ok(())
}

/// The fields both endpoints share. `max_names` lists the token-budget
/// fields in order of precedence.
fn common_of(f: &Fields, max_names: &[&str], logprobs: Option<usize>) -> Result<Common, ApiError> {
    let model = f.str("model")?.map(str::to_string);
    let mut max_tokens = None;
    for name in max_names {
        if let Some(n) = f.count(name, 1)? {
            max_tokens.get_or_insert(n);
        }
    }
    let seed = f
        .integer("seed", i64::MIN as i128, u64::MAX as i128)?
        // A negative seed names the same 64 bits as its two's complement.
        .map(|s| if s < 0 { s as i64 as u64 } else { s as u64 });
    let sampling = Sampling {
        temperature: f.number("temperature", 0.0, 2.0)?,
        top_p: f.number("top_p", 0.0, 1.0)?,
        top_k: f.count("top_k", 0)?,
        min_p: f.number("min_p", 0.0, 1.0)?,
        repetition_penalty: match f.number("repetition_penalty", 0.0, 10.0)? {
            Some(p) if p <= 0.0 => {
                return Err(ApiError::invalid_param(
                    "repetition_penalty",
                    "'repetition_penalty' must be above 0 (1 is none).",
                ))
            }
            p => p,
        },
        frequency_penalty: f.number("frequency_penalty", -2.0, 2.0)?,
        presence_penalty: f.number("presence_penalty", -2.0, 2.0)?,
        seed,
    };
    if let Some(n) = f.integer("n", i64::MIN as i128, u64::MAX as i128)? {
        if n != 1 {
            return Err(ApiError::invalid_param(
                "n",
                format!("'n' must be 1 (one choice per request), got {n}."),
            ));
        }
    }
    unsupported(f, "logit_bias")?;
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(m)) => Fields(m)
            .bool("include_usage")
            .map_err(|e| e.with_param("stream_options.include_usage"))?
            .unwrap_or(false),
        Some(v) => return Err(wrong_type("stream_options", "an object", v)),
    };
    Ok(Common {
        model,
        max_tokens,
        sampling,
        stop: stop_of(f)?,
        stream,
        include_usage,
        logprobs,
        response_format: response_format_of(f)?,
    })
}

/// A message's content: a string, or an array of text parts.
fn content_of(i: usize, v: Option<&Value>) -> Result<String, ApiError> {
    let param = format!("messages[{i}].content");
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for p in parts {
                let Some(m) = p.as_object() else {
                    return Err(wrong_type(&param, "a string or an array of text parts", p));
                };
                match m.get("type").and_then(Value::as_str) {
                    Some("text") => match m.get("text") {
                        Some(Value::String(t)) => text.push_str(t),
                        other => {
                            return Err(wrong_type(
                                &format!("{param}.text"),
                                "a string",
                                other.unwrap_or(&Value::Null),
                            ))
                        }
                    },
                    Some(other) => {
                        return Err(ApiError::invalid_param(
                            &param,
                            format!(
                                "Content parts of type '{other}' are not supported; only \"text\"."
                            ),
                        ))
                    }
                    None => {
                        return Err(ApiError::invalid_param(
                            &param,
                            "Every content part needs a 'type'.",
                        ))
                    }
                }
            }
            Ok(text)
        }
        Some(v) => Err(wrong_type(&param, "a string or an array of text parts", v)),
    }
}

fn messages_of(f: &Fields) -> Result<Vec<Message>, ApiError> {
    let list = match f.get("messages") {
        Some(Value::Array(a)) => a,
        Some(v) => return Err(wrong_type("messages", "an array of messages", v)),
        None => {
            return Err(ApiError::invalid_param(
                "messages",
                "'messages' is required: an array of {\"role\", \"content\"} objects.",
            ))
        }
    };
    if list.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "'messages' must hold at least one message.",
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(wrong_type(&format!("messages[{i}]"), "an object", m));
        };
        let role = match m.get("role") {
            Some(Value::String(r)) => r.as_str(),
            Some(v) => return Err(wrong_type(&format!("messages[{i}].role"), "a string", v)),
            None => {
                return Err(ApiError::invalid_param(
                    &format!("messages[{i}].role"),
                    format!("messages[{i}] needs a 'role'."),
                ))
            }
        };
        let role = match role {
            // OpenAI's newer name for the system role; templates know
            // "system".
            "developer" => "system",
            "system" | "user" | "assistant" | "tool" => role,
            other => {
                return Err(ApiError::invalid_param(
                    &format!("messages[{i}].role"),
                    format!(
                        "messages[{i}].role must be \"system\", \"developer\", \"user\", \
                         \"assistant\" or \"tool\", got \"{other}\"."
                    ),
                ))
            }
        };
        out.push(Message {
            role: role.to_string(),
            content: content_of(i, m.get("content"))?,
        });
    }
    Ok(out)
}

/// `/v1/chat/completions`.
pub fn chat_request(body: &Map<String, Value>) -> Result<ChatRequest, ApiError> {
    let f = Fields(body);
    let messages = messages_of(&f)?;
    let logprobs = f.bool("logprobs")?.unwrap_or(false);
    let top = f.integer("top_logprobs", 0, MAX_TOP_LOGPROBS as i128)?;
    if top.is_some() && !logprobs {
        return Err(ApiError::invalid_param(
            "top_logprobs",
            "'top_logprobs' needs 'logprobs' set to true.",
        ));
    }
    let logprobs = logprobs.then(|| top.unwrap_or(0) as usize);
    unsupported(&f, "tools")?;
    unsupported(&f, "functions")?;
    let common = common_of(&f, &["max_completion_tokens", "max_tokens"], logprobs)?;
    Ok(ChatRequest { messages, common })
}

/// `/v1/completions`.
pub fn completion_request(body: &Map<String, Value>) -> Result<CompletionRequest, ApiError> {
    let f = Fields(body);
    let prompt = prompt_of(&f)?;
    let logprobs = f
        .integer("logprobs", 0, MAX_TOP_LOGPROBS as i128)?
        .map(|k| k as usize);
    let echo = f.bool("echo")?.unwrap_or(false);
    if echo && logprobs.is_some() {
        return Err(ApiError::invalid_param(
            "echo",
            "'echo' with 'logprobs' would need the prompt's log-probabilities, which this \
             server does not compute.",
        ));
    }
    unsupported(&f, "suffix")?;
    if let Some(b) = f.integer("best_of", i64::MIN as i128, u64::MAX as i128)? {
        if b != 1 {
            return Err(ApiError::invalid_param(
                "best_of",
                format!("'best_of' must be 1, got {b}."),
            ));
        }
    }
    let common = common_of(&f, &["max_tokens"], logprobs)?;
    Ok(CompletionRequest {
        prompt,
        echo,
        common,
    })
}

fn tokens_of(a: &[Value]) -> Option<Vec<u32>> {
    a.iter()
        .map(|t| integer_of(t).and_then(|x| u32::try_from(x).ok()))
        .collect()
}

fn prompt_of(f: &Fields) -> Result<Prompt, ApiError> {
    let bad = |v: &Value| {
        wrong_type(
            "prompt",
            "a string, an array of one string, or an array of token ids",
            v,
        )
    };
    let one_only = || {
        ApiError::invalid_param(
            "prompt",
            "'prompt' may hold one prompt per request; send the others separately.",
        )
    };
    match f.get("prompt") {
        None => Err(ApiError::invalid_param("prompt", "'prompt' is required.")),
        Some(Value::String(s)) => Ok(Prompt::Text(s.clone())),
        Some(v @ Value::Array(a)) => match a.as_slice() {
            [] => Err(ApiError::invalid_param("prompt", "'prompt' is empty.")),
            [Value::String(s)] => Ok(Prompt::Text(s.clone())),
            [Value::String(_), ..] => Err(one_only()),
            [Value::Array(inner)] => tokens_of(inner).map(Prompt::Tokens).ok_or_else(|| bad(v)),
            [Value::Array(_), ..] => Err(one_only()),
            _ => tokens_of(a).map(Prompt::Tokens).ok_or_else(|| bad(v)),
        },
        Some(v) => Err(bad(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(v: Value) -> Result<ChatRequest, ApiError> {
        chat_request(v.as_object().unwrap())
    }

    fn comp(v: Value) -> Result<CompletionRequest, ApiError> {
        completion_request(v.as_object().unwrap())
    }

    fn msgs() -> Value {
        json!([{"role": "user", "content": "Hi"}])
    }

    #[test]
    fn body_must_be_a_json_object() {
        assert!(parse_body(b"{\"a\": 1}").is_ok());
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            b"\"x\"",
            b"\xff\xfe\x00",
            b"",
            b"{",
        ] {
            let e = parse_body(bad).unwrap_err();
            assert_eq!(e.status.as_u16(), 400);
            assert_eq!(e.kind, "invalid_request_error");
        }
    }

    #[test]
    fn minimal_chat_takes_defaults() {
        let r = chat(json!({"model": "m", "messages": msgs()})).unwrap();
        assert_eq!(
            r.messages,
            vec![Message {
                role: "user".into(),
                content: "Hi".into()
            }]
        );
        let c = &r.common;
        assert_eq!(c.model.as_deref(), Some("m"));
        assert_eq!(c.max_tokens, None);
        assert!(!c.stream && !c.include_usage);
        assert_eq!(c.logprobs, None);
        assert_eq!(c.response_format, ResponseFormat::Text);
        let s = c.sampling.sampler(4096, 7);
        assert_eq!(s.temperature, DEFAULT_TEMPERATURE);
        assert_eq!((s.top_p, s.top_k, s.min_p), (1.0, 0, 0.0));
        assert_eq!(s.seed, 7);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn every_field_is_read() {
        let r = chat(json!({
            "model": "m", "messages": msgs(), "max_tokens": 9, "max_completion_tokens": 5,
            "temperature": 0.5, "top_p": 0.9, "seed": 11, "stop": ["a", "b"],
            "n": 1, "stream": true, "stream_options": {"include_usage": true},
            "logprobs": true, "top_logprobs": 3, "frequency_penalty": 0.5,
            "presence_penalty": -1, "user": "ignored", "unknown_field": {"x": 1},
            "response_format": {"type": "json_schema", "json_schema":
                {"name": "p", "schema": {"type": "object"}, "strict": true}}
        }))
        .unwrap();
        let c = &r.common;
        assert_eq!(c.max_tokens, Some(5), "max_completion_tokens wins");
        assert_eq!(c.stop, vec!["a", "b"]);
        assert!(c.stream && c.include_usage);
        assert_eq!(c.logprobs, Some(3));
        assert_eq!(
            c.response_format,
            ResponseFormat::JsonSchema {
                name: "p".into(),
                schema: Some(json!({"type": "object"})),
                strict: true
            }
        );
        let s = c.sampling.sampler(100, 0);
        assert_eq!((s.temperature, s.top_p, s.seed), (0.5, 0.9, 11));
        assert_eq!((s.frequency_penalty, s.presence_penalty), (0.5, -1.0));
        assert_eq!(s.repeat_last_n, 100);
        assert!(s.validate().is_ok());
    }

    /// Each bad body is refused with a 400 naming the field.
    #[test]
    fn bad_fields_are_400_with_their_name() {
        let cases = [
            (json!({"messages": "hi"}), "messages"),
            (json!({"messages": []}), "messages"),
            (json!({}), "messages"),
            (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
            (
                json!({"messages": [{"role": "wizard", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"messages": [{"role": "user", "content": 5}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": msgs(), "temperature": -0.1}),
                "temperature",
            ),
            (
                json!({"messages": msgs(), "temperature": 2.5}),
                "temperature",
            ),
            (
                json!({"messages": msgs(), "temperature": "hot"}),
                "temperature",
            ),
            (json!({"messages": msgs(), "top_p": 1.5}), "top_p"),
            (json!({"messages": msgs(), "max_tokens": -1}), "max_tokens"),
            (json!({"messages": msgs(), "max_tokens": 0}), "max_tokens"),
            (json!({"messages": msgs(), "max_tokens": 1.5}), "max_tokens"),
            (
                json!({"messages": msgs(), "max_tokens": "10"}),
                "max_tokens",
            ),
            (json!({"messages": msgs(), "n": 2}), "n"),
            (
                json!({"messages": msgs(), "stop": ["a", "b", "c", "d", "e"]}),
                "stop",
            ),
            (json!({"messages": msgs(), "stop": 3}), "stop"),
            (json!({"messages": msgs(), "stream": "yes"}), "stream"),
            (
                json!({"messages": msgs(), "frequency_penalty": 3}),
                "frequency_penalty",
            ),
            (
                json!({"messages": msgs(), "presence_penalty": -2.1}),
                "presence_penalty",
            ),
            (
                json!({"messages": msgs(), "top_logprobs": 2}),
                "top_logprobs",
            ),
            (
                json!({"messages": msgs(), "logprobs": true, "top_logprobs": 21}),
                "top_logprobs",
            ),
            (json!({"messages": msgs(), "seed": "x"}), "seed"),
            (json!({"messages": msgs(), "model": 3}), "model"),
            (
                json!({"messages": msgs(), "logit_bias": {"1": 5}}),
                "logit_bias",
            ),
            (
                json!({"messages": msgs(), "response_format": {"type": "xml"}}),
                "response_format.type",
            ),
            (
                json!({"messages": msgs(), "response_format": {"type": "json_schema"}}),
                "response_format.json_schema",
            ),
            (
                json!({"messages": msgs(), "response_format": "json"}),
                "response_format",
            ),
        ];
        for (body, param) in cases {
            let e = chat(body.clone()).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
    }

    #[test]
    fn nulls_read_as_absent_and_parts_are_joined() {
        let r = chat(json!({
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null}
            ],
            "temperature": null, "stop": null, "logit_bias": {}, "tools": [], "seed": -1
        }))
        .unwrap();
        assert_eq!(r.messages[0].role, "system");
        assert_eq!(r.messages[0].content, "ab");
        assert_eq!(r.messages[1].content, "");
        assert_eq!(r.common.sampling.temperature, None);
        assert_eq!(r.common.sampling.seed, Some(u64::MAX));
    }

    #[test]
    fn completion_prompts() {
        let p = |v: Value| comp(json!({"prompt": v})).map(|r| r.prompt);
        assert_eq!(p(json!("hi")).unwrap(), Prompt::Text("hi".into()));
        assert_eq!(p(json!(["hi"])).unwrap(), Prompt::Text("hi".into()));
        assert_eq!(p(json!([1, 2, 3])).unwrap(), Prompt::Tokens(vec![1, 2, 3]));
        assert_eq!(p(json!([[4, 5]])).unwrap(), Prompt::Tokens(vec![4, 5]));
        for bad in [
            json!(["a", "b"]),
            json!([[1], [2]]),
            json!([-1]),
            json!([1.5]),
            json!([]),
            json!(5),
            json!({"a": 1}),
            json!([4294967296u64]),
        ] {
            let e = p(bad.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("prompt"), "{bad}");
        }
        let e = comp(json!({})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
    }

    #[test]
    fn completion_fields() {
        let r =
            comp(json!({"prompt": "x", "logprobs": 2, "max_tokens": 3, "echo": false})).unwrap();
        assert_eq!(r.common.logprobs, Some(2));
        assert_eq!(r.common.max_tokens, Some(3));
        // max_completion_tokens is chat's name only.
        let r = comp(json!({"prompt": "x", "max_completion_tokens": 3})).unwrap();
        assert_eq!(r.common.max_tokens, None);
        for (body, param) in [
            (json!({"prompt": "x", "logprobs": 21}), "logprobs"),
            (json!({"prompt": "x", "logprobs": true}), "logprobs"),
            (json!({"prompt": "x", "echo": true, "logprobs": 1}), "echo"),
            (json!({"prompt": "x", "suffix": "y"}), "suffix"),
            (json!({"prompt": "x", "best_of": 3}), "best_of"),
        ] {
            let e = comp(body.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn huge_numbers_are_answered() {
        let r = chat(json!({"messages": msgs(), "max_tokens": 1e300})).unwrap_err();
        assert_eq!(r.param.as_deref(), Some("max_tokens"));
        let r = chat(json!({"messages": msgs(), "max_tokens": u64::MAX})).unwrap();
        assert_eq!(r.common.max_tokens, Some(usize::MAX));
        let r = chat(json!({"messages": msgs(), "seed": u64::MAX})).unwrap();
        assert_eq!(r.common.sampling.seed, Some(u64::MAX));
    }
}
