package scheduler

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/podgate/podgate/sshfront/auth"
)

// TestUserKeyIsolation: the login names a user may try map to keys as
// documented on UserKey: case variants and "+default" are the same user
// (who must hold that user's credentials to log in at all), Unicode
// look-alikes never get past the login's parsing, another profile or
// another user is another key, and no split of bytes between user and
// profile collides.
func TestUserKeyIsolation(t *testing.T) {
	keyOf := func(login string) (string, error) {
		user, prof, err := auth.ParseLogin(login)
		if err != nil {
			return "", err
		}
		if prof == "" {
			prof = "default" // what Pools.Policy resolves "" to
		}
		return UserKey(user, prof), nil
	}
	alice := UserKey("alice", "default")
	if !regexp.MustCompile(`^[0-9a-f]{48}$`).MatchString(alice) {
		t.Fatalf("key %q is not 48 hex digits (a label value)", alice)
	}
	for _, login := range []string{"alice", "Alice", "ALICE", "alice+default", "aLiCe+DEFAULT"} {
		if k, err := keyOf(login); err != nil || k != alice {
			t.Errorf("%q: key %q, %v; want alice's (the same canonical user)", login, k, err)
		}
	}
	for _, login := range []string{
		"\u0430lice",        // Cyrillic а
		"\u212Alice",        // Kelvin sign, which lower-cases to k
		"al\u0456ce",        // Ukrainian і
		"alice\u200b",       // zero-width space
		"jos\u00e9",         // NFC é
		"jose\u0301",        // NFD e + combining acute
		"alice\x00",         // NUL
		"alice+",            // empty profile
		"+default",          // empty user
		"alice+lab+x",       // a second +
		"ａｌｉｃｅ",             // full-width
		"alice@example.org", // @ is not in the alphabet
	} {
		if k, err := keyOf(login); !errors.Is(err, auth.ErrBadLogin) {
			t.Errorf("%q: key %q, err %v; want refused at login", login, k, err)
		}
	}
	for _, login := range []string{"alice+lab", "bob", "alice.", "alice-", "alice_", "alic", "alicea"} {
		if k, err := keyOf(login); err != nil || k == alice {
			t.Errorf("%q: key %q, %v; want a key of its own", login, k, err)
		}
	}
	if UserKey("a", "bc") == UserKey("ab", "c") || UserKey("a\x00", "b") == UserKey("a", "\x00b") {
		t.Error("bytes shifted between user and profile collide")
	}
	// No folding of its own: names another auth source might hand over
	// stay apart rather than merge.
	if UserKey("jos\u00e9", "default") == UserKey("jose\u0301", "default") || UserKey("Alice", "default") == alice {
		t.Error("UserKey folded case or Unicode forms together")
	}
}

// TestPerUserLimitCountsOtherReplicas: the per-user limit counts the pods
// other replicas hold and the user's parked pod; a parked pod is taken back
// even at the limit, since it is counted already.
func TestPerUserLimitCountsOtherReplicas(t *testing.T) {
	web := policy("web")
	web.MaxPerUser, web.ReconnectWindow = 3, time.Hour
	pools := newFakePools(web)
	pools.idle = 10
	s := newTestScheduler(t, pools, &fakeExecer{}, clock.RealClock{})
	ctx := context.Background()
	key := UserKey("alice", "web")
	pools.elsewhere[key] = 2
	a, err := s.Attach(ctx, id("alice", "web"), nil)
	if err != nil {
		t.Fatalf("third pod (two elsewhere): %v", err)
	}
	if _, err := s.Attach(ctx, id("alice", "web"), nil); !errors.Is(err, ErrAtCapacity) {
		t.Fatalf("fourth pod: %v, want ErrAtCapacity", err)
	}
	if _, err := s.Attach(ctx, id("bob", "web"), nil); err != nil {
		t.Errorf("bob is not limited by alice's pods: %v", err)
	}
	parkedPod := a.(*connAttachment).pod.Ref.Name
	_ = a.Close() // parked: still counted
	if pools.parkedCount() != 1 {
		t.Fatal("pod not parked")
	}
	var told []string
	back, err := s.Attach(ctx, id("alice", "web"), func(m string) { told = append(told, m) })
	if err != nil {
		t.Fatalf("reconnect at the limit: %v", err)
	}
	if got := back.(*connAttachment).pod.Ref.Name; got != parkedPod {
		t.Errorf("reconnected to %s, want the parked %s", got, parkedPod)
	}
	if len(told) != 1 || told[0] != ReconnectMessage(ReconnectSamePod, time.Hour) {
		t.Errorf("user told %q", told)
	}
	if r, parked := back.(*connAttachment).ReconnectAudit(); r != "same_pod" || parked {
		t.Errorf("audit: reconnect %q, parked %v", r, parked)
	}
	if _, err := s.Attach(ctx, id("alice", "web"), nil); !errors.Is(err, ErrAtCapacity) {
		t.Errorf("a pod beyond the limit after the reconnect: %v", err)
	}
	// Over the limit (two replicas admitted at once): the pod is released
	// when its connection closes, not parked.
	pools.mu.Lock()
	pools.elsewhere[key] = 3
	pools.mu.Unlock()
	_ = back.Close()
	if got := <-pools.released; got != parkedPod {
		t.Errorf("released %s, want %s", got, parkedPod)
	}
	if _, parked := back.(*connAttachment).ReconnectAudit(); parked {
		t.Error("audit says parked for a released pod")
	}
}

// TestReconnectWindowBounded: the operator's MaxReconnectWindow cuts a
// profile's longer window.
func TestReconnectWindowBounded(t *testing.T) {
	web := policy("web")
	web.ReconnectWindow = 30 * 24 * time.Hour
	s := newTestScheduler(t, newFakePools(web), &fakeExecer{}, clock.RealClock{})
	s.opts.MaxReconnectWindow = 48 * time.Hour
	if got := s.window(web); got != 48*time.Hour {
		t.Errorf("window %v, want 48h", got)
	}
	web.Mode = ModeSession
	if got := s.window(web); got != 0 {
		t.Errorf("session mode window %v, want none", got)
	}
}
