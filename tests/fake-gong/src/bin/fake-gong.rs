//! Runs the fake Gong on loopback until interrupted, for the demo and for
//! trying the CLI by hand.

use clap::Parser;
use fake_gong::{FakeGong, FakeGongConfig, fixtures};

#[derive(Parser)]
#[command(about = "A local stand-in for the Gong API (loopback only)")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value_t = 250)]
    users: usize,
    #[arg(long, default_value_t = 48)]
    calls: usize,
    #[arg(long, default_value = "demo-access-key")]
    access_key: String,
    #[arg(long, default_value = "demo-access-key-secret")]
    access_key_secret: String,
    #[arg(long, default_value_t = 100)]
    page_size: usize,
    /// Requests per second before answering 429, as Gong does (0: no limit).
    #[arg(long, default_value_t = 3)]
    rate_limit: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = FakeGongConfig {
        access_key: args.access_key,
        access_key_secret: args.access_key_secret,
        users: fixtures::users(args.users),
        calls: fixtures::calls(args.calls),
        page_size: args.page_size,
        rate_limit_per_second: (args.rate_limit > 0).then_some(args.rate_limit),
        plan_gated: false,
        extras: 5,
        oauth: None,
        more_keys: Vec::new(),
        company_utc_offset_minutes: 0,
    };
    let gong = FakeGong::start_on(([127, 0, 0, 1], args.port).into(), config).await?;
    // One line a script can read, then serve until told to stop.
    println!("{}", gong.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
