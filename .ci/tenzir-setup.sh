#!/usr/bin/env bash
# Installs Tenzir 6.20 from PyPI (the `tenzir` wheel bundles the static
# `tenzir` client and `tenzir-engine`, which runs a node when invoked as
# `tenzir-node`) into a venv, for the tenzir plugin's tests, which start
# their own nodes. Idempotent; pip's download cache is reused when present.
#
# Environment:
#   TENZIR_VENV   venv directory (default /opt/tenzir); the tests read the
#                 same variable.
set -euo pipefail

venv="${TENZIR_VENV:-/opt/tenzir}"
version=6.20.0
log() { echo "[tenzir-setup] $*" >&2; }

bundled() { ls -d "$venv"/lib/python3*/site-packages/tenzir/bundled 2>/dev/null | head -n1; }

if [ -x "$venv/bin/pip" ] && "$venv/bin/pip" show tenzir 2>/dev/null | grep -x "Version: $version" >/dev/null \
    && [ -x "$(bundled)/bin/tenzir" ]; then
    log "Tenzir $version already installed in $venv"
    exit 0
fi

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

log "installing Tenzir $version into $venv (about 175 MB)"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "tenzir==$version"
b="$(bundled)"
[ -x "$b/bin/tenzir" ] && [ -x "$b/libexec/tenzir-engine" ] || { log "the wheel lacks the client or the engine"; exit 1; }
log "installed: $("$b/bin/tenzir" --version 2>/dev/null | head -n1 || echo "$version")"
