package pool

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestJudgeAbandoned(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := abandonedClaim{rv: "10", session: "c1", at: t0}
	pod := func(rv, state, owner, session string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv, Labels: map[string]string{
			LabelState: state, LabelOwner: owner, LabelSession: session}}}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{Time: t0}
		}
		return p
	}
	cases := []struct {
		name string
		pod  *corev1.Pod
		now  time.Time
		want abandonVerdict
	}{
		{"cache not caught up", pod("10", StateIdle, "", "", false), t0.Add(time.Second), abandonWait},
		{"the claim took", pod("11", StateClaimed, "a", "c1", false), t0.Add(time.Second), abandonDelete},
		{"another replica won", pod("11", StateClaimed, "b", "c9", false), t0.Add(time.Second), abandonForget},
		{"another session of ours", pod("11", StateClaimed, "a", "c2", false), t0.Add(time.Second), abandonForget},
		{"already being deleted", pod("11", StateClaimed, "a", "c1", true), t0.Add(time.Second), abandonForget},
		{"pod gone, not yet expired", nil, t0.Add(time.Minute), abandonWait},
		{"pod gone, expired", nil, t0.Add(abandonedTTL + time.Second), abandonForget},
		{"unchanged, expired", pod("10", StateIdle, "", "", false), t0.Add(abandonedTTL + time.Second), abandonForget},
	}
	for _, c := range cases {
		if got := judgeAbandoned(a, c.pod, "a", c.now); got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
	}
}

// TestDownCtx: calls in flight are cancelled when the API goes down, and
// calls made after it comes back get a fresh, live signal.
func TestDownCtx(t *testing.T) {
	var h apiHealth
	now := time.Unix(1000, 0)
	first := h.downCtx()
	h.observe(nil, now)
	if first.Err() != nil {
		t.Fatal("signal ended while the API is up")
	}
	h.observe(errors.New("connection refused"), now)
	if first.Err() == nil {
		t.Fatal("signal did not end when the API went down")
	}
	h.observe(nil, now)
	if h.downCtx().Err() != nil {
		t.Fatal("the signal after recovery is already over")
	}
}
