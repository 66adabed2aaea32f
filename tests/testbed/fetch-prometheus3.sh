#!/bin/bash
# Fetches Prometheus 3 and its promtool from Debian's unstable suite (sid) for the
# test bed's "upgraded Prometheus server" host, WITHOUT touching this machine's apt
# configuration: a private sources file, lists and cache under the cache directory,
# the packages unpacked with `dpkg -x` (never installed over bookworm's prometheus).
#
#   bash tests/testbed/fetch-prometheus3.sh     # idempotent; run by install-deps.sh
#
# Result: REPO/.testbed/prometheus3/root/usr/bin/{prometheus,promtool}, and
# REPO/.testbed/prometheus3/VERSION holding `prometheus --version`'s first line.
# The mirror is the one this machine's apt already uses for bookworm.
set -euo pipefail

EXPECTED_SERIES="3.5"  # the bed's Prometheus 3 host is described as 3.5 (README)
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE="${PROMETHEUS3_CACHE:-$REPO/.testbed/prometheus3}"
APT_TIMEOUT_S=600
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

say() { echo "fetch-prometheus3: $*"; }
die() { echo "fetch-prometheus3: $*" >&2; exit 1; }

# True when the unpacked prometheus and promtool exist and are of EXPECTED_SERIES.
already_fetched() {
    local root="$CACHE/root/usr/bin"
    [ -x "$root/prometheus" ] && [ -x "$root/promtool" ] || return 1
    "$root/prometheus" --version 2>&1 | head -1 | grep -q "version ${EXPECTED_SERIES}\." || return 1
    "$root/promtool" --version 2>&1 | head -1 | grep -q "version ${EXPECTED_SERIES}\."
}

# Prints the URI of the Debian archive this machine's apt uses for the bookworm suite,
# as apt itself reads its sources (one-line or deb822 files alike).
bookworm_mirror() {
    apt-get indextargets --format '$(TARGET_OF) $(RELEASE) $(REPO_URI)' \
        | awk '$1 == "deb" && $2 == "bookworm" { print $3; exit }'
}

fetch() {
    local mirror apt_dir download_dir unpacked
    mirror=$(bookworm_mirror)
    [ -n "$mirror" ] \
        || die "no apt source for Debian's bookworm suite in /etc/apt/sources.list(.d); add the mirror this machine uses, then rerun"
    apt_dir="$CACHE/apt"
    download_dir="$CACHE/debs"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$download_dir"
    {
        echo "Types: deb"
        echo "URIs: $mirror"
        echo "Suites: sid"
        echo "Components: main"
        # Debian's archive keys sign sid as they sign bookworm.
        [ ! -f "$DEBIAN_KEYRING" ] || echo "Signed-By: $DEBIAN_KEYRING"
    } > "$apt_dir/sid.sources"
    local private_apt=(
        -o "Dir::Etc::SourceList=$apt_dir/sid.sources" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
        -o APT::Sandbox::User=root
    )
    say "apt-get update of the sid suite (private lists under $apt_dir)"
    timeout "$APT_TIMEOUT_S" apt-get -q "${private_apt[@]}" update >"$apt_dir/update.log" 2>&1 \
        || { tail -20 "$apt_dir/update.log" >&2; die "apt-get update of sid failed (log above)"; }
    rm -f "$download_dir"/*.deb
    say "downloading prometheus and promtool from sid"
    (cd "$download_dir" && timeout "$APT_TIMEOUT_S" apt-get -q "${private_apt[@]}" download prometheus promtool) \
        >"$apt_dir/download.log" 2>&1 \
        || { tail -20 "$apt_dir/download.log" >&2; die "apt-get download prometheus promtool failed (log above)"; }
    unpacked="$CACHE/root.partial"
    rm -rf "$unpacked"
    mkdir -p "$unpacked"
    local deb
    for deb in "$download_dir"/*.deb; do
        dpkg -x "$deb" "$unpacked"
    done
    rm -rf "$CACHE/root"
    mv "$unpacked" "$CACHE/root"
}

if already_fetched; then
    say "already fetched: $(cat "$CACHE/VERSION" 2>/dev/null || echo "$CACHE/root")"
    exit 0
fi
fetch
if ! already_fetched; then
    die "sid's prometheus/promtool are not ${EXPECTED_SERIES}.x ($("$CACHE/root/usr/bin/prometheus" --version 2>&1 | head -1)); update EXPECTED_SERIES and the bed's README if the bed should move on"
fi
"$CACHE/root/usr/bin/prometheus" --version 2>&1 | head -1 > "$CACHE/VERSION"
say "ready: $(cat "$CACHE/VERSION") in $CACHE/root/usr/bin"
