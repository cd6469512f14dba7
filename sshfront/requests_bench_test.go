package sshfront

import (
	"testing"

	"golang.org/x/crypto/ssh"
)

// The parsers below run on every exec, window resize and subsystem request
// of every session; their allocations are what matters.

func BenchmarkParseExec(b *testing.B) {
	payload := ssh.Marshal(struct{ C string }{"ls -la /home/user && echo done"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseExec(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseWindowChange(b *testing.B) {
	payload := ssh.Marshal(struct{ W, H, PW, PH uint32 }{200, 50, 0, 0})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseWindowChange(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSubsystem(b *testing.B) {
	payload := ssh.Marshal(struct{ S string }{"sftp"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseSubsystem(payload); err != nil {
			b.Fatal(err)
		}
	}
}
