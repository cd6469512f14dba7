// Command localcluster brings up, inspects and tears down podgate's real
// single-node Kubernetes cluster on this machine (see package localcluster).
//
//	localcluster up [-reuse] [-kwok-nodes N]
//	                           build what is missing, start, wait for node Ready;
//	                           with -kwok-nodes, also KWOK with N fake nodes
//	                           (added to a running cluster with -reuse)
//	localcluster kwok -nodes N give the running cluster exactly N fake nodes
//	                           (KWOK started if needed); -nodes 0 removes them
//	                           and stops KWOK
//	localcluster down          stop and remove everything, even after a SIGKILL
//	localcluster status        kubeconfig path, node state, images
//	localcluster kubeconfig    print the admin kubeconfig path
//	localcluster component stop|start NAME [-max-down 2m] [-direct]
//	                           stop or start one daemon of the running
//	                           cluster (kube-apiserver, etcd, kubelet, ...)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/podgate/podgate/internal/testenv/localcluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		if errors.Is(err, localcluster.ErrRunning) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("localcluster", flag.ContinueOnError)
	state := fs.String("state", localcluster.DefaultStateDir, "state directory of the cluster")
	cache := fs.String("cache", localcluster.DefaultCacheDir(), "cache for built binaries and image archives")
	source := fs.String("source", defaultSource(), "the internal/testenv/localcluster directory of the podgate checkout")
	reuse := fs.Bool("reuse", false, "with up: succeed if a cluster is already running")
	maxDown := fs.Duration("max-down", localcluster.DefaultMaxDown, "with component stop: the supervisor starts the daemon again after this long")
	direct := fs.Bool("direct", false, "with component stop: stop the daemon from this process when the supervisor serves no control socket")
	kwokNodes := fs.Int("kwok-nodes", 0, "with up: also run KWOK with this many fake nodes")
	nodes := fs.Int("nodes", -1, "with kwok: the number of fake nodes the cluster should have (0 removes KWOK)")
	if len(os.Args) < 2 {
		return errors.New("usage: localcluster up|down|status|kubeconfig|component|kwok [flags]")
	}
	verb, args := os.Args[1], os.Args[2:]
	var compVerb, compName string
	if verb == "component" {
		if len(args) < 2 {
			return fmt.Errorf("usage: localcluster component stop|start NAME [flags]; NAME is one of %v", localcluster.Components())
		}
		compVerb, compName, args = args[0], args[1], args[2:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	o := localcluster.Options{
		StateDir:  *state,
		CacheDir:  *cache,
		SourceDir: *source,
		Log:       slog.New(slog.NewTextHandler(os.Stderr, nil)),
		KWOKNodes: *kwokNodes,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch verb {
	case "up":
		self, err := os.Executable()
		if err != nil {
			return err
		}
		err = o.Up(ctx, []string{self, "serve", "-state", *state, "-cache", *cache, "-source", *source, "-kwok-nodes", fmt.Sprint(*kwokNodes)})
		if errors.Is(err, localcluster.ErrRunning) && *reuse {
			fmt.Println("a local cluster is already running; reusing it")
			if *kwokNodes > 0 {
				if err := o.KWOK(ctx, *kwokNodes); err != nil {
					return err
				}
			}
			fmt.Printf("export KUBECONFIG=%s\n", o.Kubeconfig())
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Printf("cluster ready\nexport KUBECONFIG=%s\n", o.Kubeconfig())
		return nil
	case "serve":
		// Started by up with the held lock as fd 3.
		stop()
		return o.Run(os.NewFile(3, "lock"))
	case "down":
		l, err := o.Down(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("cluster down (last cleanup pass removed: %s)\n", l)
		return nil
	case "status":
		return o.Status(ctx, os.Stdout)
	case "kubeconfig":
		fmt.Println(o.Kubeconfig())
		return nil
	case "kwok":
		if *nodes < 0 {
			return errors.New("usage: localcluster kwok -nodes N (0 removes the fake nodes and stops KWOK)")
		}
		if err := o.KWOK(ctx, *nodes); err != nil {
			return err
		}
		fmt.Printf("fake nodes: %d\n", *nodes)
		return nil
	case "component":
		switch compVerb {
		case "stop":
			return o.StopComponent(ctx, compName, *maxDown, *direct)
		case "start":
			return o.StartComponent(ctx, compName)
		}
		return fmt.Errorf("unknown component command %q (want stop or start)", compVerb)
	}
	return fmt.Errorf("unknown command %q (want up, down, status, kubeconfig, component or kwok)", verb)
}

// defaultSource finds internal/testenv/localcluster next to this command's source, which
// is right for `go run` and for binaries built in the checkout.
func defaultSource() string {
	if wd, err := os.Getwd(); err == nil {
		if _, err := os.Stat(filepath.Join(wd, "internal", "testenv", "localcluster", "k8sbuild", "go.mod")); err == nil {
			return filepath.Join(wd, "internal", "testenv", "localcluster")
		}
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "internal", "testenv", "localcluster")
}
