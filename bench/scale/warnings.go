package scale

import (
	"bufio"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Warning is one distinct message the replicas logged at WARN or ERROR
// during a run, with how often and one full line as an example.
type Warning struct {
	Msg     string
	Count   int
	Example string
}

// saveWarnings writes every WARN and ERROR line of the replicas' logs,
// each prefixed with its replica, to <out>/<stamp>-warnings.log, and
// returns the distinct messages, most frequent first. A login that failed
// says only what its user saw; these lines say why, and the replicas'
// logs are gone once the run's scratch directory is removed.
func (r *Runner) saveWarnings(reps []*replica) ([]Warning, error) {
	var lines []string
	byMsg := map[string]*Warning{}
	for _, rep := range reps {
		if rep == nil {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(rep.Log.String()))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
				continue
			}
			lines = append(lines, rep.id+" "+line)
			msg := logfmtValue(line, "msg")
			w := byMsg[msg]
			if w == nil {
				w = &Warning{Msg: msg, Example: rep.id + " " + line}
				byMsg[msg] = w
			}
			w.Count++
		}
	}
	if len(lines) == 0 {
		return nil, nil
	}
	path := filepath.Join(r.Out, r.Stamp+"-warnings.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("writing the replicas' warnings: %w", err)
	}
	out := make([]Warning, 0, len(byMsg))
	for _, w := range byMsg {
		out = append(out, *w)
	}
	slices.SortFunc(out, func(a, b Warning) int {
		return cmp.Or(b.Count-a.Count, strings.Compare(a.Msg, b.Msg))
	})
	return out, nil
}

// logfmtValue returns the value of key in one slog text line, unquoted;
// "" when it is not there.
func logfmtValue(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		var b strings.Builder
		for j := 1; j < len(v); j++ {
			switch v[j] {
			case '\\':
				if j+1 < len(v) {
					j++
					b.WriteByte(v[j])
				}
			case '"':
				return b.String()
			default:
				b.WriteByte(v[j])
			}
		}
		return b.String()
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		return v[:j]
	}
	return v
}
