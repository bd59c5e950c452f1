//! The router in process, over a scheduler on a small synthetic model (no
//! chat template, a synthetic vocabulary): routes, authentication, error
//! shapes and statuses, limits, streaming framing, panics. The end-to-end
//! tests against the real binary and real models are the Python ones in
//! tests/openai/.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use strata::gguf::GgufFile;
use strata::quant::GgmlType;
use strata::scheduler::{Scheduler, SchedulerOptions};
use strata::synth::{synth_model, SynthSpec};
use strata::{LoadOptions, Model, Numerics};
use strata_server::server::{router, App};
use strata_server::ServeOptions;
use tower::ServiceExt;

const N_CTX: usize = 64;

fn app(api_key: Option<&str>, body_limit: usize) -> Router {
    let w = synth_model(&SynthSpec::tiny(GgmlType::Q8_0), None).unwrap();
    let file = Arc::new(GgufFile::from_bytes(w.to_bytes()).unwrap());
    let opts = LoadOptions {
        n_threads: Some(1),
        layers: None,
        numerics: Numerics::BatchInvariant,
    };
    let model = Arc::new(Model::from_file(file, &opts).unwrap());
    let mut so = SchedulerOptions::for_model(&model);
    so.n_ctx = N_CTX;
    so.slots = 2;
    let sched = Arc::new(Scheduler::new(model, so).unwrap());
    let mut o = ServeOptions::new("tiny");
    o.api_key = api_key.map(str::to_string);
    o.body_limit = body_limit;
    router(Arc::new(App::new(sched, o)))
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, headers, body.to_vec())
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// An error answer in OpenAI's shape, with its `code`.
fn assert_error(status: StatusCode, body: &[u8], want: u16, code: Option<&str>) {
    assert_eq!(status.as_u16(), want, "{}", String::from_utf8_lossy(body));
    let v = json_of(body);
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
    if let Some(c) = code {
        assert_eq!(e["code"], c, "{v}");
    }
}

#[tokio::test]
async fn health_models_and_unknown_routes() {
    let app = app(None, 1 << 20);
    let (s, _, b) = call(&app, get("/health")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json_of(&b), json!({"status": "ok"}));
    let (s, _, b) = call(&app, get("/v1/models")).await;
    assert_eq!(s, StatusCode::OK);
    let v = json_of(&b);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "tiny");
    assert_eq!(v["data"][0]["object"], "model");
    let (s, _, _) = call(&app, get("/v1/models/tiny")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = call(&app, get("/v1/models/other")).await;
    assert_error(s, &b, 404, Some("model_not_found"));
    let (s, _, b) = call(&app, get("/nowhere")).await;
    assert_error(s, &b, 404, None);
    let (s, _, b) = call(&app, get("/v1/completions")).await;
    assert_error(s, &b, 405, None);
    let (s, h, b) = call(&app, get("/metrics")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(b).unwrap();
    for name in [
        "strata_requests_running",
        "strata_requests_queued",
        "strata_prompt_tokens_total",
        "strata_generated_tokens_total",
        "strata_time_to_first_token_seconds_sum",
        "strata_time_to_first_token_seconds_count",
        "strata_kv_cache_bytes{kind=\"used\"}",
        "strata_kv_cache_bytes{kind=\"budget\"}",
        "strata_requests_total",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{text}"
        );
    }
}

