//! The HTTP side: routes, request preparation (template, tokens, limits,
//! sampler, constraint), the bridge from the scheduler's thread to the
//! connection's task, streaming, authentication, panics and shutdown.
//!
//! A request's life: its body is parsed and checked, rendered and
//! tokenized on a blocking thread ([`App::prepare`]); it is submitted to
//! the [`Scheduler`] with a sink that forwards each event into a tokio
//! channel; the handler reads that channel, either into one JSON answer or
//! into a server-sent-event stream. A [`CancelGuard`] held by the handler
//! (or by the stream) cancels the request when it is dropped before the
//! request finished, so a client that goes away frees its slot at the next
//! step.

use std::future::IntoFuture;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{FutureExt, StreamExt};
use serde_json::json;
use strata::scheduler::{Event, Request, RequestId, Scheduler};
use tokio::sync::mpsc;

use crate::constraint::JsonConstraints;
use crate::error::ApiError;
use crate::openai::{self, Endpoint, Meta, StreamState};
use crate::params::{self, Common, Prompt, ResponseFormat};
use crate::template::Template;

/// Largest request body accepted (larger ones get 413).
pub const BODY_LIMIT: usize = 8 << 20;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    /// The model's name in `/v1/models` and in responses; requests naming
    /// another model get 404.
    pub model_id: String,
    /// When set, every `/v1` route needs `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    pub body_limit: usize,
    /// After SIGINT/SIGTERM, how long to wait for connections to close.
    pub shutdown_grace: Duration,
}

