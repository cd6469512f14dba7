package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/pkg/sftp"
)

// Transfer is one throughput measurement.
type Transfer struct {
	Name    string
	Bytes   int64
	Elapsed time.Duration
	// Verified says the bytes that came back hash like those sent.
	Verified bool
	Err      string
}

// MBps is the rate in MB/s (10^6 bytes).
func (t Transfer) MBps() float64 {
	if t.Elapsed <= 0 {
		return 0
	}
	return float64(t.Bytes) / 1e6 / t.Elapsed.Seconds()
}

// payload is size deterministic pseudo-random bytes (incompressible, so
// nothing on the way can cheat).
func payload(size int64, seed uint64) io.Reader {
	var key [32]byte
	key[0] = byte(seed)
	return io.LimitReader(rand.NewChaCha8(key), size)
}

func payloadSum(size int64, seed uint64) []byte {
	h := sha256.New()
	_, _ = io.Copy(h, payload(size, seed))
	return h.Sum(nil)
}

// Throughput is scenario 7: c.ThroughputMB through `cat` (sent and read
// back at once over one session), then an sftp upload and a download of
// the same size, then downloads of the uploaded file through ssh -L
// channels (see forwardTransfers), each checked by SHA-256.
func (r *Runner) Throughput(ctx context.Context, c Config) ([]Transfer, error) {
	ns, del, err := r.namespace(ctx, "throughput")
	if err != nil {
		return nil, err
	}
	defer del()
	pg, err := r.start(ctx, ns, "throughput", 1, "PODGATE_POOL_MIN=1", "PODGATE_POOL_MAX=3",
		"PODGATE_PORT_FORWARDING=true", "PODGATE_FORWARD_ALLOW=0.0.0.0/0:"+benchHTTPPort)
	if err != nil {
		return nil, err
	}
	defer pg.stop()
	size := int64(c.ThroughputMB) * 1e6
	r.Progress.Step(fmt.Sprintf("throughput %d MB: cat, sftp up, sftp down, ssh -L to the pod and through the relay", c.ThroughputMB), 5)
	conn, err := pg.dialer.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// The connection's claim starts a replacement pod; the transfers wait
	// until it is Ready and nothing else starts or stops, so that they
	// measure the stream and not a pod start sharing the CPUs.
	if err := r.waitSettled(ctx, pg, ns, 1, 1, 2*time.Minute); err != nil {
		return nil, err
	}
	want := payloadSum(size, 1)
	out := []Transfer{catTransfer(conn, size, want)}
	r.Progress.Add(1, 1)
	up, down := sftpTransfers(conn, size, want)
	r.Progress.Add(2, 2)
	fwd := forwardTransfers(conn, size, want)
	r.Progress.Add(2, 2)
	return append(append(out, up, down), fwd...), nil
}

// catTransfer pipes size bytes through cat and hashes what comes back.
func catTransfer(conn *Conn, size int64, want []byte) Transfer {
	t := Transfer{Name: "cat", Bytes: size}
	sess, err := conn.Client.NewSession()
	if err != nil {
		t.Err = err.Error()
		return t
	}
	defer sess.Close()
	h := sha256.New()
	sess.Stdout = h
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Err = err.Error()
		return t
	}
	start := time.Now()
	if err := sess.Start("cat"); err != nil {
		t.Err = err.Error()
		return t
	}
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(stdin, payload(size, 1))
		stdin.Close()
		werr <- err
	}()
	err = sess.Wait()
	t.Elapsed = time.Since(start)
	if e := <-werr; e != nil && err == nil {
		err = e
	}
	if err != nil {
		t.Err = err.Error()
	}
	t.Verified = bytes.Equal(h.Sum(nil), want)
	return t
}

