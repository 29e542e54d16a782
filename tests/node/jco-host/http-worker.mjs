// Performs one HTTP request at a time for the host's main thread, which is
// blocked in a synchronous `http.send` import (the component model call is
// synchronous; Node's fetch is not). The answer goes back on the port the
// request came with, then the shared flag wakes the main thread.
import { parentPort } from 'node:worker_threads';

parentPort.on('message', async ({ request, flag, port }) => {
  let answer;
  try {
    answer = await perform(request);
  } catch (error) {
    answer = { error: classify(error, request) };
  }
  port.postMessage(answer);
  port.close();
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
});

async function perform({ url, method, headers, body, timeoutMs, maxResponseBytes }) {
  const response = await fetch(url, {
    method,
    headers,
    body: body ?? undefined,
    // A redirect could carry the injected credential elsewhere: the guest
    // sees the 3xx instead.
    redirect: 'manual',
    signal: AbortSignal.timeout(timeoutMs),
  });
  const where = `${method} ${new URL(url).pathname}`;
  const declared = Number(response.headers.get('content-length') ?? 0);
  if (declared > maxResponseBytes) {
    return { error: { tag: 'too-large', val: `${where} answered more than ${maxResponseBytes} bytes` } };
  }
  const chunks = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength;
    if (size > maxResponseBytes) {
      return { error: { tag: 'too-large', val: `${where} answered more than ${maxResponseBytes} bytes` } };
    }
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  // Header names come lower-case from fetch, as the contract wants them.
  return { status: response.status, headers: [...response.headers], body: bytes };
}

function classify(error, { method, url, timeoutMs }) {
  const where = `${method} ${new URL(url).pathname}`;
  if (error?.name === 'TimeoutError') {
    return {
      tag: 'timeout',
      val: `no answer from the provider to ${where} within ${timeoutMs / 1000}s; it may be down or overloaded, try again later`,
    };
  }
  return { tag: 'transport', val: `${where}: ${error?.cause?.code ?? error?.message ?? error}` };
}
