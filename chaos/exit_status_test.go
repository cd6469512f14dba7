package chaos

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// TestExitStatusAfterColdAndWarmLogin hunts the lost exit status: once in
// about 40 tries, `ssh host 'kill -TERM $$'` right after a cold login
// returned 0 instead of 143. The command kills itself at once, so its
// exit races everything around the stream's start: the spec being sent
// without waiting for the wrapper's ready line (a fresh exec), the first
// exec into a pod that just turned Ready, and a prepared stream handed
// over with a pod. Every path is tried with real ssh, cold logins (no warm
// pool, so every pod is created for its login) and warm ones, several at
// once, and every status must be 143.
func TestExitStatusAfterColdAndWarmLogin(t *testing.T) {
	env := kubetest.New(t)
	sc := NewScenario(t, "faults", "exit status of a command that kills itself, cold and warm")
	n := Size(8, 40)
	cold := startGate(t, env, gateOpts{Users: []string{"alice"}, WaitIdle: -1, ReplicaID: "cold", Env: append(append([]string{}, faultEnv...),
		"PODGATE_POOL_MIN=0", "PODGATE_POOL_GROW=false")})
	run := func(g *gate, label string, parallel int) map[string]int {
		codes := map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, parallel)
		for i := range n {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				// With and without stdin, plain; and in a terminal.
				args := []string{"kill -TERM $$"}
				if i%3 == 2 {
					args = []string{"-tt", "kill -TERM $$"}
				}
				_, e, code := runSSH(g.SSH("alice", "alice", args...), "", 2*time.Minute)
				key := fmt.Sprintf("%d", code)
				if code != 143 {
					key += " " + truncate(e, 80)
				}
				mu.Lock()
				codes[key]++
				mu.Unlock()
			})
		}
		wg.Wait()
		sc.Figure(label+" exit statuses", "%v", codes)
		return codes
	}
	c := run(cold, "cold login", 2)
	sc.Check(len(c) == 1 && c["143"] == n, "after a cold login, kill -TERM $$ exits 143 every time", "%v of %d", c, n)

	// Another namespace: two replicas with different pool sizes would
	// fight over one profile's pool.
	warm := startGate(t, kubetest.New(t), gateOpts{WaitIdle: 3, Keys: cold, ReplicaID: "warm", Env: append(append([]string{}, faultEnv...),
		"PODGATE_POOL_MIN=3", "PODGATE_POOL_MAX=6")})
	w := run(warm, "warm login", 3)
	sc.Check(len(w) == 1 && w["143"] == n, "after a warm login (prepared streams), kill -TERM $$ exits 143 every time", "%v of %d", w, n)
}
