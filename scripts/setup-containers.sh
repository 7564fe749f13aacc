#!/bin/sh
# Install what the `docker` runtime and the container tests need on Debian 12:
# Podman (serves the Docker Engine API), runc, the OCI registry, static busybox (the
# test images are built from it), etcd (server and etcdctl: the `etcd://` datastore and
# its tests), and the containers.conf settings these machines need
# (see DESIGN.md, "Facts about these machines"). Idempotent: when everything is in
# place it only checks and returns.
set -eu

PACKAGES="podman runc docker-registry busybox-static etcd-server etcd-client"
CONF=/etc/containers/containers.conf
DROPIN=/etc/containers/containers.conf.d/50-sendo.conf

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup-containers: missing Debian packages:$missing; run this script as root (or: sudo apt-get install$missing)" >&2
        exit 1
    fi
    echo "setup-containers: installing$missing" >&2
    # No service may start during the installation (docker-registry and etcd-server ship
    # one): the tests start their own registry and etcd on loopback, by PID.
    policy=/usr/sbin/policy-rc.d
    made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
    fi
    apt() { DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300 "$@"; }
    if ! apt install $missing >/tmp/sendo-setup-apt.log 2>&1; then
        apt update >>/tmp/sendo-setup-apt.log 2>&1 || true
        if ! apt install $missing >>/tmp/sendo-setup-apt.log 2>&1; then
            [ -n "$made_policy" ] && rm -f "$policy"
            echo "setup-containers: apt-get install$missing failed; see /tmp/sendo-setup-apt.log" >&2
            tail -n 20 /tmp/sendo-setup-apt.log >&2
            exit 1
        fi
    fi
    [ -n "$made_policy" ] && rm -f "$policy"
fi

# crun refuses the hybrid cgroups of these machines, and Podman's default ulimits
# exceed the host's hard limits: without these two settings no container starts.
has_settings() { [ -f "$1" ] && grep -q '^runtime *= *"runc"' "$1" && grep -q '^default_ulimits' "$1"; }
if ! has_settings "$CONF" && ! has_settings "$DROPIN"; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup-containers: $CONF lacks runtime = \"runc\" and default_ulimits; run this script as root" >&2
        exit 1
    fi
    settings='[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
'
    if [ -e "$CONF" ]; then
        mkdir -p "$(dirname "$DROPIN")"
        printf '%s' "$settings" > "$DROPIN"
    else
        mkdir -p "$(dirname "$CONF")"
        printf '# written by sendo scripts/setup-containers.sh\n%s' "$settings" > "$CONF"
    fi
fi
