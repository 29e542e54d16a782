//! `terapi connection authorize`: the OAuth authorization-code flow from a
//! terminal. The redirect is caught by a one-shot listener on 127.0.0.1
//! (or the code is pasted with `--code`).

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The redirect listener's port unless told otherwise, so the redirect URI
/// registered with the OAuth app (`http://127.0.0.1:53682/callback`) matches.
pub const DEFAULT_PORT: u16 = 53682;

/// Waits for the provider's redirect to `/callback` and returns its code,
/// after checking `state`.
pub async fn wait_for_code(listener: TcpListener, state: &str, timeout: Duration) -> Result<String> {
    let accept = async {
        loop {
            let (mut stream, _) = listener.accept().await?;
            let mut buffer = vec![0u8; 8192];
            let mut read = 0;
            while read < buffer.len() {
                let n = stream.read(&mut buffer[read..]).await?;
                if n == 0 {
                    break;
                }
                read += n;
                if buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buffer[..read]);
            let target = head.split_whitespace().nth(1).unwrap_or_default().to_string();
            let Some(query) = target.strip_prefix("/callback?") else {
                // A browser's favicon request or a stray probe: not ours.
                let _ =
                    stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                continue;
            };
            let params: std::collections::BTreeMap<String, String> =
                url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            let outcome = if let Some(error) = params.get("error") {
                Err(anyhow!(
                    "the provider refused the authorization: {error} {}",
                    params.get("error_description").cloned().unwrap_or_default()
                ))
            } else if params.get("state").map(String::as_str) != Some(state) {
                Err(anyhow!(
                    "the redirect's state does not match this request (a stale or forged redirect); run `connection authorize` again"
                ))
            } else {
                params.get("code").cloned().ok_or_else(|| anyhow!("the redirect carried no code"))
            };
            let (status, text) = match &outcome {
                Ok(_) => ("200 OK", "terapi: authorized. You can close this tab."),
                Err(_) => ("400 Bad Request", "terapi: authorization failed; see the terminal."),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            return outcome;
        }
    };
    match tokio::time::timeout(timeout, accept).await {
        Ok(result) => result,
        Err(_) => {
            bail!("no redirect arrived within {} minutes; run `connection authorize` again", timeout.as_secs() / 60)
        }
    }
}
