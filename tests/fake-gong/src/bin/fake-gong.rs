//! Runs the fake Gong on loopback until interrupted, for the demo and for
//! trying the CLI by hand. Its first stdout line is the base URL (what
//! scripts read); what to set to use it goes to stderr.

use clap::Parser;
use fake_gong::{FakeGong, FakeGongConfig, OAuthConfig, fixtures};

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
    /// When the first call started (RFC 3339) [default: two days before --calls-to].
    #[arg(long, value_name = "TIME")]
    calls_from: Option<String>,
    /// When the calls end (RFC 3339); they are spread evenly in between [default: now].
    #[arg(long, value_name = "TIME")]
    calls_to: Option<String>,
    #[arg(long, default_value = "demo-access-key")]
    access_key: String,
    #[arg(long, default_value = "demo-access-key-secret")]
    access_key_secret: String,
    #[arg(long, default_value_t = 100)]
    page_size: usize,
    /// Requests per second before answering 429, as Gong does (0: no limit).
    #[arg(long, default_value_t = 3)]
    rate_limit: usize,
    /// Play Gong's OAuth server too (client `fake-client-id`, secret
    /// `fake-client-secret`), with the API on a second port as the
    /// customer's base URL, to try `gong-oauth`.
    #[arg(long)]
    oauth: bool,
    /// With --oauth: write terapi's providers.yaml with gong-oauth's URLs on
    /// this fake here (for `terapi --providers FILE`).
    #[arg(long, value_name = "FILE", requires = "oauth")]
    providers_out: Option<std::path::PathBuf>,
}

fn time(flag: &str, text: &str) -> anyhow::Result<i64> {
    terapi_time::parse_rfc3339(text)
        .ok_or_else(|| anyhow::anyhow!("--{flag} `{text}` is not an RFC 3339 time such as 2024-05-01T00:00:00Z"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let to = args.calls_to.as_deref().map(|t| time("calls-to", t)).transpose()?.unwrap_or(now);
    let from = args.calls_from.as_deref().map(|t| time("calls-from", t)).transpose()?.unwrap_or(to - 2 * 86_400);
    if from > to {
        anyhow::bail!("--calls-from is after --calls-to");
    }
    let oauth = OAuthConfig::default();
    let config = FakeGongConfig {
        access_key: args.access_key,
        access_key_secret: args.access_key_secret,
        calls: fixtures::calls_between(args.calls, from, to),
        page_size: args.page_size,
        rate_limit_per_second: (args.rate_limit > 0).then_some(args.rate_limit),
        oauth: args.oauth.then(|| oauth.clone()),
        ..FakeGongConfig::demo(args.users, 0, now)
    };
    let gong = FakeGong::start_on(([127, 0, 0, 1], args.port).into(), config).await?;
    // One line a script can read, then serve until told to stop.
    println!("{}", gong.base_url());
    eprintln!(
        "fake Gong at {}: {} users, {} calls from {} to {}; access key `{}`",
        gong.base_url(),
        args.users,
        args.calls,
        terapi_time::format_rfc3339(from),
        terapi_time::format_rfc3339(to),
        gong.config().access_key
    );
    if args.oauth {
        eprintln!(
            "OAuth: client id `{}`, secret `{}`; approves at once and redirects; API base URL for customers {}",
            oauth.client_id,
            oauth.client_secret,
            gong.api_base_url().unwrap_or_default()
        );
        if let Some(path) = &args.providers_out {
            std::fs::write(path, FakeGongConfig::oauth_providers_yaml(&gong.base_url()))?;
            eprintln!(
                "wrote {}: TERAPI_PROVIDERS={} GONG_OAUTH_CLIENT_ID={} GONG_OAUTH_CLIENT_SECRET={} \
                 terapi connection authorize acme --provider gong-oauth",
                path.display(),
                path.display(),
                oauth.client_id,
                oauth.client_secret
            );
        }
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
