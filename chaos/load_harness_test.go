package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
	"github.com/podgate/podgate/pool"
)

// This file is the harness of the load, hostile, isolation and audit
// scenarios: one podgate binary per test process, a podgate per test, Go
// SSH clients for scale and real OpenSSH clients for what users see, and
// process figures (goroutines, fds, RSS) read from podgate's own metrics.

// gateBinary builds podgate once per test process. The binary lives in a
// directory named after this process; directories of processes that are no
// longer running are removed first, since a package without TestMain has no
// hook after its last test.
var gateBinary = sync.OnceValues(func() (string, error) {
	base := filepath.Join(os.TempDir(), fmt.Sprintf("podgate-chaos-bin-%d", os.Getuid()))
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	if entries, err := os.ReadDir(base); err == nil {
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			if syscall.Kill(pid, 0) == nil {
				continue // still running
			}
			_ = os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
	dir := filepath.Join(base, strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return podgatetest.Build(ctx, dir)
})

// gate is one podgate process serving a test's namespace.
type gate struct {
	*podgatetest.Server
	t   *testing.T
	env *kubetest.Env
	// signers are the users' keys for Go clients, loaded once at start so
	// that client goroutines never need the test's Fatal.
	signers map[string]ssh.Signer
}

// gateOpts says how to start a gate.
type gateOpts struct {
	Users    []string
	Env      []string
	WaitIdle int
	// Keys, when set, is another gate whose keys directory this one
	// serves, so the same keys log in to both (two replicas).
	Keys *gate
	// ReplicaID names the replica (default "e2e").
	ReplicaID string
}

// startGate runs podgate against env's namespace and stops it when the test
// ends, printing its log if the test failed.
func startGate(t *testing.T, env *kubetest.Env, o gateOpts) *gate {
	t.Helper()
	bin, err := gateBinary()
	if err != nil {
		t.Fatal(err)
	}
	extra := []string{}
	if o.ReplicaID != "" {
		extra = append(extra, "PODGATE_REPLICA_ID="+o.ReplicaID)
	}
	if o.Keys != nil {
		extra = append(extra, "PODGATE_AUTHORIZED_KEYS="+filepath.Join(o.Keys.Dir, "keys"))
	}
	ps, err := podgatetest.Start(context.Background(), podgatetest.Options{
		Bin: bin, Kubeconfig: kubetest.Kubeconfig(), Namespace: env.Namespace, Dir: t.TempDir(),
		Users: o.Users, Env: append(extra, o.Env...), WaitIdle: o.WaitIdle, Timeout: 3 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.Keys != nil {
		ps.Keys = o.Keys.Keys
	}
	g := &gate{Server: ps, t: t, env: env, signers: map[string]ssh.Signer{}}
	for u, path := range ps.Keys {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if g.signers[u], err = ssh.ParsePrivateKey(b); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := ps.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			log := ps.Log.String()
			if len(log) > 20000 {
				log = "...\n" + log[len(log)-20000:]
			}
			t.Logf("podgate log (tail):\n%s", log)
		}
	})
	return g
}

// procSample is podgate's process figures at one moment.
type procSample struct {
	At         time.Duration
	Goroutines int
	FDs        int
	RSSMiB     float64
	// Terminal and Plain count the reserved pods' prepared exec streams
	// of each kind (podgate_pool_prepared_pods).
	Terminal, Plain int
}

func (p procSample) String() string {
	return fmt.Sprintf("goroutines %d, fds %d, rss %.1f MiB, prepared streams %d terminal + %d plain",
		p.Goroutines, p.FDs, p.RSSMiB, p.Terminal, p.Plain)
}

// What one idle prepared stream holds in podgate, by kind: kube's
// BenchmarkPreparedIdleCost measures one goroutine for either (podgate's
// own WebSocket and SPDY clients); one more allows for a stream being torn
// down as the sample is taken. Each holds one connection, so one fd, or
// two with a transient one. Kept per kind, since the kinds' costs need not
// stay equal (client-go's SPDY connection held 19 goroutines).
const (
	terminalStreamGoroutines = 2
	plainStreamGoroutines    = 2
	streamFDs                = 2
)

// bound is the most goroutines and fds podgate may hold at s, taken
// against this baseline, without a leak: the baseline plus slack, plus
// what the prepared streams s holds beyond the baseline's cost. Which kind
// a pool prepares follows its recent logins (pool/prepare.go), so a pool
// whose baseline streams had terminals may hold plain ones after a run of
// plain commands, at a different cost, with no leak; a leaked connection
// is not counted as a prepared stream and still shows.
func (base procSample) bound(s procSample, slackG, slackFD int) (goroutines, fds int) {
	moreT, moreP := max(0, s.Terminal-base.Terminal), max(0, s.Plain-base.Plain)
	goroutines = base.Goroutines + slackG + terminalStreamGoroutines*moreT + plainStreamGoroutines*moreP
	fds = base.FDs + slackFD + streamFDs*max(0, s.Terminal+s.Plain-base.Terminal-base.Plain)
	return goroutines, fds
}

// within reports whether s is inside base's bound.
func (base procSample) within(s procSample, slackG, slackFD int) bool {
	g, f := base.bound(s, slackG, slackFD)
	return s.Goroutines <= g && s.FDs <= f
}

// sample reads the Go and process collectors podgate registers.
func (g *gate) sample(ctx context.Context) (procSample, error) {
	m, err := g.Scrape(ctx)
	if err != nil {
		return procSample{}, err
	}
	return procSample{
		Goroutines: int(m.Value("go_goroutines")),
		FDs:        int(m.Value("process_open_fds")),
		RSSMiB:     m.Value("process_resident_memory_bytes") / (1 << 20),
		Terminal:   int(m.Value("podgate_pool_prepared_pods", "kind", "terminal")),
		Plain:      int(m.Value("podgate_pool_prepared_pods", "kind", "plain")),
	}, nil
}

// metric reads one summed metric value, or -1 when the scrape fails.
func (g *gate) metric(name string, kv ...string) float64 {
	m, err := g.Scrape(context.Background())
	if err != nil {
		return -1
	}
	return m.Value(name, kv...)
}

// poolTarget is the idle target podgate reports for profile: misses grow
// it above the pool's min, so "back at target" must read it, not assume min.
func (g *gate) poolTarget(profile string) int {
	return int(g.metric("podgate_pool_target", "profile", profile))
}

// signer is user's private key for Go clients.
func (g *gate) signer(user string) ssh.Signer { return g.signers[user] }

// clientConfig is a Go SSH client logging in as login with auth.
func clientConfig(login string, auth ...ssh.AuthMethod) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User: login, Auth: auth,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), //nolint:gosec // test server with a throwaway host key
		Timeout:         30 * time.Second,
	}
}

