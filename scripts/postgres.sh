#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, on 127.0.0.1 only.
#
#   eval "$(scripts/postgres.sh start)"   # exports TERAPI_TEST_DATABASE_URL and TERAPI_TEST_PGDATA
#   scripts/postgres.sh start --tls DIR   # TLS only: DIR/server.crt and DIR/server.key, no plain connections
#   scripts/postgres.sh restart "$TERAPI_TEST_PGDATA" [SECONDS_DOWN]
#   scripts/postgres.sh stop "$TERAPI_TEST_PGDATA"
#
# Installs Debian's postgresql package when the server binaries are missing
# (as root, with apt-get). The cluster lives in a temporary directory, owned
# by the `postgres` user when run as root (initdb refuses root), with trust
# auth on loopback: it holds nothing but test data and is removed on stop.
set -euo pipefail

bindir() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
    done
    return 1
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
start)
    if ! bin=$(bindir); then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "PostgreSQL is not installed; install Debian's postgresql package (apt-get install postgresql)" >&2
            exit 1
        fi
        echo "installing PostgreSQL (Debian's postgresql package) ..." >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        bin=$(bindir)
    fi
    tls_dir=""
    if [ "${2:-}" = "--tls" ]; then tls_dir=${3:?usage: postgres.sh start --tls DIR}; fi
    data=$(mktemp -d "${TMPDIR:-/tmp}/terapi-pg.XXXXXX")
    [ "$(id -u)" = 0 ] && chown postgres: "$data"
    as_owner "$bin/initdb" -D "$data/db" -U postgres --auth=trust --encoding=UTF8 --no-sync >/dev/null
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    tls_options=""
    if [ -n "$tls_dir" ]; then
        # The server's key must be the server user's and private; only
        # TLS connections are let in over TCP.
        cp "$tls_dir/server.crt" "$tls_dir/server.key" "$data/db/"
        [ "$(id -u)" = 0 ] && chown postgres: "$data/db/server.crt" "$data/db/server.key"
        chmod 600 "$data/db/server.key"
        printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n' >"$data/db/pg_hba.conf"
        [ "$(id -u)" = 0 ] && chown postgres: "$data/db/pg_hba.conf"
        tls_options="-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
    fi
    # fsync off: test data, and CI's disk is the bottleneck otherwise.
    echo "-c listen_addresses=127.0.0.1 -p $port -k $data -c fsync=off -c synchronous_commit=off -c max_connections=200 $tls_options" >"$data/options"
    as_owner "$bin/pg_ctl" -D "$data/db" -l "$data/log" -w -o "$(cat "$data/options")" start >/dev/null
    as_owner "$bin/createdb" -h "$data" -p "$port" -U postgres terapi
    echo "export TERAPI_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/terapi"
    echo "export TERAPI_TEST_PGDATA=$data"
    ;;
restart)
    # A server restart as an operator (or a failover) causes one: every
    # connection is cut, and nothing answers for SECONDS_DOWN.
    data=${2:?usage: postgres.sh restart DATA_DIR [SECONDS_DOWN]}
    bin=$(bindir)
    as_owner "$bin/pg_ctl" -D "$data/db" -m fast -w stop >/dev/null
    sleep "${3:-0}"
    as_owner "$bin/pg_ctl" -D "$data/db" -l "$data/log" -w -o "$(cat "$data/options")" start >/dev/null
    ;;
stop)
    data=${2:?usage: postgres.sh stop DATA_DIR}
    bin=$(bindir)
    as_owner "$bin/pg_ctl" -D "$data/db" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$data"
    ;;
*)
    echo "usage: $0 start [--tls DIR] | restart DATA_DIR [SECONDS_DOWN] | stop DATA_DIR" >&2
    exit 2
    ;;
esac
