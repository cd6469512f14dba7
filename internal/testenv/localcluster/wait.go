package localcluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"
)

const startTimeout = 3 * time.Minute

// firstExit returns the first daemon that has exited, so a wait can fail
// at once with that daemon's log instead of timing out.
func firstExit(procs []*proc) *proc {
	for _, p := range procs {
		if p.exited() {
			return p
		}
	}
	return nil
}

// until retries check every interval until it succeeds, a daemon exits, or
// the start timeout passes. Waiting for a daemon we just started to listen
// has no event to watch, so this is the one place the harness polls.
func (o Options) until(ctx context.Context, procs []*proc, interval time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		if p := firstExit(procs); p != nil {
			return fmt.Errorf("%s exited (%v); see %s", p.name, p.err, filepath.Join(o.logDir(), p.name+".log"))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

func (o Options) waitHTTP(ctx context.Context, procs []*proc, url string) error {
	client, err := o.adminHTTPClient()
	if err != nil {
		return err
	}
	return o.until(ctx, procs, 100*time.Millisecond, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

func (o Options) adminHTTPClient() (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(o.path("pki", "admin.crt"), o.path("pki", "admin.key"))
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(o.path("pki", "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool},
	}}, nil
}

func (o Options) waitLog(ctx context.Context, procs []*proc, name, line string) error {
	path := filepath.Join(o.logDir(), name+".log")
	return o.until(ctx, procs, 50*time.Millisecond, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte(line)) {
			return fmt.Errorf("%q not yet in %s", line, path)
		}
		return nil
	})
}

// waitNodeReady watches the node until it is Ready and the default
// ServiceAccount exists (pods are refused before it does).
func (o Options) waitNodeReady(ctx context.Context) error {
	cs, err := o.adminClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	rc := cs.CoreV1().RESTClient()
	_, err = watchtools.UntilWithSync(ctx,
		cache.NewListWatchFromClient(rc, "nodes", "", fields.OneTermEqualSelector("metadata.name", NodeName)),
		&corev1.Node{}, nil, func(ev watch.Event) (bool, error) {
			n, ok := ev.Object.(*corev1.Node)
			return ok && nodeReady(n), nil
		})
	if err != nil {
		return fmt.Errorf("node %s Ready: %w", NodeName, err)
	}
	_, err = watchtools.UntilWithSync(ctx,
		cache.NewListWatchFromClient(rc, "serviceaccounts", "default", fields.OneTermEqualSelector("metadata.name", "default")),
		&corev1.ServiceAccount{}, nil, func(ev watch.Event) (bool, error) { return ev.Type != watch.Deleted, nil })
	if err != nil {
		return fmt.Errorf("default service account: %w", err)
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// adminClient is a clientset for the cluster's admin kubeconfig.
func (o Options) adminClient() (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig())
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}
