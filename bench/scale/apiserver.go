package scale

import (
	"bytes"
	"context"
	"fmt"
	"math"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"

	"github.com/podgate/podgate/bench"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// podgateFlowSchema is the APF FlowSchema podgate's ServiceAccount
// requests fall under on a cluster with the default configuration:
// service-accounts, at priority level workload-low.
const podgateFlowSchema = "service-accounts"

// scrapeAPIServer reads the API server's /metrics (as the admin).
func scrapeAPIServer(ctx context.Context, kube kubernetes.Interface) (podgatetest.Metrics, error) {
	b, err := kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("scraping the API server: %w", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("parsing the API server's metrics: %w", err)
	}
	return podgatetest.Metrics(fams), nil
}

// APF is API Priority and Fairness's view of podgate's requests over a
// window: how many went through its flow, how long they waited in its
// queues, and how many it rejected.
type APF struct {
	Executed float64
	// WaitP99 is the 99th percentile of the queue wait in seconds (NaN
	// without requests); Queued counts requests that waited longer than
	// the lowest bucket.
	WaitP99, WaitMax, Queued float64
	Rejected                 float64
}

// apfDelta is APF's handling of the service-accounts flow between two
// scrapes of the API server.
func apfDelta(before, after podgatetest.Metrics) APF {
	wait := bench.HistogramDelta(before, after, "apiserver_flowcontrol_request_wait_duration_seconds",
		"flow_schema", podgateFlowSchema, "execute", "true")
	a := APF{Executed: wait.Count(), WaitP99: wait.Quantile(0.99), WaitMax: wait.Quantile(1)}
	// The lowest bucket of the wait histogram is 5 ms: a request above it
	// sat in a queue rather than being dispatched at once.
	if q := wait.Above(0.005); !math.IsNaN(q) {
		a.Queued = q
	}
	a.Rejected = after.Value("apiserver_flowcontrol_rejected_requests_total", "flow_schema", podgateFlowSchema) -
		before.Value("apiserver_flowcontrol_rejected_requests_total", "flow_schema", podgateFlowSchema)
	return a
}