impl ServeOptions {
    pub fn new(model_id: impl Into<String>) -> ServeOptions {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8080,
            model_id: model_id.into(),
            api_key: None,
            body_limit: BODY_LIMIT,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What every handler shares.
pub struct App {
    scheduler: Arc<Scheduler>,
    /// The model's chat template, or why it has none.
    template: Result<Template, String>,
    /// Built on the first JSON-constrained request (it takes seconds).
    json: OnceLock<Result<JsonConstraints, String>>,
    opts: ServeOptions,
    /// When the server started (the model's `created`).
    created: u64,
    next_id: AtomicU64,
}

/// A request ready to submit.
struct Prepared {
    endpoint: Endpoint,
    request: Request,
    stream: bool,
    include_usage: bool,
    logprobs: bool,
    /// The prompt's text, for a completion with `echo`.
    echo: Option<String>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A seed for a request that gave none: different for every request (a
/// fresh std `RandomState`, keyed from the OS, hashing the clock).
pub fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one(nanos)
}

impl App {
    pub fn new(scheduler: Arc<Scheduler>, opts: ServeOptions) -> App {
        let template = Template::from_model(scheduler.model());
        App {
            scheduler,
            template,
            json: OnceLock::new(),
            opts,
            created: now_secs(),
            next_id: AtomicU64::new(1),
        }
    }

    fn n_ctx(&self) -> usize {
        self.scheduler.options().n_ctx
    }

    fn check_model(&self, c: &Common) -> Result<(), ApiError> {
        match &c.model {
            Some(m) if *m != self.opts.model_id => {
                Err(ApiError::model_not_found(m, &self.opts.model_id))
            }
            _ => Ok(()),
        }
    }

    /// Parse, check, render and tokenize a body (on a blocking thread: a
    /// large prompt takes a while to tokenize, a schema to compile).
    fn prepare(&self, endpoint: Endpoint, body: &[u8]) -> Result<Prepared, ApiError> {
        let map = params::parse_body(body)?;
        let tok = self.scheduler.model().tokenizer();
        let encode = |text: &str, add_special: bool| {
            tok.encode(text, add_special, true)
                .map_err(|e| ApiError::invalid(format!("The prompt cannot be tokenized: {e}")))
        };
        let (common, prompt, echo, what) = match endpoint {
            Endpoint::Chat => {
                let r = params::chat_request(&map)?;
                self.check_model(&r.common)?;
                let template = self.template.as_ref().map_err(|e| {
                    ApiError::invalid(format!(
                        "This model has no chat template ({e}); use /v1/completions."
                    ))
                })?;
                let msgs: Vec<(String, String)> = r
                    .messages
                    .into_iter()
                    .map(|m| (m.role, m.content))
                    .collect();
                let text = template
                    .render(&msgs)
                    .map_err(|e| ApiError::invalid_param("messages", e))?;
                // The template writes any BOS itself.
                (r.common, encode(&text, false)?, None, "messages")
            }
            Endpoint::Completion => {
                let r = params::completion_request(&map)?;
                self.check_model(&r.common)?;
                let (tokens, text) = match r.prompt {
                    Prompt::Text(t) => (encode(&t, true)?, t),
                    Prompt::Tokens(ids) => {
                        let n_vocab = self.scheduler.model().config().n_vocab;
                        if let Some(&id) = ids.iter().find(|&&t| t as usize >= n_vocab) {
                            return Err(ApiError::invalid_param(
                                "prompt",
                                format!(
                                    "Token id {id} is out of range: the vocabulary has \
                                     {n_vocab} tokens."
                                ),
                            ));
                        }
                        let text = tok.decode(&ids, false);
                        (ids, text)
                    }
                };
                (r.common, tokens, r.echo.then_some(text), "prompt")
            }
        };
        let n_ctx = self.n_ctx();
        if prompt.is_empty() {
            return Err(ApiError::invalid_param(
                what,
                "The prompt is empty: at least one token is needed.",
            ));
        }
        if prompt.len() >= n_ctx {
            return Err(ApiError::context_length(prompt.len(), n_ctx).with_param(what));
        }
        let rest = n_ctx - prompt.len();
        let constraint = match &common.response_format {
            ResponseFormat::Text => None,
            ResponseFormat::JsonObject => Some(self.json_constraint(None)?),
            ResponseFormat::JsonSchema { schema, .. } => {
                Some(self.json_constraint(Some(schema.as_ref().unwrap_or(&json!({}))))?)
            }
        };
        let request = Request {
            max_tokens: common.max_tokens.unwrap_or(rest).min(rest),
            sampler: common.sampling.sampler(n_ctx, random_seed()),
            stop: common.stop.clone(),
            top_logprobs: common.logprobs,
            constraint,
            ignore_eos: false,
            prompt,
        };
        request
            .sampler
            .validate()
            .map_err(|e| ApiError::from_strata(&e))?;
        Ok(Prepared {
            endpoint,
            request,
            stream: common.stream,
            include_usage: common.include_usage,
            logprobs: common.logprobs.is_some(),
            echo,
        })
    }

    fn json_constraint(
        &self,
        schema: Option<&serde_json::Value>,
    ) -> Result<Box<dyn strata::scheduler::Constraint>, ApiError> {
        let factory = self
            .json
            .get_or_init(|| JsonConstraints::new(self.scheduler.model()))
            .as_ref()
            .map_err(|e| ApiError::internal(format!("Constrained decoding is unavailable: {e}")))?;
        factory
            .constraint(schema)
            .map_err(|e| ApiError::invalid_param("response_format", e))
    }

    fn meta(&self, endpoint: Endpoint) -> Meta {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completion => "cmpl",
        };
        Meta {
            id: format!("{prefix}-{n}"),
            created: now_secs(),
            model: self.opts.model_id.clone(),
        }
    }
}

/// Cancels a request when dropped before it finished (its client went
/// away: the handler's future or the response stream was dropped).
struct CancelGuard {
    scheduler: Arc<Scheduler>,
    id: RequestId,
    armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            self.scheduler.cancel(self.id);
        }
    }
}

type Shared = Arc<App>;

/// The routes, with authentication, the body limit and the panic guard.
pub fn router(app: Shared) -> Router {
    let limit = app.opts.body_limit;
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|method: Method, uri: Uri| async move {
            ApiError::no_route(method.as_str(), uri.path())
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError::method_not_allowed(method.as_str(), uri.path())
        })
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(catch_panic))
        .with_state(app)
}

/// A panic in a handler answers 500; the server goes on.
pub async fn catch_panic(req: HttpRequest, next: Next) -> Response {
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => ApiError::internal(
            "The server failed while handling this request (an internal panic); it goes on \
             serving other requests.",
        )
        .into_response(),
    }
}

