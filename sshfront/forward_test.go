package sshfront

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
)

// TestDirectTCPIP: the channel's host and port reach the attachment as
// asked, and its refusals reach the client with the right reason.
func TestDirectTCPIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var dialed []string
		var mu sync.Mutex
		backend := &fakeBackend{
			settings: scheduler.Settings{PortForwarding: true},
			dial: func(_ context.Context, host string, port uint16) (net.Conn, error) {
				switch host {
				case "denied.example":
					return nil, fmt.Errorf("not in the rules: %w", scheduler.ErrForwardDenied)
				case "down.example":
					return nil, &scheduler.Refusal{Reason: "Connection refused", Err: scheduler.ErrConnectFailed}
				}
				mu.Lock()
				dialed = append(dialed, net.JoinHostPort(host, fmt.Sprint(port)))
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
		for _, host := range []string{"localhost", "pod-1", "web.demo.svc.cluster.local", "10.96.0.1"} {
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
		for _, tc := range []struct {
			host   string
			reason ssh.RejectionReason
			msg    string
		}{
			{"denied.example", ssh.Prohibited, "podgate: forwarding to this destination is not allowed"},
			{"down.example", ssh.ConnectionFailed, "podgate: Connection refused"},
		} {
			_, err := c.Dial("tcp", tc.host+":80")
			var oe *ssh.OpenChannelError
			if !errors.As(err, &oe) || oe.Reason != tc.reason || oe.Message != tc.msg {
				t.Errorf("forward to %s: %v, want %v %q", tc.host, err, tc.reason, tc.msg)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		want := []string{"localhost:8080", "pod-1:8080", "web.demo.svc.cluster.local:8080", "10.96.0.1:8080"}
		if !slices.Equal(dialed, want) {
			t.Fatalf("backend dialled %v, want %v", dialed, want)
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
