package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podgateBin is the podgate binary the e2e tests run, built once by
// TestMain when a cluster is configured.
var podgateBin string

func TestMain(m *testing.M) {
	if kubetest.Kubeconfig() != "" {
		dir, err := os.MkdirTemp("", "podgate-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		podgateBin, err = podgatetest.Build(context.Background(), dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// server is a podgate process serving one test's namespace, and an OpenSSH
// client set up to reach it as user alice.
type server struct {
	*podgatetest.Server
	env     *kubetest.Env
	dir     string
	port    string
	metrics string
	key     string // alice's private key
	stderr  *podgatetest.SafeBuffer
	cmd     *exec.Cmd
	exited  <-chan struct{} // closed once the process has been waited for
}

func freePort(t *testing.T) string {
	t.Helper()
	p, err := podgatetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func keygen(t *testing.T, path string) {
	t.Helper()
	if err := podgatetest.Keygen(path); err != nil {
		t.Fatal(err)
	}
}

// startPodgate runs the real binary against the test cluster with keys auth
// (alice has a key; mallory's key, in dir/mallory, is unknown) and extra
// environment, and waits for a warm pool.
func startPodgate(t *testing.T, env *kubetest.Env, extra ...string) *server {
	t.Helper()
	hosttools.Require(t, "ssh", "ssh-keygen")
	dir := t.TempDir()
	ps, err := podgatetest.Start(context.Background(), podgatetest.Options{
		Bin: podgateBin, Kubeconfig: kubetest.Kubeconfig(), Namespace: env.Namespace,
		Dir: dir, Env: extra, WaitIdle: 1, Timeout: kubetest.Timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Older tests name alice's and mallory's keys by user.
	for _, u := range []string{"alice", "mallory"} {
		if err := os.Link(ps.Keys[u], filepath.Join(dir, u)); err != nil {
			t.Fatal(err)
		}
	}
	s := &server{Server: ps, env: env, dir: dir, port: ps.Port, metrics: ps.MetricsPort,
		key: ps.Keys["alice"], stderr: ps.Log, cmd: ps.Cmd, exited: ps.Exited()}
	t.Cleanup(func() {
		if err := ps.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("podgate log:\n%s", ps.Log.String())
		}
	})
	return s
}

// sshArgs are the OpenSSH options every client in these tests uses.
func (s *server) sshArgs(key string, extra ...string) []string {
	return podgatetest.SSHOptions(key, extra...)
}

// ssh returns an OpenSSH client command for user (alice's key).
func (s *server) ssh(user string, args ...string) *exec.Cmd {
	a := append(s.sshArgs(s.key, "-p", s.port, user+"@127.0.0.1"), args...)
	return exec.Command("ssh", a...)
}

// runCmd runs cmd and returns stdout, stderr and the exit status.
func runCmd(t *testing.T, cmd *exec.Cmd, stdin []byte) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return out.String(), strings.TrimSpace(errb.String()), code
}

// eventually checks cond every 100 ms until it holds or timeout passes, and
// fails the test naming what never happened. The e2e tests wait on things
// that offer no event to watch (a process's HTTP port, a terminal screen, a
// socket file), so this bounded poll is the one way they wait.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// createProfile creates the PodTemplate profile name in the test's
// namespace, with the annotations ann and the pod spec spec (the service
// account token is never mounted), and waits until usable reports true:
// the profile reaches podgate through its informer, and until then a login
// naming it is refused.
func createProfile(t *testing.T, s *server, name string, ann map[string]string, spec corev1.PodSpec, usable func() bool) {
	t.Helper()
	no := false
	spec.AutomountServiceAccountToken = &no
	pt := &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"podgate.io/profile": name}, Annotations: ann},
		Template:   corev1.PodTemplateSpec{Spec: spec},
	}
	if _, err := s.env.Client.CoreV1().PodTemplates(s.env.Namespace).Create(context.Background(), pt, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, kubetest.Timeout, "profile "+name+" becoming usable", usable)
}

// debianSpec is a one-container Debian pod whose PROFILE_MARK names the
// profile, so a test can tell which profile a login landed in.
func debianSpec(profile string) corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: kubetest.DebianImage, ImagePullPolicy: corev1.PullNever,
		Env: []corev1.EnvVar{{Name: "PROFILE_MARK", Value: profile}}}}}
}

// shellSucceeds reports whether the shell command line probe exits 0.
func shellSucceeds(t *testing.T, probe string) func() bool {
	return func() bool {
		_, _, code := runCmd(t, exec.Command("sh", "-c", probe), nil)
		return code == 0
	}
}

// echoesAs reports whether login (e.g. "alice+lab") runs a command.
func echoesAs(t *testing.T, s *server, login string) func() bool {
	return func() bool {
		out, _, code := runCmd(t, s.ssh(login, "echo ready"), nil)
		return code == 0 && strings.TrimSpace(out) == "ready"
	}
}

// selectableNoMin adds to ann what the forwarding tests' profiles share:
// user-selectable, and no idle pods kept.
func selectableNoMin(ann map[string]string) map[string]string {
	all := map[string]string{"podgate.io/user-selectable": "true", "podgate.io/pool-min": "0"}
	for k, v := range ann {
		all[k] = v
	}
	return all
}
