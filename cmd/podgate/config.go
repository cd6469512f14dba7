package main

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podgate/podgate/kube"
	"github.com/podgate/podgate/scheduler"
)

// envPrefix is prepended to every variable name in the Config tags, except
// those marked `unprefixed:"true"` (standard variables such as KUBECONFIG).
const envPrefix = "PODGATE_"

// Config is everything podgate reads from its environment. It is parsed once
// by LoadConfig, validated as a whole, and passed down as plain values, so no
// component reads the environment itself.
//
// Tags (read by LoadConfig and by `podgate env`, so code and docs never
// drift):
//
//	env         variable name without the PODGATE_ prefix
//	envDefault  default; every field has one, and a variable set to the
//	            empty string means its default (so "off" values are words)
//	desc        one or two full sentences for operators
//	enum        accepted values, separated by |
//	min         smallest accepted number or duration
//	check       file | dir | path | pathlist | hostport | dnslabel | labelvalue |
//	            dnssubdomain | forwardrules
//	unprefixed  the variable is a standard one read without the prefix
//	secret      the value is never echoed in errors
type Config struct {
	SSH     SSHConfig     `group:"SSH server"`
	Auth    AuthConfig    `group:"Authentication"`
	Kube    KubeConfig    `group:"Kubernetes API"`
	Profile ProfileConfig `group:"Default profile"`
	Pool    PoolConfig    `group:"Warm pool"`
	Limits  LimitsConfig  `group:"Limits"`
	Record  RecordConfig  `group:"Session recordings"`
	Ops     OpsConfig     `group:"Operations"`
}

// SSHConfig configures the SSH listener and the protocol limits that protect
// it before and after authentication.
type SSHConfig struct {
	Listen                string        `env:"LISTEN" envDefault:"127.0.0.1:2222" check:"hostport" desc:"Address the SSH server listens on, as host:port; use :2222 to listen on every interface."`
	HostKeyFiles          []string      `env:"HOST_KEY_FILES" envDefault:"" check:"file" desc:"Comma-separated private host key files (OpenSSH or PEM) to serve. When empty, the key comes from PODGATE_HOST_KEY_SECRET or PODGATE_HOST_KEY_PATH."`
	HostKeyPath           string        `env:"HOST_KEY_PATH" envDefault:"" desc:"File where a generated ed25519 host key is kept across restarts when no key files or Secret are configured. When empty too, the key lives in memory and changes on every start."`
	HostKeySecret         string        `env:"HOST_KEY_SECRET" envDefault:"" check:"dnslabel" desc:"Name of a Secret in PODGATE_HOST_KEY_NAMESPACE holding the host key; the first replica creates it, so every replica serves the same key. Empty disables the Secret."`
	HostKeyNamespace      string        `env:"HOST_KEY_NAMESPACE" envDefault:"podgate" check:"dnslabel" desc:"Namespace of the host key Secret, normally podgate's own namespace."`
	HandshakeTimeout      time.Duration `env:"HANDSHAKE_TIMEOUT" envDefault:"10s" min:"1s" desc:"How long a client may take from TCP accept to finished authentication before it is disconnected."`
	MaxAuthTries          int           `env:"MAX_AUTH_TRIES" envDefault:"6" min:"1" desc:"Authentication attempts allowed per connection, as in OpenSSH's MaxAuthTries."`
	KeepaliveInterval     time.Duration `env:"KEEPALIVE_INTERVAL" envDefault:"30s" min:"0s" desc:"Interval between keepalive requests to idle clients; 0s disables keepalives."`
	KeepaliveCount        int           `env:"KEEPALIVE_COUNT" envDefault:"3" min:"1" desc:"Unanswered keepalives after which a client is considered gone and disconnected."`
	MaxConnections        int           `env:"MAX_CONNECTIONS" envDefault:"1000" min:"1" desc:"Authenticated SSH connections this replica serves at once; more are refused politely."`
	MaxConnectionsPerIP   int           `env:"MAX_CONNECTIONS_PER_IP" envDefault:"20" min:"0" desc:"SSH connections allowed at once from one source address; 0 means no per-address limit."`
	MaxConnectionsPerUser int           `env:"MAX_CONNECTIONS_PER_USER" envDefault:"10" min:"0" desc:"SSH connections one user may hold at once; 0 means no per-user limit."`
	MaxPreauth            int           `env:"MAX_PREAUTH" envDefault:"64" min:"1" desc:"Connections allowed at once that have not finished authenticating, so that slow or hostile clients cannot exhaust the server."`
	BannerFile            string        `env:"BANNER_FILE" envDefault:"" check:"file" desc:"Text file shown to every client before authentication (OpenSSH prints it above the password prompt), UTF-8 without control characters other than tab and newline, at most 8 KiB. A profile's podgate.io/banner annotation replaces it for logins that name the profile. Empty shows no banner."`
}

