// Package kube is podgate's Kubernetes adapter for everything that is not a
// plain object read or write: it builds the process's REST config, runs
// commands in pods over the API server's streaming exec endpoint, opens TCP
// streams into pods over port forwarding, and keeps the SSH host key in a
// Secret.
//
// Executor implements scheduler.Execer. Its central trick is the prepared
// stream: an exec of a tiny POSIX sh wrapper opened before any user needs
// it, which announces itself and then waits on stdin for a length-framed,
// fully quoted command spec. Handing a user's command to a prepared stream
// costs one write instead of an API round trip, a kubelet round trip and a
// container-runtime exec. wrapper.go describes the wrapper and its framing;
// stream.go the stream's life; executor.go transports, exit statuses and
// signals; portforward.go DialTCP.
package kube
