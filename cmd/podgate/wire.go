package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/podgate/podgate/guestcheck"
	"github.com/podgate/podgate/kube"
	"github.com/podgate/podgate/kube/kubemetrics"
	"github.com/podgate/podgate/pool"
	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
	"github.com/podgate/podgate/sshfront"
	"github.com/podgate/podgate/sshfront/auth"
	"github.com/podgate/podgate/sshfront/recording"
)

// informerFactory is what start needs of client-go's typed and metadata
// informer factories.
type informerFactory interface {
	Start(stopCh <-chan struct{})
	Shutdown()
}

// app is podgate's wired components.
type app struct {
	replica   string
	health    *Health
	ssh       *sshfront.Server
	factories []informerFactory
	synced    []cache.InformerSynced
	store     *profile.Store
	pool      *pool.Pool
	sched     *scheduler.Scheduler
	guest     *guestcheck.Checker
	records   *recording.Dir // nil when sessions are not recorded
	events    *kube.Events
}

// wire builds every component from cfg, with one shared client (and so one
// rate limiter) for the whole process. It touches the cluster only to load
// the host key from its Secret, when one is configured.
func wire(ctx context.Context, cfg Config, log, audit *slog.Logger) (*app, error) {
	reg := prometheus.NewRegistry()
	if err := kubemetrics.Install(reg); err != nil {
		return nil, fmt.Errorf("installing client-go metrics: %w", err)
	}
	restCfg, err := kube.RESTConfig(kube.ClientConfig{
		Kubeconfig: cfg.Kube.Kubeconfig, Context: cfg.Kube.Context, Host: cfg.Kube.Host,
		Token: cfg.Kube.Token, TokenFile: cfg.Kube.TokenFile, CAFile: cfg.Kube.CAFile,
		CertFile: cfg.Kube.CertFile, KeyFile: cfg.Kube.KeyFile,
		QPS: cfg.Kube.QPS, Burst: cfg.Kube.Burst,
	})
	if err != nil {
		return nil, fmt.Errorf("configuring the kubernetes client: %w", err)
	}
	// Every client below, exec streams included, counts its writes and
	// the requests each login waits for through this one transport.
	writes, err := kubemetrics.NewWrites(reg)
	if err != nil {
		return nil, fmt.Errorf("installing client-go metrics: %w", err)
	}
	restCfg.Wrap(writes.CountingTransport)
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("creating the kubernetes client: %w", err)
	}
	ns := cfg.Kube.Namespace
	a := &app{replica: replicaID(cfg.Pool.ReplicaID)}

	// One factory per label selector: each informer lists and watches only
	// podgate's own objects in the guest namespace.
	scoped := func(selector string) informers.SharedInformerFactory {
		f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
		a.factories = append(a.factories, f)
		return f
	}
	podInf := scoped(pool.ManagedSelector).Core().V1().Pods().Informer()
	leaseInf := scoped(pool.ReplicaSelector).Coordination().V1().Leases().Informer()
	tmplInf := scoped(profile.LabelProfile).Core().V1().PodTemplates().Informer()
	a.synced = []cache.InformerSynced{podInf.HasSynced, leaseInf.HasSynced, tmplInf.HasSynced}

	sftp := cfg.Profile.SFTPPath
	if sftp == SFTPNone {
		sftp = "-"
	}
	home := cfg.Profile.GuestHome
	if home == HomeNone {
		home = ""
	}
	login, err := loadLogin(cfg, log)
	if err != nil {
		return nil, err
	}
	clk := clock.RealClock{}
	if cfg.Record.Dir != "" {
		maxBytes, _ := cfg.Record.MaxSize.AsInt64() // range-checked by LoadConfig
		a.records, err = recording.NewDir(recording.Config{Path: cfg.Record.Dir, MaxBytes: maxBytes, MaxAge: cfg.Record.MaxAge}, clk, log, reg)
		if err != nil {
			return nil, fmt.Errorf("PODGATE_RECORD_DIR: %w", err)
		}
	}
	def, err := profile.FromConfig(profile.DefaultProfileConfig{
		Image: cfg.Profile.Image, IdleCommand: cfg.Profile.IdleCommand,
		ImagePullPolicy: corev1.PullPolicy(cfg.Profile.PullPolicy), ImagePullSecrets: cfg.Profile.PullSecrets,
		PoolMin: cfg.Profile.PoolMin, PoolMax: cfg.Profile.PoolMax, NoGrow: !cfg.Profile.PoolGrow, Mode: cfg.Profile.Mode,
		Shell: cfg.Profile.Shell, ExecWrapper: cfg.Profile.ExecWrapper, SFTPServer: sftp,
		EnvAllow: cfg.Profile.EnvAllow, PortForwarding: cfg.Profile.PortForwarding, ForwardAllow: cfg.Profile.ForwardAllow,
		IdleTimeout: cfg.Profile.IdleTimeout, MaxSession: cfg.Profile.MaxSession,
		MaxWait: cfg.Profile.MaxWait, ReconnectWindow: cfg.Profile.ReconnectWindow,
		MaxPerUser: cfg.Limits.MaxPodsPerUser,
		CPURequest: cfg.Limits.CPURequest.String(), CPULimit: cfg.Limits.CPULimit.String(),
		MemRequest: cfg.Limits.MemoryRequest.String(), MemLimit: cfg.Limits.MemoryLimit.String(),
		EphemeralLimit: cfg.Limits.EphemeralLimit.String(), Home: home, ReadOnlyRoot: cfg.Profile.ReadOnlyRoot,
		MOTD: login.motd, DisableCommand: cfg.Profile.DisableCommand, Record: cfg.Profile.Record,
	})
	if err != nil {
		return nil, err
	}
	if a.store, err = profile.NewStore(def, tmplInf, log, requireRecordDir(a.records)); err != nil {
		return nil, err
	}
	pullSecrets, secretFactories, err := kube.PullSecretInformers(restCfg, ns, cfg.Profile.PullSecrets)
	if err != nil {
		return nil, err
	}
	for _, f := range secretFactories {
		a.factories = append(a.factories, f)
	}
	if len(pullSecrets) > 0 {
		if err := a.store.WatchPullSecrets(pullSecrets); err != nil {
			return nil, err
		}
	}
	execer, err := kube.NewExecutor(restCfg, cs.CoreV1(), log)
	if err != nil {
		return nil, err
	}
	// One recorder for the process: Events on guest pods, written in the
	// background through the shared client.
	a.events = kube.NewEvents(cs.EventsV1(), cfg.Ops.PodEvents, eventsFlushTimeout, log)
	a.pool, err = pool.New(cs, podInf, leaseInf, a.store, execer, clk, log, reg, pool.Options{
		Namespace: ns, ReplicaID: a.replica,
		LivenessLeaseDuration: cfg.Pool.LeaseDuration, LeaderLeaseDuration: cfg.Pool.LeaseDuration,
		ReadyTimeout: cfg.Pool.ReadyTimeout, MaxIdleAge: cfg.Pool.MaxIdleAge,
		MaxConcurrentCreates: cfg.Pool.MaxCreating,
		MaxStarting:          cfg.Pool.MaxStarting,
		// Claims fail at once with "cluster unavailable" while the API
		// server refuses connections or reports itself unhealthy.
		APIProbe: func(ctx context.Context) error {
			_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			return err
		},
		Events: a.events,
	})
	if err != nil {
		return nil, err
	}
	// The sandbox self-check shares the pod informer and the executor;
	// it reports through metrics and logs only, never through /readyz.
	if a.guest, err = guestcheck.New(podInf, a.store, execer, log, reg); err != nil {
		return nil, err
	}
	// PODGATE_MAX_WAITING=0 lets no login wait; the scheduler spells that
	// as a negative bound, its zero meaning unbounded.
	maxWaiting := cfg.Limits.MaxWaiting
	if maxWaiting == 0 {
		maxWaiting = -1
	}
	if a.sched, err = scheduler.New(a.pool, execer, clk, log, reg, scheduler.Options{
		MaxWaiting: maxWaiting, Events: a.events,
		// Reconnect windows park pods in the cluster, through the pool.
		Parking: a.pool, MaxReconnectWindow: cfg.Profile.MaxReconnectWindow,
	}); err != nil {
		return nil, err
	}

	var keyStore sshfront.KeyStore
	switch {
	case cfg.SSH.HostKeySecret != "":
		keyStore = kube.NewSecretKeyStore(cs.CoreV1(), cfg.SSH.HostKeyNamespace, cfg.SSH.HostKeySecret, log)
	case cfg.SSH.HostKeyPath != "":
		keyStore = sshfront.FileKeyStore{Path: cfg.SSH.HostKeyPath}
	}
	hostKeys, err := sshfront.LoadHostKeys(ctx, cfg.SSH.HostKeyFiles, keyStore, log)
	if err != nil {
		return nil, fmt.Errorf("loading host keys: %w", err)
	}
	authn, err := authenticators(cfg.Auth, log)
	if err != nil {
		return nil, err
	}
	authn = withRevocations(authn, login, clk, log)
	certs, err := certificates(cfg.Auth, login, a.store, clk, log)
	if err != nil {
		return nil, err
	}
	if certs != nil { // never a typed nil in the interface
		authn.Certificate = certs
	}
	a.ssh, err = sshfront.New(sshfront.Config{
		HostKeys: hostKeys, HandshakeTimeout: cfg.SSH.HandshakeTimeout, MaxAuthTries: cfg.SSH.MaxAuthTries,
		MaxPreAuth: cfg.SSH.MaxPreauth, MaxConnections: cfg.SSH.MaxConnections,
		MaxConnectionsPerIP: cfg.SSH.MaxConnectionsPerIP, MaxConnectionsPerUser: cfg.SSH.MaxConnectionsPerUser,
		KeepaliveInterval: keepalive(cfg.SSH), KeepaliveMaxMissed: cfg.SSH.KeepaliveCount,
		Throttle: auth.ThrottleConfig{MaxFailures: cfg.Auth.ThrottleFailures, Window: cfg.Auth.ThrottleWindow},
		Demo:     cfg.Auth.Mode == AuthDemo, DemoInsecure: cfg.Auth.DemoInsecure,
		Banner: login.banner, ProfileBanner: a.store.Banner, Recordings: a.records,
	}, a.sched, authn, log, audit, reg)
	if err != nil {
		return nil, err
	}

	if a.health, err = NewHealth(cfg.Ops.MetricsAddr, reg, log); err != nil {
		return nil, err
	}
	if cfg.Ops.Pprof {
		a.health.EnableProfiling()
	}
	a.health.AddReadinessCheck("informers", func(context.Context) error {
		for _, s := range a.synced {
			if !s() {
				return errors.New("informers not synced")
			}
		}
		return nil
	})
	a.health.AddReadinessCheck("api", func(ctx context.Context) error {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
	return a, nil
}

// eventsFlushTimeout bounds how long shutdown waits for Events still
// being written.
const eventsFlushTimeout = 5 * time.Second

// start runs the informers and the long-lived components until ctx ends.
func (a *app) start(ctx context.Context) (err error) {
	for _, f := range a.factories {
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range a.factories {
			f.Shutdown()
		}
	}()
	// The event recorder outlives the components that record Events, so
	// that the last of them (pods released at shutdown) are written: it
	// stops, flushing, only once they have all returned.
	eventsCtx, stopEvents := context.WithCancel(context.Background())
	eventsDone := make(chan error, 1)
	go func() { eventsDone <- a.events.Run(eventsCtx) }()
	defer func() {
		stopEvents()
		err = errors.Join(err, <-eventsDone)
	}()
	// The first component to fail stops the others, so that podgate
	// exits instead of serving with, say, no pool leader.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.store.Run(gctx) })
	g.Go(func() error { return a.pool.Run(gctx) })
	g.Go(func() error { return a.sched.Run(gctx) })
	g.Go(func() error { return a.guest.Run(gctx) })
	if a.records != nil {
		g.Go(func() error { return a.records.Run(gctx) })
	}
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// waitSynced blocks until every informer's cache is synced.
func (a *app) waitSynced(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), a.synced...) {
		return fmt.Errorf("waiting for informer caches: %w", ctx.Err())
	}
	return nil
}

