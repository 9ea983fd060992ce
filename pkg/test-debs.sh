#!/usr/bin/env bash
# Builds the Debian packages and checks them as an operator would use them
# (needs root; removes them again at the end):
#   1. lintian finds nothing (errors or warnings); systemd-analyze security
#      rates the unit's exposure at 1.5 or below;
#   2. the ABI relation: the host provides threatbus-plugin-abi-1 (= 1.N),
#      every plugin depends on threatbus-plugin-abi-1 (>= 1.M);
#   3. the host package alone installs, owns the plugin directory, and the
#      bus starts on its shipped config (inmem + zmq, both in the package);
#   4. with every plugin package, `threatbus plugins list` accepts them all;
#   5. removing a plugin package removes it from the list, the bus still runs;
#   6. an upgrade of the host keeps the operator's config and runs.
set -euo pipefail
cd "$(dirname "$0")/.."
passed=0
pass() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; exit 1; }

bash pkg/build-debs.sh
host_deb=$(ls target/debian/threatbus_*-1_amd64.deb)
plugin_debs=(target/debian/threatbus-backbone-rabbitmq_*-1_*.deb target/debian/threatbus-app-zeek_*-1_*.deb
             target/debian/threatbus-app-misp_*-1_*.deb target/debian/threatbus-app-cif3_*-1_*.deb
             target/debian/threatbus-app-tenzir_*-1_*.deb)
cleanup() { dpkg -P threatbus-app-zeek threatbus-app-misp threatbus-app-cif3 threatbus-app-tenzir threatbus-backbone-rabbitmq threatbus >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

# 1. lintian. The packages are not uploads to Debian's archive, so there is
# no ITP bug for the changelog to close.
if command -v lintian >/dev/null; then
    lintian --fail-on error,warning --suppress-tags initial-upload-closes-no-bugs "$host_deb" "${plugin_debs[@]}" \
        || fail "lintian"
    pass "lintian: no errors, no warnings"
else
    fail "lintian is not installed (apt-get install lintian)"
fi

# The unit's sandbox: systemd-analyze's exposure score stays at 1.5 or below
# (the README records it).
score=$(systemd-analyze security --offline=true pkg/threatbus.service 2>/dev/null | sed -n 's/.*Overall exposure level for threatbus.service: \([0-9.]*\).*/\1/p')
systemd-analyze security --offline=true --threshold=15 pkg/threatbus.service >/dev/null 2>&1 \
    || fail "systemd-analyze security rates the unit ${score:-?}, above 1.5"
pass "systemd-analyze security: exposure $score"

# 2. The ABI relation, so that apt refuses what the loader would refuse.
minor=$(sed -n 's/^pub const ABI_MINOR: u32 = \([0-9]*\);$/\1/p' plugin-api/src/abi.rs | head -n1)
[ -n "$minor" ] || fail "cannot read ABI_MINOR from plugin-api/src/abi.rs"
provides=$(dpkg-deb -f "$host_deb" Provides)
grep -qF "threatbus-plugin-abi-1 (= 1.$minor)" <<<"$provides" || fail "host Provides '$provides', want (= 1.$minor)"
for deb in "${plugin_debs[@]}"; do
    depends=$(dpkg-deb -f "$deb" Depends)
    grep -qF "threatbus-plugin-abi-1 (>= 1.$minor)" <<<"$depends" || fail "$deb Depends '$depends'"
done
pass "ABI 1.$minor: provided by the host, required by every plugin"

# Starts the installed bus on the shipped config; waits for its start-up
# line, stops it with SIGTERM; $1 is the line it must print.
run_bus() {
    local log pid
    log=$(mktemp)
    (cd /tmp && exec threatbus -c /etc/threatbus/config.yaml >"$log" 2>&1) &
    pid=$!
    for _ in $(seq 1 100); do
        grep -q "Threat Bus running" "$log" && break
        sleep 0.1
    done
    grep -qF "$1" "$log" || { cat "$log"; kill "$pid" 2>/dev/null; fail "bus did not start: want '$1'"; }
    kill -TERM "$pid"
    wait "$pid" || { cat "$log"; fail "bus did not exit 0 on SIGTERM"; }
    rm -f "$log"
}
running="Threat Bus running: backbones [inmem], apps [zmq]"

# 3. The host alone.
dpkg -i "$host_deb"
dpkg -S /usr/lib/threatbus/plugins | grep -q "^threatbus: " || fail "the host package does not own /usr/lib/threatbus/plugins"
mode=$(stat -c '%a %U' /etc/threatbus/config.yaml)
[ "$mode" = "600 root" ] || fail "/etc/threatbus/config.yaml is '$mode', want '600 root'"
list=$(threatbus plugins list)
for p in inmem zmq; do grep -Eq "^ok +$p " <<<"$list" || { echo "$list"; fail "plugin $p not listed as ok"; }; done
man -w threatbus >/dev/null 2>&1 || [ -f /usr/share/man/man1/threatbus.1.gz ] || fail "no man page"
run_bus "$running"
pass "the host package alone installs and runs its default config"

# 4. Every plugin.
dpkg -i "${plugin_debs[@]}"
list=$(threatbus plugins list)
echo "$list"
for p in inmem zmq rabbitmq zeek misp cif3 tenzir; do
    grep -Eq "^ok +$p " <<<"$list" || fail "plugin $p not listed as ok"
done
run_bus "$running"
pass "all plugin packages install and are accepted"

# 5. Removing a plugin.
dpkg -r threatbus-app-zeek
[ ! -e /usr/lib/threatbus/plugins/libthreatbus_app_zeek.so ] || fail "zeek plugin still installed"
threatbus plugins list | grep -Eq "^ok +zeek " && fail "zeek still listed"
run_bus "$running"
pass "removing a plugin package removes the plugin; the bus runs"

# 6. An upgrade of the host (Debian revision 2) keeps the operator's config.
echo "# changed by the operator" >>/etc/threatbus/config.yaml
DEB_REVISION=2 bash pkg/build-debs.sh >/dev/null
dpkg -i --force-confold target/debian/threatbus_*-2_amd64.deb
[ "$(dpkg-query -W -f '${Version}' threatbus)" = "$(dpkg-deb -f target/debian/threatbus_*-2_amd64.deb Version)" ] \
    || fail "the upgrade did not install"
tail -n1 /etc/threatbus/config.yaml | grep -q "changed by the operator" || fail "the upgrade replaced the operator's config"
[ "$(stat -c '%a' /etc/threatbus/config.yaml)" = "600" ] || fail "the upgrade changed the config's mode"
run_bus "$running"
pass "an upgrade keeps the operator's config and runs"

echo "packages: $passed passed, 0 failed"
