// Command podgate is an SSH server that puts every user into a warm Kubernetes pod.
package main

import (
	_ "github.com/caarlos0/env/v11"
	_ "github.com/hashicorp/golang-lru/v2/expirable"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/time/rate"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/tools/remotecommand"
	_ "k8s.io/client-go/informers"
	_ "k8s.io/client-go/tools/portforward"
	_ "k8s.io/client-go/tools/leaderelection"
	_ "github.com/pkg/sftp"
)

func main() {}
