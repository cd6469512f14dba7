package profile

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestPeaksAnnotation: podgate.io/peaks lists cron spec=size pairs; each
// schedule fires when its spec says.
func TestPeaksAnnotation(t *testing.T) {
	p, err := fromTemplate(template(map[string]string{
		AnnPoolMax: "50",
		AnnPeaks:   " 0 9 * * 1-5=40; 30 13 * * 3 = 25 ;",
	}, oneContainer()))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Peaks) != 2 || p.Peaks[0].Spec != "0 9 * * 1-5" || p.Peaks[0].Size != 40 ||
		p.Peaks[1].Spec != "30 13 * * 3" || p.Peaks[1].Size != 25 {
		t.Fatalf("peaks %+v", p.Peaks)
	}
	// Wednesday 2026-12-02 10:00 UTC: next weekday 09:00 is Thursday's,
	// next Wednesday 13:30 is today's.
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	if got, want := p.Peaks[0].Schedule.Next(now), time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("next weekday 09:00 after %v = %v, want %v", now, got, want)
	}
	if got, want := p.Peaks[1].Schedule.Next(now), time.Date(2026, 12, 2, 13, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("next Wednesday 13:30 after %v = %v, want %v", now, got, want)
	}
}

// TestPeaksAnnotationErrors: a bad peak rejects the profile with a message
// naming the annotation, the peak and what is wrong.
func TestPeaksAnnotationErrors(t *testing.T) {
	for _, tc := range []struct{ val, want string }{
		{"0 9 * * 1-5", `peak "0 9 * * 1-5": want a cron spec, "=" and a pool size`},
		{"0 25 * * *=3", `peak "0 25 * * *=3": "0 25 * * *" is not a cron spec of five fields`},
		{"0 9 * *=3", "is not a cron spec of five fields"},
		{"@every 1m=3", "is not a cron spec"},
		{"CRON_TZ=Europe/Berlin=3", `is not a cron spec`},
		{"0 9 * * *=many", `peak "0 9 * * *=many": size: "many" is not an integer`},
		{"0 9 * * *=60", `peak "0 9 * * *" asks for 60 pods, above the pool max of 50`},
		{" ; ", "no peak"},
	} {
		t.Run(tc.val, func(t *testing.T) {
			_, err := fromTemplate(template(map[string]string{AnnPoolMax: "50", AnnPeaks: tc.val}, oneContainer()))
			var ae *AnnotationError
			if !errors.As(err, &ae) || ae.Key != AnnPeaks || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want an error on %s saying %q", err, AnnPeaks, tc.want)
			}
		})
	}
}