// AuthMode selects where podgate learns who may log in.
type AuthMode string

// The accepted authentication modes; they must match the enum tag of
// AuthConfig.Mode.
const (
	AuthKeys    AuthMode = "keys"
	AuthWebhook AuthMode = "webhook"
	AuthCerts   AuthMode = "certs"
	AuthDemo    AuthMode = "demo"
)

// AuthConfig configures user authentication.
type AuthConfig struct {
	Mode             AuthMode      `env:"AUTH_MODE" envDefault:"keys" enum:"keys|webhook|certs|demo" desc:"How users are authenticated: keys reads authorized_keys files, webhook asks an HTTP service, certs accepts only SSH certificates (see PODGATE_USER_CA_KEYS), demo lets anyone in with any key or password (on loopback, or anywhere with PODGATE_DEMO_INSECURE=true). In keys and webhook modes, certificates are accepted as well."`
	AuthorizedKeys   string        `env:"AUTHORIZED_KEYS" envDefault:"/etc/podgate/authorized_keys" desc:"In keys mode, an authorized_keys file whose lines carry the user name as comment, or a directory holding one authorized_keys file per user, named after the user."`
	WebhookURL       string        `env:"AUTH_WEBHOOK_URL" envDefault:"" desc:"In webhook mode, the http(s) URL that receives each public key and answers with the user and allowed profiles."`
	WebhookTimeout   time.Duration `env:"AUTH_WEBHOOK_TIMEOUT" envDefault:"5s" min:"1ms" desc:"How long one webhook call may take before it counts as failed."`
	WebhookRetries   int           `env:"AUTH_WEBHOOK_RETRIES" envDefault:"2" min:"0" desc:"Retries of a failed webhook call (network error or 5xx) before the login is refused."`
	WebhookCAFile    string        `env:"AUTH_WEBHOOK_CA_FILE" envDefault:"" check:"file" desc:"PEM bundle of CAs trusted for the webhook's TLS certificate; empty uses the system roots."`
	WebhookCertFile  string        `env:"AUTH_WEBHOOK_CERT_FILE" envDefault:"" check:"file" desc:"Client certificate presented to the webhook (mutual TLS); needs PODGATE_AUTH_WEBHOOK_KEY_FILE."`
	WebhookKeyFile   string        `env:"AUTH_WEBHOOK_KEY_FILE" envDefault:"" check:"file" desc:"Private key of PODGATE_AUTH_WEBHOOK_CERT_FILE."`
	DemoInsecure     bool          `env:"DEMO_INSECURE" envDefault:"false" desc:"Must be true for demo mode, which accepts every user without a credential; it exists so that nobody runs demo mode by accident."`
	ThrottleFailures int           `env:"AUTH_THROTTLE_FAILURES" envDefault:"10" min:"0" desc:"Failed authentications allowed from one source address per PODGATE_AUTH_THROTTLE_WINDOW before its attempts are refused; 0 disables throttling."`
	ThrottleWindow   time.Duration `env:"AUTH_THROTTLE_WINDOW" envDefault:"1m" min:"1s" desc:"Window over which failed authentications per source address are counted."`
	UserCAKeys       string        `env:"USER_CA_KEYS" envDefault:"" check:"file" desc:"File of user CA public keys in OpenSSH's TrustedUserCAKeys format (one per line, # comments). A certificate signed by one of them logs in as the user part of the login name, which must be one of its principals, within its validity (one minute of clock skew allowed), honouring its force-command and source-address options and its permit-pty and permit-port-forwarding extensions. Profiles may trust CAs of their own (podgate.io/user-ca-keys). Empty trusts no CA here."`
	RevokedKeys      string        `env:"REVOKED_KEYS" envDefault:"" check:"file" desc:"File of revoked certificates and keys, one per line: serial: N or N-M, id: KEY-ID, key: PUBLIC-KEY, hash: SHA256:FINGERPRINT (the text form ssh-keygen -k compiles into a KRL). Re-read within a second of a change; while it cannot be read or parsed, every certificate is refused."`
}

