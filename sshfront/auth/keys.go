package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/ssh"
)

const (
	// recheckEvery bounds how often a key file is stat'ed: edits show up
	// within this delay without a restart, and a burst of logins costs at
	// most one stat per file per interval.
	recheckEvery = time.Second
	// maxKeyFileSize caps how much of a key file is read, so a huge or
	// endless file (a FIFO, /dev/zero) cannot exhaust memory.
	maxKeyFileSize = 4 << 20
	// maxCachedUsers bounds the per-user cache of the directory layout.
	maxCachedUsers = 4096
)

// Keys checks public keys against authorized-keys files, reloading them when
// they change. It has two layouts: a directory with one authorized_keys file
// per user (DIR/<user>), or a single file whose lines are
// "user ssh-ed25519 AAAA... comment". Lines with authorized_keys options
// (from=, command=, restrict, ...) are skipped with a warning, because
// honouring only some options would be a silent security hole.
//
// A "+profile" suffix in the login name is passed through: the scheduler
// decides whether the user may use that profile.
type Keys struct {
	dir  string // directory layout when set
	file string // single-file layout when set
	log  *slog.Logger

	// mu protects the following. File I/O happens outside it: concurrent
	// reloads of the same file are harmless, a slow disk must not serialise
	// every login.
	mu    sync.Mutex
	users *lru.Cache[string, *keySet] // directory layout, by user
	all   *keySet                     // single-file layout
}

// keySet is one file's parsed content and the stamp it was read at.
type keySet struct {
	checkedAt time.Time
	exists    bool
	modTime   time.Time
	size      int64
	byUser    map[string][]ssh.PublicKey // single-file layout
	keys      []ssh.PublicKey            // directory layout
}

// NewKeysDir returns a Keys reading dir/<user> for each user. Files are
// opened with os.OpenInRoot so that no name can escape dir.
func NewKeysDir(dir string, log *slog.Logger) (*Keys, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("opening authorized keys directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("authorized keys directory %q is not a directory", dir)
	}
	users, err := lru.New[string, *keySet](maxCachedUsers)
	if err != nil {
		return nil, fmt.Errorf("creating key cache: %w", err)
	}
	return &Keys{dir: dir, log: log, users: users}, nil
}

// NewKeysFile returns a Keys reading one file of "user key" lines.
func NewKeysFile(path string, log *slog.Logger) (*Keys, error) {
	k := &Keys{file: path, log: log}
	if _, err := k.lookup("", time.Now()); err != nil {
		return nil, fmt.Errorf("loading authorized keys file: %w", err)
	}
	return k, nil
}

// PublicKey accepts key when it is listed for req.User.
func (k *Keys) PublicKey(_ context.Context, req Request, key ssh.PublicKey) (Decision, error) {
	keys, err := k.lookup(req.User, time.Now())
	if err != nil {
		return Decision{}, err
	}
	want := key.Marshal()
	for _, c := range keys {
		if bytes.Equal(c.Marshal(), want) {
			return Decision{User: req.User, Profile: req.Profile}, nil
		}
	}
	return Decision{}, ErrDenied
}

// lookup returns user's keys, re-reading the file when its size or mtime
// changed and the last check is older than recheckEvery.
func (k *Keys) lookup(user string, now time.Time) ([]ssh.PublicKey, error) {
	k.mu.Lock()
	cur := k.all
	if k.dir != "" {
		cur, _ = k.users.Get(user)
	}
	k.mu.Unlock()
	if cur != nil && now.Sub(cur.checkedAt) < recheckEvery {
		return cur.pick(user), nil
	}

	next, err := k.load(user, cur, now)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	if k.dir != "" {
		k.users.Add(user, next)
	} else {
		k.all = next
	}
	k.mu.Unlock()
	return next.pick(user), nil
}

func (s *keySet) pick(user string) []ssh.PublicKey {
	if s.byUser != nil {
		return s.byUser[user]
	}
	return s.keys
}

// load stats the file and parses it again only if it changed since prev.
func (k *Keys) load(user string, prev *keySet, now time.Time) (*keySet, error) {
	var (
		f   *os.File
		err error
	)
	name := k.file
	if k.dir != "" {
		name = user
		f, err = os.OpenInRoot(k.dir, user)
	} else {
		f, err = os.Open(k.file)
	}
	if errors.Is(err, fs.ErrNotExist) && k.dir != "" {
		return &keySet{checkedAt: now}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening key file %q: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat key file %q: %w", name, err)
	}
	if prev != nil && prev.exists && st.ModTime().Equal(prev.modTime) && st.Size() == prev.size {
		same := *prev
		same.checkedAt = now
		return &same, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading key file %q: %w", name, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("key file %q is larger than %d bytes", name, maxKeyFileSize)
	}
	next := &keySet{checkedAt: now, exists: true, modTime: st.ModTime(), size: st.Size()}
	var skipped []string
	if k.dir != "" {
		next.keys, skipped = ParseAuthorizedKeys(data)
	} else {
		next.byUser, skipped = ParseUserKeys(data)
	}
	if len(skipped) > 0 {
		k.log.Warn("skipped lines in authorized keys file", "file", name, "count", len(skipped), "lines", skipped[:min(len(skipped), 10)])
	}
	k.log.Info("loaded authorized keys", "file", name)
	return next, nil
}
