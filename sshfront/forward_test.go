package sshfront

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
)

func TestDirectTCPIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var dialed []uint16
		var mu sync.Mutex
		backend := &fakeBackend{
			settings: scheduler.Settings{PortForwarding: true},
			dial: func(_ context.Context, port uint16) (net.Conn, error) {
				mu.Lock()
				dialed = append(dialed, port)
				mu.Unlock()
				server, client := net.Pipe()
				go func() { // an upper-casing echo server
					defer server.Close()
					buf := make([]byte, 64)
					n, _ := server.Read(buf)
					_, _ = server.Write([]byte(strings.ToUpper(string(buf[:n]))))
				}()
				return client, nil
			},
		}
		b := newBubble(t, nil, backend)
		c := b.client("alice")
		for _, host := range []string{"localhost", "127.0.0.1", "pod-1"} {
			conn, err := c.Dial("tcp", net.JoinHostPort(host, "8080"))
			if err != nil {
				t.Fatalf("forward to %s: %v", host, err)
			}
			_, _ = conn.Write([]byte("hello"))
			got, _ := io.ReadAll(conn)
			if string(got) != "HELLO" {
				t.Fatalf("forward to %s: got %q", host, got)
			}
			conn.Close()
		}
		if _, err := c.Dial("tcp", "example.com:80"); err == nil {
			t.Fatalf("forward to another host accepted")
		}
		mu.Lock()
		n := len(dialed)
		mu.Unlock()
		if n != 3 {
			t.Fatalf("backend dialled %d times, want 3", n)
		}
	})
}

func TestDirectTCPIPDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, nil, &fakeBackend{})
		_, err := b.client("alice").Dial("tcp", "localhost:8080")
		var oe *ssh.OpenChannelError
		if !errors.As(err, &oe) || oe.Reason != ssh.Prohibited || oe.Message != "podgate: port forwarding is disabled" {
			t.Fatalf("Dial = %v, want a prohibited refusal", err)
		}
	})
}
