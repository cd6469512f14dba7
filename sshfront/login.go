package sshfront

import (
	"maps"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
	"github.com/podgate/podgate/sshfront/auth"
)

// This file holds what OpenSSH users expect around a login: the banner
// before authentication, the certificate restrictions that follow the
// connection, the message of the day, and the session environment.

// demoBanner opens the pre-auth banner in demo mode, so that a newcomer
// without an SSH key who gets a password prompt knows what to type.
const demoBanner = "podgate demo mode: any user name and ANY password (or any SSH key) log in.\n"

// authResult is what authentication decided. It travels from the callback
// that accepted the credential to the connection in that callback's
// Permissions (ExtraData), never in state the callbacks keep: the ssh
// library may call the callback for keys the client never proves it holds
// (CVE-2024-45337), and only the accepted key's Permissions reach the
// connection.
type authResult struct {
	decision auth.Decision
	keyFP    string
}

// authResultKey is authResult's key in ssh.Permissions.ExtraData.
type authResultKey struct{}

// newPermissions wraps an accepted decision for the ssh library. A
// certificate's source-address restriction is also handed to the library
// as a critical option, which it enforces once more after authentication.
func newPermissions(d auth.Decision, keyFP string) *ssh.Permissions {
	p := &ssh.Permissions{ExtraData: map[any]any{authResultKey{}: authResult{decision: d, keyFP: keyFP}}}
	if src := d.Restrictions.SourceAddress; src != "" {
		p.CriticalOptions = map[string]string{"source-address": src}
	}
	return p
}

// resultOf reads the decision back from an authenticated connection's
// Permissions.
func resultOf(p *ssh.Permissions) (authResult, bool) {
	if p == nil {
		return authResult{}, false
	}
	r, ok := p.ExtraData[authResultKey{}].(authResult)
	return r, ok
}

// banner is the pre-authentication banner for a login name: the banner of
// the profile it names, if that profile has one, else the server's, led
// by the demo notice in demo mode.
func (s *Server) banner(login string) string {
	text := s.cfg.Banner
	if s.cfg.ProfileBanner != nil {
		if _, profile, err := auth.ParseLogin(login); err == nil && profile != "" {
			if b := s.cfg.ProfileBanner(profile); b != "" {
				text = b
			}
		}
	}
	if s.cfg.Demo {
		text = demoBanner + text
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return text
}

// motd renders a profile's message of the day for a terminal: {user} and
// {profile} substituted (profile.CheckMessage allows no other
// placeholder), and CRLF line ends, since the client's terminal is raw.
func motd(text, user, profile string) string {
	if text == "" {
		return ""
	}
	text = strings.NewReplacer("{user}", user, "{profile}", profile).Replace(text)
	text = strings.ReplaceAll(strings.TrimRight(text, "\n"), "\n", "\r\n")
	return text + "\r\n"
}

// isReservedEnv reports the variables podgate sets itself; a client cannot
// send them (SendEnv), whatever the profile's allowlist says, so that
// nothing in the pod can be told it is someone else.
func isReservedEnv(name string) bool {
	switch name {
	case "USER", "LOGNAME", "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "SSH_ORIGINAL_COMMAND", "PODGATE_USER":
		return true
	}
	return false
}

// sessionEnv is the environment sshd gives a session, as podgate can know
// it: the client's and the server's addresses as podgate saw them, the
// authenticated podgate user, and USER and LOGNAME, which the pod-side
// wrapper replaces with the pod account's name when it has one (so they
// agree with whoami, HOME and file ownership; PODGATE_USER keeps the
// podgate user). SSH_TTY is set by the wrapper, which knows the terminal's
// name in the pod.
func sessionEnv(user string, remote, local net.Addr) map[string]string {
	env := map[string]string{"PODGATE_USER": user, "USER": user, "LOGNAME": user}
	rHost, rPort := hostPort(remote)
	lHost, lPort := hostPort(local)
	if rHost != "" && lHost != "" {
		env["SSH_CLIENT"] = rHost + " " + rPort + " " + lPort
		env["SSH_CONNECTION"] = rHost + " " + rPort + " " + lHost + " " + lPort
	}
	return env
}

// environment is the process's environment: the client's variables the
// profile allows, then podgate's own (see sessionEnv), which win.
// original is what the client asked to run when a certificate's
// force-command replaced it.
func (s *session) environment(settings scheduler.Settings, original string) map[string]string {
	env := s.filterEnv(settings.AllowEnv)
	maps.Copy(env, sessionEnv(s.c.id.User, s.c.sconn.RemoteAddr(), s.c.sconn.LocalAddr()))
	if original != "" {
		env["SSH_ORIGINAL_COMMAND"] = original
	}
	return env
}

// hostPort splits an address the way sshd prints it: IPv6 without
// brackets.
func hostPort(a net.Addr) (string, string) {
	if a == nil {
		return "", ""
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "", ""
	}
	return host, port
}

// forced applies a certificate's force-command to a start request: every
// session runs the command, as an exec, whatever it asked for, and the
// request it made becomes SSH_ORIGINAL_COMMAND, as in sshd.
func forced(st startReq, command string) (startReq, string) {
	original := st.command
	if st.kind == scheduler.KindSubsystem {
		original = st.subsystem
	}
	return startReq{kind: scheduler.KindExec, command: command}, original
}
