#!/usr/bin/env bash
# Benchmarks the rabbitmq backbone with threatbus-bench: starts a release
# `threatbus` with the rabbitmq backbone and the zmq app against the local
# RabbitMQ, and runs `threatbus-bench --connect` on its management port.
# With --python it measures the original Python Threat Bus (threatbus-rabbitmq
# + threatbus-zmq from .ci/python-threatbus-setup.sh) the same way.
#
#   cargo build --release -p threatbus -p threatbus-backbone-rabbitmq \
#       -p threatbus-app-zmq -p threatbus-bench
#   bash .ci/rabbitmq-setup.sh
#   bash bench/rabbitmq-bench.sh [--python] [--durable] [threatbus-bench options...]
#
# Default bench options: -n 20000 -k 1,10 --rate 1000 --runs 3 --no-relay.
set -euo pipefail
cd "$(dirname "$0")/.."

python=0
durable=false
while [ $# -gt 0 ]; do
    case "$1" in
        --python) python=1; shift ;;
        --durable) durable=true; shift ;;
        *) break ;;
    esac
done
bench_args=("$@")
if [ ${#bench_args[@]} -eq 0 ]; then
    bench_args=(-n 20000 -k 1,10 --rate 1000 --runs 3 --no-relay)
fi

target="${CARGO_TARGET_DIR:-target}/release"
for f in threatbus threatbus-bench libthreatbus_backbone_rabbitmq.so libthreatbus_app_zmq.so; do
    [ -e "$target/$f" ] || { echo "missing $target/$f: build in release mode first" >&2; exit 1; }
done

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
manage=$(port); pub=$(port); sub=$(port)
work=$(mktemp -d)
trap 'kill -INT ${bus_pid:-0} 2>/dev/null || true; sleep 1; kill -9 ${bus_pid:-0} 2>/dev/null || true; rm -rf "$work"' EXIT
exchange="tb-bench-$$"

if [ "$python" = 1 ]; then
    venv="${THREATBUS_PYTHON_VENV:-/opt/threatbus-python}"
    cat >"$work/config.yaml" <<EOF
logging:
  console: true
  console_verbosity: WARNING
  file: false
  file_verbosity: INFO
  filename: threatbus.log
plugins:
  backbones:
    rabbitmq:
      host: 127.0.0.1
      port: 5672
      username: guest
      password: guest
      vhost: /
      exchange_name: $exchange
      queue:
        name_suffix: bench-py-$$
        name_join_symbol: .
        durable: $durable
        auto_delete: true
        lazy: true
        exclusive: false
        max_items: 0
  apps:
    zmq:
      host: 127.0.0.1
      manage: $manage
      pub: $pub
      sub: $sub
EOF
    (cd "$work" && exec "$venv/bin/threatbus" -c config.yaml) &
    bus_pid=$!
    label="Python threatbus 2022.5.16 (threatbus-rabbitmq + threatbus-zmq)"
else
    mkdir -m 0755 "$work/plugins"
    install -m 0644 "$target/libthreatbus_backbone_rabbitmq.so" "$target/libthreatbus_app_zmq.so" "$work/plugins/"
    cat >"$work/config.yaml" <<EOF
logging:
  console: true
  console_verbosity: WARNING
plugins:
  backbones:
    rabbitmq:
      host: 127.0.0.1
      port: 5672
      username: guest
      password: guest
      exchange_name: $exchange
      exchange_durable: $durable
      queue:
        name_suffix: bench-rs-$$
        durable: $durable
        auto_delete: true
  apps:
    zmq:
      host: 127.0.0.1
      manage: $manage
      pub: $pub
      sub: $sub
EOF
    "$target/threatbus" -c "$work/config.yaml" --plugin-dir "$work/plugins" &
    bus_pid=$!
    label="threatbus (rabbitmq + zmq), durable: $durable"
fi

# Ready once the management port answers (the bench's --connect subscribes).
for _ in $(seq 1 300); do
    if python3 - "$manage" <<'EOF' 2>/dev/null; then break; fi
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
EOF
    sleep 0.1
done
sleep 1 # let both AMQP connections come up
echo "== $label"
"$target/threatbus-bench" --connect "127.0.0.1:$manage" "${bench_args[@]}"
