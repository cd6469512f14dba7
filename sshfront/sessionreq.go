package sshfront

// A session channel's requests: pty-req, env, shell, exec, subsystem,
// window-change and signal, as RFC 4254 section 6 defines them. The
// request loop here is the only goroutine that reads them; what it learns
// before the start request goes to serve through the start channel (see
// session), and after it only resizes and signals follow.

import (
	"fmt"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
)

// requests handles the channel's requests until the client closes it.
func (s *session) requests(reqs <-chan *ssh.Request, start chan<- startReq) {
	started := false
	for r := range reqs {
		ok, st := s.request(r, started)
		if r.WantReply {
			_ = r.Reply(ok, nil)
		}
		if st != nil {
			started = true
			start <- *st
		}
	}
}

// request handles one channel request. It returns the reply and, for the
// request that starts the session, what to start.
func (s *session) request(r *ssh.Request, started bool) (bool, *startReq) {
	switch r.Type {
	case "pty-req":
		pty, replaced, err := parsePtyReq(r.Payload)
		if err != nil || started {
			s.log.Info("refused pty-req", "err", err, "started", started)
			return false, nil
		}
		if s.c.auth.decision.Restrictions.NoPTY {
			s.log.Info("refused pty-req: the certificate lacks permit-pty")
			return false, nil
		}
		if replaced {
			s.log.Info("replaced invalid TERM", "term", "xterm")
		}
		s.pty = &pty
		return true, nil
	case "env":
		name, value, err := parseEnv(r.Payload)
		switch {
		case err != nil:
			s.log.Info("refused env request", "err", err)
			return false, nil
		case started || len(s.env) >= maxEnvVars:
			s.log.Info("refused environment variable", "name", name, "started", started)
			return false, nil
		}
		s.env = append(s.env, envVar{name, value})
		return true, nil
	case "shell", "exec", "subsystem":
		if started {
			s.log.Info("refused second start request", "type", r.Type)
			return false, nil
		}
		st, err := parseStart(r.Type, r.Payload)
		if err != nil {
			s.log.Info("refused start request", "type", r.Type, "err", err)
			return false, nil
		}
		return true, &st
	case "window-change":
		ws, err := parseWindowChange(r.Payload)
		if err != nil {
			s.log.Info("refused window-change", "err", err)
			return false, nil
		}
		if !started {
			if s.pty != nil {
				s.pty.Size = ws
			}
			return true, nil
		}
		s.sendResize(ws)
		if cast := s.rec.Load(); cast != nil {
			cast.Resize(ws.Cols, ws.Rows)
		}
		return true, nil
	case "signal":
		sig, err := parseSignal(r.Payload)
		if err != nil || !started {
			s.log.Info("refused signal", "err", err, "started", started)
			return false, nil
		}
		select {
		case s.signals <- sig:
		default:
			s.log.Warn("dropped signal, backend not keeping up", "signal", sig)
		}
		return true, nil
	case "x11-req", "auth-agent-req@openssh.com":
		s.log.Info("refused forwarding request", "type", r.Type)
		return false, nil
	default:
		s.log.Debug("refused channel request", "type", r.Type)
		return false, nil
	}
}

func parseStart(typ string, payload []byte) (startReq, error) {
	switch typ {
	case "exec":
		cmd, err := parseExec(payload)
		return startReq{kind: scheduler.KindExec, command: cmd}, err
	case "subsystem":
		name, err := parseSubsystem(payload)
		return startReq{kind: scheduler.KindSubsystem, subsystem: name}, err
	}
	if len(payload) != 0 {
		return startReq{}, fmt.Errorf("shell: %w", errMalformed)
	}
	return startReq{kind: scheduler.KindShell}, nil
}

// sendResize delivers ws without blocking, replacing a size the backend has
// not picked up yet: only the latest size matters. The request loop is the
// only sender, so the second send cannot fail.
func (s *session) sendResize(ws scheduler.WindowSize) {
	select {
	case s.resize <- ws:
		return
	default:
	}
	select {
	case <-s.resize:
	default:
	}
	select {
	case s.resize <- ws:
	default:
	}
}
