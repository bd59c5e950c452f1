//! Chat templates: the model's own `tokenizer.chat_template` (a Jinja
//! template, rendered with minijinja), or a built-in one for a family whose
//! files may come without. Used by `strata chat` and by the server's
//! `/v1/chat/completions`.

use minijinja::{context, Environment, Error as JinjaError, ErrorKind};
use strata::Model;

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