// dial opens a Go SSH client connection as login with user's key; the
// returned net.Conn is the TCP connection, for abrupt resets.
func (g *gate) dial(user, login string) (*ssh.Client, *net.TCPConn, error) {
	return dialSSH(g.Addr(), clientConfig(login, ssh.PublicKeys(g.signer(user))))
}

func dialSSH(addr string, cfg *ssh.ClientConfig) (*ssh.Client, *net.TCPConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nc.(*net.TCPConn), nil
}

// output runs cmd in a new session of c and returns its stdout and exit
// code (-1 with the error when there is no exit status).
func output(c *ssh.Client, cmd string) (string, int, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", -1, err
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	err = s.Run(cmd)
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return out.String(), 0, nil
	case errors.As(err, &ee):
		return out.String() + errb.String(), ee.ExitStatus(), nil
	}
	return out.String() + errb.String(), -1, err
}

// resetTCP closes a TCP connection with an RST instead of a FIN, as a
// client whose machine vanished or whose NAT dropped state would.
func resetTCP(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// runSSH runs an OpenSSH command with a deadline and returns stdout,
// stderr and the exit status (-1 when it had to be killed).
func runSSH(cmd *exec.Cmd, stdin string, deadline time.Duration) (string, string, int) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Start(); err != nil {
		return "", err.Error(), -1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			code = -1
		}
		return out.String(), strings.TrimSpace(errb.String()), code
	case <-time.After(deadline):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), strings.TrimSpace(errb.String()) + " (killed at deadline)", -1
	}
}

// podWatch is an informer over podgate's pods in a namespace, for counts
// and waits without polling the API server.
type podWatch struct {
	inf     cache.SharedIndexInformer
	changed chan struct{}
	stop    chan struct{}
	factory informers.SharedInformerFactory
}

