package localcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Component control lets fault tests stop one daemon of a running cluster
// (the API server, etcd, the kubelet, ...) and start it again without
// tearing the cluster down. The supervisor serves a unix socket in the
// state directory; a client sends one line and reads one line back:
//
//	stop NAME [MAXDOWN]   stop NAME; restart it on its own after MAXDOWN
//	start NAME            start NAME again and wait until it is ready
//	remove NAME           stop an optional daemon (KWOK) for good
//
// The answer is "ok" or "error: <reason>". A stopped daemon stays stopped
// (the supervisor does not treat its exit as a failure) until it is started
// again, MAXDOWN passes, or the cluster goes down.

// ErrNoControl is returned when the running supervisor serves no control
// socket (it predates component control); see StopComponent.
var ErrNoControl = errors.New("the cluster's supervisor serves no control socket")

// controllable names the daemons that may be stopped and started, with the
// URL that answers 200 once a restarted one is ready ("" when there is no
// such URL and being started is enough).
var controllable = map[string]string{
	"etcd":                    "http://127.0.0.1:2379/health",
	"kube-apiserver":          "https://127.0.0.1:" + apiPort + "/readyz",
	"kubelet":                 "http://127.0.0.1:10248/healthz",
	"kube-controller-manager": "",
	"kube-scheduler":          "",
	"kube-proxy":              "",
	"kube-router":             KubeRouterHealthURL,
	"kwok":                    KWOKHealthURL,
}

// optional names the daemons a cluster runs only on request; start starts
// one, and remove stops it with no restart.
var optional = map[string]bool{"kwok": true}

// unknownComponent starts the answer of a supervisor that does not know a
// daemon (one that predates it); see KWOK.
const unknownComponent = "unknown component"

// Components lists the daemons that StopComponent and StartComponent
// accept.
func Components() []string {
	return []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kube-router", "kwok"}
}

// DefaultMaxDown bounds how long a stopped daemon stays down when the
// caller names no bound, so that a test that dies before its cleanup cannot
// leave the shared cluster broken for long.
const DefaultMaxDown = 2 * time.Minute

// request is one parsed control line.
type request struct {
	verb    string // stop, start or remove
	name    string
	maxDown time.Duration // stop only; 0 means DefaultMaxDown
}

// parseRequest parses one control line; see the protocol above.
func parseRequest(line string) (request, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return request{}, fmt.Errorf("want \"stop NAME [MAXDOWN]\" or \"start NAME\", got %q", line)
	}
	r := request{verb: f[0], name: f[1]}
	if _, ok := controllable[r.name]; !ok {
		return request{}, fmt.Errorf("%s %q (want one of %s)", unknownComponent, r.name, strings.Join(Components(), ", "))
	}
	switch {
	case r.verb == "remove" && len(f) == 2 && optional[r.name]:
	case r.verb == "start" && len(f) == 2:
	case r.verb == "stop" && len(f) == 2:
	case r.verb == "stop" && len(f) == 3:
		d, err := time.ParseDuration(f[2])
		if err != nil || d <= 0 {
			return request{}, fmt.Errorf("bad MAXDOWN %q: want a positive duration", f[2])
		}
		r.maxDown = d
	default:
		return request{}, fmt.Errorf("want \"stop NAME [MAXDOWN]\", \"start NAME\" or \"remove OPTIONAL\", got %q", line)
	}
	return r, nil
}

func (r request) String() string {
	if r.verb == "stop" && r.maxDown > 0 {
		return fmt.Sprintf("stop %s %s", r.name, r.maxDown)
	}
	return r.verb + " " + r.name
}

func (o Options) controlPath() string { return o.path("run", "control.sock") }

// StopComponent stops one daemon of the running cluster; the supervisor
// starts it again on its own after maxDown (DefaultMaxDown when zero) if
// StartComponent is not called first. Stopping a stopped daemon succeeds.
// Against a supervisor without a control socket it returns ErrNoControl
// unless direct is true, in which case this process stops the daemon
// itself and StartComponent must restart it (there is no maxDown then).
func (o Options) StopComponent(ctx context.Context, name string, maxDown time.Duration, direct bool) error {
	r := request{verb: "stop", name: name, maxDown: maxDown}
	err := o.control(ctx, r)
	if errors.Is(err, ErrNoControl) && direct {
		return o.stopDirect(ctx, name)
	}
	return err
}

// StartComponent starts a stopped daemon with its original command line and
// waits until it is ready. Starting a running daemon succeeds at once.
func (o Options) StartComponent(ctx context.Context, name string) error {
	err := o.control(ctx, request{verb: "start", name: name})
	if errors.Is(err, ErrNoControl) {
		return o.startDirect(ctx, name)
	}
	return err
}

// control sends one request to the supervisor and waits for its answer.
func (o Options) control(ctx context.Context, r request) error {
	if _, ok := controllable[r.name]; !ok {
		return fmt.Errorf("%s %q (want one of %s)", unknownComponent, r.name, strings.Join(Components(), ", "))
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", o.controlPath())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w (%s)", ErrNoControl, o.controlPath())
		}
		return fmt.Errorf("dialing the cluster's control socket: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := fmt.Fprintln(c, r.String()); err != nil {
		return fmt.Errorf("sending %q: %w", r, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", r, ctx.Err())
		}
		return fmt.Errorf("reading the answer to %q: %w", r, err)
	}
	line = strings.TrimSpace(line)
	if line == "ok" {
		return nil
	}
	return fmt.Errorf("%s: %s", r, strings.TrimPrefix(line, "error: "))
}
