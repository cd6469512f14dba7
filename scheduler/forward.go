package scheduler

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
)

// Forwarding: ssh -L and ssh -D open direct-tcpip channels to host:port.
// The user's own pod is reached through the pod's port-forward (no program in
// the image is needed); any other destination through a relay run inside the
// pod (Execer.Relay), after ForwardRules allowed it, so that the connection
// leaves from the pod and NetworkPolicy applies to it as to anything the user
// runs there. podgate itself never connects to a user's destination.

// Values of the forwards counter's labels.
const (
	forwardToPod   = "pod"
	forwardToRelay = "relay"
)

func forwardCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podgate_forward_channels_total",
		Help: "Port-forwarding channels (ssh -L, -D) by target (pod: the user's own pod; relay: a destination reached from inside it) and result (ok, denied, failed).",
	}, []string{"profile", "target", "result"})
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("registering forwarding metrics: %w", err)
	}
	return c, nil
}

// ownPod reports whether a forwarding host names the user's own pod.
func ownPod(host, podName string) bool {
	switch host {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	return host != "" && host == podName
}

// Dial serves a direct-tcpip channel of the connection; see Attachment.
func (a *connAttachment) Dial(ctx context.Context, host string, port uint16) (net.Conn, error) {
	if !a.pol.PortForwarding {
		return nil, fmt.Errorf("profile %q: %w", a.pol.Name, ErrForwardingDisabled)
	}
	// Nothing reaches a pod handed out from memory before its claim
	// record is written (see Pod.Record).
	if err := a.pod.Record.Wait(ctx); err != nil {
		return nil, err
	}
	if ownPod(host, a.pod.Ref.Name) {
		c, err := a.s.execer.DialTCP(ctx, a.pod.Ref, port)
		a.s.countForward(a.pol.Name, forwardToPod, err)
		if err != nil {
			return nil, fmt.Errorf("dialing port %d in pod %q: %w", port, a.pod.Ref.Name, err)
		}
		return c, nil
	}
	return a.s.relay(ctx, a.pol, a.pod.Ref, host, port)
}

// relay checks host:port against the profile's rules and, when they may
// allow it, has the pod connect.
func (s *Scheduler) relay(ctx context.Context, pol Policy, pod PodRef, host string, port uint16) (net.Conn, error) {
	req, err := pol.ForwardAllow.check(host, port)
	if err == nil {
		var c net.Conn
		if c, err = s.execer.Relay(ctx, pod, req.host, port, req.pick); err == nil {
			s.countForward(pol.Name, forwardToRelay, nil)
			return c, nil
		}
	}
	s.countForward(pol.Name, forwardToRelay, err)
	return nil, fmt.Errorf("profile %q: forwarding to %q port %d from pod %q: %w", pol.Name, host, port, pod.Name, err)
}

func (s *Scheduler) countForward(profile, target string, err error) {
	result := "ok"
	switch {
	case errors.Is(err, ErrForwardDenied):
		result = "denied"
	case err != nil:
		result = "failed"
	}
	s.metrics.forwards.WithLabelValues(profile, target, result).Inc()
}

// Dial is refused: in session mode no pod outlives its session.
func (a *sessionAttachment) Dial(context.Context, string, uint16) (net.Conn, error) {
	return nil, fmt.Errorf("profile %q is in session mode: %w", a.pol.Name, ErrForwardingDisabled)
}
