package profile

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Entry is a profile as the store knows it: either a valid profile or the
// error that makes it unusable (then Profile is nil). An invalid profile is
// kept, not dropped, so that users get "profile cannot start" rather than
// "unknown profile" and operators see the reason.
type Entry struct {
	Name    string
	Profile *Profile
	Err     error
}

// Store serves the current set of profiles: the default profile from
// configuration plus one per PodTemplate labelled podgate.io/profile, kept
// current by a PodTemplate informer so that profiles come and go without a
// restart.
type Store struct {
	informer cache.SharedIndexInformer
	log      *slog.Logger
	def      *Profile
	// checks are the server's own conditions on a template profile, such
	// as "recording needs a recording directory"; see NewStore.
	checks []func(*Profile) error
	// secrets watch the default profile's image pull secrets, by name;
	// set before Run by WatchPullSecrets, read-only after.
	secrets map[string]cache.SharedIndexInformer

	// mu protects the following.
	mu      sync.Mutex
	entries map[string]Entry
	// changed is closed and replaced on every change; see Changed.
	changed chan struct{}
}

// NewStore returns a store serving def plus the profiles in templates, an
// informer over PodTemplates in the guest namespace, label-scoped to
// podgate.io/profile. def may be nil when all profiles come from templates.
// A template profile that fails one of checks (settings the server cannot
// honour) is invalid like one with a bad annotation.
func NewStore(def *Profile, templates cache.SharedIndexInformer, log *slog.Logger, checks ...func(*Profile) error) (*Store, error) {
	s := &Store{informer: templates, log: log, def: def, checks: checks, changed: make(chan struct{})}
	s.entries = s.build(nil)
	_, err := templates.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.rebuild() },
		UpdateFunc: func(any, any) { s.rebuild() },
		DeleteFunc: func(any) { s.rebuild() },
	})
	if err != nil {
		return nil, fmt.Errorf("watching pod templates: %w", err)
	}
	return s, nil
}

// Run waits for the template cache to sync and then until ctx ends. The
// informer itself is started by its factory.
func (s *Store) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced, s.pullSecretsSynced) {
		return fmt.Errorf("waiting for pod template and pull secret caches (pull secrets %v): %w", s.pullSecretNames(), ctx.Err())
	}
	s.rebuild()
	<-ctx.Done()
	return nil
}

// HasSynced reports whether the templates have been listed once.
func (s *Store) HasSynced() bool { return s.informer.HasSynced() }

// Get returns the entry for a profile name; "" names the default profile.
func (s *Store) Get(name string) (Entry, bool) {
	if name == "" {
		name = s.DefaultName()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[name]
	return e, ok
}

// inherited is what PodTemplate profiles inherit: the default profile's
// defaults, or fallbackDefaults when there is no default profile.
func (s *Store) inherited() Defaults {
	if s.def == nil {
		return fallbackDefaults()
	}
	return s.def.Defaults
}

// DefaultName returns the name an empty profile selection resolves to.
func (s *Store) DefaultName() string {
	if s.def == nil {
		return DefaultName
	}
	return s.def.Name
}

// Valid returns every usable profile, sorted by name.
func (s *Store) Valid() []*Profile {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Profile
	for _, n := range slices.Sorted(maps.Keys(s.entries)) {
		if p := s.entries[n].Profile; p != nil {
			out = append(out, p)
		}
	}
	return out
}

// Changed returns a channel that is closed at the next change to the set of
// profiles; call it again after each close.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// rebuild recomputes every entry from the informer's cache. Templates are
// few, so rebuilding all of them keeps duplicate and removal handling simple.
func (s *Store) rebuild() {
	var pts []*corev1.PodTemplate
	for _, o := range s.informer.GetStore().List() {
		if pt, ok := o.(*corev1.PodTemplate); ok {
			pts = append(pts, pt)
		}
	}
	entries := s.build(pts)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = entries
	close(s.changed)
	s.changed = make(chan struct{})
}

// build parses templates into entries. When two templates claim the same
// profile name, the one with the smaller object name wins and the other is
// reported; a template named like the default profile replaces it.
func (s *Store) build(pts []*corev1.PodTemplate) map[string]Entry {
	entries := map[string]Entry{}
	if s.def != nil {
		entries[s.def.Name] = Entry{Name: s.def.Name, Profile: s.def}
		if err := s.checkPullSecrets(s.def); err != nil {
			s.log.Error("invalid profile", "profile", s.def.Name, "source", s.def.Source, "err", err)
			entries[s.def.Name] = Entry{Name: s.def.Name, Err: err}
		}
	}
	slices.SortFunc(pts, func(a, b *corev1.PodTemplate) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	from := map[string]string{}
	for _, pt := range pts {
		name := pt.Labels[LabelProfile]
		if prev, dup := from[name]; dup {
			s.log.Error("two pod templates define one profile; ignoring the second",
				"profile", name, "kept", prev, "ignored", pt.Name)
			continue
		}
		from[name] = pt.Name
		p, err := FromPodTemplate(pt, s.inherited())
		for _, check := range s.checks {
			if err == nil {
				if err = check(p); err != nil {
					err = fmt.Errorf("podtemplate %q: %w", pt.Name, err)
				}
			}
		}
		if err != nil {
			s.log.Error("invalid profile", "profile", name, "podtemplate", pt.Name, "err", err)
			entries[name] = Entry{Name: name, Err: err}
			continue
		}
		entries[name] = Entry{Name: name, Profile: p}
	}
	return entries
}
