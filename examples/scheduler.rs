//! The README's scheduler example: two requests served together.
//! `cargo run --release --example scheduler -- MODEL.gguf`

use std::sync::Arc;
use strata::scheduler::{Event, Request, Scheduler, SchedulerOptions};
use strata::{LoadOptions, Model, Numerics};

fn main() -> Result<(), strata::Error> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let opts = LoadOptions {
        numerics: Numerics::BatchInvariant,
        ..Default::default()
    };
    let model = Arc::new(Model::load(path, &opts)?);
    let sched = Scheduler::new(
        Arc::clone(&model),
        SchedulerOptions {
            slots: 8,
            ..SchedulerOptions::for_model(&model)
        },
    )?;
    let prompts = ["The capital of France is", "Once upon a time"];
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let ids = model.tokenizer().encode(p, true, false)?;
            sched.submit(Request {
                max_tokens: 32,
                ..Request::new(ids)
            })
        })
        .collect::<Result<_, _>>()?;
    for h in handles {
        while let Some(ev) = h.recv() {
            match ev {
                Event::Token(t) => print!("{}", t.text),
                Event::Done(f) => println!(
                    "{} ({} tokens, {:?})",
                    f.tail, f.completion_tokens, f.reason
                ),
            }
        }
    }
    Ok(())
}
