#!/usr/bin/env bash
# Builds one Debian package per crate: the host (threatbus) and one per
# plugin (threatbus-app-*, threatbus-backbone-*). Output: target/debian/*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
cargo build --release
# The host package holds the host, the inmem backbone and the zmq app (what
# its default config uses), the man page and the lintian overrides; every
# other plugin has its own package. DEB_REVISION (default 1) is the Debian
# revision, e.g. to build an upgrade.
revision="${DEB_REVISION:-1}"
mkdir -p target/debian-man target/debian-changelog
gzip -9n <pkg/threatbus.1 >target/debian-man/threatbus.1.gz
declare -A dirs=([threatbus]=host [threatbus-backbone-rabbitmq]=plugins/rabbitmq [threatbus-app-zeek]=plugins/zeek
                 [threatbus-app-misp]=plugins/misp [threatbus-app-cif3]=plugins/cif3 [threatbus-app-tenzir]=plugins/tenzir)
for crate in threatbus threatbus-backbone-rabbitmq threatbus-app-zeek threatbus-app-misp threatbus-app-cif3 threatbus-app-tenzir; do
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "${dirs[$crate]}/Cargo.toml" | head -n1)
    sed -e "s/@PACKAGE@/$crate/" -e "s/@VERSION@/$version-$revision/" pkg/debian/changelog.in \
        >"target/debian-changelog/$crate"
    cargo deb --no-build --strip -p "$crate" --deb-revision "$revision"
done
ls -1 target/debian/*.deb
