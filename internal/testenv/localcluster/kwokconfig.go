package localcluster

import (
	"bytes"
	_ "embed"
	"fmt"
	"text/template"
)

// kwokTemplate is KWOK's configuration: its options, the Stages that make
// fake nodes and pods Ready and delete pods, and the ClusterExec. KWOK's
// own templates inside it are quoted so that text/template passes them on.
//
//go:embed kwok.yaml.tmpl
var kwokTemplate string

// kwokConfig renders kwokTemplate for this state directory.
func (o Options) kwokConfig() ([]byte, error) {
	t, err := template.New("kwok").Option("missingkey=error").Parse(kwokTemplate)
	if err != nil {
		return nil, fmt.Errorf("parsing KWOK's configuration template: %w", err)
	}
	var b bytes.Buffer
	err = t.Execute(&b, map[string]any{
		"NodeLabel":      KWOKNodeLabel,
		"NodeLabelValue": KWOKNodeLabelValue,
		"Port":           kwokPort,
		"ServingCert":    o.path("pki", "kwok-serving.crt"),
		"ServingKey":     o.path("pki", "kwok-serving.key"),
		"PodCIDR":        kwokPodCIDR,
		"Home":           o.kwokHome(),
		"UID":            kwokUID,
		"GID":            kwokGID,
	})
	if err != nil {
		return nil, fmt.Errorf("rendering KWOK's configuration: %w", err)
	}
	return b.Bytes(), nil
}
