package kube

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	"k8s.io/apimachinery/pkg/util/remotecommand"
)

// frame is one frame the test server read: a data message's bytes, or the
// name of a control frame.
type frame struct {
	control string // "ping" or "close"; empty for a data message
	data    []byte
}

// TestWSConnWritesNothingAfterStdinClose checks the rule in wsconn.go's
// "Nothing after stdin's close": once stdin's close signal is out, the
// client sends no ping (a heartbeat that fires then writes nothing) and no
// data, and the only frame that follows is its reply to the server's
// close, after the command's output and status have been read in full.
func TestWSConnWritesNothingAfterStdinClose(t *testing.T) {
	frames := make(chan frame, 16)
	serverErr := make(chan error, 1)
	closeStdinRead := make(chan struct{})
	heartbeatDone := make(chan struct{})
	output := bytes.Repeat([]byte("x"), 100<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := gwebsocket.Upgrader{Subprotocols: []string{remotecommand.StreamProtocolV5Name}}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			serverErr <- err
			return
		}
		defer conn.Close()
		conn.SetPingHandler(func(string) error { frames <- frame{control: "ping"}; return nil })
		conn.SetCloseHandler(func(int, string) error { frames <- frame{control: "close"}; return nil })
		serverErr <- serveOneExec(conn, frames, closeStdinRead, heartbeatDone, output)
	}))
	defer srv.Close()

	dialer := gwebsocket.Dialer{Subprotocols: []string{remotecommand.StreamProtocolV5Name}}
	raw, _, err := dialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newWSConn(raw, &sync.Pool{New: func() any { b := make([]byte, wsWriteBuffer); return &b }})
	var stdout bytes.Buffer
	served := make(chan error, 1)
	go func() { served <- c.serve(&stdout, nil) }()

	if err := c.writeStdin([]byte("input")); err != nil {
		t.Fatal(err)
	}
	if err := c.closeStdin(); err != nil {
		t.Fatal(err)
	}
	<-closeStdinRead
	// A heartbeat firing now must write nothing.
	c.heartbeat()
	if err := c.writeStdin([]byte("late")); !errors.Is(err, errStdinClosed) {
		t.Errorf("writeStdin after closeStdin: %v, want errStdinClosed", err)
	}
	close(heartbeatDone)

	if err := <-served; err != nil {
		t.Errorf("serve: %v, want the success status", err)
	}
	if err := <-serverErr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout.Bytes(), output) {
		t.Errorf("stdout: %d bytes, want %d", stdout.Len(), len(output))
	}
	close(frames)
	var got []string
	for f := range frames {
		switch {
		case f.control != "":
			got = append(got, f.control)
		default:
			got = append(got, fmt.Sprintf("%d:%q", f.data[0], f.data[1:]))
		}
	}
	want := []string{`0:"input"`, `255:"\x00"`, "close"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("frames the server read: %q, want %q", got, want)
	}
}

// serveOneExec plays the API server's side of one exec: it reads frames
// until stdin's close signal, waits for the test's heartbeat, writes the
// output and a success status, closes, and reads what follows until the
// client's close reply.
func serveOneExec(conn *gwebsocket.Conn, frames chan<- frame, closeStdinRead chan<- struct{}, heartbeatDone <-chan struct{}, output []byte) error {
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		frames <- frame{data: b}
		if b[0] == remotecommand.StreamClose {
			break
		}
	}
	close(closeStdinRead)
	<-heartbeatDone
	for len(output) > 0 {
		n := min(len(output), 16<<10)
		if err := conn.WriteMessage(gwebsocket.BinaryMessage, append([]byte{remotecommand.StreamStdOut}, output[:n]...)); err != nil {
			return err
		}
		output = output[n:]
	}
	status := append([]byte{remotecommand.StreamErr}, `{"kind":"Status","apiVersion":"v1","status":"Success"}`...)
	if err := conn.WriteMessage(gwebsocket.BinaryMessage, status); err != nil {
		return err
	}
	if err := conn.WriteControl(gwebsocket.CloseMessage, gwebsocket.FormatCloseMessage(gwebsocket.CloseNormalClosure, ""), time.Now().Add(10*time.Second)); err != nil {
		return err
	}
	// Whatever the client sends from here on would, on the API server,
	// meet a closed socket; read it all up to the close reply.
	for {
		if _, b, err := conn.ReadMessage(); err != nil {
			var ce *gwebsocket.CloseError
			if errors.As(err, &ce) {
				return nil
			}
			return err
		} else {
			frames <- frame{data: b}
		}
	}
}
