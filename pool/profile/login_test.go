package profile

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/podgate/podgate/scheduler"
)

func caKeyLine(t *testing.T) (string, ssh.PublicKey) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(ssh.MarshalAuthorizedKey(k)), k
}

func TestLoginAnnotations(t *testing.T) {
	line, ca := caKeyLine(t)
	p, err := fromTemplate(template(map[string]string{
		AnnBanner:         "Lab 3 files.\r\nAsk Sam for access.\n",
		AnnMOTD:           "Hello {user}, this is {profile}.\n",
		AnnDisableCommand: "true",
		AnnRecord:         "input",
		AnnRecordMaxSize:  "10Mi",
		AnnUserCAKeys:     "# the lab's CA\n" + line,
	}, oneContainer()))
	if err != nil {
		t.Fatal(err)
	}
	// Values are trimmed like every annotation, and CRLF becomes LF.
	if p.Banner != "Lab 3 files.\nAsk Sam for access." || p.MOTD != "Hello {user}, this is {profile}." {
		t.Errorf("banner %q, motd %q", p.Banner, p.MOTD)
	}
	if !p.DisableCommand || p.Record != scheduler.RecordInput || p.RecordMaxBytes != 10<<20 {
		t.Errorf("disable-command %t, record %q, max %d", p.DisableCommand, p.Record, p.RecordMaxBytes)
	}
	if len(p.UserCAKeys) != 1 || string(p.UserCAKeys[0].Marshal()) != string(ca.Marshal()) {
		t.Errorf("user CA keys = %v", p.UserCAKeys)
	}
}

func TestLoginAnnotationErrors(t *testing.T) {
	for _, tc := range []struct {
		key, val, want string
	}{
		{AnnBanner, "bell\a", "control character"},
		{AnnBanner, "\x1b[31mred", "control character"},
		{AnnBanner, "bad \xff utf8", "UTF-8"},
		{AnnMOTD, "Hi {usr}", "unknown placeholder {usr}"},
		{AnnMOTD, strings.Repeat("x", MaxMessageLen+1), "limit"},
		{AnnDisableCommand, "sftp-only", "invalid syntax"},
		{AnnRecord, "everything", `"everything" is not off, output or input`},
		{AnnRecordMaxSize, "10 megabytes", "not a quantity"},
		{AnnRecordMaxSize, "1", "outside 4Ki..64Gi"},
		{AnnUserCAKeys, "ssh-ed25519 notbase64", "line 1: not an OpenSSH public key"},
		{AnnUserCAKeys, "# only a comment", "no CA key"},
		{AnnUserCAKeys, `command="x" ` + "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "options"},
	} {
		t.Run(tc.key+"="+tc.val[:min(len(tc.val), 20)], func(t *testing.T) {
			_, err := fromTemplate(template(map[string]string{tc.key: tc.val}, oneContainer()))
			var ae *AnnotationError
			if !errors.As(err, &ae) || ae.Key != tc.key || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want an AnnotationError for %s saying %q", err, tc.key, tc.want)
			}
		})
	}
}

func TestDisableCommandNeedsASubsystem(t *testing.T) {
	_, err := fromTemplate(template(map[string]string{AnnDisableCommand: "true", AnnSubsystems: "{}"}, oneContainer()))
	if err == nil || !strings.Contains(err.Error(), "leaves nothing to run") {
		t.Errorf("err = %v, want the disable-command refusal", err)
	}
}

func TestFromConfigLoginSettings(t *testing.T) {
	p, err := FromConfig(DefaultProfileConfig{Image: "x:1", MOTD: "Welcome {user}\r\n", DisableCommand: true, Record: scheduler.RecordOutput})
	if err != nil {
		t.Fatal(err)
	}
	if p.MOTD != "Welcome {user}\n" || !p.DisableCommand || p.Record != scheduler.RecordOutput {
		t.Errorf("policy %+v", p.Policy)
	}
	if _, err := FromConfig(DefaultProfileConfig{Image: "x:1", MOTD: "{who}"}); err == nil || !strings.Contains(err.Error(), "message of the day") {
		t.Errorf("bad MOTD: err = %v", err)
	}
}

// TestStoreLoginLookups covers the banner and CA lookups sshfront uses
// before authentication, and the server's own checks on a profile.
func TestStoreLoginLookups(t *testing.T) {
	line, ca := caKeyLine(t)
	web := template(map[string]string{AnnBanner: "web banner", AnnUserSelectable: "true", AnnUserCAKeys: line}, oneContainer())
	hidden := template(map[string]string{AnnBanner: "hidden banner", AnnUserSelectable: "false", AnnUserCAKeys: line}, oneContainer())
	hidden.Name, hidden.Labels[LabelProfile] = "hidden-tmpl", "hidden"
	recorded := template(map[string]string{AnnRecord: "output"}, oneContainer())
	recorded.Name, recorded.Labels[LabelProfile] = "rec-tmpl", "rec"
	cs := fake.NewClientset(web, hidden, recorded)
	inf := informers.NewSharedInformerFactory(cs, 0).Core().V1().PodTemplates().Informer()
	noRecording := func(p *Profile) error {
		if p.Record.Enabled() {
			return errors.New("podgate.io/record needs PODGATE_RECORD_DIR")
		}
		return nil
	}
	s, err := NewStore(nil, inf, slog.New(slog.NewTextHandler(io.Discard, nil)), noRecording)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go inf.Run(stop)
	if !cache.WaitForCacheSync(stop, inf.HasSynced) {
		t.Fatal("cache not synced")
	}
	s.rebuild()
	if got := s.Banner("web"); got != "web banner" {
		t.Errorf("Banner(web) = %q", got)
	}
	if got := s.Banner("hidden"); got != "" {
		t.Errorf("Banner(hidden) = %q; a profile that is not user-selectable shows no banner", got)
	}
	if got := s.ProfilesTrusting(ca); strings.Join(got, ",") != "hidden,web" {
		t.Errorf("ProfilesTrusting = %v, want hidden and web", got)
	}
	if e, _ := s.Get("rec"); e.Profile != nil || e.Err == nil || !strings.Contains(e.Err.Error(), `podtemplate "rec-tmpl": podgate.io/record needs`) {
		t.Errorf("rec entry = %+v, want invalid by the server's check", e)
	}
}

// TestTemplateInheritsLoginSettings: a PodTemplate profile starts from
// the operator's MOTD, file-transfer-only and recording settings, and its
// own annotations win.
func TestTemplateInheritsLoginSettings(t *testing.T) {
	def, err := FromConfig(DefaultProfileConfig{Image: "x:1", MOTD: "Hi {user}", DisableCommand: true, Record: scheduler.RecordOutput})
	if err != nil {
		t.Fatal(err)
	}
	p, err := FromPodTemplate(template(nil, oneContainer()), def.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	if p.MOTD != "Hi {user}" || !p.DisableCommand || p.Record != scheduler.RecordOutput {
		t.Errorf("inherited %q %t %q", p.MOTD, p.DisableCommand, p.Record)
	}
	p, err = FromPodTemplate(template(map[string]string{AnnMOTD: "Lab", AnnDisableCommand: "false", AnnRecord: "off"}, oneContainer()), def.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	if p.MOTD != "Lab" || p.DisableCommand || p.Record != scheduler.RecordOff {
		t.Errorf("annotated %q %t %q", p.MOTD, p.DisableCommand, p.Record)
	}
}