// KubeConfig says how podgate reaches the Kubernetes API. With nothing set it
// uses the in-cluster ServiceAccount; KUBECONFIG works as for kubectl, and the
// explicit fields override either.
type KubeConfig struct {
	Kubeconfig string  `env:"KUBECONFIG" unprefixed:"true" envDefault:"" check:"pathlist" desc:"Kubeconfig file(s), colon-separated as for kubectl; empty means the in-cluster ServiceAccount."`
	Context    string  `env:"KUBE_CONTEXT" envDefault:"" desc:"Kubeconfig context to use instead of the current one."`
	Host       string  `env:"KUBE_HOST" envDefault:"" desc:"API server URL, overriding the kubeconfig or in-cluster address."`
	Token      string  `env:"KUBE_TOKEN" envDefault:"" secret:"true" desc:"Bearer token for the API server; prefer PODGATE_KUBE_TOKEN_FILE, which is re-read when it rotates."`
	TokenFile  string  `env:"KUBE_TOKEN_FILE" envDefault:"" check:"file" desc:"File holding a bearer token for the API server."`
	CAFile     string  `env:"KUBE_CA_FILE" envDefault:"" check:"file" desc:"PEM bundle of CAs trusted for the API server's certificate."`
	CertFile   string  `env:"KUBE_CERT_FILE" envDefault:"" check:"file" desc:"Client certificate for the API server; needs PODGATE_KUBE_KEY_FILE."`
	KeyFile    string  `env:"KUBE_KEY_FILE" envDefault:"" check:"file" desc:"Private key of PODGATE_KUBE_CERT_FILE."`
	QPS        float32 `env:"KUBE_QPS" envDefault:"50" min:"1" desc:"Sustained API requests per second podgate allows itself before client-side throttling."`
	Burst      int     `env:"KUBE_BURST" envDefault:"100" min:"1" desc:"API requests podgate may send in a burst above PODGATE_KUBE_QPS."`
	Namespace  string  `env:"NAMESPACE" envDefault:"podgate-guests" check:"dnslabel" desc:"Namespace where guest pods run; podgate needs rights there only."`
}

