package guestcheck

import (
	"bufio"
	"strings"
)

// The check script runs once in a profile's first Ready pod of each
// template, as the guest user, through the same exec wrapper as users'
// commands. It is POSIX sh (dash, bash and BusyBox ash alike) and prints
// one line per check:
//
//	podgate-check NAME pass|fail|unknown DETAIL
//
// TCP probes use bash's /dev/tcp under timeout: BusyBox nc -z reports open
// ports as closed, so it cannot be trusted to show that a port is open.
// Without bash a probe reports unknown. $1 is the node's address
// (status.hostIP), which the pod cannot learn by itself.
const script = `host_ip=$1
say() { printf 'podgate-check %s %s %s\n' "$1" "$2" "$3"; }
readfirst() { for f in "$@"; do [ -r "$f" ] && { cat "$f"; return 0; }; done; return 1; }

if v=$(readfirst /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max); then
  case $v in
  max) say pids fail "pids.max=max: no PID limit in this container's cgroup" ;;
  *) say pids pass "pids.max=$v" ;;
  esac
else
  say pids fail "no pids cgroup visible: no PID limit"
fi

if v=$(readfirst /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes); then
  case $v in
  max|9223372036854771712|9223372036854775807) say memory fail "memory limit=$v: unlimited" ;;
  *) say memory pass "memory limit=$v bytes" ;;
  esac
else
  say memory fail "no memory cgroup visible"
fi

if [ -e /var/run/secrets/kubernetes.io/serviceaccount/token ]; then
  say sa_token fail "a ServiceAccount token is mounted at /var/run/secrets/kubernetes.io/serviceaccount"
else
  say sa_token pass "no ServiceAccount token mounted"
fi

uid=
while read -r k v _; do [ "$k" = Uid: ] && uid=$v; done </proc/self/status
if [ "$uid" = 0 ]; then say non_root fail "running as uid 0"; else say non_root pass "running as uid $uid"; fi

probe() { # name host port
  if [ -z "$2" ] || [ -z "$3" ]; then say "$1" unknown "address unknown"; return; fi
  if ! command -v bash >/dev/null 2>&1 || ! command -v timeout >/dev/null 2>&1; then
    say "$1" unknown "no bash or timeout in the image to probe $2:$3"; return
  fi
  if timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" 2>/dev/null; then
    say "$1" fail "TCP connect to $2:$3 succeeded"
  else
    say "$1" pass "TCP connect to $2:$3 refused or timed out"
  fi
}
probe api_service "${KUBERNETES_SERVICE_HOST:-}" "${KUBERNETES_SERVICE_PORT:-}"
probe kubelet "$host_ip" 10250
`

// Names of the checks, as in podgate_guest_check{check}.
const (
	CheckPIDs       = "pids"
	CheckMemory     = "memory"
	CheckSAToken    = "sa_token"
	CheckNonRoot    = "non_root"
	CheckAPIService = "api_service"
	CheckKubelet    = "kubelet"
)

// Result is one check's outcome.
type Result struct {
	Check string
	// Pass is meaningful only when Known.
	Pass  bool
	Known bool
	// Detail says what was seen, for the log.
	Detail string
}

// parse reads the script's output; lines that are not check lines (a
// login banner, say) are ignored, as are unknown check names.
func parse(out string) []Result {
	var rs []Result
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.SplitN(strings.TrimSpace(sc.Text()), " ", 4)
		if len(f) < 3 || f[0] != "podgate-check" || fix(f[1]) == "" {
			continue
		}
		r := Result{Check: f[1]}
		switch f[2] {
		case "pass":
			r.Pass, r.Known = true, true
		case "fail":
			r.Known = true
		case "unknown":
		default:
			continue
		}
		if len(f) == 4 {
			r.Detail = f[3]
		}
		rs = append(rs, r)
	}
	return rs
}

// fix says, for the operator's log, how to make a failed check pass on a
// real cluster; "" for an unknown check.
func fix(check string) string {
	switch check {
	case CheckPIDs:
		return "set podPidsLimit in the kubelet configuration (KubeletConfiguration) of every node; a pod-level limit may not be visible from inside a container, see README"
	case CheckMemory:
		return "give the profile's container a memory limit (PODGATE_POD_MEMORY_LIMIT, or resources.limits.memory in the PodTemplate)"
	case CheckSAToken:
		return "remove podgate.io/allow-service-account-token from the profile, or set automountServiceAccountToken: false"
	case CheckNonRoot:
		return "remove podgate.io/allow-root from the profile, or run the image as a non-root user"
	case CheckAPIService:
		return "apply a NetworkPolicy that denies guest egress to the API server (deploy/base/networkpolicy.yaml) and run a CNI that enforces it"
	case CheckKubelet:
		return "apply a NetworkPolicy that denies guest egress to node addresses (add them to the except list) and run a CNI that enforces it"
	}
	return ""
}
