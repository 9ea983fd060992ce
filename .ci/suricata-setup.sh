#!/usr/bin/env bash
# Installs the real third-party software of the zmq end-to-end test
# (tests/tests/zmq_suricata.rs): Suricata from bookworm-backports and the
# published suricata-threatbus app from PyPI, in a venv at
# $THREATBUS_APPS_VENV (default /opt/threatbus-apps). Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
VENV="${THREATBUS_APPS_VENV:-/opt/threatbus-apps}"
SURICATA_THREATBUS_VERSION="2022.5.16"

SOURCES=/etc/apt/sources.list.d/bookworm-backports.sources
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat > "$SOURCES" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
apt-get update
apt-get install -y --no-install-recommends -t bookworm-backports suricata
suricata -V

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "suricata-threatbus==${SURICATA_THREATBUS_VERSION}"
"$VENV/bin/suricata-threatbus" --help > /dev/null
echo "suricata-threatbus ${SURICATA_THREATBUS_VERSION} installed in $VENV"
