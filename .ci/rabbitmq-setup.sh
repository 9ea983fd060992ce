#!/usr/bin/env bash
# Installs (Debian) and starts a local RabbitMQ server without systemd, for the
# rabbitmq backbone tests. Idempotent: a running node is left as it is.
#
# Environment:
#   RABBITMQ_SKIP_INSTALL=1   do not apt-get install (use what is there)
set -euo pipefail

log() { echo "[rabbitmq-setup] $*" >&2; }

if ! command -v rabbitmq-server >/dev/null 2>&1 && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    export PATH="/usr/lib/rabbitmq/bin:/usr/sbin:$PATH"
fi

if ! command -v rabbitmq-server >/dev/null 2>&1; then
    if [ "${RABBITMQ_SKIP_INSTALL:-0}" = "1" ]; then
        log "rabbitmq-server is not installed and RABBITMQ_SKIP_INSTALL=1"
        exit 1
    fi
    log "installing rabbitmq-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps the package's postinst from trying to start a service.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        created_policy=1
    fi
    apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
    if [ "$created_policy" = "1" ]; then rm -f "$policy"; fi
fi

# The Erlang cookie must be readable by the user running rabbitmqctl (root here).
if rabbitmqctl -q status >/dev/null 2>&1; then
    log "RabbitMQ node already running"
else
    # A node whose service was started by the package (or a stale epmd) is
    # fine; only start one when nothing answers.
    log "starting rabbitmq-server -detached"
    mkdir -p /var/lib/rabbitmq /var/log/rabbitmq
    if id rabbitmq >/dev/null 2>&1; then
        chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq 2>/dev/null || true
    fi
    rabbitmq-server -detached
fi

# Right after -detached the node is not yet registered with epmd and
# await_startup fails at once; retry until it answers (bounded).
log "waiting for startup"
ok=0
for _ in $(seq 1 120); do
    if timeout 60 rabbitmqctl -q await_startup --timeout 50 >/dev/null 2>&1; then
        ok=1
        break
    fi
    sleep 1
done
if [ "$ok" != "1" ]; then
    log "RabbitMQ did not start; last log lines:"
    tail -n 40 /var/log/rabbitmq/*.log >&2 || true
    exit 1
fi
# Start the app too in case a test left it stopped (stop_app).
rabbitmqctl -q start_app >/dev/null 2>&1 || true
timeout 60 rabbitmqctl await_startup --timeout 50 >/dev/null
log "RabbitMQ is up on localhost:5672 (guest/guest)"
