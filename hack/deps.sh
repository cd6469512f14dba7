#!/usr/bin/env bash
# Installs the Debian packages podgate's tests use beyond what the cluster
# harness installs itself: the real OpenSSH clients (ssh, scp, sftp) and
# tmux (to drive an interactive ssh -tt). Needs root when anything is
# missing; says what to install otherwise.
set -euo pipefail
need=()
for pair in openssh-client:/usr/bin/sftp tmux:/usr/bin/tmux procps:/usr/bin/pgrep; do
  pkg=${pair%%:*} file=${pair#*:}
  [ -e "$file" ] || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: apt-get install ${need[*]}" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
