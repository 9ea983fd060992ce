#!/usr/bin/env bash
# Stops the RabbitMQ node started by rabbitmq-setup.sh. Idempotent.
set -uo pipefail
if ! command -v rabbitmqctl >/dev/null 2>&1 && [ -x /usr/lib/rabbitmq/bin/rabbitmqctl ]; then
    export PATH="/usr/lib/rabbitmq/bin:/usr/sbin:$PATH"
fi
if ! command -v rabbitmqctl >/dev/null 2>&1; then
    echo "[rabbitmq-stop] rabbitmqctl not installed; nothing to stop" >&2
    exit 0
fi
if rabbitmqctl -q status >/dev/null 2>&1; then
    echo "[rabbitmq-stop] stopping RabbitMQ node" >&2
    timeout 60 rabbitmqctl -q stop >/dev/null 2>&1 || true
else
    echo "[rabbitmq-stop] no RabbitMQ node running" >&2
fi
exit 0
