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

/// Gemma's turn format, for Gemma files that carry no template (the Gemma 3
/// GGUFs published without `tokenizer.chat_template`): `<bos>`, then each
/// turn as `<start_of_turn>{user|model}\n{content}<end_of_turn>\n`, with
/// system messages (Gemma has no system role) put at the start of the next
/// user turn, as llama.cpp's built-in `gemma` template does.
const GEMMA_TEMPLATE: &str = "{{ bos_token }}\
{%- set ns = namespace(system='') -%}\
{%- for message in messages -%}\
{%- if message['role'] == 'system' -%}\
{%- set ns.system = ns.system + (message['content'] | trim) -%}\
{%- else -%}\
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}\
{{ '<start_of_turn>' + role + '\\n' }}\
{%- if ns.system and role != 'model' -%}{{ ns.system + '\\n\\n' }}{%- set ns.system = '' -%}{%- endif -%}\
{{ (message['content'] | trim) + '<end_of_turn>\\n' }}\
{%- endif -%}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}";

impl Template {
    /// The model's own template, or a built-in one for a family whose files
    /// may come without (Gemma: recognised by its `<start_of_turn>` token).
    pub fn from_model(model: &Model) -> Result<Template, String> {
        let tok = model.tokenizer();
        let own = model
            .file()
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let has = |text: &str| (0..tok.n_vocab() as u32).any(|i| tok.token_text(i) == Some(text));
        let src = match own {
            Some(src) => src,
            None if has("<start_of_turn>") && has("<end_of_turn>") => GEMMA_TEMPLATE.to_string(),
            None => return Err("the model has no tokenizer.chat_template".into()),
        };
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
        Template::new(src, text(tok.bos()), text(tok.eos()))
    }

    /// A template from its source, with the BOS and EOS texts it may use.
    pub fn new(src: String, bos: String, eos: String) -> Result<Template, String> {
        let mut env = Environment::new();
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, JinjaError> {
                Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", src)
            .map_err(|e| format!("chat template: {e}"))?;
        Ok(Template { env, bos, eos })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(m: &[(&str, &str)]) -> Vec<(String, String)> {
        m.iter()
            .map(|(r, c)| (r.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn gemma_builtin_template_renders_turns() {
        let t = Template::new(GEMMA_TEMPLATE.into(), "<bos>".into(), "<eos>".into()).unwrap();
        let out = t
            .render(&msgs(&[
                ("system", "Be brief. "),
                ("user", " Hi! "),
                ("assistant", "Hello."),
                ("user", "Why is the sky blue?"),
            ]))
            .unwrap();
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n\
             <start_of_turn>model\nHello.<end_of_turn>\n\
             <start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n\
             <start_of_turn>model\n"
        );
    }

    /// The constructs Gemma's published templates use: a `namespace`,
    /// slicing, `is string` / `is iterable` tests, `trim`, `loop.first`,
    /// and `raise_exception` for roles out of order.
    #[test]
    fn gemma_style_template_constructs_render() {
        let src = "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}\
            {%- set prefix = messages[0]['content'] + '\\n\\n' -%}{%- set rest = messages[1:] -%}\
            {%- else -%}{%- set prefix = '' -%}{%- set rest = messages -%}{%- endif -%}\
            {%- for m in rest -%}\
            {%- if (m['role'] == 'user') != (loop.index0 % 2 == 0) -%}\
            {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\
            {%- endif -%}\
            {{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\\n' + (prefix if loop.first else '') }}\
            {%- if m['content'] is string -%}{{ m['content'] | trim }}\
            {%- elif m['content'] is iterable -%}{%- for item in m['content'] -%}{{ item['text'] | trim }}{%- endfor -%}\
            {%- endif -%}{{ '<end_of_turn>\\n' }}{%- endfor -%}\
            {%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}";
        let t = Template::new(src.into(), "<bos>".into(), "<eos>".into()).unwrap();
        let out = t.render(&msgs(&[("system", "S"), ("user", "U")])).unwrap();
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n"
        );
        let err = t.render(&msgs(&[("assistant", "A")])).unwrap_err();
        assert!(err.contains("Conversation roles must alternate"), "{err}");
    }
}
