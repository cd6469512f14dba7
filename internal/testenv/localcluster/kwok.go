package localcluster

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// KWOK is the optional simulator of the cluster: it fakes nodes and the
// lifecycle of the pods bound to them, with no kubelet, so that podgate can
// be measured with thousands of pods on a 2-CPU machine. It also serves the
// kubelet API of its fake nodes on loopback, where an exec into a fake pod
// runs a real local process (its ClusterExec), so that podgate's prepared
// streams and pod-side wrapper really run and exec start costs what it
// costs. Container start and pod networking are not simulated.
//
// KWOK runs as the cluster's "kwok" daemon, started on request (Up with
// KWOKNodes, or KWOK on a running cluster), with a client certificate in
// the group system:nodes, so that API Priority and Fairness treats its
// requests like a real kubelet's (the "system" priority level), not as the
// exempt admin's. Its processes, and every process an exec starts, live in
// one pids cgroup, which bounds how many there may be and lets teardown kill
// them all.

// KWOKVersion is the KWOK release the harness builds (see kwokbuild).
const KWOKVersion = "v0.8.0"

// Labels, annotation and taint of the fake nodes. Only pods that select
// KWOKNodeLabel and tolerate KWOKTaintKey land on them; everything else
// keeps running on the real node.
const (
	KWOKNodeLabel      = "type"
	KWOKNodeLabelValue = "kwok"
	KWOKTaintKey       = "kwok.x-k8s.io/node"
	KWOKTaintValue     = "fake"
	// KWOKNodePrefix starts every fake node's name.
	KWOKNodePrefix = "kwok-node-"
)

// kwokPort serves the fake nodes' kubelet API (exec, health) on loopback
// only: the API server, on this machine, is its one client.
const kwokPort = "10247"

// KWOKHealthURL answers 200 while KWOK serves.
const KWOKHealthURL = "http://127.0.0.1:" + kwokPort + "/healthz"

// kwokPodCIDR gives fake pods addresses that no route, bridge or service
// range on this machine uses; they are never reached.
const kwokPodCIDR = "10.128.0.0/16"

// kwokUID and kwokGID are the user an exec into a fake pod runs as on this
// machine: nobody, never root.
const (
	kwokUID = 65534
	kwokGID = 65534
)

// kwokMaxPIDs bounds KWOK's cgroup (its own threads and every exec's
// processes). The machine allows 32768 PIDs and 4096 pseudo-terminals in
// all, and each prepared TTY stream into a fake pod holds one process and
// one terminal, and one of KWOK's threads besides (a blocking read of the
// terminal's pty): without the bound, thousands of fake pods with prepared
// streams would take both from everything else. An exec beyond it fails;
// but a thread KWOK cannot create kills KWOK (the Go runtime's "fatal
// error: newosproc"), so the bound leaves room for KWOK's threads: at
// 3000, a pool of 5,000 with podgate's default cap of 500 prepared
// streams per replica (1,500 for 3 replicas) killed KWOK at 2,004 threads.
const kwokMaxPIDs = 8000

// kwokCgroup is the pids cgroup of KWOK and its execs.
const kwokCgroup = "/sys/fs/cgroup/pids/podgate-kwok"

func (o Options) kwokBin() string {
	return filepath.Join(o.CacheDir, "bin", "kwok-"+KWOKVersion, "kwok")
}

// kwokHome is the working and home directory of execs into fake pods. It
// is beside the state directory, not in it: the state directory holds the
// cluster's keys and only root may enter it.
func (o Options) kwokHome() string { return o.StateDir + "-kwok-home" }

// kwokCommand runs KWOK with its configuration file and a minimal
// environment: every exec inherits KWOK's environment.
func (o Options) kwokCommand() *exec.Cmd {
	cmd := exec.Command(o.kwokBin(),
		"--kubeconfig="+o.path("kwok.kubeconfig"),
		"--config="+o.path("kwok", "kwok.yaml"))
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + o.kwokHome()}
	return cmd
}

