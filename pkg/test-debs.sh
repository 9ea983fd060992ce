#!/usr/bin/env bash
# Builds the Debian packages, installs them, and checks that the installed
# bus finds its plugins in /usr/lib/threatbus/plugins, starts on the shipped
# /etc/threatbus/config.yaml (inmem + zmq) and stops cleanly on SIGTERM.
# Then removes the packages again. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash pkg/build-debs.sh
debs=(target/debian/threatbus_*.deb target/debian/threatbus-backbone-inmem_*.deb
      target/debian/threatbus-app-zmq_*.deb target/debian/threatbus-backbone-rabbitmq_*.deb
      target/debian/threatbus-app-zeek_*.deb target/debian/threatbus-app-misp_*.deb
      target/debian/threatbus-app-cif3_*.deb target/debian/threatbus-app-tenzir_*.deb)
cleanup() { dpkg -P threatbus-app-zmq threatbus-app-zeek threatbus-app-misp threatbus-app-cif3 threatbus-app-tenzir threatbus-backbone-inmem threatbus-backbone-rabbitmq threatbus >/dev/null 2>&1 || true; }
trap cleanup EXIT
# The packages carry the ABI minor, so that apt refuses what the loader would
# refuse: the host provides threatbus-plugin-abi-1 (= 1.N), every plugin
# depends on threatbus-plugin-abi-1 (>= 1.M) for the minor it was built with.
minor=$(sed -n 's/^pub const ABI_MINOR: u32 = \([0-9]*\);$/\1/p' plugin-api/src/abi.rs | head -n1)
[ -n "$minor" ] || { echo "FAIL: cannot read ABI_MINOR from plugin-api/src/abi.rs"; exit 1; }
provides=$(dpkg-deb -f target/debian/threatbus_*.deb Provides)
[ "$provides" = "threatbus-plugin-abi-1 (= 1.$minor)" ] || { echo "FAIL: host Provides '$provides', want (= 1.$minor)"; exit 1; }
for deb in "${debs[@]:1}"; do
    depends=$(dpkg-deb -f "$deb" Depends)
    grep -qF "threatbus-plugin-abi-1 (>= 1.$minor)" <<<"$depends" || { echo "FAIL: $deb Depends '$depends'"; exit 1; }
done
dpkg -i "${debs[@]}"
mode=$(stat -c '%a %U' /etc/threatbus/config.yaml)
[ "$mode" = "600 root" ] || { echo "FAIL: /etc/threatbus/config.yaml is '$mode', want '600 root' (the service gets it as a credential)"; exit 1; }
list=$(threatbus plugins list)
echo "$list"
for p in inmem zmq rabbitmq zeek misp cif3 tenzir; do
    grep -E "^ok +$p " <<<"$list" >/dev/null || { echo "FAIL: plugin $p not listed as ok"; exit 1; }
done
log=$(mktemp)
(cd /tmp && exec threatbus -c /etc/threatbus/config.yaml >"$log" 2>&1) &
pid=$!
for _ in $(seq 1 100); do
    grep -q "Threat Bus running" "$log" && break
    sleep 0.1
done
grep -q "Threat Bus running: backbones \[inmem\], apps \[zmq\]" "$log" || { cat "$log"; echo "FAIL: bus did not start"; exit 1; }
kill -TERM "$pid"
wait "$pid" || { cat "$log"; echo "FAIL: bus did not exit 0 on SIGTERM"; exit 1; }
echo "packages: 1 passed, 0 failed"
