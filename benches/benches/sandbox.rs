//! The cost of the sandbox, side by side with a native client, in one run.
//!
//! `cargo bench -p terapi-benches` runs everything; CI runs a smoke form
//! (`cargo bench -p terapi-benches -- --test`, each benchmark once) so the
//! benches never rot. The fake Gong is on loopback and rate limits are off.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use terapi_benches::*;
use terapi_host::SyncOptions;

/// Anything but a real `cargo bench` (e.g. the CI smoke, `cargo test
/// --benches`, where criterion runs each benchmark once): small sizes.
fn quick() -> bool {
    !std::env::args().any(|a| a == "--bench") || std::env::args().any(|a| a == "--test")
}

/// Runs `a` and `b` alternately `rounds` times each; their median times.
fn interleaved<A, B, FA, FB>(rt: &tokio::runtime::Runtime, rounds: usize, mut a: A, mut b: B) -> (Duration, Duration)
where
    A: FnMut() -> FA,
    B: FnMut() -> FB,
    FA: Future,
    FB: Future,
{
    let (mut times_a, mut times_b) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    rt.block_on(async {
        for _ in 0..rounds {
            let start = Instant::now();
            a().await;
            times_a.push(start.elapsed());
            let start = Instant::now();
            b().await;
            times_b.push(start.elapsed());
        }
    });
    times_a.sort();
    times_b.sort();
    (times_a[rounds / 2], times_b[rounds / 2])
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio")
}

/// 1. Cold start (compile, or load from the on-disk cache) and warm
///    instantiation from the pre-instantiated component, pooling on and off.
fn startup(c: &mut Criterion) {
    let rt = tokio();
    let mut group = c.benchmark_group("startup");
    group.sample_size(10);
    let host = runtime(true);
    group.bench_function("compile_component", |b| {
        b.iter(|| host.load_component(terapi_artifacts::PROVIDER_GONG).expect("compiles"))
    });
    let cache = std::env::temp_dir().join(format!("terapi-bench-cache-{}", std::process::id()));
    let cached = terapi_host::Runtime::new(terapi_host::RuntimeConfig {
        cache_dir: Some(cache.clone()),
        ..terapi_host::RuntimeConfig::default()
    })
    .expect("runtime");
    cached.load_component(terapi_artifacts::PROVIDER_GONG).expect("fills the cache");
    group.bench_function("load_cached_component", |b| {
        b.iter(|| cached.load_component(terapi_artifacts::PROVIDER_GONG).expect("loads"))
    });
    group.finish();
    let _ = std::fs::remove_dir_all(cache);

    let mut group = c.benchmark_group("instantiate");
    for pooled in [true, false] {
        let host = runtime(pooled);
        let component = host.load_component(terapi_artifacts::PROVIDER_GONG).expect("compiles");
        let name = if pooled { "pooling" } else { "on_demand" };
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async { host.check_instantiate(&component).await.expect("instantiates") })
        });
    }
    group.finish();
}

