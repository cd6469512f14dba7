package kube

import (
	"os/exec"
	"strconv"
	"testing"

	"github.com/podgate/podgate/internal/testenv/hosttools"
)

// TestKillArgvGoneProcess runs the kill argv under the local /bin/sh: a
// live process gets the signal, and a process that has already exited
// counts as delivered instead of failing.
func TestKillArgvGoneProcess(t *testing.T) {
	hosttools.Require(t, "sleep", "sh")
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	pid := sleeper.Process.Pid
	argv := killArgv("TERM", pid)
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("signalling a live process: %v %s", err, out)
	}
	err := sleeper.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Fatalf("sleep ended with %v, want killed by a signal", err)
	}
	argv = killArgv("HUP", pid) // reaped, so gone
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Errorf("signalling a gone process (pid %s): %v %s", strconv.Itoa(pid), err, out)
	}
}
