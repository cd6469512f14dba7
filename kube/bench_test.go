package kube

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/scheduler"
)

// The benchmarks measure what a user waits for between asking for a command
// and its start, on the real cluster: a fresh exec (API server, kubelet and
// runtime round trips) against a Run on a stream prepared beforehand (one
// write). Run them with -benchmem and compare ns/op.

func BenchmarkExecFresh(b *testing.B) {
	env := kubetest.New(b)
	e := newTestExecutor(b, env)
	pod := startPods(b, env, busyboxPod())[0]
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer() // the namespace and the pod are not the exec's
	for b.Loop() {
		st, err := e.Exec(ctx, pod, scheduler.Command{Argv: []string{"true"}})
		if err != nil || st.Code != 0 {
			b.Fatalf("Exec: %+v, %v", st, err)
		}
	}
}

func BenchmarkPreparedRun(b *testing.B) {
	env := kubetest.New(b)
	e := newTestExecutor(b, env)
	pod := startPods(b, env, busyboxPod())[0]
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		p, err := e.Prepare(ctx, pod, false)
		if err != nil {
			b.Fatalf("Prepare: %v", err)
		}
		b.StartTimer()
		st, err := p.Run(ctx, scheduler.Command{Argv: []string{"true"}})
		if err != nil || st.Code != 0 {
			b.Fatalf("Run: %+v, %v", st, err)
		}
	}
}

// The FirstByte benchmarks measure what attach latency is made of: the time
// until the command's first output byte reaches podgate, which is when the
// user's command is known to run. The command's exit and the stream's
// teardown are left out of the timer.

func BenchmarkExecFreshFirstByte(b *testing.B) {
	env := kubetest.New(b)
	e := newTestExecutor(b, env)
	pod := startPods(b, env, busyboxPod())[0]
	benchFirstByte(b, func(ctx context.Context, cmd scheduler.Command) (scheduler.ExitStatus, error) {
		return e.Exec(ctx, pod, cmd)
	}, nil)
}

func BenchmarkPreparedFirstByte(b *testing.B) {
	env := kubetest.New(b)
	e := newTestExecutor(b, env)
	pod := startPods(b, env, busyboxPod())[0]
	var p scheduler.Prepared
	benchFirstByte(b, func(ctx context.Context, cmd scheduler.Command) (scheduler.ExitStatus, error) {
		return p.Run(ctx, cmd)
	}, func() {
		var err error
		if p, err = e.Prepare(context.Background(), pod, false); err != nil {
			b.Fatalf("Prepare: %v", err)
		}
	})
}

// benchFirstByte times run from its call to the command's first output
// byte; setup runs before each iteration, outside the timer.
func benchFirstByte(b *testing.B, run func(context.Context, scheduler.Command) (scheduler.ExitStatus, error), setup func()) {
	benchFirstByteCmd(b, scheduler.Command{Argv: []string{"echo", "x"}}, run, setup)
}

// benchFirstByteCmd is benchFirstByte for a given command, whose Stdout it
// replaces.
func benchFirstByteCmd(b *testing.B, cmd scheduler.Command, run func(context.Context, scheduler.Command) (scheduler.ExitStatus, error), setup func()) {
	ctx := context.Background()
	b.ReportAllocs()
	// Creating the namespace and the pod took seconds, which must not
	// count towards the first iteration.
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if setup != nil {
			setup()
		}
		first := &firstByte{seen: make(chan struct{})}
		b.StartTimer()
		done := runAsync(func() (scheduler.ExitStatus, error) {
			c := cmd
			c.Stdout = first
			return run(ctx, c)
		})
		select {
		case <-first.seen:
		case r := <-done:
			b.Fatalf("command ended without output: %+v, %v", r.status, r.err)
		}
		b.StopTimer()
		if r := <-done; r.err != nil || r.status.Code != 0 {
			b.Fatalf("command: %+v, %v", r.status, r.err)
		}
		b.StartTimer()
	}
}

// firstByte closes seen at the first write.
type firstByte struct {
	once sync.Once
	seen chan struct{}
}

