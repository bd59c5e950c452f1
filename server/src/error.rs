//! Errors in OpenAI's shape: `{"error": {"message", "type", "param",
//! "code"}}` with the HTTP status a client of OpenAI's API expects, and
//! the mapping from the library's typed refusals to them.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// An error answer: the status and the four fields of OpenAI's error object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`
    /// (not used: OpenAI answers a bad key with `invalid_request_error`),
    /// `rate_limit_error`, `server_error`.
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    /// 400: the request is malformed, a field has the wrong type or is out
    /// of range.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 naming the field at fault.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::invalid(message).with_param(param)
    }

    pub fn with_param(mut self, param: &str) -> ApiError {
        self.param = Some(param.to_string());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    /// 400 `context_length_exceeded`: the prompt leaves no room in a
    /// sequence's context.
    pub fn context_length(prompt_tokens: usize, n_ctx: usize) -> ApiError {
        ApiError::invalid(format!(
            "This model's maximum context length is {n_ctx} tokens, but the prompt has \
             {prompt_tokens} tokens (at least one position must be left to generate into)."
        ))
        .with_param("messages")
        .with_code("context_length_exceeded")
    }

    /// 404 `model_not_found`.
    pub fn model_not_found(asked: &str, served: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model '{asked}' does not exist; this server serves '{served}'."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// 401 `invalid_api_key`.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .with_code("invalid_api_key")
    }

    /// 404 for a path no route serves.
    pub fn no_route(method: &str, path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Unknown request URL: {method} {path}."),
        )
        .with_code("unknown_url")
    }

    /// 405 for a known path asked with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!("{method} is not allowed on {path}."),
        )
        .with_code("method_not_allowed")
    }

    /// 413: the body is over the server's limit.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is larger than this server's limit of {limit} bytes."),
        )
        .with_code("request_too_large")
    }

    /// 429: every slot is busy and the queue is full (sent with
    /// `Retry-After: 1`).
    pub fn queue_full(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "The server is busy: every slot is in use and {limit} requests are already \
                 waiting. Retry shortly."
            ),
        )
        .with_code("queue_full")
    }

    /// 500: a failure on the server's side.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// 503: the server is shutting down.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
            .with_code("unavailable")
    }

    /// The body: `{"error": {...}}`.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// The library's refusal of a request at submission, as the status
    /// OpenAI's clients expect.
    pub fn from_strata(e: &strata::Error) -> ApiError {
        use strata::Error as E;
        match e {
            E::QueueFull { limit } => ApiError::queue_full(*limit),
            E::ContextFull { needed, limit } => ApiError::context_length(*needed, *limit),
            E::EmptyPrompt => ApiError::invalid(
                "The prompt is empty: at least one token is needed after tokenization.",
            )
            .with_code("empty_prompt"),
            E::TokenOutOfRange { .. } => ApiError::invalid_param("prompt", e.to_string()),
            E::KvBudget { .. } => ApiError::invalid(format!(
                "{e}: lower max_tokens or shorten the prompt, or start the server with a \
                 larger budget."
            ))
            .with_param("max_tokens")
            .with_code("kv_budget_exceeded"),
            E::InvalidParameter { name, .. } => ApiError::invalid_param(name, e.to_string()),
            E::SchedulerStopped => ApiError::unavailable("The server is shutting down."),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.status == StatusCode::TOO_MANY_REQUESTS;
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if retry {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_openai_shape() {
        let e = ApiError::invalid_param("temperature", "too hot");
        let b = e.body();
        assert_eq!(b["error"]["message"], "too hot");
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert_eq!(b["error"]["param"], "temperature");
        assert_eq!(b["error"]["code"], Value::Null);
        assert_eq!(b.as_object().map(|o| o.len()), Some(1));
        assert_eq!(b["error"].as_object().map(|o| o.len()), Some(4));
    }

    #[test]
    fn library_refusals_map_to_statuses() {
        use strata::Error as E;
        let cases = [
            (E::QueueFull { limit: 3 }, 429, Some("queue_full")),
            (
                E::ContextFull {
                    needed: 5000,
                    limit: 4096,
                },
                400,
                Some("context_length_exceeded"),
            ),
            (
                E::KvBudget {
                    needed: 10,
                    budget: 5,
                },
                400,
                Some("kv_budget_exceeded"),
            ),
            (E::EmptyPrompt, 400, Some("empty_prompt")),
            (E::SchedulerStopped, 503, Some("unavailable")),
            (
                E::InvalidParameter {
                    name: "top_p",
                    reason: "x".into(),
                },
                400,
                None,
            ),
            (E::Tokenizer("boom".into()), 500, None),
        ];
        for (err, status, code) in cases {
            let a = ApiError::from_strata(&err);
            assert_eq!(a.status.as_u16(), status, "{err}");
            assert_eq!(a.code, code, "{err}");
        }
    }

    #[test]
    fn context_message_carries_both_numbers() {
        let a = ApiError::context_length(5000, 4096);
        assert!(a.message.contains("5000") && a.message.contains("4096"));
    }

    #[test]
    fn queue_full_sends_retry_after() {
        let r = ApiError::queue_full(1).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "1");
    }
}