/// Compare without an early exit on the first differing byte.
fn same_key(given: &[u8], key: &[u8]) -> bool {
    given.len() == key.len() && given.iter().zip(key).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

/// The `Authorization` check of `/v1` routes, when a key is set.
pub fn check_auth(headers: &HeaderMap, key: &str) -> Result<(), ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "Missing API key: send it as 'Authorization: Bearer KEY'.",
        ));
    };
    let v = v.as_bytes();
    let given = match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case(b"bearer ") => v[7..].trim_ascii(),
        _ => {
            return Err(ApiError::unauthorized(
                "The Authorization header must be 'Bearer KEY'.",
            ))
        }
    };
    if !same_key(given, key.as_bytes()) {
        return Err(ApiError::unauthorized("Incorrect API key provided."));
    }
    Ok(())
}

async fn auth(State(app): State<Shared>, req: HttpRequest, next: Next) -> Response {
    let path = req.uri().path();
    let guarded = path == "/v1" || path.starts_with("/v1/");
    if let (true, Some(key)) = (guarded, app.opts.api_key.as_deref()) {
        if let Err(e) = check_auth(req.headers(), key) {
            return e.into_response();
        }
    }
    next.run(req).await
}

fn body_error(e: BytesRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(limit)
    } else {
        ApiError::invalid(format!("The request body could not be read: {e}"))
    }
}

async fn chat(State(app): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    generate(app, Endpoint::Chat, body).await
}

async fn completions(State(app): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    generate(app, Endpoint::Completion, body).await
}

async fn generate(
    app: Shared,
    endpoint: Endpoint,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_error(e, app.opts.body_limit).into_response(),
    };
    let a = Arc::clone(&app);
    let prepared = match tokio::task::spawn_blocking(move || a.prepare(endpoint, &body)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return e.into_response(),
        Err(_) => {
            return ApiError::internal("The server failed while reading this request.")
                .into_response()
        }
    };
    run_request(app, prepared).await
}

/// Submit, then answer from the events.
async fn run_request(app: Shared, p: Prepared) -> Response {
    let Prepared {
        endpoint,
        request,
        stream,
        include_usage,
        logprobs,
        echo,
    } = p;
    let meta = app.meta(endpoint);
    // Unbounded in type, bounded in use: a request sends at most
    // max_tokens + 1 events (max_tokens is capped at the context), and the
    // sink on the scheduler's thread must never block.
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let id = match app
        .scheduler
        .submit_with(request, Box::new(move |ev| tx.send(ev).is_ok()))
    {
        Ok(id) => id,
        Err(e) => return ApiError::from_strata(&e).into_response(),
    };
    let mut guard = CancelGuard {
        scheduler: Arc::clone(&app.scheduler),
        id,
        armed: true,
    };
    if stream {
        let state = StreamState::new(endpoint, meta, include_usage, logprobs);
        return stream_response(app, state, echo.as_deref(), rx, guard);
    }
    let vocab = app.scheduler.model().tokenizer();
    let mut entries = Vec::new();
    let mut chars = echo.as_deref().map_or(0, |e| e.chars().count());
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Token(t) => {
                if logprobs {
                    entries.extend(openai::token_logprob(&t, vocab, chars));
                }
                chars += t.text.chars().count();
            }
            Event::Done(f) => {
                guard.armed = false;
                if let Some(e) = openai::abnormal_end(&f.reason) {
                    return e.into_response();
                }
                let lp = logprobs.then_some(entries.as_slice());
                let v = match endpoint {
                    Endpoint::Chat => openai::chat_completion(&meta, &f, lp),
                    Endpoint::Completion => openai::text_completion(&meta, &f, echo.as_deref(), lp),
                };
                return Json(v).into_response();
            }
        }
    }
    guard.armed = false;
    ApiError::internal("The request ended without a result.").into_response()
}

/// What the response stream carries between events.
struct Streaming {
    app: Shared,
    rx: mpsc::UnboundedReceiver<Event>,
    state: StreamState,
    guard: CancelGuard,
}

