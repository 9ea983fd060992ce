#!/usr/bin/env bash
# Installs the original Python Threat Bus with its inmem and RabbitMQ
# backbones and its zmq, misp and cif3 apps (PyPI, 2022.5.16, the last
# release) into a venv, so that the interop test can run a Python host next
# to a Rust host on one RabbitMQ exchange, and the misp and cif3
# differential tests can feed both the same input. Idempotent.
#
# Environment:
#   THREATBUS_PYTHON_VENV   venv directory (default /opt/threatbus-python);
#                           the test reads the same variable.
set -euo pipefail

venv="${THREATBUS_PYTHON_VENV:-/opt/threatbus-python}"
log() { echo "[python-threatbus-setup] $*" >&2; }

if [ -x "$venv/bin/threatbus" ] && "$venv/bin/python" -c 'import threatbus_inmem, threatbus_rabbitmq, threatbus_zmq, threatbus_misp, threatbus_cif3, zmq' 2>/dev/null; then
    log "already installed in $venv"
    exit 0
fi

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

log "creating $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check \
    threatbus==2022.5.16 threatbus-inmem==2022.5.16 threatbus-rabbitmq==2022.5.16 threatbus-zmq==2022.5.16 \
    "threatbus-misp[zmq]==2022.5.16" pymisp==2.5.34.4 threatbus-cif3==2022.5.16
"$venv/bin/python" -c 'import threatbus_inmem, threatbus_rabbitmq, threatbus_zmq, threatbus_misp, threatbus_cif3, zmq'
log "installed: $("$venv/bin/pip" list --disable-pip-version-check 2>/dev/null | grep -E '^(threatbus|threatbus-misp|threatbus-cif3|cifsdk|csirtg.indicator|pika|stix2|pymisp) ' | tr -s ' ' | paste -sd, -)"
