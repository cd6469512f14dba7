package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// recordedEvents keeps every Event the scheduler records, as
// "pod Reason: note" lines.
type recordedEvents struct {
	mu  sync.Mutex // protects got
	got []string
}

func (r *recordedEvents) PodEvent(pod PodRef, uid string, reason EventReason, note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, fmt.Sprintf("%s/%s %s: %s", pod.Name, uid, reason, note))
}

func (r *recordedEvents) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// schedulerWithEvents is newTestScheduler with an event recorder.
func schedulerWithEvents(t *testing.T, pools Pools) (*Scheduler, *recordedEvents) {
	t.Helper()
	ev := &recordedEvents{}
	s, err := New(pools, &fakeExecer{}, clock.RealClock{}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), Options{Events: ev, Parking: parkingOf(pools)})
	if err != nil {
		t.Fatal(err)
	}
	return s, ev
}

func wantEvents(t *testing.T, ev *recordedEvents, want ...string) {
	t.Helper()
	if got := ev.lines(); !slices.Equal(got, want) {
		t.Errorf("events:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func shutdown(s *Scheduler) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Run(ctx)
}

// TestEventsParkReconnectShutdown: a pod's story through a reconnect
// window: claimed, parked, reconnected, parked again, and still parked
// after shutdown (it lives in the cluster); each Event names the user and
// the connection.
func TestEventsParkReconnectShutdown(t *testing.T) {
	web := policy("web")
	web.ReconnectWindow = time.Hour
	pools := newFakePools(web)
	pools.idle = 1
	s, ev := schedulerWithEvents(t, pools)
	for range 2 {
		a, err := s.Attach(context.Background(), id("alice", "web"), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = a.Close()
	}
	shutdown(s)
	wantEvents(t, ev,
		`pod-1/uid-1 Claimed: claimed for user "alice", connection c-alice (warm)`,
		`pod-1/uid-1 Parked: kept for user "alice" to reconnect within 1h0m0s`,
		`pod-1/uid-1 Reconnected: user "alice" reconnected`,
		`pod-1/uid-1 Parked: kept for user "alice" to reconnect within 1h0m0s`,
	)
}

// TestEventsNoWindow: with no reconnect window a cold pod is claimed and
// released when its connection closes.
func TestEventsNoWindow(t *testing.T) {
	pools := newFakePools(policy("web"))
	s, ev := schedulerWithEvents(t, pools)
	a, err := s.Attach(context.Background(), id("bob", "web"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	<-pools.released
	wantEvents(t, ev,
		`pod-1/uid-1 Claimed: claimed for user "bob", connection c-bob (cold)`,
		`pod-1/uid-1 Released: connection c-bob of user "bob" closed`,
	)
}

// TestEventsSessionMode: each session's pod is claimed under the session's
// name and released when the session ends.
func TestEventsSessionMode(t *testing.T) {
	pol := policy("jobs")
	pol.Mode = ModeSession
	pools := newFakePools(pol)
	pools.idle = 1
	s, ev := schedulerWithEvents(t, pools)
	a, err := s.Attach(context.Background(), id("carol", "jobs"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Run(context.Background(), Process{Kind: KindExec, Command: "true", Stdout: io.Discard, Stderr: io.Discard}); err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	<-pools.released
	wantEvents(t, ev,
		`pod-1/uid-1 Claimed: claimed for user "carol", connection c-carol-1 (warm)`,
		`pod-1/uid-1 Released: session c-carol-1 of user "carol" ended`,
	)
}

// TestEventsNotParkedOverLimit: a pod its user cannot keep parked (they
// hold the limit elsewhere) is released, and its Event says the connection
// closed.
func TestEventsNotParkedOverLimit(t *testing.T) {
	web := policy("web")
	web.ReconnectWindow, web.MaxPerUser = time.Hour, 2
	pools := newFakePools(web)
	pools.idle = 1
	s, ev := schedulerWithEvents(t, pools)
	a, err := s.Attach(context.Background(), id("alice", "web"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pools.mu.Lock()
	pools.elsewhere[UserKey("alice", "web")] = 2 // two more, through another replica at once
	pools.mu.Unlock()
	_ = a.Close()
	<-pools.released
	wantEvents(t, ev,
		`pod-1/uid-1 Claimed: claimed for user "alice", connection c-alice (warm)`,
		`pod-1/uid-1 Released: connection c-alice of user "alice" closed`,
	)
}

// TestEventReasons: the reasons' types, actions and per-login flags, which
// decide what PODGATE_POD_EVENTS=pool leaves out.
func TestEventReasons(t *testing.T) {
	for _, tc := range []struct {
		r                 EventReason
		warning, perLogin bool
		action            string
	}{
		{EventClaimed, false, true, "Claim"},
		{EventParked, false, true, "Park"},
		{EventReconnected, false, true, "Claim"},
		{EventReleased, false, true, "Delete"},
		{EventReaped, false, false, "Delete"},
		{EventProfileDegraded, true, false, "Start"},
		{EventClaimRecordFailed, true, false, "Claim"},
	} {
		if tc.r.Warning() != tc.warning || tc.r.PerLogin() != tc.perLogin || tc.r.Action() != tc.action {
			t.Errorf("%s: warning %v per-login %v action %q; want %v %v %q", tc.r, tc.r.Warning(), tc.r.PerLogin(), tc.r.Action(), tc.warning, tc.perLogin, tc.action)
		}
	}
}
