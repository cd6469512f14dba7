package sshfront

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
)

// BenchmarkHandshakeAuth measures a full key exchange and public key
// authentication against the server over an in-memory connection.
func BenchmarkHandshakeAuth(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, _ := ssh.NewSignerFromKey(priv)
	_, cpriv, _ := ed25519.GenerateKey(rand.Reader)
	clientKey, _ := ssh.NewSignerFromKey(cpriv)
	backend := &fakeBackend{settings: scheduler.Settings{Mode: scheduler.ModeConnection}}
	srv, err := New(Config{HostKeys: []ssh.Signer{hostKey}, Demo: true, KeepaliveInterval: -1}, backend, Authenticators{}, newLogger(&syncBuffer{}), newLogger(&syncBuffer{}), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ln := newPipeListener()
	ctx := b.Context()
	go func() { _ = srv.Serve(ctx, ln) }()
	conf := &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{ssh.PublicKeys(clientKey)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()}
	b.ReportAllocs()
	for b.Loop() {
		nc, err := ln.Dial()
		if err != nil {
			b.Fatal(err)
		}
		c, _, _, err := ssh.NewClientConn(nc, "pipe", conf)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
