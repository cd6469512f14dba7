package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestUserMessage(t *testing.T) {
	sentinels := []error{
		ErrAtCapacity, ErrWaitTimeout, ErrProfileDegraded, ErrUnknownProfile,
		ErrProfileNotAllowed, ErrUnknownSubsystem, ErrCommandDisabled, ErrForwardingDisabled,
		ErrClusterUnavailable, ErrBusy, ErrPodGone, ErrShuttingDown,
	}
	internal := UserMessage(errors.New("boom"))
	if internal != "podgate: internal error, please try again" {
		t.Fatalf("UserMessage(other) = %q", internal)
	}
	seen := map[string]error{}
	for _, s := range sentinels {
		wrapped := fmt.Errorf("claiming pod %q in 10.0.0.7: %w", "secret-pod", s)
		got := UserMessage(wrapped)
		if got == internal || !strings.HasPrefix(got, "podgate: ") {
			t.Errorf("UserMessage(%v) = %q, want a specific podgate message", s, got)
		}
		if strings.Contains(got, "secret-pod") || strings.Contains(got, "10.0.0.7") {
			t.Errorf("UserMessage(%v) leaks detail: %q", s, got)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("%v and %v share message %q", prev, s, got)
		}
		seen[got] = s
	}
	if UserMessage(nil) != "" {
		t.Errorf("UserMessage(nil) should be empty")
	}
}

func TestRefusal(t *testing.T) {
	r := &Refusal{Err: fmt.Errorf("pulling image: %w", ErrProfileDegraded), Reason: `the image for profile "x" cannot be pulled`}
	err := fmt.Errorf("attaching: %w", r)
	if got, want := UserMessage(err), `podgate: the image for profile "x" cannot be pulled`; got != want {
		t.Errorf("UserMessage = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrProfileDegraded) {
		t.Errorf("Refusal does not unwrap to its sentinel")
	}
	if !strings.Contains(r.Error(), "pulling image") {
		t.Errorf("Refusal.Error() = %q lacks the wrapped detail", r.Error())
	}
	empty := &Refusal{Err: ErrAtCapacity}
	if got := UserMessage(empty); got != "podgate: all pods are busy, please try again in a minute" {
		t.Errorf("Refusal without reason = %q, want the sentinel message", got)
	}
}

// TestWaitMessage: the waiting user's line says their place, a rounded
// estimate when there is one, the phase and the time waited, and starts
// with "waiting for a pod".
func TestWaitMessage(t *testing.T) {
	cases := []struct {
		pos    int
		wait   time.Duration
		phase  string
		waited time.Duration
		want   string
	}{
		{7, 18400 * time.Millisecond, "scheduling", 3 * time.Second, "waiting for a pod: you are 7th in line, about 20 s (scheduling, 3 s so far)"},
		{1, 0, "starting", 0, "waiting for a pod: you are 1st in line (starting, 0 s so far)"},
		{2, time.Second, "starting container", 0, "waiting for a pod: you are 2nd in line, about 5 s (starting container, 0 s so far)"},
		{3, 58 * time.Second, "starting", 0, "waiting for a pod: you are 3rd in line, about 1 min (starting, 0 s so far)"},
		{12, 150 * time.Second, "starting", 0, "waiting for a pod: you are 12th in line, about 3 min (starting, 0 s so far)"},
		{22, 40 * time.Second, "starting", 0, "waiting for a pod: you are 22nd in line, about 40 s (starting, 0 s so far)"},
		{111, 0, "starting", 0, "waiting for a pod: you are 111th in line (starting, 0 s so far)"},
	}
	for _, c := range cases {
		if got := WaitMessage(c.pos, c.wait, c.phase, c.waited); got != c.want {
			t.Errorf("WaitMessage(%d, %v, %q, %v) = %q, want %q", c.pos, c.wait, c.phase, c.waited, got, c.want)
		}
	}
}
