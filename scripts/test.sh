#!/usr/bin/env bash
# Runs every test: unit tests, the guest's parsing tests (natively), and the
# end-to-end tests of the real component in the real host against the fake
# Gong, on SQLite and on a real PostgreSQL server this script starts (and
# installs from Debian's packages if it is missing). Installs the wasm
# target the guests are built for if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

# Habits, enforced before anything slow: formatting and every clippy lint.
if command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
        rustup component list --installed | grep -q "^$component" || rustup component add "$component"
    done
fi
cargo fmt --all --check || { echo "cargo fmt --check failed: run \`cargo fmt\`" >&2; exit 1; }
cargo clippy --workspace --all-targets --locked -- -D warnings

# The Node tests (an app on Nango's own client, the Connect page in
# headless Chromium, the Gong component in a second host under jco) need
# their npm packages and Debian's Chromium.
if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
fi
if [ ! -d tests/node/node_modules/@nangohq/node ] || [ ! -d tests/node/node_modules/playwright-core ] \
    || [ ! -d tests/node/node_modules/@bytecodealliance/jco-transpile ] \
    || [ ! -d tests/node/node_modules/@modelcontextprotocol/sdk ] \
    || [ ! -d tests/node/node_modules/@nangohq/providers ]; then
    npm ci --prefix tests/node --no-audit --no-fund
fi
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
    else
        echo "Chromium is missing: install Debian's package (sudo apt-get install chromium)" >&2
        exit 1
    fi
fi

# A throwaway PostgreSQL on loopback for the fleet tests, gone on exit.
if [ -z "${TERAPI_TEST_DATABASE_URL:-}" ]; then
    eval "$(scripts/postgres.sh start)"
    trap 'scripts/postgres.sh stop "$TERAPI_TEST_PGDATA"' EXIT
fi

# --benches adds the benchmarks, run once each on the debug build so they
# never rot (the figures come from a full `cargo bench -p terapi-benches`).
# One invocation over the whole workspace, so every dependency is resolved
# with one feature set and built once. (Not --all-targets: that would also
# build the harness libraries' empty test binaries, each linking wasmtime.)
cargo test --workspace --locked --tests --benches
# The two test guests are components only (cdylib): nothing for rustdoc.
cargo test --workspace --locked --doc --exclude guest-hostile --exclude guest-boundary
