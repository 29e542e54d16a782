//! MCP's stdio transport with JSON-RPC's error answers (`jsonrpc::check`):
//! stdin is read here line by line, good lines go on to rmcp, bad ones are
//! answered here; rmcp's output and those answers reach stdout as whole
//! lines. The end of stdin (the client went away) is signalled at once, so
//! calls in flight stop instead of running on for nobody.

use std::io;

use rmcp::{ServerHandler, ServiceExt as _};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{McpServeError, jsonrpc};

/// One message may be this long (the CLI's other inputs stop at 8 MiB too).
const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// Room in the pipes between this module and rmcp.
const PIPE_BYTES: usize = 1 << 20;

/// Serves `server` on stdin/stdout until stdin ends; `client_gone` is
/// cancelled the moment it does.
pub async fn serve<S: ServerHandler>(server: S, client_gone: CancellationToken) -> Result<(), McpServeError> {
    let (rmcp_input, mut to_rmcp) = tokio::io::duplex(PIPE_BYTES);
    let (from_rmcp, rmcp_output) = tokio::io::duplex(PIPE_BYTES);
    let (answers, mut answered) = mpsc::channel::<Vec<u8>>(16);

    let reader = tokio::spawn(async move {
        let mut stdin = BufReader::new(StdinThread::start());
        let mut line = Vec::new();
        loop {
            match read_line(&mut stdin, &mut line, MAX_MESSAGE_BYTES).await {
                // Blank lines between messages are not messages.
                Ok(Some(true)) if line.trim_ascii().is_empty() => {}
                Ok(Some(true)) => match jsonrpc::check(&line) {
                    Ok(()) => {
                        line.push(b'\n');
                        if to_rmcp.write_all(&line).await.is_err() {
                            break;
                        }
                    }
                    Err(refusal) => {
                        let _ = answers.send(refusal.response.to_string().into_bytes()).await;
                    }
                },
                Ok(Some(false)) => {
                    let too_long = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {
                        "code": jsonrpc::INVALID_REQUEST,
                        "message": format!("Invalid Request: a message may be {MAX_MESSAGE_BYTES} bytes at most"),
                    }});
                    let _ = answers.send(too_long.to_string().into_bytes()).await;
                }
                Ok(None) | Err(_) => break,
            }
        }
        client_gone.cancel();
        // Dropping `to_rmcp` ends rmcp's input: it finishes and returns.
    });

    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        let mut from_rmcp = BufReader::new(from_rmcp);
        let mut line = Vec::new();
        let mut rmcp_open = true;
        loop {
            line.clear();
            tokio::select! {
                read = from_rmcp.read_until(b'\n', &mut line), if rmcp_open => {
                    if matches!(read, Ok(0) | Err(_)) {
                        rmcp_open = false;
                        continue;
                    }
                }
                answer = answered.recv() => match answer {
                    Some(answer) => {
                        line = answer;
                        line.push(b'\n');
                    }
                    None if rmcp_open => continue,
                    None => break,
                },
            }
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });

    let transport = |e: &dyn std::fmt::Display| McpServeError::Transport(e.to_string());
    let running = server.serve((rmcp_input, rmcp_output)).await.map_err(|e| transport(&e))?;
    running.waiting().await.map_err(|e| transport(&e))?;
    reader.abort();
    // rmcp's output is closed now; the writer drains what is left.
    let _ = writer.await;
    Ok(())
}

/// Standard input read on a thread of its own. Tokio's `stdin()` reads on
/// the runtime's blocking pool, and a runtime cannot shut down while one of
/// those reads waits: a client that keeps stdin open kept the process alive
/// after SIGTERM. A plain thread blocked in `read` does not hold the process
/// up when `main` returns.
struct StdinThread {
    chunks: mpsc::Receiver<Vec<u8>>,
    pending: Vec<u8>,
    at: usize,
}

impl StdinThread {
    fn start() -> StdinThread {
        let (sender, chunks) = mpsc::channel::<Vec<u8>>(4);
        let spawned = std::thread::Builder::new().name("mcp-stdin".into()).spawn(move || {
            use std::io::Read as _;
            let mut stdin = std::io::stdin().lock();
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                match stdin.read(&mut buffer) {
                    Ok(0) => return,
                    Ok(n) => {
                        if sender.blocking_send(buffer[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!("stdin cannot be read: {e}");
        }
        StdinThread { chunks, pending: Vec::new(), at: 0 }
    }
}

impl tokio::io::AsyncRead for StdinThread {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.at == this.pending.len() {
            match this.chunks.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => {
                    this.pending = chunk;
                    this.at = 0;
                }
                // The end of input: nothing more, and no error.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = out.remaining().min(this.pending.len() - this.at);
        out.put_slice(&this.pending[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

/// Reads one line into `line` (without its `\n`). `Some(true)`: a line;
/// `Some(false)`: a line longer than `max`, skipped; `None`: end of input.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    line.clear();
    let mut fits = true;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok((!line.is_empty() || !fits).then_some(fits));
        }
        let (chunk, ends) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (&available[..at], at + 1),
            None => (available, available.len()),
        };
        if fits && line.len() + chunk.len() <= max {
            line.extend_from_slice(chunk);
        } else {
            fits = false;
            line.clear();
        }
        let found_end = ends > chunk.len();
        reader.consume(ends);
        if found_end {
            if fits && line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(fits));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_read_whole_and_long_ones_skipped() {
        let mut input = BufReader::with_capacity(4, &b"ab\r\ncdefgh\nij\n\nk"[..]);
        let mut line = Vec::new();
        assert_eq!(read_line(&mut input, &mut line, 5).await.unwrap(), Some(true));
        assert_eq!(line, b"ab");
        assert_eq!(read_line(&mut input, &mut line, 5).await.unwrap(), Some(false), "cdefgh is over 5 bytes");
        assert_eq!(read_line(&mut input, &mut line, 5).await.unwrap(), Some(true));
        assert_eq!(line, b"ij");
        assert_eq!(read_line(&mut input, &mut line, 5).await.unwrap(), Some(true));
        assert_eq!(line, b"");
        assert_eq!(read_line(&mut input, &mut line, 5).await.unwrap(), Some(true), "a last line without \\n");
        assert_eq!(line, b"k");
        assert_eq!(read_line(&mut input, &mut line, 5).await.unwrap(), None);
    }
}
