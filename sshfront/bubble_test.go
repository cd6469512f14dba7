package sshfront

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
)

// bubble is a demo-mode Server on an in-memory listener, for tests inside a
// testing/synctest bubble where time is fake and advances only when every
// goroutine is blocked.
type bubble struct {
	t       *testing.T
	srv     *Server
	ln      *pipeListener
	backend *fakeBackend
	logs    *syncBuffer
	audit   *syncBuffer
	reg     *prometheus.Registry
	stop    func()
}

func newBubble(t *testing.T, cfgFn func(*Config), backend *fakeBackend) *bubble {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{HostKeys: []ssh.Signer{hostKey}, Demo: true, KeepaliveInterval: -1}
	if cfgFn != nil {
		cfgFn(&cfg)
	}
	if backend.settings.Mode == "" {
		backend.settings.Mode = scheduler.ModeConnection
	}
	b := &bubble{t: t, backend: backend, logs: &syncBuffer{}, audit: &syncBuffer{}, reg: prometheus.NewRegistry(), ln: newPipeListener()}
	b.srv, err = New(cfg, backend, Authenticators{}, newLogger(b.logs), newLogger(b.audit), b.reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.srv.Serve(ctx, b.ln) }()
	stopped := false
	b.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", b.logs.String())
		}
	}
	t.Cleanup(b.stop)
	return b
}

// client connects a Go SSH client as login.
func (b *bubble) client(login string) *ssh.Client {
	b.t.Helper()
	nc, err := b.ln.Dial()
	if err != nil {
		b.t.Fatal(err)
	}
	return b.clientOver(nc, login)
}

func (b *bubble) clientOver(nc net.Conn, login string) *ssh.Client {
	b.t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	sc, chans, reqs, err := ssh.NewClientConn(nc, "pipe", &ssh.ClientConfig{
		User:            login,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		b.t.Fatalf("client handshake: %v", err)
	}
	c := ssh.NewClient(sc, chans, reqs)
	b.t.Cleanup(func() { c.Close() })
	return c
}

// blockingRun is a Run that consumes stdin (so the idle timer sees typing)
// and returns only when its context ends.
func blockingRun(ctx context.Context, p scheduler.Process) (scheduler.ExitStatus, error) {
	go func() {
		buf := make([]byte, 256)
		for {
			if _, err := p.Stdin.Read(buf); err != nil {
				return
			}
		}
	}()
	<-ctx.Done()
	return scheduler.ExitStatus{}, ctx.Err()
}

// metricValue reads one gauge or counter from reg; labels are name, value
// pairs that must all match. It returns 0 for a series not yet created.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
