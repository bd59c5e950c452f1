//! The C interface's thread-safety promise, exercised through the exported
//! functions themselves: one `strata_model` shared by several threads, each
//! running several sessions (and a shard serving sessions from several
//! threads), gives exactly the tokens and frames of a serial run.

use std::ffi::CString;
use std::ptr;

use strata::ffi::*;
use strata::quant::GgmlType;
use strata::synth::{synth_model, SynthSpec};

struct Model(*mut strata_model);
// SAFETY: the header promises a strata_model may be used from any thread.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

struct Shard(*mut strata_shard);
// SAFETY: as above, for strata_shard.
unsafe impl Send for Shard {}
unsafe impl Sync for Shard {}

fn ok(st: strata_status) {
    if st != strata_status::STRATA_OK {
        let mut buf = vec![0 as std::ffi::c_char; 512];
        unsafe { strata_last_error(buf.as_mut_ptr(), buf.len(), ptr::null_mut()) };
        let msg = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        panic!("{st:?}: {}", msg.to_string_lossy());
    }
}

fn synth_path(tag: &str) -> CString {
    let dir = std::env::temp_dir().join(format!("strata-ffi-threads-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.gguf");
    let mut spec = SynthSpec::tiny(GgmlType::Q4_0);
    spec.n_layer = 3;
    synth_model(&spec, None).unwrap().write_file(&path).unwrap();
    CString::new(path.to_str().unwrap()).unwrap()
}

fn load(path: &CString, start: u32, end: u32) -> Model {
    let o = strata_load_options {
        layer_start: start,
        layer_end: end,
        n_threads: 2,
        ..Default::default()
    };
    let mut m = ptr::null_mut();
    ok(unsafe { strata_model_load(path.as_ptr(), &o, &mut m) });
    Model(m)
}

unsafe extern "C" fn collect(
    ud: *mut std::ffi::c_void,
    token: u32,
    _t: *const std::ffi::c_char,
    _n: usize,
) -> bool {
    (*(ud as *mut Vec<u32>)).push(token);
    true
}

/// Generate `n` tokens for `prompt` with a seeded sampler in a new session.
fn generate(m: &Model, prompt: &str, seed: u64, n: u32) -> Vec<u32> {
    unsafe {
        let mut s = ptr::null_mut();
        ok(strata_session_new(m.0, ptr::null(), &mut s));
        let mut sp = strata_sampler_params::default();
        ok(strata_sampler_params_default(&mut sp));
        sp.seed = seed;
        sp.temperature = 1.0;
        let mut out: Vec<u32> = Vec::new();
        let g = strata_generate_options {
            max_tokens: n,
            sampler: &sp,
            on_token: Some(collect),
            user_data: &mut out as *mut Vec<u32> as *mut _,
            flags: 0,
            ..Default::default()
        };
        ok(strata_generate(
            s,
            prompt.as_ptr() as *const _,
            prompt.len(),
            &g,
            ptr::null_mut(),
        ));
        strata_session_free(s);
        out
    }
}

#[test]
fn sessions_on_one_model_from_many_threads_equal_a_serial_run() {
    let path = synth_path("sessions");
    let model = load(&path, 0, 0);
    let jobs: Vec<(String, u64)> = (0..12)
        .map(|i| (format!("prompt number {i} says hello"), i as u64 * 7 + 1))
        .collect();
    let serial: Vec<Vec<u32>> = jobs
        .iter()
        .map(|(p, s)| generate(&model, p, *s, 12))
        .collect();
    assert!(serial.iter().all(|t| t.len() == 12 || !t.is_empty()));
    // Four threads, each running three of the jobs, interleaved.
    let parallel: Vec<Vec<(usize, Vec<u32>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (model, jobs) = (&model, &jobs);
                scope.spawn(move || {
                    (t..jobs.len())
                        .step_by(4)
                        .map(|i| (i, generate(model, &jobs[i].0, jobs[i].1, 12)))
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen = 0;
    for (i, tokens) in parallel.into_iter().flatten() {
        assert_eq!(tokens, serial[i], "job {i} differs from the serial run");
        seen += 1;
    }
    assert_eq!(seen, jobs.len());
    unsafe { strata_model_free(model.0) };
}

/// One shard over the first layers, one over the rest; each thread drives
/// its own session ids through both. Every output frame equals the serial
/// run's, byte for byte (so the output digests agree too).
#[test]
fn a_shard_serves_sessions_from_many_threads_like_a_serial_run() {
    let path = synth_path("shards");
    let (lo, hi) = (load(&path, 0, 1), load(&path, 1, 3));
    let new_shard = |m: &Model| {
        let mut s = ptr::null_mut();
        ok(unsafe { strata_shard_new(m.0, ptr::null(), &mut s) });
        Shard(s)
    };
    let run = |s0: &Shard, s1: &Shard, session: u64| -> Vec<Vec<u8>> {
        let mut digest = [0u8; 32];
        ok(unsafe { strata_shard_digest(s0.0, digest.as_mut_ptr(), 32) });
        let mut outs = Vec::new();
        let mut pos = 0u64;
        for step in 0..6u32 {
            let ids: Vec<u32> = (0..(if step == 0 { 5 } else { 1 }))
                .map(|k| (session as u32 * 13 + step * 3 + k) % 300)
                .collect();
            unsafe {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                ok(strata_frame_encode_tokens(
                    digest.as_ptr(),
                    32,
                    session,
                    pos,
                    ids.as_ptr(),
                    ids.len(),
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut n,
                ));
                let mut mid = vec![0u8; 65536];
                let mut m = 0;
                ok(strata_shard_forward(
                    s0.0,
                    buf.as_ptr(),
                    n,
                    mid.as_mut_ptr(),
                    mid.len(),
                    &mut m,
                ));
                let mut out = vec![0u8; 65536];
                let mut o = 0;
                ok(strata_shard_forward(
                    s1.0,
                    mid.as_ptr(),
                    m,
                    out.as_mut_ptr(),
                    out.len(),
                    &mut o,
                ));
                outs.push(mid[..m].to_vec());
                outs.push(out[..o].to_vec());
            }
            pos += ids.len() as u64;
        }
        outs
    };
    let (a0, a1) = (new_shard(&lo), new_shard(&hi));
    let serial: Vec<Vec<Vec<u8>>> = (0..8).map(|sid| run(&a0, &a1, sid)).collect();
    let (b0, b1) = (new_shard(&lo), new_shard(&hi));
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (b0, b1, serial, run) = (&b0, &b1, &serial, &run);
            scope.spawn(move || {
                for sid in (t..8).step_by(4) {
                    assert_eq!(
                        run(b0, b1, sid),
                        serial[sid as usize],
                        "session {sid} differs"
                    );
                }
            });
        }
    });
    unsafe {
        for s in [a0, a1, b0, b1] {
            strata_shard_free(s.0);
        }
        strata_model_free(lo.0);
        strata_model_free(hi.0);
    }
}

/// Two threads on one session: one of them gets STRATA_BUSY or waits its
/// turn, never a data race; the session stays consistent.
#[test]
fn a_session_used_from_two_threads_is_refused_not_raced() {
    let path = synth_path("busy");
    let model = load(&path, 0, 0);
    struct Session(*mut strata_session);
    unsafe impl Send for Session {}
    unsafe impl Sync for Session {}
    let mut s = ptr::null_mut();
    let opts = strata_session_options {
        n_ctx: 4096,
        ..Default::default()
    };
    ok(unsafe { strata_session_new(model.0, &opts, &mut s) });
    let s = Session(s);
    let (mut fed, mut busy) = (0usize, 0usize);
    let results: Vec<Vec<strata_status>> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let s = &s;
                scope.spawn(move || {
                    (0..200)
                        .map(|i| {
                            let t = [(i % 250) as u32 + 1];
                            unsafe { strata_session_feed(s.0, t.as_ptr(), 1) }
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for st in results.into_iter().flatten() {
        match st {
            strata_status::STRATA_OK => fed += 1,
            strata_status::STRATA_BUSY => busy += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut pos = 0;
    ok(unsafe { strata_session_position(s.0, &mut pos) });
    assert_eq!(
        pos, fed,
        "every successful feed added one position ({busy} were refused)"
    );
    unsafe {
        strata_session_free(s.0);
        strata_model_free(model.0);
    }
}

/// The logits after feeding `tokens` in pieces of `chunk` tokens, in a new
/// session on `m`.
fn logits_fed_in_chunks(m: &Model, tokens: &[u32], chunk: usize) -> Vec<u32> {
    unsafe {
        let mut s = ptr::null_mut();
        ok(strata_session_new(m.0, ptr::null(), &mut s));
        for piece in tokens.chunks(chunk) {
            ok(strata_session_feed(s, piece.as_ptr(), piece.len()));
        }
        let mut n = 0;
        assert_eq!(
            strata_session_logits(s, ptr::null_mut(), 0, &mut n),
            strata_status::STRATA_BUFFER_TOO_SMALL
        );
        let mut logits = vec![0f32; n];
        ok(strata_session_logits(s, logits.as_mut_ptr(), n, &mut n));
        strata_session_free(s);
        logits.iter().map(|x| x.to_bits()).collect()
    }
}

/// strata_load_options.numerics: the batch-invariant mode reaches the model
/// (its info says so, and a prompt fed in one call gives the bits it gives
/// fed one token at a time, on several threads at once); an unknown value
/// is refused; a caller's struct from before the field existed loads with
/// the default.
#[test]
fn load_options_choose_the_numerics() {
    let path = synth_path("numerics");
    let with = |numerics: strata_numerics, struct_size: u32| {
        let o = strata_load_options {
            struct_size,
            n_threads: 2,
            numerics,
            ..Default::default()
        };
        let mut m = ptr::null_mut();
        let st = unsafe { strata_model_load(path.as_ptr(), &o, &mut m) };
        (st, Model(m))
    };
    let info = |m: &Model| {
        let mut i = strata_model_info {
            struct_size: std::mem::size_of::<strata_model_info>() as u32,
            ..Default::default()
        };
        ok(unsafe { strata_model_get_info(m.0, &mut i) });
        i
    };

    let (st, m) = with(7, std::mem::size_of::<strata_load_options>() as u32);
    assert_eq!(st, strata_status::STRATA_INVALID_ARGUMENT);
    assert!(m.0.is_null(), "the out-parameter was written on failure");

    // An old caller's struct stops before `numerics`: what lies there is not
    // read, and the default applies.
    let old = std::mem::offset_of!(strata_load_options, numerics) as u32;
    let (st, m) = with(STRATA_NUMERICS_BATCH_INVARIANT, old);
    ok(st);
    assert_eq!(info(&m).numerics, STRATA_NUMERICS_LLAMA_CPP);
    unsafe { strata_model_free(m.0) };

    let (st, m) = with(
        STRATA_NUMERICS_BATCH_INVARIANT,
        std::mem::size_of::<strata_load_options>() as u32,
    );
    ok(st);
    assert_eq!(info(&m).numerics, STRATA_NUMERICS_BATCH_INVARIANT);
    let prompt: Vec<u32> = (0..24).map(|i| (i * 37 + 5) % 300).collect();
    let whole = logits_fed_in_chunks(&m, &prompt, prompt.len());
    std::thread::scope(|scope| {
        for chunk in [1, 3, 7] {
            let (m, prompt, whole) = (&m, &prompt, &whole);
            scope.spawn(move || {
                assert!(
                    logits_fed_in_chunks(m, prompt, chunk) == *whole,
                    "batch-invariant logits differ when the prompt is fed {chunk} tokens at a time"
                );
            });
        }
    });
    unsafe { strata_model_free(m.0) };
}
