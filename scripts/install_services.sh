#!/usr/bin/env bash
# Install the system services rnnlab's scale-out tests run for real (Debian packages, as root), idempotently:
# nothing is downloaded when the package is there already. One branch per service:
#
#   scripts/install_services.sh slurm      # slurm-wlm + munge: scripts/slurm_local.sh brings up a cluster
#   scripts/install_services.sh postgres   # PostgreSQL: the team tracking server's backend store
set -euo pipefail

die() { echo "install_services: $*" >&2; exit 1; }

# Install the Debian packages named, unless every one is installed already.
apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root (apt-get)"
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with this system's packages"
    export DEBIAN_FRONTEND=noninteractive
    # Wait for another apt-get/dpkg (e.g. the other service's install) instead of failing on its lock.
    local wait_for_lock=(-o DPkg::Lock::Timeout=300)
    apt-get "${wait_for_lock[@]}" update -qq >/dev/null || die "apt-get update failed"
    apt-get "${wait_for_lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

case "${1:-}" in
    slurm)
        # slurmctld (controller) and slurmd (node daemon) with the client commands (sinfo, srun, sbatch, sacct,
        # scontrol); munge authenticates them to each other. The packages' own systemd units are not used:
        # scripts/slurm_local.sh starts the daemons with a generated configuration.
        apt_install slurm-wlm munge
        ;;
    postgres)
        # The server's binaries (initdb, pg_ctl, postgres in /usr/lib/postgresql/<version>/bin), for
        # scripts/tracking_server.py, which makes its own cluster in the project. Debian would also create and
        # start a cluster of its own ("main", port 5432) on install: postgresql-common, installed first, is told
        # not to. Only on a first install: an existing setting is left as its owner chose it.
        if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q "install ok installed"; then
            apt_install postgresql-common
            sed -i 's/^#\?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
                /etc/postgresql-common/createcluster.conf
        fi
        apt_install postgresql
        ;;
    *)
        die "usage: scripts/install_services.sh slurm|postgres (got '${1:-}')"
        ;;
esac
