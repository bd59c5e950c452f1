//! `GET /metrics`: the scheduler's counters in Prometheus' text exposition
//! format (version 0.0.4).

use std::fmt::Write;

use strata::scheduler::Stats;

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (suffix, v) in samples {
        let _ = writeln!(out, "{name}{suffix} {v}");
    }
}

/// The exposition text for `s`.
pub fn render(s: &Stats) -> String {
    let mut out = String::new();
    let m = &mut out;
    metric(
        m,
        "strata_requests_running",
        "gauge",
        "Requests holding a slot (reading their prompt or generating).",
        &[("", s.running as f64)],
    );
    metric(
        m,
        "strata_requests_queued",
        "gauge",
        "Requests waiting for a slot.",
        &[("", s.queued as f64)],
    );
    metric(
        m,
        "strata_slots",
        "gauge",
        "Sequences decoded together (--parallel).",
        &[("", s.slots as f64)],
    );
    metric(
        m,
        "strata_requests_total",
        "counter",
        "Requests the scheduler has finished, whatever the reason.",
        &[("", s.requests_total as f64)],
    );
    metric(
        m,
        "strata_prompt_tokens_total",
        "counter",
        "Prompt tokens of finished requests, cached ones included.",
        &[("", s.prompt_tokens_total as f64)],
    );
    metric(
        m,
        "strata_cached_prompt_tokens_total",
        "counter",
        "Prompt tokens found in a slot's cache and not evaluated again.",
        &[("", s.cached_tokens_total as f64)],
    );
    metric(
        m,
        "strata_generated_tokens_total",
        "counter",
        "Tokens generated.",
        &[("", s.generated_tokens_total as f64)],
    );
    metric(
        m,
        "strata_time_to_first_token_seconds",
        "summary",
        "From submission to a request's first generated token.",
        &[
            ("_sum", s.ttft_ms_sum / 1000.0),
            ("_count", s.ttft_count as f64),
        ],
    );
    metric(
        m,
        "strata_kv_cache_bytes",
        "gauge",
        "KV cache bytes: allocated by all slots (used) and the most they may hold (budget).",
        &[
            ("{kind=\"used\"}", s.kv_bytes_used as f64),
            ("{kind=\"budget\"}", s.kv_bytes_budget as f64),
        ],
    );
    metric(
        m,
        "strata_steps_total",
        "counter",
        "Forward steps the scheduler has run.",
        &[("", s.steps_total as f64)],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample line is `name{labels} value`, every name has HELP and
    /// TYPE lines before its samples, and the values are the stats'.
    #[test]
    fn exposition_is_well_formed() {
        let s = Stats {
            running: 2,
            queued: 1,
            slots: 4,
            requests_total: 9,
            prompt_tokens_total: 120,
            cached_tokens_total: 30,
            generated_tokens_total: 77,
            ttft_ms_sum: 1500.0,
            ttft_count: 3,
            kv_bytes_used: 1024,
            kv_bytes_budget: 4096,
            steps_total: 50,
        };
        let text = render(&s);
        let mut typed = std::collections::HashSet::new();
        let mut values = std::collections::HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["gauge", "counter", "summary"].contains(&kind), "{line}");
                typed.insert(name.to_string());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let base = series.split('{').next().unwrap();
            let family = base
                .strip_suffix("_sum")
                .or_else(|| base.strip_suffix("_count"))
                .filter(|f| typed.contains(*f))
                .unwrap_or(base);
            assert!(typed.contains(family), "{line}: no TYPE before it");
            values.insert(series.to_string(), value.parse::<f64>().unwrap());
        }
        let v = |k: &str| values[k];
        assert_eq!(v("strata_requests_running"), 2.0);
        assert_eq!(v("strata_requests_queued"), 1.0);
        assert_eq!(v("strata_requests_total"), 9.0);
        assert_eq!(v("strata_prompt_tokens_total"), 120.0);
        assert_eq!(v("strata_generated_tokens_total"), 77.0);
        assert_eq!(v("strata_time_to_first_token_seconds_sum"), 1.5);
        assert_eq!(v("strata_time_to_first_token_seconds_count"), 3.0);
        assert_eq!(v("strata_kv_cache_bytes{kind=\"used\"}"), 1024.0);
        assert_eq!(v("strata_kv_cache_bytes{kind=\"budget\"}"), 4096.0);
    }
}
