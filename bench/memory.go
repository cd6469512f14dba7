package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Memory is scenario 6's outcome: podgate's footprint with no sessions
// and with Sessions idle shell sessions over Conns connections.
type Memory struct {
	Conns, Sessions int
	// Active is podgate_sessions_active with everything open, as podgate
	// counts it.
	Active       float64
	RSS0, RSS1   int64
	Heap0, Heap1 float64
	Gor0, Gor1   float64
	Errors       int
}

// Memory is scenario 6. In connection mode a connection's sessions share
// its pod, so c.MemConns pods carry c.MemConns*c.MemSessions sessions.
func (r *Runner) Memory(ctx context.Context, c Config) (Memory, error) {
	out := Memory{Conns: c.MemConns, Sessions: c.MemConns * c.MemSessions}
	ns, del, err := r.namespace(ctx, "memory")
	if err != nil {
		return out, err
	}
	defer del()
	r.Progress.Step(fmt.Sprintf("memory: warming %d pods", c.MemConns), 0)
	pg, err := r.start(ctx, ns, "memory", c.MemConns,
		fmt.Sprintf("PODGATE_POOL_MIN=%d", c.MemConns), fmt.Sprintf("PODGATE_POOL_MAX=%d", c.MemConns+10), fastWarm)
	if err != nil {
		return out, err
	}
	defer pg.stop()
	settle(ctx, 3*time.Second)
	if err := r.footprint(ctx, pg, &out.RSS0, &out.Heap0, &out.Gor0); err != nil {
		return out, err
	}
	r.Progress.Step(fmt.Sprintf("memory: %d sessions over %d connections", out.Sessions, c.MemConns), out.Sessions)
	var (
		mu    sync.Mutex // protects conns and out.Errors
		conns []*Conn
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 10)
	)
	for range c.MemConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			conn, _, err := pg.dialer.Attach(ctx)
			fails := 0
			if err == nil {
				r.Progress.Add(1, 1)
				for range c.MemSessions - 1 {
					if _, err := conn.OpenShell(ctx, false); err != nil {
						fails++
						continue
					}
					r.Progress.Add(1, 1)
				}
			} else {
				fails = c.MemSessions
				r.Progress.Logf("memory: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			out.Errors += fails
			if conn != nil && err == nil {
				conns = append(conns, conn)
			}
		}()
	}
	wg.Wait()
	settle(ctx, 3*time.Second)
	m, err := pg.Scrape(ctx)
	if err == nil {
		out.Active = m.Value("podgate_sessions_active")
	}
	err = r.footprint(ctx, pg, &out.RSS1, &out.Heap1, &out.Gor1)
	for _, c := range conns {
		c.Close()
	}
	return out, err
}

// footprint reads podgate's RSS, Go heap in use and goroutines.
func (r *Runner) footprint(ctx context.Context, pg *podgate, rssOut *int64, heap, gor *float64) error {
	v, err := rss(pg.Cmd.Process.Pid)
	if err != nil {
		return err
	}
	m, err := pg.Scrape(ctx)
	if err != nil {
		return err
	}
	*rssOut, *heap, *gor = v, m.Value("go_memstats_heap_inuse_bytes"), m.Value("go_goroutines")
	return nil
}
