package pool

import (
	"errors"
	"testing"

	"github.com/podgate/podgate/scheduler"
)

// TestRefusalWrapsReason checks that a refusal names its reason both ways
// callers need: errors.Is on the reason's sentinel and on
// scheduler.ErrProfileDegraded, with the user's text as the Refusal reason.
func TestRefusalWrapsReason(t *testing.T) {
	all := []failure{failImagePull, failCrash, failConfig, failUnschedulable, failNoReadyNode, failTimeout, failCreate}
	for _, f := range all {
		err := refusal("p", f)
		var ref *scheduler.Refusal
		if !errors.Is(err, f.Err) || !errors.Is(err, scheduler.ErrProfileDegraded) || !errors.As(err, &ref) || ref.Reason != f.UserText {
			t.Errorf("%s: refusal %v does not wrap its sentinel, ErrProfileDegraded and the user text", f.Reason, err)
		}
		if f.Err.Error() != f.Reason {
			t.Errorf("sentinel text %q, want the reason word %q", f.Err, f.Reason)
		}
		for _, other := range all {
			if other.Reason != f.Reason && errors.Is(err, other.Err) {
				t.Errorf("%s refusal also matches %s", f.Reason, other.Reason)
			}
		}
	}
}