// ProfileConfig is the default profile: the pod image and the behaviour users
// get when they ask for no profile in particular.
type ProfileConfig struct {
	Image              string         `env:"IMAGE" envDefault:"localhost/podgate-debian:local" desc:"Container image of guest pods."`
	PullPolicy         string         `env:"IMAGE_PULL_POLICY" envDefault:"IfNotPresent" enum:"IfNotPresent|Always|Never" desc:"When the kubelet pulls PODGATE_IMAGE, as a container's imagePullPolicy: IfNotPresent uses an image already on the node, Always checks the registry for every pod, Never only ever uses an image already on the node."`
	PullSecrets        []string       `env:"IMAGE_PULL_SECRETS" envDefault:"" check:"dnssubdomain" desc:"Comma-separated names of Secrets of type kubernetes.io/dockerconfigjson in PODGATE_NAMESPACE holding registry credentials for PODGATE_IMAGE (the pods' imagePullSecrets). While one does not exist the default profile is refused, naming it; podgate then needs get, list and watch on those Secrets by name."`
	IdleCommand        []string       `env:"IDLE_COMMAND" envSeparator:" " envDefault:"" desc:"Command a guest container runs while it waits for a user, as space-separated words; it must keep running until the pod is deleted and should exit on SIGTERM, or every deletion waits out the grace period. Empty: a /bin/sh sleep loop that exits at once on SIGTERM."`
	PoolMin            int            `env:"POOL_MIN" envDefault:"2" min:"0" desc:"Idle pods kept warm so that logins do not wait for a pod to start."`
	PoolMax            int            `env:"POOL_MAX" envDefault:"10" min:"1" desc:"Highest idle target of the warm pool. The target follows demand: the claims per second (the higher of the rates over the last 30 s and the last 10 s) times the p90 of the last 20 pod start times, plus a margin for random arrivals (2.33 times its square root); each miss adds one more, up to twice that. Past the rate at which the cluster turns pods Ready (podgate_pool_capacity_ratio above 1) it stops growing, and quiet periods shrink it back one pod per 10 minutes. Pods in use are bounded by the connection and per-user limits, not by this."`
	PoolGrow           bool           `env:"POOL_GROW" envDefault:"true" desc:"Whether demand (claims, misses, a profile's scheduled peaks) raises the idle target above PODGATE_POOL_MIN for a while. With false the target stays at PODGATE_POOL_MIN, so PODGATE_POOL_MIN=0 means no warm pool: every login gets a pod created when it connects."`
	Mode               scheduler.Mode `env:"MODE" envDefault:"connection" enum:"connection|session" desc:"With connection, each SSH connection gets one pod shared by its sessions; with session, every session channel gets a fresh pod."`
	Shell              []string       `env:"SHELL" envSeparator:" " envDefault:"/bin/bash -l" desc:"Command run for an interactive login (ssh host), as space-separated words."`
	ExecWrapper        []string       `env:"EXEC_WRAPPER" envSeparator:" " envDefault:"/bin/sh -c" desc:"Command that runs a user's exec request (ssh host CMD), as space-separated words; the user's command is appended as one argument."`
	SFTPPath           string         `env:"SFTP_PATH" envDefault:"/usr/lib/openssh/sftp-server" desc:"Path of the SFTP server inside the image, run for the sftp subsystem; none disables SFTP."`
	EnvAllow           []string       `env:"ENV_ALLOW" envDefault:"LANG,LC_*" desc:"Comma-separated variable names a client may pass with SendEnv; a trailing * matches a prefix. PodTemplate profiles inherit it unless they set podgate.io/env-allow."`
	PortForwarding     bool           `env:"PORT_FORWARDING" envDefault:"false" desc:"Whether users may forward ports (ssh -L and -D) to their own pod and to the destinations PODGATE_FORWARD_ALLOW lists."`
	ForwardAllow       string         `env:"FORWARD_ALLOW" envDefault:"" check:"forwardrules" desc:"Destinations beyond the user's own pod that ssh -L and -D may reach, connected from inside the pod so that its NetworkPolicy applies: comma-separated DEST:PORTS rules, DEST an IPv4 address or CIDR, an IPv6 one in brackets, a host name or *.domain, PORTS a port, a range such as 8000-8999, or *. A host name rule never leads to loopback, link-local or multicast addresses unless an address rule allows them. Empty: only the pod itself. Needs PODGATE_PORT_FORWARDING=true and bash (and getent, for names) in the image."`
	IdleTimeout        time.Duration  `env:"IDLE_TIMEOUT" envDefault:"30m" min:"0s" desc:"A connection whose sessions and forwarded ports move no byte for this long is closed, including one with no session at all (ssh -N); 0s means never. PodTemplate profiles inherit it unless they set podgate.io/idle-timeout."`
	MaxSession         time.Duration  `env:"MAX_SESSION" envDefault:"8h" min:"0s" desc:"Longest a connection may last, sessions and forwarded ports included, before it is closed; 0s means no limit. PodTemplate profiles inherit it unless they set podgate.io/max-session."`
	MaxWait            time.Duration  `env:"MAX_WAIT" envDefault:"60s" min:"0s" desc:"How long a login may wait for a pod when none is free before it is refused; 0s refuses at once. PodTemplate profiles inherit it unless they set podgate.io/max-wait."`
	ReconnectWindow    time.Duration  `env:"RECONNECT_WINDOW" envDefault:"0s" min:"0s" desc:"In connection mode, how long a user's pod is kept (parked, in the cluster) after disconnecting so that a reconnect through any replica lands in the same pod; 0s deletes it at once. PodTemplate profiles set their own with podgate.io/reconnect-window (hours or days for a persistent profile). Parked pods count against PODGATE_MAX_PODS_PER_USER."`
	MaxReconnectWindow time.Duration  `env:"MAX_RECONNECT_WINDOW" envDefault:"168h" min:"0s" desc:"Longest reconnect window any profile gets, PODGATE_RECONNECT_WINDOW and podgate.io/reconnect-window alike: a longer one is cut to it. 0s sets no bound."`
	GuestHome          string         `env:"GUEST_HOME" envDefault:"/home/user" desc:"Home directory of the guest user in PODGATE_IMAGE; podgate mounts an emptyDir there, sized to PODGATE_POD_EPHEMERAL_STORAGE_LIMIT, so that it is writable on a read-only root. none mounts nothing."`
	ReadOnlyRoot       bool           `env:"READ_ONLY_ROOT" envDefault:"true" desc:"Whether the guest container's root filesystem is read-only; home, /tmp and /var/tmp stay writable as size-limited emptyDirs. Set false for an image that must write elsewhere."`

	MOTDFile       string               `env:"MOTD_FILE" envDefault:"" check:"file" desc:"Text file written to interactive terminal sessions after login (never to commands, scp or sftp), with {user} and {profile} replaced; UTF-8 without control characters other than tab and newline, at most 8 KiB. Empty writes nothing. PodTemplate profiles inherit it unless they set podgate.io/motd."`
	DisableCommand bool                 `env:"DISABLE_COMMAND" envDefault:"false" desc:"With true, profiles are for file transfer only: shells and commands are refused with a message, sftp (and scp, which runs over sftp since OpenSSH 9; not legacy scp -O) still works. PodTemplate profiles inherit it unless they set podgate.io/disable-command."`
	Record         scheduler.RecordMode `env:"RECORD" envDefault:"off" enum:"off|output|input" desc:"Which terminal sessions are recorded as asciinema casts in PODGATE_RECORD_DIR: off, output (what the terminal showed), or input (output, plus the keys the terminal echoed back; see the README). PodTemplate profiles inherit it unless they set podgate.io/record."`
}

