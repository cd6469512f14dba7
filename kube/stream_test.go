package kube

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/podgate/podgate/scheduler"
)

func TestMarkerWriter(t *testing.T) {
	for name, chunks := range map[string][]string{
		"one write":   {"noise\r\nPODGATE-READY 42\r\ncommand output"},
		"split":       {"noise\r\n", "PODGATE-", "READY 4", "2\r", "\ncommand", " output"},
		"byte a time": strings.Split("noise\r\nPODGATE-READY 42\r\ncommand output", ""),
	} {
		t.Run(name, func(t *testing.T) {
			var user bytes.Buffer
			m := &markerWriter{out: &gate{}, ready: make(chan struct{})}
			m.out.attach(&user)
			for _, c := range chunks {
				if n, err := m.Write([]byte(c)); n != len(c) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", c, n, err)
				}
			}
			select {
			case <-m.ready:
			default:
				t.Fatal("ready line not recognised")
			}
			if m.readyPID() != 42 || user.String() != "command output" || m.noiseString() != "noise\r\n" {
				t.Errorf("pid %d, user got %q, noise %q", m.readyPID(), user.String(), m.noiseString())
			}
		})
	}
}

func TestMarkerWriterBoundsNoise(t *testing.T) {
	m := &markerWriter{out: &gate{}, ready: make(chan struct{})}
	chunk := []byte(strings.Repeat("x", 1000))
	for range 1000 {
		m.Write(chunk)
	}
	if n := len(m.noiseString()); n > maxDiagnostic+len(readyPrefix) {
		t.Errorf("kept %d bytes of noise", n)
	}
	select {
	case <-m.ready:
		t.Error("ready without a ready line")
	default:
	}
}

func TestGateKeepsEarlyOutputFromUser(t *testing.T) {
	var user bytes.Buffer
	g := &gate{}
	g.Write([]byte("wrapper diagnostics"))
	g.attach(&user)
	g.Write([]byte("command"))
	g.detach()
	g.Write([]byte("late"))
	if user.String() != "command" || g.earlyString() != "wrapper diagnostics" {
		t.Errorf("user got %q, early %q", user.String(), g.earlyString())
	}
}

func TestSizeQueueKeepsLatest(t *testing.T) {
	done := make(chan struct{})
	q := &sizeQueue{ch: make(chan remotecommand.TerminalSize, 1), done: done}
	q.push(scheduler.WindowSize{Cols: 1, Rows: 1})
	q.push(scheduler.WindowSize{Cols: 2, Rows: 2})
	q.push(scheduler.WindowSize{Cols: 80, Rows: 24})
	if s := q.Next(); s == nil || s.Width != 80 || s.Height != 24 {
		t.Errorf("Next = %+v, want the latest size", s)
	}
	close(done)
	if s := q.Next(); s != nil {
		t.Errorf("Next after the stream ended = %+v, want nil", s)
	}
}

func TestExitStatus(t *testing.T) {
	running := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "running", Namespace: "ns"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: "main", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}}},
	}
	e, err := NewExecutor(&rest.Config{Host: "https://example.invalid"}, fake.NewClientset(running).CoreV1(), nil)
	if err != nil {
		t.Fatal(err)
	}
	alive := scheduler.PodRef{Namespace: "ns", Name: "running", Container: "main"}
	gone := scheduler.PodRef{Namespace: "ns", Name: "deleted", Container: "main"}
	wrongContainer := scheduler.PodRef{Namespace: "ns", Name: "running", Container: "sidecar"}
	exit := func(code int) error { return utilexec.CodeExitError{Err: errors.New("exit"), Code: code} }
	for _, tc := range []struct {
		name     string
		pod      scheduler.PodRef
		result   error
		sent     map[int]bool
		want     scheduler.ExitStatus
		wantGone bool
		wantErr  bool
	}{
		{"success", alive, nil, nil, scheduler.ExitStatus{}, false, false},
		{"exit code", alive, exit(3), nil, scheduler.ExitStatus{Code: 3}, false, false},
		{"signal podgate sent", alive, exit(130), map[int]bool{2: true}, scheduler.ExitStatus{Code: 130, Signal: "INT"}, false, false},
		{"130 without a signal is a code", alive, exit(130), map[int]bool{15: true}, scheduler.ExitStatus{Code: 130}, false, false},
		{"137 in a live pod", alive, exit(137), nil, scheduler.ExitStatus{Code: 137}, false, false},
		{"137 in a deleted pod", gone, exit(137), nil, scheduler.ExitStatus{Code: 137}, true, true},
		{"stream error, pod deleted", gone, errors.New("connection reset"), nil, scheduler.ExitStatus{}, true, true},
		{"stream error, container missing", wrongContainer, errors.New("reset"), nil, scheduler.ExitStatus{}, true, true},
		{"stream error, pod alive", alive, errors.New("connection reset"), nil, scheduler.ExitStatus{}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := e.exitStatus(tc.pod, tc.result, tc.sent)
			if st != tc.want || (err != nil) != tc.wantErr || errors.Is(err, scheduler.ErrPodGone) != tc.wantGone {
				t.Errorf("exitStatus = %+v, %v; want %+v, error %t, ErrPodGone %t", st, err, tc.want, tc.wantErr, tc.wantGone)
			}
		})
	}
}
