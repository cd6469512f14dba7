package profile

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podgate/podgate/scheduler"
)

// Label and annotation keys on PodTemplate objects.
const (
	// LabelProfile marks a PodTemplate as a podgate profile and names it.
	LabelProfile = "podgate.io/profile"

	annotationPrefix = "podgate.io/"

	AnnPoolMin         = "podgate.io/pool-min"
	AnnPoolMax         = "podgate.io/pool-max"
	AnnMode            = "podgate.io/mode"
	AnnShell           = "podgate.io/shell"
	AnnExecWrapper     = "podgate.io/exec-wrapper"
	AnnSubsystems      = "podgate.io/subsystems"
	AnnIdleTimeout     = "podgate.io/idle-timeout"
	AnnMaxSession      = "podgate.io/max-session"
	AnnMaxWait         = "podgate.io/max-wait"
	AnnPortForwarding  = "podgate.io/port-forwarding"
	AnnAllowedUsers    = "podgate.io/allowed-users"
	AnnUserSelectable  = "podgate.io/user-selectable"
	AnnEnvAllow        = "podgate.io/env-allow"
	AnnReconnectWindow = "podgate.io/reconnect-window"
	AnnMaxPerUser      = "podgate.io/max-per-user"
	AnnMaxConnections  = "podgate.io/max-connections"
	// AnnContainer names the container sessions run in; see
	// sessionContainer.
	AnnContainer = "podgate.io/container"
	// AnnForwardAllow lists the forwarding destinations beyond the pod;
	// see scheduler.ForwardRules.
	AnnForwardAllow = "podgate.io/forward-allow"
	// AnnEphemeralStorage is the ephemeral-storage limit of the pod's
	// containers and the size of its writable emptyDirs (see Disk).
	AnnEphemeralStorage = "podgate.io/ephemeral-storage-limit"
	// AnnHome is the guest user's home directory, made a size-limited
	// emptyDir.
	AnnHome = "podgate.io/home"
	// AnnReadOnlyRoot mounts the first container's root read-only.
	AnnReadOnlyRoot = "podgate.io/read-only-root-filesystem"

	AnnAllowRoot                = "podgate.io/allow-root"
	AnnAllowServiceAccountToken = "podgate.io/allow-service-account-token"
	AnnAllowPrivilegeEscalation = "podgate.io/allow-privilege-escalation"
	AnnAllowCapabilities        = "podgate.io/allow-capabilities"
)

// maxAnnotationLen bounds what the parser reads from one annotation; the API
// server allows 256 KiB in total, far more than any sane setting.
const maxAnnotationLen = 16 << 10

// AnnotationError says which annotation of which template is wrong and why.
type AnnotationError struct {
	Template string
	Key      string
	Err      error
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("podtemplate %q: annotation %s: %v", e.Template, e.Key, e.Err)
}

func (e *AnnotationError) Unwrap() error { return e.Err }

// FromPodTemplate parses a PodTemplate into a profile that inherits d
// (the idle timeout, maximum length and wait, per-user limit, variable
// allowlist, resources and disk limit) wherever its annotations and
// containers say nothing. It never panics; on bad input it returns an
// error naming the annotation and the problem, and the caller marks the
// profile invalid.
func FromPodTemplate(pt *corev1.PodTemplate, d Defaults) (*Profile, error) {
	name := pt.Labels[LabelProfile]
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return nil, fmt.Errorf("podtemplate %q: label %s=%q: %s", pt.Name, LabelProfile, name, strings.Join(errs, "; "))
	}
	p := &Profile{
		Policy:   d.policy(name),
		Template: *pt.Template.DeepCopy(),
		Source:   "podtemplate/" + pt.Name,
	}
	disk := Disk{Limit: d.DiskLimit}
	loose, err := parseAnnotations(p, &disk, pt.Annotations)
	if err == nil {
		err = checkAnnotations(p)
	}
	if err != nil {
		var ae *AnnotationError
		if errors.As(err, &ae) {
			ae.Template = pt.Name
		}
		return nil, err
	}
	if err := finish(p, loose, d.Resources, disk); err != nil {
		return nil, fmt.Errorf("podtemplate %q: %w", pt.Name, err)
	}
	return p, nil
}

