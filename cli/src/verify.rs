//! `strata verify`: check a generation's receipt against a model in one
//! batched pass. Exit 0: it holds; 1: a position differs; 2: the receipt
//! is malformed or inconsistent with the model, or it could not be checked.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::args::Args;
use strata::receipt::{self, Receipt, Verification, VerifyOptions};
use strata::{Error, LoadOptions, Model, Numerics};

/// Receipt files larger than this are refused before reading (a receipt
/// of `receipt::MAX_POSITIONS` positions in JSON stays below it).
const MAX_FILE: u64 = 1 << 30;

/// Write `r` to `file`: JSON if the name ends in `.json`, else binary.
pub fn write_receipt(file: &Path, r: &Receipt) -> strata::Result<()> {
    let json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let bytes = if json {
        let mut t = r.to_json();
        t.push('\n');
        t.into_bytes()
    } else {
        r.to_bytes()
    };
    std::fs::write(file, bytes).map_err(|source| Error::Io {
        path: file.to_path_buf(),
        source,
    })?;
    eprintln!(
        "receipt: {} ({} prompt + {} generated tokens, fingerprint {})",
        file.display(),
        r.prompt.len(),
        r.tokens.len(),
        r.fingerprint()
    );
    Ok(())
}

pub fn run(raw: &[String]) -> Result<(), String> {
    let a = Args::parse(raw, &["json"], crate::COMMON_ALIASES)?;
    let code = match check(&a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata verify: {e}");
            2
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

fn check(a: &Args) -> Result<i32, String> {
    a.check_known(&["model", "json", "threads"])?;
    let file = match &a.positional[..] {
        [f] => f.clone(),
        [] => return Err("verify needs a RECEIPT file".into()),
        more => return Err(format!("one RECEIPT file, not {}", more.len())),
    };
    let json = a.flag("json");
    let size = std::fs::metadata(&file)
        .map_err(|e| format!("{file}: {e}"))?
        .len();
    if size > MAX_FILE {
        return Err(format!("{file}: {size} bytes is larger than any receipt"));
    }
    let bytes = std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?;
    let receipt = match Receipt::parse(&bytes) {
        Ok(r) => r,
        Err(e) => return Ok(report(json, 2, "malformed", &e.to_string(), None)),
    };
    let path = crate::model_path(a)?;
    let t0 = Instant::now();
    let model = Model::load(
        &path,
        &LoadOptions {
            numerics: Numerics::BatchInvariant,
            ..crate::load_options(a)?
        },
    )
    .map_err(|e| e.to_string())?;
    // The digest reads every tensor once; time it apart from the pass.
    let _ = model.digest();
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let v =
        receipt::verify(&model, &receipt, &VerifyOptions::default()).map_err(|e| e.to_string())?;
    let verify_ms = t1.elapsed().as_secs_f64() * 1e3;
    let timing = serde_json::json!({"load_ms": load_ms, "verify_ms": verify_ms});
    Ok(match v {
        Verification::Holds(h) => {
            let msg = format!(
                "holds: {} generated tokens after {} prompt tokens reproduced exactly ({} positions in {:.0} ms), fingerprint {}",
                h.tokens,
                receipt.prompt.len(),
                h.positions,
                verify_ms,
                h.fingerprint
            );
            let extra = serde_json::json!({
                "tokens": h.tokens,
                "prompt_tokens": receipt.prompt.len(),
                "positions": h.positions,
                "fingerprint": h.fingerprint.to_hex(),
                "timings": timing,
            });
            report(json, 0, "holds", &msg, Some(extra))
        }
        Verification::Differs(d) => {
            let (kind, detail) = match &d.reason {
                receipt::DivergenceReason::Commitment {
                    recorded,
                    recomputed,
                } => (
                    "commitment",
                    serde_json::json!({"recorded": recorded.to_hex(), "recomputed": recomputed.to_hex()}),
                ),
                receipt::DivergenceReason::Token { recorded, replayed } => (
                    "token",
                    serde_json::json!({"recorded": recorded, "replayed": replayed}),
                ),
            };
            let extra = serde_json::json!({
                "index": d.index,
                "position": d.position,
                "reason": kind,
                "detail": detail,
                "timings": timing,
            });
            report(json, 1, "differs", &format!("differs at {d}"), Some(extra))
        }
        Verification::Inconsistent(i) => report(json, 2, "inconsistent", &i.to_string(), None),
    })
}

/// Print the verdict (one line, or one JSON object) and return the exit code.
fn report(
    json: bool,
    code: i32,
    verdict: &str,
    msg: &str,
    extra: Option<serde_json::Value>,
) -> i32 {
    if json {
        let mut v = serde_json::json!({"verdict": verdict, "message": msg});
        if let (Some(serde_json::Value::Object(e)), Some(o)) = (extra, v.as_object_mut()) {
            o.extend(e);
        }
        println!("{v}");
    } else if code == 0 {
        println!("{msg}");
    } else {
        println!("{verdict}: {msg}");
    }
    code
}
