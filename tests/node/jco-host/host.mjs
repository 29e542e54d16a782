// A second host of the `terapi:provider` world, in Node: the component is
// transpiled by jco and its imports are implemented here from HOST.md alone,
// without any of terapi's Rust. If a component only works in terapi's own
// host, the contract is not what HOST.md says; this host is how we find out.
//
// It keeps the same rules: the component names a path, never a host; the
// host resolves the connection's base URL, refuses what would leave it,
// injects the credential, spaces requests to the provider's rate, honours
// 429 Retry-After, and lets only verify, run-page and action run send.
import { Worker, MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { mkdtemp, writeFile, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { transpileBytes } from '@bytecodealliance/jco-transpile';

export const WORLD = 'terapi:provider@0.6.0';

const HOST_ONLY_HEADERS = new Set([
  'authorization', 'proxy-authorization', 'cookie', 'host', 'content-length', 'transfer-encoding',
  'connection', 'upgrade', 'te', 'trailer', 'keep-alive', 'forwarded', 'x-forwarded-for',
  'x-forwarded-host', 'x-forwarded-proto',
]);
/** The exports HOST.md lets make HTTP requests. */
const MAY_SEND = new Set(['auth.verify', 'sync.run-page', 'action.run']);

export const DEFAULT_LIMITS = {
  requestTimeoutMs: 60_000,
  maxResponseBytes: 32 << 20,
  maxRetries: 4,
  maxRetryWaitMs: 120_000,
  backoffBaseMs: 500,
};

/** A request a host rule refuses; `message` says which rule. */
export class Refused extends Error {}

/**
 * `us-44392.api.gong.io` and `https://us-44392.api.gong.io/` both become
 * `https://us-44392.api.gong.io/`. Plain http only to loopback.
 */
export function parseBaseUrl(text) {
  const bad = (reason) => new Refused(`base URL \`${text}\` is not usable: ${reason}`);
  const withScheme = text.includes('://') ? text : `https://${text}`;
  let url;
  try {
    url = new URL(withScheme);
  } catch (error) {
    throw bad(error.message);
  }
  if (url.username || url.password) throw bad('it must not carry a user name or password');
  if (/[?#]/.test(withScheme)) throw bad('it must not have a query or fragment');
  const host = url.hostname.toLowerCase();
  const loopback = host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
  if (url.protocol === 'http:' && !loopback) {
    throw bad('plain http would send the credential unencrypted; use https');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw bad(`scheme \`${url.protocol.slice(0, -1)}\` is not http(s)`);
  }
  url.pathname = url.pathname.replace(/\/+$/, '');
  return url;
}

function percentDecode(segment) {
  const bytes = [];
  for (let i = 0; i < segment.length; i++) {
    const hex = segment[i] === '%' ? segment.slice(i + 1, i + 3) : '';
    if (/^[0-9a-fA-F]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...new TextEncoder().encode(segment[i]));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** Refuses paths that could leave the base URL. */
export function checkPath(path) {
  if (path.includes('://')) {
    throw new Refused(`absolute URL \`${path}\` refused: requests go to the connection's base URL only; give a path such as /v2/users`);
  }
  if (!path.startsWith('/')) {
    throw new Refused(`path \`${path}\` must start with \`/\` (it is relative to the connection's base URL)`);
  }
  if (path.startsWith('//')) throw new Refused(`path \`${path}\` starts with \`//\`, which names another host`);
  const odd = path.match(/[\p{Cc}\p{White_Space}\\?#]/u);
  if (odd) {
    throw new Refused(`path \`${JSON.stringify(path)}\` contains ${JSON.stringify(odd[0])}; put query parameters in the query list`);
  }
  for (const segment of path.split('/')) {
    const decoded = percentDecode(segment);
    if (decoded === '.' || decoded === '..') {
      throw new Refused(`path \`${path}\` has a \`${decoded}\` segment, which could leave the base URL`);
    }
    if (/[/\\\p{Cc}]/u.test(decoded)) {
      throw new Refused(`path \`${path}\` hides a slash or control character in a percent-escape`);
    }
  }
}

/** The full URL for a guest's path and query on `base` (a parsed base URL). */
export function urlFor(base, path, query) {
  checkPath(path);
  const url = new URL(base.href);
  const basePath = base.pathname.replace(/\/+$/, '');
  url.pathname = basePath + path;
  for (const [name, value] of query) url.searchParams.append(name, value);
  // Belt and braces: whatever checkPath missed, the origin must not change.
  if (url.origin !== base.origin || !url.pathname.startsWith(basePath)) {
    throw new Refused(`\`${path}\` would leave the connection's base URL`);
  }
  return url;
}

/** The guest's headers, refusing those only the host sets. */
export function checkHeaders(headers) {
  const checked = [];
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (HOST_ONLY_HEADERS.has(lower) || lower.startsWith('proxy-')) {
      throw new Refused(`header \`${name}\` is set by the host only`);
    }
    if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(lower)) throw new Refused(`\`${name}\` is not a valid header name`);
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) throw new Refused(`the value of header \`${lower}\` is not valid`);
    checked.push([lower, value]);
  }
  return checked;
}

/** `Authorization` for a connection's credentials. */
export function authorization(credentials) {
  if (credentials.type === 'basic') {
    const pair = Buffer.from(`${credentials.username}:${credentials.password}`, 'utf8').toString('base64');
    return `Basic ${pair}`;
  }
  return `Bearer ${credentials.access_token}`;
}

/**
 * Request budgets per provider tenant, shared by every Host in this process:
 * Gong's limits are per company, whatever the connection. A regional base
 * URL names one company; on a shared one the access key does.
 */
const budgets = new Map();

function budgetFor(tenant) {
  if (!budgets.has(tenant)) budgets.set(tenant, { nextSlot: 0, day: '', spent: 0, answered: [] });
  return budgets.get(tenant);
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.max(0, ms));
}

/**
 * A component bound to one connection. Calls are synchronous, as the
 * world's functions are. One instance serves the connection's calls (HOST.md
 * allows reuse within a connection); a trap discards it.
 */
export class Host {
  #root = null;
  #instantiate;
  #base;
  /** The connection config as [key, value] pairs, for `auth.check-config`. */
  #config = [];
  #authorization;
  #secrets;
  #limits;
  #rate;
  #budget;
  #current = null;
  #worker;
  #credentialKind;
  /** What the component logged, scrubbed: [level, message]. */
  logs = [];
  /** Every request that left, for tests: [method, url, body as text]. */
  sent = [];

  /**
   * `wasm`: the component's bytes. `connection`: `{ baseUrl, credentials }`.
   * `rateLimit`: providers.yaml's `{ per_second, per_day }`, or null.
   * `sharedBaseUrl`: the provider's default base URL, which many companies
   * share (`https://api.gong.io`).
   */
  static async load(wasm, { connection, rateLimit = null, sharedBaseUrl = null, limits = {} }) {
    const { files } = await transpileBytes(wasm, { name: 'provider', instantiation: 'async', outDir: 'out' });
    const dir = await mkdtemp(join(tmpdir(), 'terapi-jco-'));
    for (const [path, bytes] of Object.entries(files)) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), bytes);
    }
    const bindings = await import(pathToFileURL(join(dir, 'out', 'provider.js')).href);
    const modules = new Map();
    for (const [path, bytes] of Object.entries(files)) {
      if (path.endsWith('.wasm')) modules.set(path.slice('out/'.length), await WebAssembly.compile(bytes));
    }
    await rm(dir, { recursive: true, force: true });
    const base = parseBaseUrl(connection.baseUrl);
    const shared = sharedBaseUrl && parseBaseUrl(sharedBaseUrl).href === base.href;
    const { username } = connection.credentials;
    const tenant = shared ? `${base.href} (${username ? `access key ${username}` : 'own token'})` : base.href;
    return new Host(bindings, modules, connection, rateLimit, budgetFor(tenant), { ...DEFAULT_LIMITS, ...limits });
  }

  constructor(bindings, modules, connection, rateLimit, budget, limits) {
    this.#budget = budget;
    this.#base = parseBaseUrl(connection.baseUrl);
    this.#config = [['api_base_url_for_customer', connection.baseUrl]];
    this.#authorization = authorization(connection.credentials);
    this.#credentialKind = connection.credentials.type;
    const { password, access_token } = connection.credentials;
    this.#secrets = [password, access_token, this.#authorization.split(' ')[1]].filter(Boolean);
    this.#limits = limits;
    this.#rate = rateLimit;
    const imports = {
      types: {},
      http: { send: (request) => this.#send(request) },
      log: { log: (level, message) => this.logs.push([level, this.redact(message)]) },
    };
    // jco's generated code looks the interfaces up without their version,
    // its type declarations with it: both name the same functions.
    const byName = {};
    for (const [name, functions] of Object.entries(imports)) {
      byName[`terapi:provider/${name}`] = functions;
      byName[`terapi:provider/${name}@${WORLD.split('@')[1]}`] = functions;
    }
    this.#instantiate = () => bindings.instantiate((path) => modules.get(path), byName);
    this.#worker = new Worker(new URL('./http-worker.mjs', import.meta.url));
    this.#worker.unref();
  }

  async close() {
    await this.#worker.terminate();
  }

  /** `text` with the connection's secrets replaced. */
  redact(text) {
    return this.#secrets.reduce((t, secret) => t.split(secret).join('<redacted>'), String(text));
  }

  async #exports() {
    this.#root ??= await this.#instantiate();
    return this.#root;
  }

  /**
   * HOST.md: an `unauthorized` message says what the provider said; the
   * host adds what to do, by the kind of credential it holds.
   */
  #advised(error) {
    if (error.tag !== 'unauthorized') return error;
    const advice = this.#credentialKind === 'basic'
      ? 'check the username and password (Gong: the access key and secret)'
      : 'check the access token, or authorize the connection again';
    return { tag: error.tag, val: `${error.val}; ${advice}` };
  }

  /**
   * Runs one export. A provider error comes back as `{ error: variant }`;
   * a trap throws (and the instance is dropped: its state is undefined).
   */
  async #call(name, run) {
    const root = await this.#exports();
    this.#current = name;
    try {
      return { ok: run(root) };
    } catch (error) {
      // A `result` error: jco throws the variant itself (older versions
      // wrap it in a ComponentError's `payload`).
      if (error && Object.hasOwn(error, 'payload')) return { error: this.#advised(error.payload) };
      if (error && !(error instanceof Error) && typeof error.tag === 'string') return { error: this.#advised(error) };
      this.#root = null;
      throw new Error(`the provider component crashed in ${name}: ${this.redact(error?.message ?? error)}`);
    } finally {
      this.#current = null;
    }
  }

  describe() {
    return this.#call('auth.describe', (root) => root.auth.describe());
  }
  /** `auth.check-config` first (no HTTP), then `auth.verify`, as HOST.md says. */
  verify() {
    const checked = this.#call('auth.check-config', (root) => root.auth.checkConfig(this.#config));
    return checked.then((answer) => (answer.error ? answer : this.#call('auth.verify', (root) => root.auth.verify())));
  }
  listSyncs() {
    return this.#call('sync.list-syncs', (root) => root.sync.listSyncs());
  }
  /** `now`: the host's clock in seconds (s64); a test may pass another. */
  runPage(sync, checkpoint, options = {}, now = BigInt(Math.floor(Date.now() / 1000))) {
    const request = { sync, checkpoint, options, nowUnixSeconds: now };
    return this.#call('sync.run-page', (root) => root.sync.runPage(request));
  }
  listActions() {
    return this.#call('action.list-actions', (root) => root.action.listActions());
  }
  runAction(name, input) {
    return this.#call('action.run', (root) => root.action.run(name, JSON.stringify(input)));
  }
  /** The proxy: the component shapes the request, the host sends it. */
  async proxy(request) {
    const prepared = await this.#call('proxy.prepare', (root) => root.proxy.prepare(request));
    if (prepared.error) return prepared;
    return this.#deliver(prepared.ok);
  }
  handleWebhook(payload) {
    return this.#call('webhook.handle', (root) => root.webhook.handle(payload));
  }

  /** `http.send`: refused outside the exports that may send. */
  #send(request) {
    if (!MAY_SEND.has(this.#current)) {
      throw { tag: 'refused', val: `${this.#current} may not make HTTP requests (only auth.verify, sync.run-page and action.run may; see HOST.md)` };
    }
    const answer = this.#deliver(request);
    if (answer.error) throw answer.error;
    return answer.ok;
  }

  /** Sends under every egress rule: `{ ok: response }` or `{ error: http-error }`. */
  #deliver(request) {
    let url;
    let headers;
    try {
      url = urlFor(this.#base, request.path, request.query);
      headers = checkHeaders(request.headers);
    } catch (error) {
      if (error instanceof Refused) return { error: { tag: 'refused', val: error.message } };
      throw error;
    }
    const method = request.method.toUpperCase();
    const retryable = request.idempotent || method === 'GET';
    for (let attempt = 0; ; attempt++) {
      const budget = this.#acquire();
      if (budget) return { error: budget };
      this.sent.push([method, url.href, request.body ? new TextDecoder().decode(request.body) : null]);
      const answer = this.#once(method, url, headers, request.body);
      this.#answered();
      let wait;
      if (answer.status === 429) {
        const after = Number(answer.headers.find(([name]) => name === 'retry-after')?.[1]);
        wait = Number.isFinite(after) && after >= 0 ? after * 1000 : this.#backoff(attempt);
        if (attempt >= this.#limits.maxRetries || wait > this.#limits.maxRetryWaitMs) {
          return {
            error: {
              tag: 'rate-limited',
              val: `the provider answered 429 Too Many Requests to ${method} ${url.pathname} and asks to wait ${Math.round(wait / 1000)}s; try again later`,
            },
          };
        }
      } else if (retryable && (answer.status >= 500 || answer.error?.tag === 'transport')) {
        wait = this.#backoff(attempt);
        if (attempt >= this.#limits.maxRetries) return answer.error ? answer : { ok: answer };
      } else {
        return answer.error ? answer : { ok: answer };
      }
      sleep(wait);
    }
  }

  #backoff(attempt) {
    return this.#limits.backoffBaseMs * 2 ** Math.min(attempt, 10) * (0.5 + Math.random());
  }

  /**
   * The provider's rate, and a daily count. Requests are spaced 5% wider
   * than 1/rate, and a request leaves only once a second has passed since
   * the answer to the one `per_second` places before it: that one reached
   * the provider before its answer came, so no second at the provider holds
   * more than `per_second` however late a request leaves (a busy machine
   * delays some more than others). Exact here, where requests go one at a
   * time (`send` is synchronous).
   */
  #acquire() {
    if (!this.#rate) return null;
    const budget = this.#budget;
    const today = new Date().toISOString().slice(0, 10);
    if (budget.day !== today) Object.assign(budget, { day: today, spent: 0 });
    if (this.#rate.per_day && budget.spent >= this.#rate.per_day) {
      return { tag: 'rate-limited', val: `the daily budget of ${this.#rate.per_day} requests is spent; it resets at 00:00 UTC` };
    }
    budget.spent += 1;
    const perSecond = this.#rate.per_second;
    if (perSecond) {
      const now = Date.now();
      const window = budget.answered.length >= perSecond ? budget.answered.at(-perSecond) + 1000 : 0;
      const slot = Math.max(now, budget.nextSlot, window);
      budget.nextSlot = slot + (1000 / perSecond) * 1.05;
      sleep(slot - now);
    }
    return null;
  }

  #answered() {
    const perSecond = this.#rate?.per_second;
    if (!perSecond) return;
    this.#budget.answered.push(Date.now());
    if (this.#budget.answered.length > perSecond) this.#budget.answered.shift();
  }

  #once(method, url, headers, body) {
    const flag = new Int32Array(new SharedArrayBuffer(4));
    const { port1, port2 } = new MessageChannel();
    const request = {
      url: url.href,
      method,
      headers: [...headers, ['authorization', this.#authorization]],
      body: body ?? null,
      timeoutMs: this.#limits.requestTimeoutMs,
      maxResponseBytes: this.#limits.maxResponseBytes,
    };
    this.#worker.postMessage({ request, flag, port: port2 }, [port2]);
    Atomics.wait(flag, 0, 0, this.#limits.requestTimeoutMs + 5_000);
    const answer = receiveMessageOnPort(port1)?.message;
    port1.close();
    if (!answer) {
      return { error: { tag: 'timeout', val: `no answer from the provider to ${method} ${url.pathname}` } };
    }
    if (answer.error) return { error: { tag: answer.error.tag, val: this.redact(answer.error.val) } };
    return answer;
  }
}
