package auth

import (
	"context"

	"golang.org/x/crypto/ssh"
)

// Demo accepts every user with any key or password. It exists for local
// demonstrations only; sshfront refuses to serve it on a non-loopback
// address unless explicitly told to.
type Demo struct{}

// PublicKey accepts any key.
func (Demo) PublicKey(_ context.Context, req Request, _ ssh.PublicKey) (Decision, error) {
	return Decision{User: req.User, Profile: req.Profile}, nil
}

// Password accepts any password.
func (Demo) Password(_ context.Context, req Request, _ []byte) (Decision, error) {
	return Decision{User: req.User, Profile: req.Profile}, nil
}
