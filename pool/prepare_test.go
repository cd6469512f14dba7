package pool

import (
	"context"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/podgate/podgate/scheduler"
)

// openStream stands for a prepared stream in the count below.
type openStream struct{}

func (openStream) TTY() bool { return true }
func (openStream) Run(context.Context, scheduler.Command) (scheduler.ExitStatus, error) {
	return scheduler.ExitStatus{}, nil
}
func (openStream) Close() error { return nil }

// TestPreparedCountSkipsPlaceholders: podgate_pool_prepared_pods counts the
// pods a claim can attach to without a new exec, so a placeholder for
// streams still opening must not count.
func TestPreparedCountSkipsPlaceholders(t *testing.T) {
	p := newUnitPool(t, fake.NewClientset(), unitProfile(t))
	p.mu.Lock()
	p.prepared["opening"] = &streams{uid: "1"}
	p.prepared["tty-only"] = &streams{uid: "2", tty: openStream{}}
	p.prepared["both"] = &streams{uid: "3", tty: openStream{}, plain: openStream{}}
	p.mu.Unlock()
	if got := p.preparedCount(); got != 2 {
		t.Errorf("preparedCount() = %v, want 2", got)
	}
}