// parseAnnotations reads every podgate.io/ annotation into p. Unknown keys
// under the prefix are errors, so a typo never silently means "default".
func parseAnnotations(p *Profile, disk *Disk, ann map[string]string) (Loosening, error) {
	var l Loosening
	// Sorted so that the first error reported is deterministic.
	for _, k := range slices.Sorted(maps.Keys(ann)) {
		if !strings.HasPrefix(k, annotationPrefix) {
			continue
		}
		v := ann[k]
		if len(v) > maxAnnotationLen {
			return l, &AnnotationError{Key: k, Err: fmt.Errorf("value is %d bytes, limit %d", len(v), maxAnnotationLen)}
		}
		if err := parseOne(p, &l, disk, k, strings.TrimSpace(v)); err != nil {
			return l, &AnnotationError{Key: k, Err: err}
		}
	}
	return l, nil
}

// checkAnnotations applies the rules that involve the template or more than
// one annotation, so that their errors name the annotation too.
func checkAnnotations(p *Profile) error {
	if !p.ForwardAllow.IsZero() && !p.PortForwarding {
		return &AnnotationError{Key: AnnForwardAllow, Err: fmt.Errorf("has no effect unless %s is true", AnnPortForwarding)}
	}
	if err := checkPeaks(p.Peaks, p.PoolMin, p.PoolMax); err != nil {
		return &AnnotationError{Key: AnnPeaks, Err: err}
	}
	if p.container != "" {
		if _, err := sessionContainer(p); err != nil {
			return &AnnotationError{Key: AnnContainer, Err: err}
		}
	}
	return nil
}

func parseOne(p *Profile, l *Loosening, disk *Disk, k, v string) error {
	var err error
	switch k {
	case AnnPoolMin:
		p.PoolMin, err = parseCount(v)
	case AnnPoolMax:
		p.PoolMax, err = parseCount(v)
	case AnnPeaks:
		p.Peaks, err = ParsePeaks(v)
	case AnnMaxPerUser:
		p.MaxPerUser, err = parseCount(v)
	case AnnMaxConnections:
		p.MaxConnections, err = parseCount(v)
	case AnnMode:
		switch scheduler.Mode(v) {
		case scheduler.ModeConnection, scheduler.ModeSession:
			p.Mode = scheduler.Mode(v)
		default:
			err = fmt.Errorf("%q is not %q or %q", v, scheduler.ModeConnection, scheduler.ModeSession)
		}
	case AnnShell:
		p.Shell, err = parseArgv(v)
	case AnnExecWrapper:
		p.ExecWrapper, err = parseArgv(v)
	case AnnSubsystems:
		p.Subsystems, err = parseSubsystems(v)
	case AnnIdleTimeout:
		p.IdleTimeout, err = parseDuration(v)
	case AnnMaxSession:
		p.MaxSession, err = parseDuration(v)
	case AnnMaxWait:
		p.MaxWait, err = parseDuration(v)
	case AnnReconnectWindow:
		p.ReconnectWindow, err = parseDuration(v)
	case AnnPortForwarding:
		p.PortForwarding, err = strconv.ParseBool(v)
	case AnnForwardAllow:
		p.ForwardAllow, err = scheduler.ParseForwardRules(v)
	case AnnContainer:
		p.container = v
	case AnnUserSelectable:
		p.UserSelectable, err = strconv.ParseBool(v)
	case AnnAllowedUsers:
		p.AllowedUsers, err = parseUsers(v)
	case AnnEnvAllow:
		p.EnvAllow, err = parseEnvNames(v)
	case AnnEphemeralStorage:
		disk.Limit, err = parseDiskLimit(v)
	case AnnHome:
		disk.Home, err = parseHome(v)
	case AnnReadOnlyRoot:
		disk.ReadOnlyRoot, err = strconv.ParseBool(v)
	case AnnAllowRoot:
		l.Root, err = strconv.ParseBool(v)
	case AnnAllowServiceAccountToken:
		l.ServiceAccountToken, err = strconv.ParseBool(v)
	case AnnAllowPrivilegeEscalation:
		l.PrivilegeEscalation, err = strconv.ParseBool(v)
	case AnnAllowCapabilities:
		l.Capabilities, err = strconv.ParseBool(v)
	default:
		var known bool
		if known, err = parseLoginAnnotation(p, k, v); !known {
			err = errors.New("unknown podgate annotation")
		}
	}
	return err
}

