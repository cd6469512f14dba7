package bench

import (
	"strings"
	"testing"
	"time"
)

// TestServedRateAndBound: the served rate counts users who got a prompt
// from the first arrival to the last prompt, and the sustained bound
// blames the node only when it served fewer users per second than
// arrived.
func TestServedRateAndBound(t *testing.T) {
	var samples []Sample
	// 10 arrivals over 5 s; 8 served, the last prompt at 3.5 s + 5.5 s = 9 s.
	for i := range 10 {
		s := Sample{Scenario: "sustained", Index: i, Start: time.Duration(i) * 500 * time.Millisecond, Timing: Timing{Prompt: 5500 * time.Millisecond, Miss: i > 5}}
		if i >= 8 {
			s.Err = "refused"
		}
		samples = append(samples, s)
	}
	rate, served := ServedRate(samples)
	if served != 8 || rate < 0.88 || rate > 0.89 { // 8 users over 9 s
		t.Errorf("ServedRate = %.3f/s, %d served; want 0.89/s, 8", rate, served)
	}
	if got := LastMiss(samples); got != 4500*time.Millisecond {
		t.Errorf("LastMiss = %v, want 4.5s", got)
	}
	res := &Results{Config: DefaultConfig()}
	res.Config.Rate = 2
	res.Sustained.Samples = samples
	if b := sustainedBound(res); !strings.Contains(b, "0.89/s (8 of 10 served)") {
		t.Errorf("at 2 arrivals/s the bound does not blame the node's rate: %s", b)
	}
	res.Config.Rate = 0.8
	if b := sustainedBound(res); !strings.Contains(b, "The node kept up") {
		t.Errorf("at 0.8 arrivals/s the bound does not say the node kept up: %s", b)
	}
}
