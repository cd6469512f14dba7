package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/klog/v2"
)

func TestNewLoggerFormatAndLevel(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, LogJSON, LogLevel("warn").Level())
	log.Info("dropped")
	log.Warn("kept", "profile", "default")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("want exactly one JSON line, got %q: %v", buf.String(), err)
	}
	if line["msg"] != "kept" || line["profile"] != "default" {
		t.Errorf("line = %v", line)
	}

	buf.Reset()
	newLogger(&buf, LogText, slog.LevelInfo).Info("hello", "k", "v")
	if got := buf.String(); !strings.Contains(got, "msg=hello k=v") {
		t.Errorf("text line = %q", got)
	}
}

func TestRouteKlog(t *testing.T) {
	var buf bytes.Buffer
	routeKlog(newLogger(&buf, LogJSON, slog.LevelInfo))
	t.Cleanup(klog.ClearLogger)
	klog.InfoS("from client-go", "verb", "GET")
	klog.Flush()
	if got := buf.String(); !strings.Contains(got, `"msg":"from client-go"`) || !strings.Contains(got, `"source":"client-go"`) {
		t.Errorf("klog output not routed through slog: %q", got)
	}
}

func TestOpenAuditFileAppendsJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(`{"earlier":true}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	audit, closeFn, err := openAudit(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	audit.Debug("login", "user", "alice") // below info, but audit keeps everything from info up
	audit.Info("login", "user", "alice")
	if err := closeFn(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 || lines[0]["earlier"] != true || lines[1]["user"] != "alice" || lines[1]["log"] != "audit" {
		t.Errorf("audit file lines = %v", lines)
	}
}

func TestOpenAuditStdoutAndOff(t *testing.T) {
	var stdout bytes.Buffer
	audit, _, err := openAudit(AuditStdout, &stdout)
	if err != nil {
		t.Fatal(err)
	}
	audit.Info("session", "conn", "c1")
	if !strings.Contains(stdout.String(), `"conn":"c1"`) {
		t.Errorf("stdout = %q", stdout.String())
	}

	stdout.Reset()
	audit, _, err = openAudit(AuditOff, &stdout)
	if err != nil {
		t.Fatal(err)
	}
	audit.Info("session")
	if stdout.Len() != 0 {
		t.Errorf("audit off still wrote %q", stdout.String())
	}

	if _, _, err := openAudit(filepath.Join(t.TempDir(), "missing", "audit.log"), nil); err == nil {
		t.Error("openAudit in a missing directory succeeded")
	}
}

// TestKlogNoiseDemoted: the errors client-go logs whenever a stream ends
// normally go to debug; other client-go errors stay errors.
func TestKlogNoiseDemoted(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(&klogNoise{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})})
	log.Error("Unhandled Error", "err", "read tcp 127.0.0.1:1->127.0.0.1:2: use of closed network connection")
	log.Error("Unhandled Error", "err", "io: read/write on closed pipe")
	log.Error("Websocket Ping failed", "err", "EOF")
	log.Error("Failed to watch", "err", "connection refused")
	out := buf.String()
	if strings.Contains(out, "closed network connection") || strings.Contains(out, "Ping failed") || strings.Contains(out, "closed pipe") {
		t.Errorf("benign stream errors reached the info-level log:\n%s", out)
	}
	if !strings.Contains(out, "Failed to watch") {
		t.Errorf("a real client-go error was dropped:\n%s", out)
	}
}
