package sshfront

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/crypto/ssh"
)

func ptyPayload(term string, cols, rows uint32, modes []byte) []byte {
	return ssh.Marshal(struct {
		Term                 string
		Cols, Rows, Wpx, Hpx uint32
		Modes                string
	}{term, cols, rows, 640, 480, string(modes)})
}

func TestParsePtyReq(t *testing.T) {
	modes := []byte{53, 0, 0, 0, 1, 128, 0, 0, 0x96, 0, 200, 1, 2, 3, 4, 1, 0, 0, 0, 3}
	pty, replaced, err := parsePtyReq(ptyPayload("xterm-256color", 0, 70000, modes))
	if err != nil || replaced {
		t.Fatalf("err %v replaced %v", err, replaced)
	}
	if pty.Term != "xterm-256color" || pty.Size.Cols != 1 || pty.Size.Rows != 1000 {
		t.Fatalf("pty %+v", pty)
	}
	// Opcode 200 is undefined: parsing stops there, so opcode 1 is not read.
	if len(pty.Modes) != 2 || pty.Modes[53] != 1 || pty.Modes[128] != 0x9600 {
		t.Fatalf("modes %v", pty.Modes)
	}
	for _, term := range []string{"", "x\x1b[31m", "xterm\n", string(bytes.Repeat([]byte("a"), 65))} {
		pty, replaced, err := parsePtyReq(ptyPayload(term, 80, 24, nil))
		if err != nil || !replaced || pty.Term != "xterm" {
			t.Errorf("TERM %q: %+v replaced=%v err=%v", term, pty, replaced, err)
		}
	}
	if _, _, err := parsePtyReq(ptyPayload("xterm", 80, 24, nil)[:10]); !errors.Is(err, errMalformed) {
		t.Errorf("truncated payload: %v", err)
	}
}

func TestParseOthers(t *testing.T) {
	if n, v, err := parseEnv(ssh.Marshal(struct{ N, V string }{"LANG", "C.UTF-8"})); err != nil || n != "LANG" || v != "C.UTF-8" {
		t.Errorf("env: %q %q %v", n, v, err)
	}
	for _, name := range []string{"", "1A", "A-B", "LD PRELOAD", string(bytes.Repeat([]byte("A"), 65))} {
		if _, _, err := parseEnv(ssh.Marshal(struct{ N, V string }{name, "x"})); err == nil {
			t.Errorf("env name %q accepted", name)
		}
	}
	if _, _, err := parseEnv(ssh.Marshal(struct{ N, V string }{"A", string(make([]byte, 4097))})); err == nil {
		t.Errorf("env value over 4 KiB accepted")
	}
	if _, err := parseExec(ssh.Marshal(struct{ C string }{"a\x00b"})); err == nil {
		t.Errorf("exec with NUL accepted")
	}
	if s, err := parseSignal(ssh.Marshal(struct{ S string }{"INT"})); err != nil || s != "INT" {
		t.Errorf("signal: %q %v", s, err)
	}
	for _, s := range []string{"SIGINT", "STOP", "int", ""} {
		if _, err := parseSignal(ssh.Marshal(struct{ S string }{s})); err == nil {
			t.Errorf("signal %q accepted", s)
		}
	}
	tcpip := func(host string, port uint32) []byte {
		return ssh.Marshal(struct {
			H  string
			P  uint32
			OH string
			OP uint32
		}{host, port, "127.0.0.1", 5555})
	}
	if h, p, err := parseDirectTCPIP(tcpip("localhost", 8080)); err != nil || h != "localhost" || p != 8080 {
		t.Errorf("direct-tcpip: %q %d %v", h, p, err)
	}
	for _, port := range []uint32{0, 65536, 1 << 31} {
		if _, _, err := parseDirectTCPIP(tcpip("localhost", port)); err == nil {
			t.Errorf("port %d accepted", port)
		}
	}
	if ws, err := parseWindowChange(ssh.Marshal(struct{ C, R, W, H uint32 }{5000, 0, 1, 1})); err != nil || ws.Cols != 1000 || ws.Rows != 1 {
		t.Errorf("window-change: %+v %v", ws, err)
	}
}

// The fuzz targets check that no payload panics and that what is accepted
// respects the documented limits.

func FuzzPtyReq(f *testing.F) {
	f.Add(ptyPayload("xterm", 80, 24, []byte{53, 0, 0, 0, 1, 0}))
	f.Add([]byte{0, 0, 0, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		pty, _, err := parsePtyReq(b)
		if err != nil {
			return
		}
		if !validTerm(pty.Term) || pty.Size.Cols < 1 || pty.Size.Cols > maxTermSize || pty.Size.Rows < 1 || pty.Size.Rows > maxTermSize {
			t.Fatalf("accepted %+v", pty)
		}
		for op := range pty.Modes {
			if op == 0 || op >= 160 {
				t.Fatalf("mode opcode %d", op)
			}
		}
	})
}

func FuzzWindowChange(f *testing.F) {
	f.Add(ssh.Marshal(struct{ C, R, W, H uint32 }{80, 24, 0, 0}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ws, err := parseWindowChange(b)
		if err == nil && (ws.Cols < 1 || ws.Cols > maxTermSize || ws.Rows < 1 || ws.Rows > maxTermSize) {
			t.Fatalf("accepted %+v", ws)
		}
	})
}

func FuzzEnv(f *testing.F) {
	f.Add(ssh.Marshal(struct{ N, V string }{"LANG", "C"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, v, err := parseEnv(b)
		if err == nil && (!validEnvName(n) || len(v) > maxEnvValueLen || bytes.IndexByte([]byte(v), 0) >= 0) {
			t.Fatalf("accepted %q=%q", n, v)
		}
	})
}

func FuzzExec(f *testing.F) {
	f.Add(ssh.Marshal(struct{ C string }{"ls -l"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseExec(b)
		if err == nil && (len(c) > maxCommandLen || bytes.IndexByte([]byte(c), 0) >= 0) {
			t.Fatalf("accepted %q", c)
		}
	})
}

func FuzzSubsystem(f *testing.F) {
	f.Add(ssh.Marshal(struct{ S string }{"sftp"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSubsystem(b)
		if err == nil && !validTerm(s) {
			t.Fatalf("accepted %q", s)
		}
	})
}

func FuzzSignal(f *testing.F) {
	f.Add(ssh.Marshal(struct{ S string }{"TERM"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSignal(b)
		if err == nil && (len(s) == 0 || len(s) > 4) {
			t.Fatalf("accepted %q", s)
		}
	})
}

func FuzzDirectTCPIP(f *testing.F) {
	f.Add(ssh.Marshal(struct {
		H  string
		P  uint32
		OH string
		OP uint32
	}{"localhost", 80, "127.0.0.1", 1234}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, p, err := parseDirectTCPIP(b)
		if err == nil && (p == 0 || len(h) > maxHostLen) {
			t.Fatalf("accepted %q:%d", h, p)
		}
	})
}

func BenchmarkParsePtyReq(b *testing.B) {
	payload := ptyPayload("xterm-256color", 200, 50, []byte{53, 0, 0, 0, 1, 128, 0, 0, 0x96, 0, 0})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := parsePtyReq(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseEnv(b *testing.B) {
	payload := ssh.Marshal(struct{ N, V string }{"LANG", "en_US.UTF-8"})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := parseEnv(payload); err != nil {
			b.Fatal(err)
		}
	}
}