fn stream_response(
    app: Shared,
    mut state: StreamState,
    echo: Option<&str>,
    rx: mpsc::UnboundedReceiver<Event>,
    guard: CancelGuard,
) -> Response {
    let first: String = state.start(echo).iter().map(openai::sse).collect();
    let rest = futures_util::stream::unfold(
        Some(Streaming {
            app,
            rx,
            state,
            guard,
        }),
        |s| async move {
            let mut s = s?;
            loop {
                match s.rx.recv().await? {
                    Event::Token(t) => {
                        let vocab = s.app.scheduler.model().tokenizer();
                        if let Some(c) = s.state.token(&t, vocab) {
                            return Some((openai::sse(&c), Some(s)));
                        }
                    }
                    Event::Done(f) => {
                        s.guard.armed = false;
                        let mut out: String = s.state.done(&f).iter().map(openai::sse).collect();
                        if openai::abnormal_end(&f.reason).is_none() {
                            out.push_str(openai::SSE_DONE);
                        }
                        return Some((out, None));
                    }
                }
            }
        },
    );
    let body = futures_util::stream::once(async move { first })
        .chain(rest)
        .map(Ok::<_, std::convert::Infallible>);
    // A panic while producing an event ends the stream, not the server.
    let body = AssertUnwindSafe(body)
        .catch_unwind()
        .take_while(|r| std::future::ready(r.is_ok()))
        .map(|r| r.unwrap_or_else(|_| Ok(String::new())));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| ApiError::internal("response").into_response())
}

fn model_object(app: &App) -> serde_json::Value {
    json!({
        "id": app.opts.model_id,
        "object": "model",
        "created": app.created,
        "owned_by": "strata",
    })
}

async fn models(State(app): State<Shared>) -> Response {
    Json(json!({"object": "list", "data": [model_object(&app)]})).into_response()
}

async fn model(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    if id != app.opts.model_id {
        return ApiError::model_not_found(&id, &app.opts.model_id).into_response();
    }
    Json(model_object(&app)).into_response()
}

async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn metrics(State(app): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::render(&app.scheduler.stats()),
    )
        .into_response()
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serve until SIGINT or SIGTERM: bind, print `strata serve: listening on
/// http://HOST:PORT` (flushed) when ready, and on a signal stop accepting,
/// cancel every request in flight (streams end with an error event) and
/// return once the connections closed or the grace period passed.
pub fn run(scheduler: Arc<Scheduler>, opts: ServeOptions) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("strata-http")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
    let grace = opts.shutdown_grace;
    let result = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", opts.host, opts.port))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let app = Arc::new(App::new(Arc::clone(&scheduler), opts));
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "strata serve: listening on http://{addr}");
            let _ = out.flush();
        }
        let stopping = Arc::new(tokio::sync::Notify::new());
        let on_signal = {
            let stopping = Arc::clone(&stopping);
            async move {
                stop_signal().await;
                eprintln!("strata serve: stopping");
                stopping.notify_one();
                // Cancels every request; their streams and handlers end.
                tokio::task::spawn_blocking(move || scheduler.shutdown());
            }
        };
        let server = axum::serve(listener, router(app))
            .with_graceful_shutdown(on_signal)
            .into_future();
        tokio::select! {
            r = server => r.map_err(|e| format!("server: {e}")),
            _ = async { stopping.notified().await; tokio::time::sleep(grace).await } => {
                eprintln!("strata serve: connections still open after {grace:?}; exiting");
                Ok(())
            }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn auth_header_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(check_auth(&h, "k").unwrap_err().status.as_u16(), 401);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        assert!(check_auth(&h, "k").is_ok());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  k "),
        );
        assert!(check_auth(&h, "k").is_ok());
        for bad in ["Bearer x", "Bearer kk", "Basic k", "k", "Bearer", ""] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
            let e = check_auth(&h, "k").unwrap_err();
            assert_eq!(e.status.as_u16(), 401, "{bad}");
            assert_eq!(e.code, Some("invalid_api_key"));
        }
    }

    #[test]
    fn seeds_differ_between_requests() {
        let seeds: std::collections::HashSet<u64> = (0..64).map(|_| random_seed()).collect();
        assert!(seeds.len() > 60);
    }
}
