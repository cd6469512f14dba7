package pool

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/podgate/podgate/scheduler"
)

// TestAPIFailureTellsThrottlingApart drives a real client-go client whose
// rate limiter has one token: the second request is held by podgate's own
// limiter until its deadline, which must read as "busy", while a server
// that does not answer reads as "cluster unavailable". The client-go
// wording that apiFailure matches is thereby checked against the client-go
// version in go.mod.
func TestAPIFailureTellsThrottlingApart(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"}}`))
	}))
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, RateLimiter: flowcontrol.NewTokenBucketRateLimiter(0.001, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// The first request only needs to succeed (a generous deadline, for a
	// loaded CI machine); the second must be refused by the rate limiter,
	// which fails at once when the next token comes after the deadline.
	get := func(deadline time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		_, err := cs.CoreV1().Pods("ns").Get(ctx, "p", metav1.GetOptions{})
		return err
	}
	if err := get(30 * time.Second); err != nil {
		t.Fatalf("first request (a token is available): %v", err)
	}
	throttled := get(time.Second)
	if throttled == nil {
		t.Fatal("second request was not throttled")
	}
	if got := apiFailure(throttled); !errors.Is(got, scheduler.ErrBusy) {
		t.Errorf("apiFailure(%v) = %v, want ErrBusy", throttled, got)
	}

	srv.Close()
	down, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, refused := down.CoreV1().Pods("ns").Get(context.Background(), "p", metav1.GetOptions{})
	if refused == nil {
		t.Fatal("request to a closed server succeeded")
	}
	if got := apiFailure(refused); !errors.Is(got, scheduler.ErrClusterUnavailable) {
		t.Errorf("apiFailure(%v) = %v, want ErrClusterUnavailable", refused, got)
	}
}
