package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podgate/podgate/scheduler"
)

// Release deletes a pod this replica holds; see scheduler.Pools.
func (p *Pool) Release(ctx context.Context, pod *scheduler.Pod) error {
	if pod.Stream != nil {
		_ = pod.Stream.Close()
		pod.Stream = nil
	}
	err := p.deletePod(ctx, pod.Ref.Name, types.UID(pod.UID), "")
	if err == nil {
		return nil
	}
	// Leave the pod where the reaper will find it.
	body, perr := json.Marshal(map[string]any{"metadata": map[string]any{
		"uid":    pod.UID,
		"labels": map[string]string{LabelState: StateReleased},
	}})
	if perr == nil {
		_, perr = p.client.CoreV1().Pods(p.opts.Namespace).Patch(ctx, pod.Ref.Name, types.MergePatchType, body, metav1.PatchOptions{})
	}
	return errors.Join(err, perr)
}

// Alive reports whether a held pod still exists and is Ready.
func (p *Pool) Alive(pod *scheduler.Pod) bool {
	cur, ok := p.cachedPod(pod.Ref.Name)
	return ok && string(cur.UID) == pod.UID && podReady(cur)
}

// deletePod deletes a pod if it still has the given UID and, when rv is
// set, is unchanged since that resourceVersion. A pod already gone is not
// an error, nor is a UID conflict (another pod of that name now); a
// resourceVersion conflict is returned, as the pod is still there.
func (p *Pool) deletePod(ctx context.Context, name string, uid types.UID, rv string) error {
	err := p.client.CoreV1().Pods(p.opts.Namespace).Delete(ctx, name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: ptrOrNil(rv)},
	})
	if err == nil || apierrors.IsNotFound(err) || (apierrors.IsConflict(err) && uid != "" && rv == "") {
		return nil
	}
	return fmt.Errorf("deleting pod %q: %w", name, err)
}

// deleteInBackground deletes a pod off the caller's critical path, and
// records why on it once deleted; Run waits for it before returning.
func (p *Pool) deleteInBackground(name string, uid types.UID, why removal) {
	p.background(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.deletePod(ctx, name, uid, ""); err != nil {
			p.log.Warn("deleting pod", "pod", name, "err", err)
			return
		}
		p.removed(name, uid, why)
	})
}

// recycle turns a cold pod nobody waits for any more into an idle pod of
// the pool, or deletes it should that fail. It runs before the waiter gets
// its pod, so that once a user is attached no pod but theirs carries their
// claim (one PATCH, a few milliseconds after a wait of seconds). The UID
// precondition makes sure a pod of the same name created since is never
// touched. created is when own was created: its start is measured when it
// turns Ready, as a cold pod's is.
func (p *Pool) recycle(own *corev1.Pod, created time.Time) {
	p.queue.recycle(own.Name, created)
	body, err := recyclePatch(own.UID)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = p.client.CoreV1().Pods(p.opts.Namespace).Patch(ctx, own.Name, types.MergePatchType, body, metav1.PatchOptions{})
	}
	if err != nil {
		p.log.Warn("giving a cold pod to the pool", "pod", own.Name, "err", err)
		p.deleteInBackground(own.Name, own.UID, reaped("its login was served by another pod, and giving this one to the pool failed"))
	}
}

// recyclePatch is the merge patch that makes a claimed cold pod idle: the
// claim's labels and annotations are removed (null), AnnCold says it is a
// pool pod now, and the uid precondition fails the patch for any other pod
// of that name.
func recyclePatch(uid types.UID) ([]byte, error) {
	return json.Marshal(map[string]any{"metadata": map[string]any{
		"uid": uid,
		"labels": map[string]any{
			LabelState:   StateIdle,
			LabelOwner:   nil,
			LabelRun:     nil,
			LabelSession: nil,
			LabelUserKey: nil,
		},
		"annotations": map[string]any{
			AnnUser: nil, AnnRemoteAddr: nil, AnnConnID: nil, AnnClaimedAt: nil, AnnCold: "false",
		},
	}})
}

// ptrOrNil is &s, or nil for "".
func ptrOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