// PoolConfig tunes how the warm pools create, age and share pods between
// replicas.
type PoolConfig struct {
	MaxCreating   int           `env:"POOL_MAX_CREATING" envDefault:"5" min:"1" desc:"Pod creations per profile in flight at once, so that a burst does not flood the API server."`
	MaxStarting   int           `env:"POOL_MAX_STARTING" envDefault:"20" min:"1" desc:"Pods per profile starting at once (created and not yet Ready), the pool's and waiting users' alike. A user who finds no idle pod while this many start waits in line for the next pod that turns Ready, or for a free slot, instead of adding a pod the node would only start more slowly."`
	ReadyTimeout  time.Duration `env:"POOL_READY_TIMEOUT" envDefault:"2m" min:"1s" desc:"How long a new pod may take to become Ready before it is deleted and counted as a failure."`
	MaxIdleAge    time.Duration `env:"POOL_MAX_IDLE_AGE" envDefault:"1h" min:"0s" desc:"Idle pods older than this are replaced, so that warm pods pick up image and node changes; 0s keeps them forever."`
	ReplicaID     string        `env:"REPLICA_ID" envDefault:"" check:"labelvalue" desc:"Name of this replica in pod labels and leases; empty means the host name, which is the pod name in Kubernetes."`
	LeaseDuration time.Duration `env:"LEASE_DURATION" envDefault:"15s" min:"1s" desc:"How long a replica's lease lasts without renewal before other replicas adopt or clean up its pods."`
}

