//! `strata chat`: an interactive conversation using the model's own chat
//! template (`tokenizer.chat_template`, a Jinja template).
//!
//! Each turn renders the whole conversation, keeps the longest prefix the
//! session already holds, and evaluates only the new tokens.

use std::io::{BufRead, Write};
use std::sync::Arc;

use crate::args::Args;
use minijinja::{context, Environment, Error as JinjaError, ErrorKind};
use strata::{GenerateParams, Model, Session, SessionOptions};

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

pub struct Template {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

impl Template {
    pub fn from_model(model: &Model) -> Result<Template, String> {
        let src = model
            .file()
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .ok_or("the model has no tokenizer.chat_template")?
            .to_string();
        let mut env = Environment::new();
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, JinjaError> {
                Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", src)
            .map_err(|e| format!("chat template: {e}"))?;
        let tok = model.tokenizer();
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
        Ok(Template {
            env,
            bos: text(tok.bos()),
            eos: text(tok.eos()),
        })
    }

    /// Render `messages` (role, content) with the generation prompt added.
    pub fn render(&self, messages: &[(String, String)]) -> Result<String, String> {
        let msgs: Vec<_> = messages
            .iter()
            .map(|(r, c)| context! { role => r, content => c })
            .collect();
        self.env
            .get_template("chat")
            .and_then(|t| {
                t.render(context! {
                    messages => msgs,
                    add_generation_prompt => true,
                    bos_token => self.bos,
                    eos_token => self.eos,
                })
            })
            .map_err(|e| format!("chat template: {e}"))
    }
}

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
        max_tokens: a.get("n-predict")?.unwrap_or(512),
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
