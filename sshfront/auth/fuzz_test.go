package auth

import (
	"encoding/pem"
	"strings"
	"testing"
)

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

const seedKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFG2e2UqHeB4rz0/FZ0JzRjkWEAkyrZuv7IzM52YjHyr test"

func FuzzParseAuthorizedKeys(f *testing.F) {
	f.Add([]byte(seedKey + "\n# comment\n\n"))
	f.Add([]byte(`command="x",restrict ` + seedKey))
	f.Add([]byte("ssh-rsa AAAA\nssh-ed25519 !!!\n\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, skipped := ParseAuthorizedKeys(data)
		for _, k := range keys {
			if k == nil {
				t.Fatal("nil key returned")
			}
		}
		for _, s := range skipped {
			if !strings.HasPrefix(s, "line ") {
				t.Fatalf("skip reason %q", s)
			}
		}
	})
}

func FuzzParseUserKeys(f *testing.F) {
	f.Add([]byte("alice " + seedKey + "\nbob " + seedKey + "\n"))
	f.Add([]byte("Alice\t" + seedKey))
	f.Add([]byte("x from=\"a\" " + seedKey))
	f.Fuzz(func(t *testing.T, data []byte) {
		byUser, _ := ParseUserKeys(data)
		for u, keys := range byUser {
			if !ValidName(u) || len(keys) == 0 {
				t.Fatalf("user %q with %d keys", u, len(keys))
			}
		}
	})
}

func FuzzParseWebhookResponse(f *testing.F) {
	f.Add([]byte(`{"success":true,"authenticatedUsername":"alice","profile":"gpu"}`))
	f.Add([]byte(`{"success":false}`))
	f.Add([]byte(`{"success":"yes"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseWebhookResponse(data, Request{User: "alice", Profile: "cpu"})
		if err == nil && (!ValidName(d.User) || d.Profile != "" && !ValidName(d.Profile)) {
			t.Fatalf("accepted invalid decision %+v", d)
		}
	})
}

func FuzzParseLogin(f *testing.F) {
	for _, s := range []string{"alice", "alice+gpu", "\u212Aate", "../x", "A+B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, login string) {
		u, p, err := ParseLogin(login)
		if err != nil {
			return
		}
		if !ValidName(u) || p != "" && !ValidName(p) {
			t.Fatalf("ParseLogin(%q) = %q, %q: not canonical", login, u, p)
		}
	})
}
