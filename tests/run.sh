#!/usr/bin/env bash
# The README's test command: sets up every real server and peer the tests
# use on a Debian machine (idempotent; needs root for apt), then runs the
# whole test suite. Nothing is skipped: a test whose server is missing fails.
#
#   RabbitMQ             the rabbitmq backbone tests     (.ci/rabbitmq-setup.sh)
#   Python Threat Bus    the differential interop test  (.ci/python-threatbus-setup.sh)
#   Suricata 7 + suricata-threatbus   the zmq end-to-end test (.ci/suricata-setup.sh)
#   Tenzir 6.20          the tenzir plugin's tests          (.ci/tenzir-setup.sh)
#   openssl s_client     the zeek plugin's TLS test (Debian package openssl)
#   Prometheus, promtool the metrics tests (Debian package prometheus; the
#                        tests start their own server on 127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# libzmq3-dev: Debian's libzmq (with CURVE, which the zmq app's CURVE tests
# need) instead of the bundled copy; pkg-config finds it.
if ! command -v cc >/dev/null || ! command -v pkg-config >/dev/null || ! command -v openssl >/dev/null \
    || ! dpkg -s libssl-dev >/dev/null 2>&1 || ! dpkg -s libzmq3-dev >/dev/null 2>&1 \
    || ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    apt-get update
    apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev openssl libzmq3-dev prometheus
fi

bash .ci/rabbitmq-setup.sh
trap 'bash .ci/rabbitmq-stop.sh || true' EXIT
bash .ci/python-threatbus-setup.sh
bash .ci/suricata-setup.sh
bash .ci/tenzir-setup.sh

cargo test --workspace "$@"
