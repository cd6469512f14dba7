package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
)

// fakePools hands out numbered pods: warm while idle > 0, else cold once
// gate (if set) lets Create through.
type fakePools struct {
	mu       sync.Mutex
	policies map[string]Policy
	idle     int
	n        int
	held     map[string]*Pod
	gone     map[string]bool
	gate     chan struct{}
	released chan string
	// waitState is what AwaitPod tells its caller; the zero value says
	// only the phase "scheduling".
	waitState WaitState
	// onClaim, when set, sees each warm pod Claim hands out, with the
	// claim's context.
	onClaim func(ctx context.Context, p *Pod)
	// parked, elsewhere and now serve Parking (parking_test.go);
	// parkGate, when set, holds every Park until it is closed.
	parkGate  chan struct{}
	parked    map[string]*fakeParked
	elsewhere map[string]int
	now       func() time.Time
}

var _ Pools = (*fakePools)(nil)

func newFakePools(pols ...Policy) *fakePools {
	f := &fakePools{policies: map[string]Policy{}, held: map[string]*Pod{}, gone: map[string]bool{}, released: make(chan string, 100),
		parked: map[string]*fakeParked{}, elsewhere: map[string]int{}}
	for _, p := range pols {
		f.policies[p.Name] = p
	}
	return f
}

func (f *fakePools) Policy(name string) (Policy, error) {
	if name == "" {
		name = "default"
	}
	p, ok := f.policies[name]
	if !ok {
		return Policy{}, ErrUnknownProfile
	}
	return p, nil
}

func (f *fakePools) newPod(profile string, warm bool) *Pod {
	f.n++
	p := &Pod{Ref: PodRef{Namespace: "ns", Name: fmt.Sprintf("pod-%d", f.n), Container: "guest"}, UID: fmt.Sprint("uid-", f.n), Profile: profile, Warm: warm}
	f.held[p.Ref.Name] = p
	return p
}

func (f *fakePools) Claim(ctx context.Context, profile string, _ Claim) (*Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.idle == 0 {
		return nil, ErrNoIdlePod
	}
	f.idle--
	p := f.newPod(profile, true)
	if f.onClaim != nil {
		f.onClaim(ctx, p)
	}
	return p, nil
}

func (f *fakePools) AwaitPod(ctx context.Context, profile string, _ Claim, progress func(WaitState)) (*Pod, error) {
	st := f.waitState
	if st.Phase == "" {
		st.Phase = "scheduling"
	}
	progress(st)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.newPod(profile, false), nil
}

func (f *fakePools) Release(_ context.Context, pod *Pod) error {
	f.mu.Lock()
	delete(f.held, pod.Ref.Name)
	f.mu.Unlock()
	f.released <- pod.Ref.Name
	return nil
}

func (f *fakePools) Alive(pod *Pod) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[pod.Ref.Name] != nil && !f.gone[pod.Ref.Name]
}

func (f *fakePools) heldCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.held)
}

// fakeExecer records argvs and writes "ok" to stdout. Its relay resolves
// names through resolved and records where it connected.
type fakeExecer struct {
	mu       sync.Mutex
	argvs    [][]string
	pods     []string
	prepared int
	resolved map[string][]netip.Addr
	relayed  []string // address:port connected to
	dialed   []uint16 // ports of the pod itself
}

var _ Execer = (*fakeExecer)(nil)

func (e *fakeExecer) Prepare(_ context.Context, pod PodRef, tty bool) (Prepared, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.prepared++
	return &fakePrepared{e: e, pod: pod.Name, tty: tty}, nil
}

func (e *fakeExecer) Exec(_ context.Context, pod PodRef, cmd Command) (ExitStatus, error) {
	e.record(pod.Name, cmd.Argv)
	_, _ = io.WriteString(cmd.Stdout, "ok")
	return ExitStatus{}, nil
}

func (e *fakeExecer) DialTCP(_ context.Context, _ PodRef, port uint16) (net.Conn, error) {
	e.mu.Lock()
	e.dialed = append(e.dialed, port)
	e.mu.Unlock()
	c, _ := net.Pipe()
	return c, nil
}

func (e *fakeExecer) Relay(_ context.Context, _ PodRef, host string, port uint16, pick func([]netip.Addr) (netip.Addr, error)) (net.Conn, error) {
	e.mu.Lock()
	addrs := e.resolved[host]
	e.mu.Unlock()
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	}
	a, err := pick(addrs)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.relayed = append(e.relayed, netip.AddrPortFrom(a, port).String())
	e.mu.Unlock()
	c, _ := net.Pipe()
	return c, nil
}

func (e *fakeExecer) record(pod string, argv []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.argvs = append(e.argvs, argv)
	e.pods = append(e.pods, pod)
}

type fakePrepared struct {
	e   *fakeExecer
	pod string
	tty bool
}

