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

# A TLS listener on 5671 for the amqps tests: a test CA and a server
# certificate for localhost/127.0.0.1, made once. The tests read the CA from
# $TLS_DIR/ca.pem.
TLS_DIR=/etc/rabbitmq/threatbus-test-tls
TLS_CONF=/etc/rabbitmq/conf.d/90-threatbus-test-tls.conf
if [ ! -s "$TLS_DIR/server.pem" ]; then
    log "making a test CA and server certificate in $TLS_DIR"
    mkdir -p "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=threatbus test CA" \
        -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$TLS_DIR/ext.cnf"
    openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
        -CAcreateserial -days 3650 -extfile "$TLS_DIR/ext.cnf" -out "$TLS_DIR/server.pem" 2>/dev/null
    chmod 0644 "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem"
    chmod 0640 "$TLS_DIR/server.key" "$TLS_DIR/ca.key"
    if id rabbitmq >/dev/null 2>&1; then chgrp rabbitmq "$TLS_DIR/server.key"; fi
fi
tls_conf="listeners.ssl.default = 5671
ssl_options.cacertfile = $TLS_DIR/ca.pem
ssl_options.certfile = $TLS_DIR/server.pem
ssl_options.keyfile = $TLS_DIR/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false"
if [ "$(cat "$TLS_CONF" 2>/dev/null)" != "$tls_conf" ]; then
    log "configuring the TLS listener on 5671 ($TLS_CONF)"
    mkdir -p "$(dirname "$TLS_CONF")"
    printf '%s\n' "$tls_conf" >"$TLS_CONF"
    # A running node reads its config at start only.
    if rabbitmqctl -q status >/dev/null 2>&1; then
        log "restarting the running node for its new listener"
        rabbitmqctl -q shutdown >/dev/null 2>&1 || rabbitmqctl -q stop >/dev/null 2>&1 || true
    fi
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
log "RabbitMQ is up on localhost:5672 (guest/guest), amqps on 5671 (CA $TLS_DIR/ca.pem)"