func watchPods(t *testing.T, env *kubetest.Env) *podWatch {
	t.Helper()
	f := informers.NewSharedInformerFactoryWithOptions(env.Client, 0, informers.WithNamespace(env.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = pool.ManagedSelector }))
	w := &podWatch{inf: f.Core().V1().Pods().Informer(), changed: make(chan struct{}, 1), stop: make(chan struct{}), factory: f}
	poke := func() {
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
	if _, err := w.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { poke() }, UpdateFunc: func(any, any) { poke() }, DeleteFunc: func(any) { poke() },
	}); err != nil {
		t.Fatal(err)
	}
	f.Start(w.stop)
	if !cache.WaitForCacheSync(w.stop, w.inf.HasSynced) {
		t.Fatal("pod informer did not sync")
	}
	t.Cleanup(func() { close(w.stop); f.Shutdown() })
	return w
}

// podCounts is podgate's pods by state; pods being deleted count as
// "terminating" whatever their label says.
type podCounts map[string]int

func (c podCounts) String() string {
	return fmt.Sprintf("idle %d, claimed %d, parked %d, released %d, terminating %d, other %d",
		c[pool.StateIdle], c[pool.StateClaimed], c[pool.StateParked], c[pool.StateReleased], c["terminating"], c["other"])
}

func (w *podWatch) counts() podCounts {
	c := podCounts{}
	for _, o := range w.inf.GetStore().List() {
		p := o.(*corev1.Pod)
		switch st := p.Labels[pool.LabelState]; {
		case p.DeletionTimestamp != nil:
			c["terminating"]++
		case pool.Spare(p): // idle or reserved: waiting for a user
			c[pool.StateIdle]++
		case st == pool.StateClaimed || st == pool.StateParked || st == pool.StateReleased:
			c[st]++
		default:
			c["other"]++
		}
	}
	return c
}

// pods returns copies of the cached pods.
func (w *podWatch) pods() []*corev1.Pod {
	var out []*corev1.Pod
	for _, o := range w.inf.GetStore().List() {
		out = append(out, o.(*corev1.Pod).DeepCopy())
	}
	return out
}

// waitFor re-evaluates cond on every pod event until it holds or timeout
// passes, and reports whether it held.
func (w *podWatch) waitFor(timeout time.Duration, cond func(podCounts) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if cond(w.counts()) {
			return true
		}
		select {
		case <-w.changed:
		case <-deadline.C:
			return cond(w.counts())
		}
	}
}

// settle waits until podgate's goroutines and fds are within the
// baseline's bound (procSample.bound), sampling every 250 ms: a process's
// goroutine count offers no event to wait on, so this bounded poll is the
// one way. It returns the last sample.
func (g *gate) settle(base procSample, slackG, slackFD int, timeout time.Duration) procSample {
	deadline := time.Now().Add(timeout)
	var last procSample
	for {
		s, err := g.sample(context.Background())
		if err == nil {
			last = s
			if base.within(s, slackG, slackFD) {
				return s
			}
		}
		if time.Now().After(deadline) {
			return last
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// children lists the processes whose parent is pid, read from /proc.
func children(pid int) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command is in parentheses and may hold spaces; the fields
		// after the last ')' are state, ppid, ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, e.Name()+" "+s[strings.IndexByte(s, '(')+1:i])
		}
	}
	return out
}

// waitIdle waits until the default pool reports at least n idle pods, and
// returns the process sample then. The gauge is in a separate process, so
// this is a bounded poll.
func (g *gate) waitIdle(n int, timeout time.Duration) procSample {
	deadline := time.Now().Add(timeout)
	for g.IdlePods(context.Background(), "default") < float64(n) && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	s, _ := g.sample(context.Background())
	return s
}

// steady waits until podgate's goroutine and fd counts have not changed
// over three samples a second apart (at most timeout) and returns the last
// sample: warm pods open their prepared exec streams a moment after they
// count as idle, and a baseline taken before that would be too low.
func (g *gate) steady(timeout time.Duration) procSample {
	deadline := time.Now().Add(timeout)
	var last procSample
	same := 0
	for time.Now().Before(deadline) && same < 3 {
		s, err := g.sample(context.Background())
		if err == nil {
			if s.Goroutines == last.Goroutines && s.FDs == last.FDs {
				same++
			} else {
				same = 0
			}
			last = s
		}
		time.Sleep(time.Second)
	}
	return last
}

// dumpGoroutines returns podgate's goroutine profile, goroutines with the
// same stack counted together, largest first; it is the diagnostic for a
// failed leak check. podgatetest runs podgate with PODGATE_PPROF=true.
func (g *gate) dumpGoroutines() string {
	resp, err := http.Get("http://127.0.0.1:" + g.MetricsPort + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return "reading the goroutine profile: " + err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "reading the goroutine profile: " + err.Error()
	}
	return string(body)
}