// LimitsConfig bounds what users can take: pods per user, queue length and
// the resources of each guest container.
type LimitsConfig struct {
	MaxPodsPerUser int               `env:"MAX_PODS_PER_USER" envDefault:"3" min:"0" desc:"Pods one user may hold at once in one profile, across connections and replicas, parked ones included (PodTemplate profiles inherit it unless they set podgate.io/max-per-user); 0 means no per-user limit. Replicas admitting one user at the same moment may overshoot it briefly: see the README."`
	MaxWaiting     int               `env:"MAX_WAITING" envDefault:"100" min:"0" desc:"Logins allowed to queue for a pod at once; beyond this, logins are refused at once."`
	CPURequest     resource.Quantity `env:"POD_CPU_REQUEST" envDefault:"100m" desc:"CPU requested by each guest container, as a Kubernetes quantity; containers of PodTemplate profiles that state no CPU request get it too."`
	CPULimit       resource.Quantity `env:"POD_CPU_LIMIT" envDefault:"1" desc:"CPU limit of each guest container, as a Kubernetes quantity; containers of PodTemplate profiles that state no CPU limit get it too."`
	MemoryRequest  resource.Quantity `env:"POD_MEMORY_REQUEST" envDefault:"128Mi" desc:"Memory requested by each guest container, as a Kubernetes quantity; containers of PodTemplate profiles that state no memory request get it too."`
	MemoryLimit    resource.Quantity `env:"POD_MEMORY_LIMIT" envDefault:"512Mi" desc:"Memory limit of each guest container, as a Kubernetes quantity; containers of PodTemplate profiles that state no memory limit get it too."`
	EphemeralLimit resource.Quantity `env:"POD_EPHEMERAL_STORAGE_LIMIT" envDefault:"1Gi" desc:"Local disk a guest pod may fill (its writable layer, logs, home, /tmp and /var/tmp together) before the kubelet evicts it, as a Kubernetes quantity; each of those emptyDirs is capped at it too. PodTemplate profiles inherit it unless they set podgate.io/ephemeral-storage-limit; 0 sets no limit."`
}

// RecordConfig says where session recordings go and how long they stay.
type RecordConfig struct {
	Dir     string            `env:"RECORD_DIR" envDefault:"" check:"dir" desc:"Existing directory, writable by podgate, where recorded sessions are written, one .cast file per terminal session (named in its audit line). Needed when PODGATE_RECORD or a profile's podgate.io/record asks for recordings; profiles that do are refused without it."`
	MaxSize resource.Quantity `env:"RECORD_MAX_SIZE" envDefault:"100Mi" desc:"Largest recording of one session; at the limit the cast ends with a marker saying so and the session goes on unrecorded. A profile's podgate.io/record-max-size overrides it."`
	MaxAge  time.Duration     `env:"RECORD_MAX_AGE" envDefault:"720h" min:"0s" desc:"Recordings not written to for this long are deleted (checked every tenth of it, at least every hour); 0s keeps them forever."`
}

// LogFormat selects the slog handler.
type LogFormat string

// The accepted log formats; they must match the enum tag of OpsConfig.LogFormat.
const (
	LogText LogFormat = "text"
	LogJSON LogFormat = "json"
)

// LogLevel is a slog level by name. It is not slog.Level because that type
// accepts forms such as "INFO+2" which the docs would then have to explain.
type LogLevel string