func authenticators(c AuthConfig, log *slog.Logger) (sshfront.Authenticators, error) {
	switch c.Mode {
	case AuthDemo:
		// sshfront's Demo setting accepts everyone itself.
		return sshfront.Authenticators{}, nil
	case AuthCerts:
		// certificates adds the only method.
		return sshfront.Authenticators{}, nil
	case AuthWebhook:
		w, err := auth.NewWebhook(auth.WebhookConfig{
			URL: c.WebhookURL, Timeout: c.WebhookTimeout, Retries: c.WebhookRetries,
			CAFile: c.WebhookCAFile, CertFile: c.WebhookCertFile, KeyFile: c.WebhookKeyFile,
		}, log)
		if err != nil {
			return sshfront.Authenticators{}, err
		}
		return sshfront.Authenticators{PublicKey: w, Password: w}, nil
	default:
		var k *auth.Keys
		var err error
		if fi, serr := os.Stat(c.AuthorizedKeys); serr == nil && fi.IsDir() {
			k, err = auth.NewKeysDir(c.AuthorizedKeys, log)
		} else {
			k, err = auth.NewKeysFile(c.AuthorizedKeys, log)
		}
		if err != nil {
			return sshfront.Authenticators{}, fmt.Errorf("loading authorized keys: %w", err)
		}
		return sshfront.Authenticators{PublicKey: k}, nil
	}
}

// keepalive maps "0s disables" to sshfront's negative interval.
func keepalive(c SSHConfig) time.Duration {
	if c.KeepaliveInterval == 0 {
		return -1
	}
	return c.KeepaliveInterval
}

// replicaID is the configured id, or the host name (the pod name in
// Kubernetes) made into a valid label value.
func replicaID(configured string) string {
	if configured != "" {
		return configured
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "podgate"
	}
	h = strings.ToLower(h)
	if len(h) > 63 {
		h = h[:63]
	}
	return strings.Trim(h, "-.")
}
