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
    };
    let gong = FakeGong::start_on(([127, 0, 0, 1], args.port).into(), config).await?;
    // One line a script can read, then serve until told to stop.
    println!("{}", gong.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