// parseCount reads a non-negative integer no larger than maxPoolSize.
func parseCount(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", v)
	}
	if n < 0 || n > maxPoolSize {
		return 0, fmt.Errorf("%d is outside 0..%d", n, maxPoolSize)
	}
	return n, nil
}

// parseDuration reads a Go duration between zero and 30 days.
func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 90s or 10m", v)
	}
	if d < 0 || d > 30*24*time.Hour {
		return 0, fmt.Errorf("%s is outside 0..720h", d)
	}
	return d, nil
}

// parseDiskLimit reads a Kubernetes quantity such as 512Mi; "0" sets no
// limit.
func parseDiskLimit(v string) (resource.Quantity, error) {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return q, fmt.Errorf("%q is not a quantity such as 512Mi or 2Gi", v)
	}
	if q.Sign() < 0 {
		return q, fmt.Errorf("%s is negative", v)
	}
	return q, nil
}

// parseHome reads an absolute directory path other than /.
func parseHome(v string) (string, error) {
	p := path.Clean(v)
	if !path.IsAbs(p) || p == "/" || strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("%q is not an absolute directory path such as /home/user", v)
	}
	return p, nil
}

// parseArgv reads a JSON array of non-empty strings, e.g.
// ["/bin/bash","-l"]. JSON keeps arguments with spaces unambiguous.
func parseArgv(v string) ([]string, error) {
	var argv []string
	if err := json.Unmarshal([]byte(v), &argv); err != nil {
		return nil, fmt.Errorf(`want a JSON array of strings such as ["/bin/sh","-l"]: %w`, err)
	}
	if err := checkArgv(argv); err != nil {
		return nil, err
	}
	return argv, nil
}

func checkArgv(argv []string) error {
	if len(argv) == 0 {
		return errors.New("argv is empty")
	}
	if argv[0] == "" {
		return errors.New("argv[0] is empty")
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argv[%d] contains a NUL byte", i)
		}
	}
	return nil
}

// parseSubsystems reads a JSON object mapping a subsystem name to its argv,
// e.g. {"sftp":["/usr/lib/openssh/sftp-server"]}.
func parseSubsystems(v string) (map[string][]string, error) {
	var m map[string][]string
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return nil, fmt.Errorf(`want a JSON object such as {"sftp":["/usr/lib/openssh/sftp-server"]}: %w`, err)
	}
	if m == nil {
		m = map[string][]string{}
	}
	for name, argv := range m {
		if name == "" {
			return nil, errors.New("subsystem name is empty")
		}
		if err := checkArgv(argv); err != nil {
			return nil, fmt.Errorf("subsystem %q: %w", name, err)
		}
	}
	return m, nil
}

// parseUsers reads a comma-separated user list; "any" or "*" allows anyone.
func parseUsers(v string) ([]string, error) {
	var users []string
	for _, u := range strings.Split(v, ",") {
		u = strings.TrimSpace(u)
		switch u {
		case "":
			continue
		case "any", "*":
			u = "*"
		}
		users = append(users, u)
	}
	if len(users) == 0 {
		return nil, errors.New(`empty user list; use "any" to allow everyone`)
	}
	return users, nil
}

// parseEnvNames reads a comma-separated list of environment variable names.
func parseEnvNames(v string) ([]string, error) {
	var names []string
	for _, n := range strings.Split(v, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		// A trailing * makes the entry a prefix (LC_*), as for
		// PODGATE_ENV_ALLOW; the rest must still be a variable name.
		if errs := validation.IsEnvVarName(strings.TrimSuffix(n, "*")); len(errs) > 0 {
			return nil, fmt.Errorf("%q: %s", n, strings.Join(errs, "; "))
		}
		names = append(names, n)
	}
	return names, nil
}