#[tokio::test]
async fn api_key_guards_v1_only() {
    let app = app(Some("k3y"), 1 << 20);
    let (s, _, b) = call(&app, get("/v1/models")).await;
    assert_error(s, &b, 401, Some("invalid_api_key"));
    let wrong = Request::get("/v1/models")
        .header(header::AUTHORIZATION, "Bearer nope")
        .body(Body::empty())
        .unwrap();
    let (s, _, b) = call(&app, wrong).await;
    assert_error(s, &b, 401, Some("invalid_api_key"));
    let (s, _, b) = call(&app, post("/v1/completions", r#"{"prompt":"a"}"#)).await;
    assert_error(s, &b, 401, Some("invalid_api_key"));
    let right = Request::get("/v1/models")
        .header(header::AUTHORIZATION, "Bearer k3y")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, right).await.0, StatusCode::OK);
    assert_eq!(call(&app, get("/health")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn bad_bodies_are_answered() {
    let app = app(None, 4096);
    let bodies: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80, 0x01],
        b"[]".to_vec(),
        b"null".to_vec(),
        br#"{"prompt":"a","temperature":-1}"#.to_vec(),
        br#"{"prompt":"a","max_tokens":"many"}"#.to_vec(),
        br#"{"prompt":"a","n":3}"#.to_vec(),
        br#"{"prompt":[1000000]}"#.to_vec(),
    ];
    for body in bodies {
        let (s, _, b) = call(&app, post("/v1/completions", body.clone())).await;
        assert_error(s, &b, 400, None);
    }
    let (s, _, b) = call(
        &app,
        post("/v1/completions", r#"{"prompt":"a","model":"gpt-4"}"#),
    )
    .await;
    assert_error(s, &b, 404, Some("model_not_found"));
    // Over the body limit.
    let big = format!(r#"{{"prompt":"{}"}}"#, "a".repeat(8192));
    let (s, _, b) = call(&app, post("/v1/completions", big)).await;
    assert_error(s, &b, 413, None);
    // A prompt longer than the context: both numbers in the message.
    let long = json!({"prompt": "ab ".repeat(200), "max_tokens": 1}).to_string();
    let (s, _, b) = call(&app, post("/v1/completions", long)).await;
    assert_error(s, &b, 400, Some("context_length_exceeded"));
    let msg = json_of(&b)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains(&N_CTX.to_string()), "{msg}");
    // No chat template in the synthetic model.
    let chat = json!({"messages": [{"role": "user", "content": "hi"}]}).to_string();
    let (s, _, b) = call(&app, post("/v1/chat/completions", chat)).await;
    assert_error(s, &b, 400, None);
}

#[tokio::test]
async fn completion_plain_and_streamed_agree() {
    let app = app(None, 1 << 20);
    let req = json!({"prompt": "ab", "max_tokens": 6, "temperature": 0, "model": "tiny"});
    let (s, _, b) = call(&app, post("/v1/completions", req.to_string())).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let v = json_of(&b);
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["model"], "tiny");
    let u = &v["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p >= 1 && (1..=6).contains(&c), "{u}");
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);
    let text = v["choices"][0]["text"].as_str().unwrap().to_string();
    let finish = v["choices"][0]["finish_reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(finish == "stop" || finish == "length", "{finish}");

    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    sreq["stream_options"] = json!({"include_usage": true});
    let (s, h, b) = call(&app, post("/v1/completions", sreq.to_string())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "text/event-stream");
    let body = String::from_utf8(b).unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| json_of(e.strip_prefix("data: ").expect(e).as_bytes()))
        .collect();
    let (usage, rest) = chunks.split_last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"].as_u64(), Some(c));
    let streamed: String = rest
        .iter()
        .map(|c| {
            assert_eq!(c["object"], "text_completion");
            assert!(c.as_object().unwrap().contains_key("usage"));
            assert_eq!(c["usage"], Value::Null);
            c["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(streamed, text);
    assert_eq!(
        rest.last().unwrap()["choices"][0]["finish_reason"],
        finish.as_str()
    );
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_router_goes_on() {
    let app = app(None, 1 << 20);
    let boom: Router = Router::new()
        .route(
            "/boom",
            axum::routing::get(|| async {
                if std::hint::black_box(true) {
                    panic!("handler panic (expected by the test)");
                }
                "unreachable"
            }),
        )
        .layer(axum::middleware::from_fn(
            strata_server::server::catch_panic,
        ));
    let (s, _, b) = call(&boom, get("/boom")).await;
    assert_error(s, &b, 500, None);
    assert_eq!(call(&app, get("/health")).await.0, StatusCode::OK);
}
