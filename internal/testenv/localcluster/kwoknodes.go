package localcluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// kwokBinding gives KWOK's user cluster-admin: it updates every fake
// node's and fake pod's status, renews node Leases and deletes pods.
const kwokBinding = "podgate-localcluster-kwok"

// kwokAccess creates KWOK's ClusterRoleBinding unless it exists.
func kwokAccess(ctx context.Context, cs kubernetes.Interface) error {
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: kwokBinding},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: kwokUser}},
	}
	_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("granting KWOK its rights: %w", err)
	}
	return nil
}

// KWOKNodeSelector is the label selector of the fake nodes.
const KWOKNodeSelector = KWOKNodeLabel + "=" + KWOKNodeLabelValue

// KWOKToleration lets a pod onto the fake nodes; with a node selector on
// KWOKNodeLabel it lands nowhere else.
func KWOKToleration() corev1.Toleration {
	return corev1.Toleration{Key: KWOKTaintKey, Operator: corev1.TolerationOpEqual, Value: KWOKTaintValue, Effect: corev1.TaintEffectNoSchedule}
}

// fakeNode is fake node i: labelled for KWOK and for pods' node
// selectors, tainted so that only pods that ask land on it, with the
// allocatable resources of a modest real node (110 pods), local disk
// included: podgate's pods have an ephemeral-storage limit, which a node
// without that resource cannot fit.
func fakeNode(i int) *corev1.Node {
	name := fmt.Sprintf("%s%03d", KWOKNodePrefix, i)
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
		// 110 pods with podgate's default 1 GiB limit each.
		corev1.ResourceEphemeralStorage: resource.MustParse("200Gi"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				KWOKNodeLabel:            KWOKNodeLabelValue,
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
		},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: KWOKTaintKey, Value: KWOKTaintValue, Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
		},
	}
}

// fakeNodeIndex returns i for a node named by fakeNode(i).
func fakeNodeIndex(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, KWOKNodePrefix)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	return i, err == nil && i >= 0
}

// ensureFakeNodes makes the fake nodes exactly fakeNode(0..n-1): it
// creates the missing ones, deletes the others (the pods bound to them are
// then removed by the controller manager's pod garbage collector) and, for
// n > 0, waits until all n are Ready.
func ensureFakeNodes(ctx context.Context, cs kubernetes.Interface, n int) error {
	nodes := cs.CoreV1().Nodes()
	list, err := nodes.List(ctx, metav1.ListOptions{LabelSelector: KWOKNodeSelector})
	if err != nil {
		return fmt.Errorf("listing fake nodes: %w", err)
	}
	have := map[int]bool{}
	for _, nd := range list.Items {
		i, ok := fakeNodeIndex(nd.Name)
		if ok && i < n {
			have[i] = true
			continue
		}
		if err := nodes.Delete(ctx, nd.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting fake node %s: %w", nd.Name, err)
		}
	}
	for i := range n {
		if have[i] {
			continue
		}
		if _, err := nodes.Create(ctx, fakeNode(i), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating fake node %d: %w", i, err)
		}
	}
	if n == 0 {
		return nil
	}
	return waitFakeNodesReady(ctx, cs, n)
}

// waitFakeNodesReady watches the fake nodes until n of them are Ready.
func waitFakeNodesReady(ctx context.Context, cs kubernetes.Interface, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ready := map[string]bool{}
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = KWOKNodeSelector
			return cs.CoreV1().Nodes().List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = KWOKNodeSelector
			return cs.CoreV1().Nodes().Watch(ctx, o)
		},
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Node{}, nil, func(ev watch.Event) (bool, error) {
		nd, ok := ev.Object.(*corev1.Node)
		if !ok {
			return false, nil
		}
		ready[nd.Name] = ev.Type != watch.Deleted && nodeReady(nd)
		count := 0
		for _, r := range ready {
			if r {
				count++
			}
		}
		return count >= n, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %d fake nodes to be Ready: %w", n, err)
	}
	return nil
}
