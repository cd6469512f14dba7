package profile

import (
	"errors"
	"fmt"
	"strings"

	"github.com/robfig/cron/v3"
)

// AnnPeaks declares a profile's known peaks of demand (a class at 09:00 on
// weekdays, a contest's start), each a cron spec and the pool size wanted
// when it starts: "0 9 * * 1-5=40; 30 13 * * 3=25". The pool is warm at
// that size before each peak begins (see pool/peaks.go).
const AnnPeaks = "podgate.io/peaks"

// Peak is one scheduled peak of demand: from a lead time before each
// activation of Schedule until a while after it, the pool keeps at least
// Size idle pods.
type Peak struct {
	// Spec is the cron spec as written, for messages.
	Spec     string
	Schedule cron.Schedule
	Size     int
}

// maxPeaks bounds how many peaks one profile declares.
const maxPeaks = 32

// peakParser reads the five standard cron fields (minute, hour, day of
// month, month, day of week), optionally after CRON_TZ=Zone; descriptors
// such as @every are no clock times and are refused.
var peakParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// ParsePeaks reads AnnPeaks' syntax: peaks separated by ";", each a cron
// spec, "=", and a pool size (0..maxPoolSize). Times are in the podgate
// process's time zone (UTC in its image) unless the spec begins with
// CRON_TZ=Zone. It is robfig/cron's parser, which also serves the
// Kubernetes CronJob controller.
func ParsePeaks(v string) ([]Peak, error) {
	var out []Peak
	for part := range strings.SplitSeq(v, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		i := strings.LastIndexByte(part, '=')
		if i < 0 {
			return nil, fmt.Errorf("peak %q: want a cron spec, \"=\" and a pool size, such as \"0 9 * * 1-5=40\"", part)
		}
		spec := strings.TrimSpace(part[:i])
		size, err := parseCount(strings.TrimSpace(part[i+1:]))
		if err != nil {
			return nil, fmt.Errorf("peak %q: size: %w", part, err)
		}
		sched, err := parseCron(spec)
		if err != nil {
			return nil, fmt.Errorf("peak %q: %w", part, err)
		}
		out = append(out, Peak{Spec: spec, Schedule: sched, Size: size})
	}
	if len(out) == 0 {
		return nil, errors.New("no peak: want cron spec=size, separated by \";\"")
	}
	if len(out) > maxPeaks {
		return nil, fmt.Errorf("%d peaks, limit %d", len(out), maxPeaks)
	}
	return out, nil
}

// parseCron parses one spec, turning the parser's panics on some malformed
// input (a CRON_TZ= with nothing after it) into errors.
func parseCron(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("%q is not a cron spec", spec)
		}
	}()
	if s, err = peakParser.Parse(spec); err != nil {
		return nil, fmt.Errorf("%q is not a cron spec of five fields (minute hour day-of-month month day-of-week): %w", spec, err)
	}
	return s, nil
}

// checkPeaks refuses a peak larger than the pool may grow.
func checkPeaks(peaks []Peak, poolMin, poolMax int) error {
	if poolMax == 0 {
		poolMax = poolMin // finish's default
	}
	for _, pk := range peaks {
		if pk.Size > poolMax {
			return fmt.Errorf("peak %q asks for %d pods, above the pool max of %d", pk.Spec, pk.Size, poolMax)
		}
	}
	return nil
}
