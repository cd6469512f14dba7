package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/localcluster"
)

// kubectl runs the kubectl binary against one kubeconfig. kubectl is used,
// rather than client-go alone, because it is what operators run: its
// built-in kustomize renders the overlays and `apply` is the documented way
// to install them.
type kubectl struct {
	path       string
	kubeconfig string
}

// findKubectl returns $KUBECTL, the local cluster's cached kubectl (which
// matches the cluster's version), or kubectl from PATH. The test is skipped
// when there is none: rendering needs it.
func findKubectl(t *testing.T) kubectl {
	t.Helper()
	k := kubectl{kubeconfig: kubetest.Kubeconfig()}
	if p := os.Getenv("KUBECTL"); p != "" {
		k.path = p
		return k
	}
	cached := localcluster.Options{CacheDir: localcluster.DefaultCacheDir()}.KubectlPath()
	if _, err := os.Stat(cached); err == nil {
		k.path = cached
		return k
	}
	if p, err := exec.LookPath("kubectl"); err == nil {
		k.path = p
		return k
	}
	t.Skip("no kubectl: run `make cluster-up` (it builds one) or put kubectl on PATH")
	return k
}

// run runs kubectl with args and stdin, returning stdout and stderr. A
// non-zero exit is an error that carries stderr, so failures read well.
func (k kubectl) run(ctx context.Context, stdin []byte, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, k.path, args...)
	cmd.Env = os.Environ()
	if k.kubeconfig != "" {
		cmd.Env = append(cmd.Env, "KUBECONFIG="+k.kubeconfig)
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), stderr.String(), err
}

// repoDir is the deploy/ directory: go test runs in the package directory.
func repoDir(t *testing.T, rel string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("working directory: %v", err)
	}
	return filepath.Join(wd, rel)
}

// doc is one rendered manifest: its raw YAML and the fields tests select by.
type doc struct {
	raw []byte
	metav1.TypeMeta
	Metadata metav1.ObjectMeta `json:"metadata"`
}

// group is the API group of the document's apiVersion ("" for core).
func (d doc) group() string {
	if g, _, ok := strings.Cut(d.APIVersion, "/"); ok {
		return g
	}
	return ""
}

// render runs `kubectl kustomize dir` and splits the output into documents.
func render(ctx context.Context, t *testing.T, k kubectl, dir string) []doc {
	t.Helper()
	out, _, err := k.run(ctx, nil, "kustomize", dir)
	if err != nil {
		t.Fatalf("rendering %s: %v", dir, err)
	}
	docs, err := splitDocs([]byte(out))
	if err != nil {
		t.Fatalf("rendering %s: %v", dir, err)
	}
	if len(docs) == 0 {
		t.Fatalf("rendering %s: no objects", dir)
	}
	return docs
}

// splitDocs splits a multi-document YAML stream.
func splitDocs(data []byte) ([]doc, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []doc
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("splitting documents: %w", err)
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		d := doc{raw: raw}
		js, err := utilyaml.ToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("converting document to JSON: %w", err)
		}
		if err := json.Unmarshal(js, &d); err != nil {
			return nil, fmt.Errorf("decoding document: %w", err)
		}
		docs = append(docs, d)
	}
}

// join makes one YAML stream of docs, for `kubectl apply -f -`.
func join(docs []doc) []byte {
	var b bytes.Buffer
	for _, d := range docs {
		b.WriteString("---\n")
		b.Write(d.raw)
		if !bytes.HasSuffix(d.raw, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// find returns the one document of kind and name, failing the test otherwise.
func find(t *testing.T, docs []doc, kind, name string) doc {
	t.Helper()
	var found []doc
	for _, d := range docs {
		if d.Kind == kind && d.Metadata.Name == name {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s %q in the rendered manifests, found %d", kind, name, len(found))
	}
	return found[0]
}

// portForward runs `kubectl port-forward` from a free local port to the SSH
// port of target (service/podgate or pod/NAME in ns.podgate) for the rest of
// the test, and returns the local port.
func portForward(ctx context.Context, t *testing.T, k kubectl, ns namespaces, target string) string {
	t.Helper()
	pfCtx, stop := context.WithCancel(ctx)
	remote := "22" // the Service's port
	if strings.HasPrefix(target, "pod/") {
		remote = "ssh" // the container's named port
	}
	cmd := exec.CommandContext(pfCtx, k.path, "-n", ns.podgate,
		"port-forward", "--address", "127.0.0.1", target, "0:"+remote)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.kubeconfig)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop()
		_ = cmd.Wait()
	})
	ports := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) ->`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case ports <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case p := <-ports:
		return p
	case <-time.After(30 * time.Second):
		t.Fatalf("kubectl port-forward %s did not report its port within 30s", target)
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	return ""
}

// waitTCP waits until addr accepts TCP connections. It polls, boundedly,
// because nothing reports when kube-proxy has programmed a port.
func waitTCP(ctx context.Context, t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%s does not accept connections: %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