func (p *fakePrepared) TTY() bool { return p.tty }
func (p *fakePrepared) Run(_ context.Context, cmd Command) (ExitStatus, error) {
	p.e.record(p.pod, append([]string{"prepared"}, cmd.Argv...))
	return ExitStatus{Code: 3}, nil
}
func (p *fakePrepared) Close() error { return nil }

func policy(name string) Policy {
	return Policy{
		Name: name, Mode: ModeConnection,
		Shell: []string{"/bin/bash", "-l"}, ExecWrapper: []string{"/bin/sh", "-c"},
		Subsystems:   map[string][]string{"sftp": {"/usr/lib/openssh/sftp-server"}},
		AllowedUsers: []string{"*"}, MaxWait: time.Minute,
	}
}

func newTestScheduler(t *testing.T, pools Pools, ex Execer, clk clock.WithTicker) *Scheduler {
	t.Helper()
	opts := Options{}
	if f, ok := pools.(*fakePools); ok {
		opts.Parking = f
	}
	s, err := New(pools, ex, clk, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func id(user, profile string) Identity {
	return Identity{User: user, Profile: profile, ConnID: "c-" + user, AcceptedAt: time.Now()}
}

func TestArgvMapping(t *testing.T) {
	pol := policy("default")
	for _, tc := range []struct {
		p    Process
		want []string
		err  error
	}{
		{Process{Kind: KindShell}, []string{"/bin/bash", "-l"}, nil},
		{Process{Kind: KindExec, Command: "echo 'a b'; rm -rf /tmp/x"}, []string{"/bin/sh", "-c", "echo 'a b'; rm -rf /tmp/x"}, nil},
		{Process{Kind: KindSubsystem, Subsystem: "sftp"}, []string{"/usr/lib/openssh/sftp-server"}, nil},
		{Process{Kind: KindSubsystem, Subsystem: "netconf"}, nil, ErrUnknownSubsystem},
		{Process{Kind: Kind(42)}, nil, ErrUnknownSubsystem},
	} {
		got, err := argv(pol, tc.p)
		if !errors.Is(err, tc.err) || !slices.Equal(got, tc.want) {
			t.Errorf("argv(%+v) = %q, %v; want %q, %v", tc.p, got, err, tc.want, tc.err)
		}
	}
	// A file-transfer-only profile runs its subsystems and nothing else.
	sftpOnly := pol
	sftpOnly.DisableCommand = true
	for _, p := range []Process{{Kind: KindShell}, {Kind: KindExec, Command: "scp -t ."}} {
		if got, err := argv(sftpOnly, p); !errors.Is(err, ErrCommandDisabled) {
			t.Errorf("argv(disable-command, %+v) = %q, %v; want ErrCommandDisabled", p, got, err)
		}
	}
	if got, err := argv(sftpOnly, Process{Kind: KindSubsystem, Subsystem: "sftp"}); err != nil || len(got) != 1 {
		t.Errorf("argv(disable-command, sftp) = %q, %v; want the sftp server", got, err)
	}
	// The policy's slices are never aliased by a returned argv.
	a, _ := argv(pol, Process{Kind: KindExec, Command: "x"})
	a[0] = "mutated"
	if pol.ExecWrapper[0] != "/bin/sh" {
		t.Error("argv aliases the policy")
	}
}

// TestReconnectWindowKeyedByIdentity: a closed connection's pod is kept for
// the window and returned to the same identity only; another user, or the
// same user on another profile, gets a pod of their own.
func TestReconnectWindowKeyedByIdentity(t *testing.T) {
	web, other := policy("web"), policy("other")
	web.ReconnectWindow, other.ReconnectWindow = time.Hour, time.Hour
	pools := newFakePools(web, other)
	pools.idle = 10
	s := newTestScheduler(t, pools, &fakeExecer{}, clock.RealClock{})
	ctx := context.Background()

	a1, err := s.Attach(ctx, id("alice", "web"), nil)
	if err != nil {
		t.Fatal(err)
	}
	alicePod := a1.(*connAttachment).pod.Ref.Name
	_ = a1.Close()

	b, err := s.Attach(ctx, id("bob", "web"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.(*connAttachment).pod.Ref.Name; got == alicePod {
		t.Fatal("bob got alice's parked pod")
	}
	ao, err := s.Attach(ctx, id("alice", "other"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := ao.(*connAttachment).pod.Ref.Name; got == alicePod {
		t.Fatal("alice's pod leaked into another profile")
	}
	a2, err := s.Attach(ctx, id("alice", "web"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := a2.(*connAttachment).pod.Ref.Name; got != alicePod {
		t.Errorf("alice reconnected to %s, want her pod %s", got, alicePod)
	}
	// Taken out of the window, the pod is not released behind her back.
	select {
	case r := <-pools.released:
		t.Errorf("pod %s released while in use", r)
	default:
	}
	for _, a := range []Attachment{a2, b, ao} {
		_ = a.Close()
	}
	// Shutdown leaves every parked pod parked: they live in the
	// cluster, for a reconnect through another replica.
	runCtx, cancel := context.WithCancel(ctx)
	cancel()
	_ = s.Run(runCtx)
	if n, p := pools.heldCount(), pools.parkedCount(); n != 3 || p != 3 {
		t.Errorf("after shutdown %d pods held, %d parked; want 3 parked", n, p)
	}
	if _, err := s.Attach(ctx, id("carol", "web"), nil); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("Attach after shutdown: %v", err)
	}
}

// TestReconnectWindowExpires: once the parked pod's window has passed, a
// reconnect gets a new pod and is told why; the parked one is left to the
// pool's leader, which deletes it.
func TestReconnectWindowExpires(t *testing.T) {
	web := policy("web")
	web.ReconnectWindow = time.Minute
	pools := newFakePools(web)
	pools.idle = 2
	clk := clocktesting.NewFakeClock(time.Unix(1e9, 0))
	pools.now = clk.Now
	s := newTestScheduler(t, pools, &fakeExecer{}, clk)
	a, err := s.Attach(context.Background(), id("alice", "web"), nil)
	if err != nil {
		t.Fatal(err)
	}
	name := a.(*connAttachment).pod.Ref.Name
	_ = a.Close()
	clk.Step(time.Hour)
	var told []string
	a2, err := s.Attach(context.Background(), id("alice", "web"), func(m string) { told = append(told, m) })
	if err != nil {
		t.Fatal(err)
	}
	if a2.(*connAttachment).pod.Ref.Name == name {
		t.Error("got an expired parked pod back")
	}
	if want := ReconnectMessage(ReconnectExpired, time.Minute); !slices.Contains(told, want) {
		t.Errorf("user told %q, want %q", told, want)
	}
	_ = a2.Close()
}

func TestNoWindowReleasesAtOnce(t *testing.T) {
	pools, a := attachAlice(t)
	_ = a.Close()
	if got := <-pools.released; got != "pod-1" {
		t.Errorf("released %s", got)
	}
}

func TestLimitsAndAccess(t *testing.T) {
	pol := policy("default")
	pol.MaxPerUser, pol.MaxConnections = 1, 2
	pol.AllowedUsers = []string{"alice", "bob", "carol"}
	pools := newFakePools(pol)
	pools.idle = 10
	s := newTestScheduler(t, pools, &fakeExecer{}, clock.RealClock{})
	ctx := context.Background()
	if _, err := s.Attach(ctx, id("mallory", ""), nil); !errors.Is(err, ErrProfileNotAllowed) {
		t.Errorf("mallory: %v", err)
	}
	byLogin := id("alice", "")
	byLogin.ProfileFromLogin = true
	if _, err := s.Attach(ctx, byLogin, nil); !errors.Is(err, ErrProfileNotAllowed) {
		t.Errorf("profile chosen by login name without user-selectable: %v", err)
	}
	if _, err := s.Attach(ctx, id("alice", "nope"), nil); !errors.Is(err, ErrUnknownProfile) {
		t.Errorf("unknown profile: %v", err)
	}
	a, err := s.Attach(ctx, id("alice", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Attach(ctx, id("alice", ""), nil); !errors.Is(err, ErrAtCapacity) {
		t.Errorf("alice's second connection: %v", err)
	}
	b, err := s.Attach(ctx, id("bob", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Attach(ctx, id("carol", ""), nil); !errors.Is(err, ErrAtCapacity) {
		t.Errorf("third connection to a profile capped at 2: %v", err)
	}
	_ = a.Close()
	_ = a.Close() // idempotent: frees one slot, not two
	c, err := s.Attach(ctx, id("carol", ""), nil)
	if err != nil {
		t.Errorf("after a close: %v", err)
	} else {
		_ = c.Close()
	}
	_ = b.Close()
}

// attachWaiting runs Attach for alice on a miss held by pools.gate for
// wait (in synctest's time), then lets the pod arrive, and returns the
// attachment (nil after a failure, already reported) and the progress
// messages the user was shown.
func attachWaiting(t *testing.T, s *Scheduler, pools *fakePools, wait time.Duration) (Attachment, []string) {
	t.Helper()
	var (
		mu   sync.Mutex
		msgs []string
	)
	done := make(chan Attachment)
	go func() {
		a, err := s.Attach(context.Background(), id("alice", ""), func(m string) {
			mu.Lock()
			msgs = append(msgs, m)
			mu.Unlock()
		})
		if err != nil {
			t.Errorf("Attach: %v", err)
		}
		done <- a
	}()
	time.Sleep(wait)
	synctest.Wait()
	close(pools.gate)
	a := <-done
	mu.Lock()
	defer mu.Unlock()
	return a, slices.Clone(msgs)
}

// TestColdWaitProgress: on a miss the user is told their position, the
// pod's phase and the elapsed seconds every second until the pod is Ready.
func TestColdWaitProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pools := newFakePools(policy("default"))
		pools.gate = make(chan struct{})
		s := newTestScheduler(t, pools, &fakeExecer{}, clock.RealClock{})
		a, msgs := attachWaiting(t, s, pools, 3500*time.Millisecond)
		if a == nil {
			return
		}
		if len(msgs) != 4 || msgs[3] != "waiting for a pod: you are 1st in line (scheduling, 3 s so far)" {
			t.Errorf("progress messages %q", msgs)
		}
		if a.(*connAttachment).result != "cold" {
			t.Errorf("result %q, want cold", a.(*connAttachment).result)
		}
		_ = a.Close()
		<-pools.released
	})
}

// TestColdWaitProgressFromPool: the pool's place in line and estimate of
// the wait reach the user's progress line.
func TestColdWaitProgressFromPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pools := newFakePools(policy("default"))
		pools.gate = make(chan struct{})
		pools.waitState = WaitState{Phase: "starting container", Position: 7, Wait: 18400 * time.Millisecond}
		s := newTestScheduler(t, pools, &fakeExecer{}, clock.RealClock{})
		a, msgs := attachWaiting(t, s, pools, 1500*time.Millisecond)
		if a == nil {
			return
		}
		if len(msgs) != 2 || msgs[1] != "waiting for a pod: you are 7th in line, about 20 s (starting container, 1 s so far)" {
			t.Errorf("progress messages %q", msgs)
		}
		_ = a.Close()
		<-pools.released
	})
}

// TestRunUsesPreparedStream: a session with a matching prepared stream
// runs on it (no exec round trip), a fresh spare is prepared for the next
// session, and a session without one execs.
func TestRunUsesPreparedStream(t *testing.T) {
	pools := newFakePools(policy("default"))
	pools.idle = 1
	ex := &fakeExecer{}
	s := newTestScheduler(t, pools, ex, clock.RealClock{})
	a, err := s.Attach(context.Background(), id("alice", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	ca := a.(*connAttachment)
	ca.tty = &fakePrepared{e: ex, pod: ca.pod.Ref.Name, tty: true}
	var out bytes.Buffer
	st, err := a.Run(context.Background(), Process{Kind: KindShell, Pty: &Pty{Term: "xterm"}, Stdout: &out})
	if err != nil || st.Code != 3 {
		t.Fatalf("Run on prepared stream: %v %v", st, err)
	}
	st, err = a.Run(context.Background(), Process{Kind: KindExec, Command: "id -u", Stdout: &out})
	if err != nil || st.Code != 0 || out.String() != "ok" {
		t.Fatalf("Run over exec: %v %v %q", st, err, out.String())
	}
	_ = a.Close() // waits for the spare being prepared
	ex.mu.Lock()
	defer ex.mu.Unlock()
	want := [][]string{{"prepared", "/bin/bash", "-l"}, {"/bin/sh", "-c", "id -u"}}
	if !slices.EqualFunc(ex.argvs, want, slices.Equal) {
		t.Errorf("argvs %q, want %q", ex.argvs, want)
	}
	if ex.prepared != 1 {
		t.Errorf("%d spares prepared, want 1", ex.prepared)
	}
}

func TestPodGoneAndForwarding(t *testing.T) {
	pol := policy("default")
	pools := newFakePools(pol)
	pools.idle = 1
	s := newTestScheduler(t, pools, &fakeExecer{}, clock.RealClock{})
	a, err := s.Attach(context.Background(), id("alice", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Dial(context.Background(), "localhost", 22); !errors.Is(err, ErrForwardingDisabled) {
		t.Errorf("Dial with forwarding off: %v", err)
	}
	if a.Settings().AllowEnv("LANG") {
		t.Error("env allowed without allowlist")
	}
	pools.mu.Lock()
	pools.gone["pod-1"] = true
	pools.mu.Unlock()
	if _, err := a.Run(context.Background(), Process{Kind: KindShell}); !errors.Is(err, ErrPodGone) {
		t.Errorf("Run in a vanished pod: %v", err)
	}
	_ = a.Close()
	if !strings.HasPrefix(<-pools.released, "pod-") {
		t.Error("vanished pod not released")
	}
}

// attachAlice attaches alice in connection mode to the one idle pod of a
// fresh default pool.
func attachAlice(t *testing.T) (*fakePools, Attachment) {
	t.Helper()
	pools := newFakePools(policy("default"))
	pools.idle = 1
	s := newTestScheduler(t, pools, &fakeExecer{}, clock.RealClock{})
	a, err := s.Attach(context.Background(), id("alice", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	return pools, a
}
