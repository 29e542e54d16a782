//! The process's counters and histograms, in Prometheus' text format
//! (`terapi serve`'s `/metrics`). Kept by hand rather than with a metrics
//! crate: a few families, labels known in advance, one lock taken per
//! request to the provider (far cheaper than the request).
//!
//! Label values are provider tenants (a base URL and account), sync names,
//! outcomes and HTTP statuses: never a credential, never a caller's input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// Upper bounds (seconds) of the duration histograms' buckets.
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Registry {
    help: BTreeMap<&'static str, (&'static str, &'static str)>,
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn labels(given: &[(&'static str, &str)]) -> Labels {
    given.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// Adds `by` to the counter `name{labels}`.
pub fn count(name: &'static str, help: &'static str, given: &[(&'static str, &str)], by: u64) {
    let mut registry = registry().lock().unwrap_or_else(|p| p.into_inner());
    registry.help.entry(name).or_insert((help, "counter"));
    *registry.counters.entry((name, labels(given))).or_default() += by;
}

/// Sets the gauge `name{labels}` to `value`.
pub fn set(name: &'static str, help: &'static str, given: &[(&'static str, &str)], value: f64) {
    let mut registry = registry().lock().unwrap_or_else(|p| p.into_inner());
    registry.help.entry(name).or_insert((help, "gauge"));
    registry.gauges.insert((name, labels(given)), value);
}

/// Records one observation (seconds) in the histogram `name{labels}`.
pub fn observe(name: &'static str, help: &'static str, given: &[(&'static str, &str)], seconds: f64) {
    let mut registry = registry().lock().unwrap_or_else(|p| p.into_inner());
    registry.help.entry(name).or_insert((help, "histogram"));
    let histogram = registry.histograms.entry((name, labels(given))).or_default();
    if histogram.counts.is_empty() {
        histogram.counts = vec![0; BUCKETS.len()];
    }
    for (bucket, bound) in histogram.counts.iter_mut().zip(BUCKETS) {
        if seconds <= *bound {
            *bucket += 1;
        }
    }
    histogram.sum += seconds;
    histogram.count += 1;
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render_labels(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

/// Everything recorded so far, in Prometheus' text exposition format.
pub fn render() -> String {
    let registry = registry().lock().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    for (name, (help, kind)) in &registry.help {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for ((family, labels), value) in registry.counters.range((*name, Vec::new())..) {
            if family != name {
                break;
            }
            let _ = writeln!(out, "{name}{} {value}", render_labels(labels, None));
        }
        for ((family, labels), value) in registry.gauges.range((*name, Vec::new())..) {
            if family != name {
                break;
            }
            let _ = writeln!(out, "{name}{} {value}", render_labels(labels, None));
        }
        for ((family, labels), histogram) in registry.histograms.range((*name, Vec::new())..) {
            if family != name {
                break;
            }
            for (count, bound) in histogram.counts.iter().zip(BUCKETS) {
                let _ =
                    writeln!(out, "{name}_bucket{} {count}", render_labels(labels, Some(("le", bound.to_string()))));
            }
            let inf = render_labels(labels, Some(("le", "+Inf".into())));
            let _ = writeln!(out, "{name}_bucket{inf} {}", histogram.count);
            let _ = writeln!(out, "{name}_sum{} {}", render_labels(labels, None), histogram.sum);
            let _ = writeln!(out, "{name}_count{} {}", render_labels(labels, None), histogram.count);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_prometheus_text_format() {
        count("terapi_test_total", "A test counter.", &[("tenant", "https://a \"b\"")], 2);
        count("terapi_test_total", "A test counter.", &[("tenant", "https://a \"b\"")], 1);
        observe("terapi_test_seconds", "A test histogram.", &[("sync", "users")], 0.3);
        set("terapi_test_gauge", "A test gauge.", &[], 4.0);
        set("terapi_test_gauge", "A test gauge.", &[], 2.5);
        let text = render();
        assert!(text.contains("# TYPE terapi_test_gauge gauge\nterapi_test_gauge 2.5\n"), "{text}");
        assert!(text.contains("# TYPE terapi_test_total counter"), "{text}");
        assert!(text.contains("terapi_test_total{tenant=\"https://a \\\"b\\\"\"} 3"), "{text}");
        assert!(text.contains("terapi_test_seconds_bucket{sync=\"users\",le=\"0.25\"} 0"), "{text}");
        assert!(text.contains("terapi_test_seconds_bucket{sync=\"users\",le=\"0.5\"} 1"), "{text}");
        assert!(text.contains("terapi_test_seconds_count{sync=\"users\"} 1"), "{text}");
    }
}
