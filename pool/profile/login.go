package profile

import (
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podgate/podgate/scheduler"
	"github.com/podgate/podgate/sshfront/auth"
)

// Annotations about logging in and what a session may do or leaves behind.
const (
	// AnnBanner is shown before authentication to a login that names the
	// profile as user+profile (when the profile is user-selectable).
	AnnBanner = "podgate.io/banner"
	// AnnMOTD is written to interactive terminal sessions after login,
	// with {user} and {profile} substituted.
	AnnMOTD = "podgate.io/motd"
	// AnnDisableCommand makes the profile file-transfer only: shell and
	// exec are refused, subsystems (sftp) run.
	AnnDisableCommand = "podgate.io/disable-command"
	// AnnRecord is off, output or input: what of each terminal session
	// is recorded as an asciinema cast.
	AnnRecord = "podgate.io/record"
	// AnnRecordMaxSize bounds one recording, as a quantity such as 50Mi.
	AnnRecordMaxSize = "podgate.io/record-max-size"
	// AnnUserCAKeys lists CA public keys (TrustedUserCAKeys format) whose
	// certificates log into this profile and no other.
	AnnUserCAKeys = "podgate.io/user-ca-keys"
)

// MaxRecordBytes bounds any one recording's size limit.
const MaxRecordBytes = 64 << 30

// Access is what a profile says about logging in that the scheduler does
// not need.
type Access struct {
	// Banner is the pre-authentication banner for logins that name the
	// profile; empty shows the server's banner.
	Banner string
	// UserCAKeys are CAs whose certificates log into this profile only.
	UserCAKeys []ssh.PublicKey
}

// LoginDefaults are the login settings a PodTemplate profile inherits from
// the operator's configuration unless it annotates its own.
type LoginDefaults struct {
	MOTD           string
	DisableCommand bool
	Record         scheduler.RecordMode
}

// parseLoginAnnotation reads one annotation of this file into p; known is
// false for a key it does not handle.
func parseLoginAnnotation(p *Profile, k, v string) (known bool, err error) {
	switch k {
	case AnnBanner:
		p.Banner = NormalizeMessage(v)
		err = CheckMessage(p.Banner, false)
	case AnnMOTD:
		p.MOTD = NormalizeMessage(v)
		err = CheckMessage(p.MOTD, true)
	case AnnDisableCommand:
		p.DisableCommand, err = strconv.ParseBool(v)
	case AnnRecord:
		p.Record, err = ParseRecordMode(v)
	case AnnRecordMaxSize:
		p.RecordMaxBytes, err = ParseRecordSize(v)
	case AnnUserCAKeys:
		p.UserCAKeys, err = auth.ParseCAKeys([]byte(v))
	default:
		return false, nil
	}
	return true, err
}

// ParseRecordMode reads off, output or input.
func ParseRecordMode(v string) (scheduler.RecordMode, error) {
	switch m := scheduler.RecordMode(v); m {
	case scheduler.RecordOff, scheduler.RecordOutput, scheduler.RecordInput:
		return m, nil
	}
	return "", fmt.Errorf("%q is not off, output or input", v)
}

// ParseRecordSize reads a size limit such as 50Mi.
func ParseRecordSize(v string) (int64, error) {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a quantity such as 50Mi", v)
	}
	n, ok := q.AsInt64()
	if !ok || n < 4096 || n > MaxRecordBytes {
		return 0, fmt.Errorf("%s is outside 4Ki..64Gi", v)
	}
	return n, nil
}

// checkLogin validates the settings of this file that depend on others.
func checkLogin(p *Profile) error {
	if p.DisableCommand && len(p.Subsystems) == 0 {
		return errors.New("disable-command leaves nothing to run: the profile has no subsystems")
	}
	return nil
}

// Banner returns the pre-authentication banner of the profile a login
// names, or "" when the profile has none, is invalid, or cannot be chosen
// by login name (a stranger learns nothing about profiles it cannot pick).
func (s *Store) Banner(profile string) string {
	e, ok := s.Get(profile)
	if !ok || e.Profile == nil || !e.Profile.UserSelectable {
		return ""
	}
	return e.Profile.Banner
}

// ProfilesTrusting returns the valid profiles whose podgate.io/user-ca-keys
// list ca; it implements auth.ProfileCAs.
func (s *Store) ProfilesTrusting(ca ssh.PublicKey) []string {
	want := string(ca.Marshal())
	var names []string
	for _, p := range s.Valid() {
		for _, k := range p.UserCAKeys {
			if string(k.Marshal()) == want {
				names = append(names, p.Name)
				break
			}
		}
	}
	return names
}

var _ auth.ProfileCAs = (*Store)(nil)