// sftpTransfers uploads size bytes to /tmp in the pod and downloads them.
func sftpTransfers(conn *Conn, size int64, want []byte) (up, down Transfer) {
	up, down = Transfer{Name: "sftp upload", Bytes: size}, Transfer{Name: "sftp download", Bytes: size}
	cl, err := sftp.NewClient(conn.Client, sftp.UseConcurrentWrites(true), sftp.UseConcurrentReads(true))
	if err != nil {
		up.Err, down.Err = err.Error(), err.Error()
		return
	}
	defer cl.Close()
	const path = "/tmp/podgate-bench.bin"
	start := time.Now()
	f, err := cl.Create(path)
	if err == nil {
		_, err = f.ReadFrom(payload(size, 1))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	up.Elapsed = time.Since(start)
	if err != nil {
		up.Err = err.Error()
		down.Err = "no upload"
		return
	}
	start = time.Now()
	h := sha256.New()
	f, err = cl.Open(path)
	var n int64
	if err == nil {
		n, err = f.WriteTo(h)
		f.Close()
	}
	down.Elapsed = time.Since(start)
	if err != nil {
		down.Err = err.Error()
		return
	}
	// The download's hash checks the upload and the download together.
	// The file stays for forwardTransfers.
	ok := n == size && bytes.Equal(h.Sum(nil), want)
	up.Verified, down.Verified = ok, ok
	return
}

// benchHTTPPort is where forwardTransfers serves the uploaded file.
const benchHTTPPort = "8080"

// forwardTransfers downloads the file sftpTransfers left in /tmp from
// BusyBox httpd in the pod, over a direct-tcpip channel (what ssh -L
// opens) twice: to localhost, which podgate serves with the pod's own
// port-forward, and to the pod's address, which it serves with the relay
// exec'd in the pod (connecting back to the same pod, so both carry the
// same bytes from the same server). It removes the file afterwards.
func forwardTransfers(conn *Conn, size int64, want []byte) []Transfer {
	out := []Transfer{{Name: "ssh -L, pod port-forward", Bytes: size}, {Name: "ssh -L, relay in the pod", Bytes: size}}
	defer func() { _ = runIn(conn, "rm -f /tmp/podgate-bench.bin") }()
	// Without -f httpd returns once it listens, and keeps serving.
	var ip bytes.Buffer
	if err := runOut(conn, "busybox httpd -p "+benchHTTPPort+" -h /tmp && hostname -i", &ip); err != nil {
		out[0].Err, out[1].Err = err.Error(), err.Error()
		return out
	}
	addr := strings.Fields(ip.String())
	if len(addr) == 0 {
		out[0].Err, out[1].Err = "no pod address", "no pod address"
		return out
	}
	for i, host := range []string{"localhost", addr[0]} {
		out[i] = httpTransfer(conn, out[i], net.JoinHostPort(host, benchHTTPPort), want)
	}
	return out
}

// httpTransfer GETs the bench file from hostport through a direct-tcpip
// channel and hashes the body.
func httpTransfer(conn *Conn, t Transfer, hostport string, want []byte) Transfer {
	start := time.Now()
	c, err := conn.Client.Dial("tcp", hostport)
	if err != nil {
		t.Err = err.Error()
		return t
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /podgate-bench.bin HTTP/1.0\r\n\r\n"); err != nil {
		t.Err = err.Error()
		return t
	}
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Err = "reading the response header: " + err.Error()
			return t
		}
		if line == "\r\n" {
			break
		}
	}
	h := sha256.New()
	n, err := io.Copy(h, br)
	t.Elapsed = time.Since(start)
	if err != nil {
		t.Err = err.Error()
	}
	t.Verified = n == t.Bytes && bytes.Equal(h.Sum(nil), want)
	return t
}

// runIn runs cmd in a new session of conn.
func runIn(conn *Conn, cmd string) error { return runOut(conn, cmd, io.Discard) }

// runOut runs cmd in a new session of conn, its stdout to w.
func runOut(conn *Conn, cmd string, w io.Writer) error {
	sess, err := conn.Client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.Stdout = w
	return sess.Run(cmd)
}