func (f *firstByte) Write(p []byte) (int, error) {
	f.once.Do(func() { close(f.seen) })
	return len(p), nil
}

// BenchmarkPreparedFirstByteTTY is the attach path a login takes: a
// prepared terminal stream in the Debian guest, with the terminal modes and
// size an OpenSSH client sends.
func BenchmarkPreparedFirstByteTTY(b *testing.B) {
	env := kubetest.New(b)
	e := newTestExecutor(b, env)
	pod := startPods(b, env, debianPod())[0]
	var p scheduler.Prepared
	pty := &scheduler.Pty{Term: "xterm", Size: scheduler.WindowSize{Rows: 24, Cols: 80},
		Modes: map[uint8]uint32{ssh.ECHO: 1, ssh.ICANON: 1, ssh.ISIG: 1, ssh.ICRNL: 1, ssh.ONLCR: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}}
	benchFirstByteCmd(b, scheduler.Command{Argv: []string{"echo", "x"}, Pty: pty}, func(ctx context.Context, cmd scheduler.Command) (scheduler.ExitStatus, error) {
		return p.Run(ctx, cmd)
	}, func() {
		var err error
		if p, err = e.Prepare(context.Background(), pod, true); err != nil {
			b.Fatalf("Prepare: %v", err)
		}
	})
}

// BenchmarkRelaySetup measures what a forwarded connection to a destination
// beyond the pod waits for before data flows: the relay's exec, the
// resolution of a name in the pod (for "name"), and the connect. The relay's
// hang-up at Close is left out of the timer.
func BenchmarkRelaySetup(b *testing.B) {
	env := kubetest.New(b)
	e := newTestExecutor(b, env)
	pod := startPods(b, env, podSpec{
		image:     kubetest.DebianImage,
		command:   []string{"busybox", "httpd", "-f", "-p", "8080", "-h", "/tmp"},
		readyPort: 8080,
	})[0]
	ctx := context.Background()
	for name, host := range map[string]string{"address": "127.0.0.1", "name": "localhost"} {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				c, err := e.Relay(ctx, pod, host, 8080, allowAll)
				if err != nil {
					b.Fatalf("Relay: %v", err)
				}
				b.StopTimer()
				c.Close()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkPreparedIdleCost measures what one idle prepared stream costs
// podgate, for each kind of stream (terminal: WebSocket, wsconn.go; plain:
// SPDY, spdyexec.go): Go heap in use and goroutines, per stream, over
// preparedSample streams held open at once into one pod (the cost of a
// reserved pod to its owner). With PODGATE_HEAP_PROFILE set, it writes a
// heap profile of the held streams to that file, suffixed with the kind.
func BenchmarkPreparedIdleCost(b *testing.B) {
	env := kubetest.New(b)
	e := newTestExecutor(b, env)
	pod := startPods(b, env, busyboxPod())[0]
	ctx := context.Background()
	for _, kind := range []struct {
		name string
		tty  bool
	}{{"terminal", true}, {"plain", false}} {
		b.Run(kind.name, func(b *testing.B) {
			for b.Loop() {
				heap0, gor0 := footprint()
				streams := make([]scheduler.Prepared, preparedSample)
				for i := range streams {
					p, err := e.Prepare(ctx, pod, kind.tty)
					if err != nil {
						b.Fatalf("Prepare: %v", err)
					}
					streams[i] = p
				}
				heap1, gor1 := footprint()
				if path := os.Getenv("PODGATE_HEAP_PROFILE"); path != "" {
					writeHeapProfile(b, path+"."+kind.name)
				}
				b.ReportMetric(float64(heap1-heap0)/preparedSample/1024, "heap-KiB/stream")
				b.ReportMetric(float64(gor1-gor0)/preparedSample, "goroutines/stream")
				for _, p := range streams {
					_ = p.Close()
				}
			}
		})
	}
}

// preparedSample is how many streams BenchmarkPreparedIdleCost holds.
const preparedSample = 20

// footprint is the Go heap in use after a collection, and the goroutines.
func footprint() (uint64, int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, runtime.NumGoroutine()
}

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}