// writeKWOKFiles issues KWOK's certificates from the cluster's CA (which
// may predate KWOK: the files are written when KWOK is first started) and
// writes its kubeconfig, configuration and exec home.
func (o Options) writeKWOKFiles() error {
	ca, err := loadAuthority(o.path("pki"))
	if err != nil {
		return fmt.Errorf("loading the cluster CA: %w", err)
	}
	loop := net.ParseIP("127.0.0.1")
	for _, s := range []certSpec{
		// Serving: the API server dials the fake nodes' InternalIP,
		// 127.0.0.1, and checks the certificate against the cluster CA.
		{name: "kwok-serving", cn: "kwok", server: true, dns: []string{"localhost"}, ips: []net.IP{loop}},
		// Client: system:nodes puts KWOK in the kubelets' APF priority
		// level; the name is not system:node:*, so neither the Node
		// authorizer nor NodeRestriction treat it as one node.
		{name: "kwok-client", cn: kwokUser, orgs: []string{"system:nodes"}, client: true},
	} {
		if err := ca.issue(o.path("pki"), s); err != nil {
			return fmt.Errorf("issuing %s certificate: %w", s.name, err)
		}
	}
	caPEM, err := os.ReadFile(o.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	kc, err := o.kubeconfig("https://127.0.0.1:"+apiPort, caPEM, "kwok-client", kwokUser)
	if err != nil {
		return err
	}
	if err := writeFile(o.path("kwok.kubeconfig"), kc, 0o600); err != nil {
		return err
	}
	conf, err := o.kwokConfig()
	if err != nil {
		return err
	}
	if err := writeFile(o.path("kwok", "kwok.yaml"), conf, 0o644); err != nil {
		return err
	}
	home := o.kwokHome()
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	return os.Chown(home, kwokUID, kwokGID)
}

// removeKWOKHome removes the execs' home directory and what they left in
// it.
func (o Options) removeKWOKHome() error {
	if err := os.RemoveAll(o.kwokHome()); err != nil {
		return fmt.Errorf("removing %s: %w", o.kwokHome(), err)
	}
	return nil
}

// kwokUser is the name in KWOK's client certificate, bound to cluster-admin
// by kwokAccess.
const kwokUser = "podgate-kwok"

// loadAuthority reads the cluster CA written by writePKI.
func loadAuthority(pki string) (*authority, error) {
	certPEM, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(pki, "ca.key"))
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("ca.crt or ca.key holds no PEM block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, pem: certPEM}, nil
}

// joinKWOKCgroup moves a just-started KWOK into its pids cgroup, made and
// bounded here, so that every exec it starts is in it too. KWOK starts no
// process before it has connected to the API server, well after this.
func joinKWOKCgroup(pid int) error {
	if err := os.MkdirAll(kwokCgroup, 0o755); err != nil {
		return fmt.Errorf("making %s: %w", kwokCgroup, err)
	}
	if err := os.WriteFile(filepath.Join(kwokCgroup, "pids.max"), []byte(strconv.Itoa(kwokMaxPIDs)), 0o644); err != nil {
		return fmt.Errorf("bounding %s: %w", kwokCgroup, err)
	}
	if err := os.WriteFile(filepath.Join(kwokCgroup, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("moving kwok into %s: %w", kwokCgroup, err)
	}
	return nil
}

// killKWOKCgroup SIGKILLs every process left in KWOK's cgroup (execs that
// outlived KWOK) until it is empty, removes the cgroup and returns how many
// it killed.
func killKWOKCgroup() int {
	if _, err := os.Stat(kwokCgroup); err != nil {
		return 0
	}
	killed := map[int]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(filepath.Join(kwokCgroup, "cgroup.procs"))
		if err != nil {
			break
		}
		pids := strings.Fields(string(b))
		if len(pids) == 0 {
			break
		}
		for _, f := range pids {
			if pid, err := strconv.Atoi(f); err == nil {
				killed[pid] = true
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Rmdir(kwokCgroup)
	return len(killed)
}
