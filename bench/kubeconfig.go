package bench

import (
	"fmt"
	"os"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is the benchmarked cluster as its admin sees it.
type Cluster struct {
	Kubeconfig string // the path KUBECONFIG names
	Config     *rest.Config
	Kube       *kubernetes.Clientset
}

// ClusterClient loads the cluster admin's kubeconfig that KUBECONFIG names
// and returns its path, config and a client with room for a benchmark's set-up
// (50 QPS, burst 100). target names the make target that sets KUBECONFIG,
// for the error a bare run gets.
func ClusterClient(target string) (Cluster, error) {
	path := os.Getenv("KUBECONFIG")
	if path == "" {
		return Cluster{}, fmt.Errorf("KUBECONFIG must name the cluster admin's kubeconfig (%s sets it)", target)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return Cluster{}, fmt.Errorf("loading %s: %w", path, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Cluster{}, fmt.Errorf("creating the benchmark's client: %w", err)
	}
	return Cluster{Kubeconfig: path, Config: cfg, Kube: kube}, nil
}
