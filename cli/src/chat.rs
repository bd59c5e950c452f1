//! `strata chat`: an interactive conversation using the model's own chat
//! template (`tokenizer.chat_template`, a Jinja template).
//!
//! Each turn renders the whole conversation, keeps the longest prefix the
//! session already holds, and evaluates only the new tokens.

use std::io::{BufRead, Write};
use std::sync::Arc;

use crate::args::Args;
use strata::{GenerateParams, Model, Session, SessionOptions};
use strata_server::template::Template;

const KNOWN: &[&str] = &[
    "model",
    "system",
    "n-predict",
    "temp",
    "top-k",
    "top-p",
    "min-p",
    "repeat-penalty",
    "seed",
    "threads",
    "ctx-size",
];

pub fn run(raw: &[String]) -> Result<(), String> {
    let a = Args::parse(raw, &[], crate::COMMON_ALIASES)?;
    a.check_known(KNOWN)?;
    let path = crate::model_path(&a)?;
    let model = Arc::new(Model::load(&path, &crate::load_options(&a)?).map_err(|e| e.to_string())?);
    let template = Template::from_model(&model)?;
    let mut session = Session::new(
        Arc::clone(&model),
        &SessionOptions {
            n_ctx: a.get("ctx-size")?,
        },
    )
    .map_err(|e| e.to_string())?;
    let params = GenerateParams {
        max_tokens: a.get("n-predict")?.unwrap_or(crate::usage::CHAT_N_PREDICT),
        sampler: crate::sampler_params(&a)?,
        add_special: false,
        parse_special: true,
        ..Default::default()
    };
    let mut messages: Vec<(String, String)> = Vec::new();
    if let Some(s) = a.str("system") {
        messages.push(("system".into(), s.to_string()));
    }
    eprintln!("strata chat: type a message; an empty line or Ctrl-D ends the chat.");
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        eprint!("> ");
        line.clear();
        if stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?
            == 0
            || line.trim().is_empty()
        {
            break;
        }
        messages.push(("user".into(), line.trim_end().to_string()));
        let prompt = template.render(&messages)?;
        let tokens = model
            .tokenizer()
            .encode(&prompt, false, true)
            .map_err(|e| e.to_string())?;
        let keep = session
            .tokens()
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(tokens.len() - 1);
        session.truncate(keep);
        let mut out = std::io::stdout().lock();
        let mut stream = session
            .generate_from_tokens(&tokens[keep..], &params)
            .map_err(|e| e.to_string())?;
        for ev in stream.by_ref() {
            let ev = ev.map_err(|e| e.to_string())?;
            let _ = write!(out, "{}", ev.text);
            let _ = out.flush();
        }
        let reply = stream.finish();
        let _ = writeln!(out);
        messages.push(("assistant".into(), reply.text.trim().to_string()));
    }
    Ok(())
}