/// 2. One action end to end (guest → host HTTP → fake → guest) versus the
///    same request, parse and mapping done natively.
fn action_call(c: &mut Criterion) {
    let rt = tokio();
    let host = runtime(true);
    let component = host.load_component(terapi_artifacts::PROVIDER_GONG).expect("compiles");
    let gong = rt.block_on(fake_gong(10));
    let connection = connection(&gong);
    let providers = terapi_host::Providers::parse(include_str!("../../providers.yaml"), "providers.yaml").unwrap();
    let session = host.connect(&component, providers.get("gong").unwrap(), &connection).expect("connects");
    let native = Native::new(host.http_client().reqwest().clone(), &gong);
    let id = fake_gong::fixtures::user_id(3);
    let input = format!(r#"{{"id":"{id}"}}"#);
    assert_eq!(
        rt.block_on(session.run_action("get-user", &input)).unwrap(),
        rt.block_on(native.get_user(&id)),
        "both do the same work"
    );

    // Interleaved, so machine noise hits both sides alike: the ratio that
    // the "< 10% overhead" target is about.
    let (component_median, native_median) = interleaved(
        &rt,
        if quick() { 20 } else { 2000 },
        || async { session.run_action("get-user", &input).await.expect("action") },
        || async { native.get_user(&id).await },
    );
    println!(
        "get_user_action/interleaved: component {component_median:.1?} native {native_median:.1?} overhead {:+.1}%",
        (component_median.as_secs_f64() / native_median.as_secs_f64() - 1.0) * 100.0
    );

    let mut group = c.benchmark_group("get_user_action");
    group.bench_function("component", |b| {
        b.to_async(&rt).iter(|| async { session.run_action("get-user", &input).await.expect("action") })
    });
    group.bench_function("native", |b| b.to_async(&rt).iter(|| async { native.get_user(&id).await }));
    group.finish();
}

/// 3. A users sync of 100,000 records in pages of 100, component versus
///    native, in records per second; and the host's peak memory for 10k and
///    100k records (flat: one page in flight).
fn sync_100k(c: &mut Criterion) {
    let records = if quick() { 1_000 } else { 100_000 };
    let rt = tokio();
    let host = runtime(true);
    let component = host.load_component(terapi_artifacts::PROVIDER_GONG).expect("compiles");
    let providers = terapi_host::Providers::parse(include_str!("../../providers.yaml"), "providers.yaml").unwrap();
    let spec = providers.get("gong").unwrap();
    let options = SyncOptions { modified_since: None, backfill_days: None };

    // Peak memory beyond what the fake's fixture already holds.
    for n in [records / 10, records] {
        let gong = rt.block_on(fake_gong(n));
        let session = host.connect(&component, spec, &connection(&gong)).expect("connects");
        let before = current_rss().unwrap_or(0);
        if reset_peak_rss() {
            let mut sink = CountingSink::default();
            let started = Instant::now();
            rt.block_on(terapi_host::run_sync(&session, "users", None, &options, &mut sink)).expect("sync");
            let extra = peak_rss().unwrap_or(0).saturating_sub(before);
            println!(
                "sync_memory/{n}_records: peak extra RSS {:.1} MiB ({} records in {:.2?})",
                extra as f64 / (1 << 20) as f64,
                sink.records,
                started.elapsed()
            );
        }
    }

    let gong = rt.block_on(fake_gong(records));
    let session = host.connect(&component, spec, &connection(&gong)).expect("connects");
    let native = Native::new(host.http_client().reqwest().clone(), &gong);
    let (component_median, native_median) = interleaved(
        &rt,
        if quick() { 1 } else { 15 },
        || async {
            let mut sink = CountingSink::default();
            terapi_host::run_sync(&session, "users", None, &options, &mut sink).await.expect("sync");
        },
        || async {
            native.sync_users().await;
        },
    );
    let rate = |d: Duration| records as f64 / d.as_secs_f64() / 1000.0;
    println!(
        "users_sync_100k/interleaved: component {:.0}k records/s native {:.0}k records/s ({:.0}% of native)",
        rate(component_median),
        rate(native_median),
        native_median.as_secs_f64() / component_median.as_secs_f64() * 100.0
    );

    let mut group = c.benchmark_group("users_sync_100k");
    group.sample_size(10).measurement_time(Duration::from_secs(20)).throughput(Throughput::Elements(records as u64));
    group.bench_function("component", |b| {
        b.to_async(&rt).iter(|| async {
            let mut sink = CountingSink::default();
            terapi_host::run_sync(&session, "users", None, &options, &mut sink).await.expect("sync");
            assert_eq!(sink.records, records as u64);
        })
    });
    group.bench_function("native", |b| {
        b.to_async(&rt).iter(|| async { assert_eq!(native.sync_users().await, records as u64) })
    });
    group.finish();
}

/// 4. Moving a page of records across the boundary: N structured
///    `sync-record`s versus one JSON array string, no HTTP involved.
fn boundary(c: &mut Criterion) {
    let rt = tokio();
    let host = runtime(true);
    let component = host.load_component(terapi_artifacts::GUEST_BOUNDARY).expect("compiles");
    let gong = rt.block_on(fake_gong(1));
    let providers = terapi_host::Providers::parse(include_str!("../../providers.yaml"), "providers.yaml").unwrap();
    let session = host.connect(&component, providers.get("gong").unwrap(), &connection(&gong)).expect("connects");
    let options = SyncOptions { modified_since: None, backfill_days: None };
    let mut group = c.benchmark_group("page_across_boundary");
    for n in [1usize, 100, 1000] {
        group.throughput(Throughput::Elements(n as u64));
        let count = n.to_string();
        group.bench_with_input(BenchmarkId::new("structured_records", n), &count, |b, count| {
            b.to_async(&rt).iter(|| async { session.run_sync_page("any", Some(count), &options).await.expect("page") })
        });
        group.bench_with_input(BenchmarkId::new("one_json_string", n), &count, |b, count| {
            b.to_async(&rt).iter(|| async { session.run_action("page-json", count).await.expect("page") })
        });
    }
    group.finish();
}

/// Criterion's FILTER argument, if one was given: criterion applies it to
/// the benchmarks, and `main` to the side-by-side runs that print their own
/// figures, so `cargo bench -- get_user` does not sit through the 100k sync.
fn filter() -> Option<String> {
    // Criterion's options that take a value; the value is not the filter.
    const WITH_VALUE: &[&str] = &[
        "--color",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--plotting-backend",
        "--output-format",
        "--format",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            return Some(arg);
        }
    }
    None
}

/// A bench function and the criterion groups it reports.
type Bench = (&'static [&'static str], fn(&mut Criterion));

fn main() {
    let benches: [Bench; 4] = [
        (&["startup", "instantiate"], startup),
        (&["get_user_action"], action_call),
        (&["users_sync_100k", "sync_memory"], sync_100k),
        (&["page_across_boundary"], boundary),
    ];
    let filter = filter();
    let mut criterion = Criterion::default().configure_from_args();
    for (groups, bench) in benches {
        let selected = filter.as_deref().is_none_or(|f| groups.iter().any(|g| g.contains(f) || f.starts_with(g)));
        if selected {
            bench(&mut criterion);
        }
    }
    criterion.final_summary();
}
