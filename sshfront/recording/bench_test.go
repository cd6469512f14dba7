package recording

import (
	"strings"
	"testing"
)

// BenchmarkSessionOutput is the cost a recording adds to each chunk of
// terminal output: encoding the event and queueing it for the writer
// goroutine, which writes to a file in a temporary directory.
func BenchmarkSessionOutput(b *testing.B) {
	for _, input := range []bool{false, true} {
		name := "output"
		if input {
			name = "input"
		}
		b.Run(name, func(b *testing.B) {
			d, clk := newTestDir(&testing.T{}, Config{Path: b.TempDir(), MaxBytes: 1 << 40})
			s, err := d.Start(Meta{ConnID: "bench", Session: 1, Start: clk.Now(), Cols: 80, Rows: 24, Input: input})
			if err != nil {
				b.Fatal(err)
			}
			chunk := []byte(strings.Repeat("podgate recording benchmark: the quick brown fox 0123456789\r\n", 64))
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				if input {
					s.Input([]byte("k"))
				}
				s.Output(chunk)
			}
			if _, err := s.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