// Level maps the name to slog's level; validation has already rejected
// anything else, which maps to info.
func (l LogLevel) Level() slog.Level {
	switch l {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// Special values of PODGATE_AUDIT_LOG. An empty value cannot mean "off":
// like every variable, an empty PODGATE_AUDIT_LOG means its default.
const (
	AuditStdout = "stdout"
	AuditOff    = "off"
)

// SFTPNone is the PODGATE_SFTP_PATH value that disables the sftp subsystem.
const SFTPNone = "none"

// HomeNone is the PODGATE_GUEST_HOME value that mounts no home volume.
const HomeNone = "none"

// OpsConfig configures what operators see: logs, the audit trail, metrics and
// health, and shutdown.
type OpsConfig struct {
	MetricsAddr   string          `env:"METRICS_ADDR" envDefault:"127.0.0.1:9090" check:"hostport" desc:"Address of the HTTP server for /metrics, /healthz and /readyz, as host:port."`
	LogFormat     LogFormat       `env:"LOG_FORMAT" envDefault:"text" enum:"text|json" desc:"Format of the operator log on standard error."`
	LogLevel      LogLevel        `env:"LOG_LEVEL" envDefault:"info" enum:"debug|info|warn|error" desc:"Least severe operator log level written."`
	AuditLog      string          `env:"AUDIT_LOG" envDefault:"stdout" desc:"Where audit events (logins, sessions, pods) go as JSON lines: stdout, a file path to append to, or off."`
	Pprof         bool            `env:"PPROF" envDefault:"false" desc:"Serve Go's /debug/pprof/ profiles (goroutines, heap, CPU) on the metrics address, for diagnosing leaks and slowness; keep the metrics address private when on."`
	DrainDeadline time.Duration   `env:"DRAIN_DEADLINE" envDefault:"1m" min:"0s" desc:"On shutdown, how long open sessions may finish before they are closed; keep it below the pod's termination grace period."`
	PodEvents     kube.EventLevel `env:"POD_EVENTS" envDefault:"pool" enum:"off|pool|all" desc:"Kubernetes Events podgate records on guest pods, for kubectl describe pod: pool (pods the pool deleted and why, pods that show a profile degraded), all (also every login's claim, park, reconnect and release: up to two more API writes per login, from the same request budget), or off."`
}

// VarError is one problem with one environment variable. Its message names
// the variable, shows the value, says what is wrong and what is accepted, on
// one line, because operators read it in `kubectl logs` of a crashing pod.
type VarError struct {
	Var     string // the variable, e.g. PODGATE_POOL_MIN
	Value   string // the value as read; ignored unless Shown
	Shown   bool   // whether Value is printed (false when unset or secret)
	Problem string // what is wrong, e.g. "not a whole number"
	Want    string // the accepted form, e.g. "e.g. 2"; may be empty
}

func (e *VarError) Error() string {
	var b strings.Builder
	b.WriteString(e.Var)
	if e.Shown {
		// %q escapes newlines and control characters, keeping one line.
		fmt.Fprintf(&b, "=%q", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	if e.Want != "" {
		b.WriteString(" (want ")
		b.WriteString(e.Want)
		b.WriteString(")")
	}
	return b.String()
}

// ConfigError lists every problem LoadConfig found, so that an operator can
// fix them all in one round. Error prints one problem per line.
type ConfigError struct {
	Problems []error
}

func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As reach each *VarError.
func (e *ConfigError) Unwrap() []error { return e.Problems }

// LoadConfig reads the configuration from environ (os.Environ's form) and
// validates it. Every problem is reported, each naming its variable; unknown
// PODGATE_ variables are problems too, because a typo would otherwise be
// silently ignored. main calls it before touching the cluster.
func LoadConfig(environ []string) (Config, error) {
	vars := configVars()
	raw := env.ToMap(environ)
	problems := unknownVars(raw, vars)

	// The parser sees every variable under the prefix; standard variables
	// such as KUBECONFIG are copied to their prefixed key, so that they are
	// read only under their standard name.
	environment := maps.Clone(raw)
	byKey := make(map[string]*envVar, len(vars))
	for i := range vars {
		v := &vars[i]
		byKey[v.parserKey()] = v
		if v.Unprefixed {
			delete(environment, v.parserKey())
			if val, ok := raw[v.Name]; ok {
				environment[v.parserKey()] = val
			}
		}
	}

	// caarlos0/env's ParseError names the Go field, not the variable. OnSet
	// runs just before a value is parsed, so the parsers below know which
	// variable they are parsing and return a *VarError naming it.
	var current *envVar
	var cfg Config
	err := env.ParseWithOptions(&cfg, env.Options{
		Environment:     environment,
		Prefix:          envPrefix,
		RequiredIfNoDef: true,
		OnSet:           func(key string, _ any, _ bool) { current = byKey[key] },
		FuncMap:         valueParsers(func() *envVar { return current }),
	})
	failed := make(map[string]bool)
	if err != nil {
		for _, p := range explainParseError(err, byKey) {
			var ve *VarError
			if errors.As(p, &ve) {
				failed[ve.Var] = true
			}
			problems = append(problems, p)
		}
	}

	// Messages quote the value as the operator wrote it (or the default),
	// not as Go prints the parsed field.
	rawOf := func(v *envVar) string {
		if val := environment[v.parserKey()]; val != "" {
			return val
		}
		return v.Default
	}
	values := reflect.ValueOf(&cfg).Elem()
	for i := range vars {
		v := &vars[i]
		if !failed[v.Name] {
			problems = append(problems, v.check(values.FieldByIndex(v.Index), rawOf(v))...)
		}
	}
	if len(problems) == 0 {
		problems = crossCheck(&cfg, vars, rawOf)
	}
	if len(problems) > 0 {
		return Config{}, &ConfigError{Problems: problems}
	}
	return cfg, nil
}

// unknownVars reports PODGATE_ variables that no field reads. Kubernetes'
// service links (PODGATE_SERVICE_HOST, PODGATE_PORT_22_TCP, ...) are let
// through in case a Service named podgate shares the namespace and
// enableServiceLinks was left on.
func unknownVars(raw map[string]string, vars []envVar) []error {
	known := make(map[string]bool, len(vars))
	for _, v := range vars {
		known[v.Name] = true
	}
	var names []string
	for name := range raw {
		if strings.HasPrefix(name, envPrefix) && !known[name] && !isServiceLink(name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	problems := make([]error, 0, len(names))
	for _, name := range names {
		problems = append(problems, &VarError{Var: name, Problem: "unknown variable", Want: `one listed by "podgate env"`})
	}
	return problems
}

func isServiceLink(name string) bool {
	rest := strings.TrimPrefix(name, envPrefix)
	return rest == "PORT" || strings.HasPrefix(rest, "SERVICE_") ||
		(strings.HasPrefix(rest, "PORT_") && len(rest) > 5 && rest[5] >= '0' && rest[5] <= '9')
}

// explainParseError turns caarlos0/env's aggregate into one error per
// variable.
func explainParseError(err error, byKey map[string]*envVar) []error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return []error{fmt.Errorf("reading environment: %w", err)}
	}
	var out []error
	for _, e := range agg.Errors {
		var ve *VarError
		var unset env.VarIsNotSetError
		var pe env.ParseError
		switch {
		case errors.As(e, &pe) && errors.As(pe.Err, &ve):
			// env.ParseError has no Unwrap, so look inside it by hand.
			out = append(out, ve)
		case errors.As(e, &unset):
			name := unset.Key
			if v := byKey[unset.Key]; v != nil {
				name = v.Name
			}
			out = append(out, &VarError{Var: name, Problem: "required but not set"})
		case errors.As(e, &pe):
			out = append(out, fmt.Errorf("reading field %s: %w", pe.Name, pe.Err))
		case errors.As(e, &ve):
			out = append(out, ve)
		default:
			out = append(out, fmt.Errorf("reading environment: %w", e))
		}
	}
	return out
}

// valueParsers returns parsers for every non-string kind in Config, whose
// errors name the variable being parsed (current) and its accepted form.
func valueParsers(current func() *envVar) map[reflect.Type]env.ParserFunc {
	fail := func(value, problem, want string) error {
		v := current()
		if v == nil {
			return &VarError{Var: "?", Value: value, Shown: true, Problem: problem, Want: want}
		}
		if ex := v.Default; ex != "" && strings.HasPrefix(want, "e.g. ") {
			want = "e.g. " + ex
		}
		return v.problem(value, problem, want)
	}
	return map[reflect.Type]env.ParserFunc{
		reflect.TypeFor[int](): func(s string) (any, error) {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return nil, fail(s, "not a whole number", "e.g. 10")
			}
			return n, nil
		},
		reflect.TypeFor[float32](): func(s string) (any, error) {
			f, err := strconv.ParseFloat(strings.TrimSpace(s), 32)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fail(s, "not a number", "e.g. 50")
			}
			return float32(f), nil
		},
		reflect.TypeFor[bool](): func(s string) (any, error) {
			b, err := strconv.ParseBool(strings.TrimSpace(s))
			if err != nil {
				return nil, fail(s, "not a boolean", "true or false")
			}
			return b, nil
		},
		reflect.TypeFor[time.Duration](): func(s string) (any, error) {
			d, err := time.ParseDuration(strings.TrimSpace(s))
			if err != nil {
				return nil, fail(s, "not a duration", "a Go duration such as 30s, 5m or 1h30m")
			}
			return d, nil
		},
		reflect.TypeFor[resource.Quantity](): func(s string) (any, error) {
			q, err := resource.ParseQuantity(strings.TrimSpace(s))
			if err != nil {
				return nil, fail(s, "not a Kubernetes quantity", "e.g. 500m, 2, 256Mi or 1Gi")
			}
			return q, nil
		},
	}
}
