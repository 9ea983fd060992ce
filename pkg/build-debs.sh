#!/usr/bin/env bash
# Builds one Debian package per crate: the host (threatbus) and one per
# plugin (threatbus-app-*, threatbus-backbone-*). Output: target/debian/*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
cargo build --release
for crate in threatbus threatbus-backbone-inmem threatbus-app-zmq threatbus-backbone-rabbitmq threatbus-app-zeek threatbus-app-misp threatbus-app-cif3 threatbus-app-tenzir; do
    cargo deb --no-build --strip -p "$crate"
done
ls -1 target/debian/*.deb
