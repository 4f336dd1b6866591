package manifests

import (
	"bufio"
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// FS holds crds/*.yaml, rbac.yaml and examples/*.yaml, with paths as in
// the source tree and under /usr/share/hostlb/manifests.
//
//go:embed crds/*.yaml rbac.yaml examples/*.yaml
var FS embed.FS

// Names rbac.yaml gives hostlb's identity; `hostlbctl kubeconfig` defaults
// to them and the tests hold rbac.yaml to them. (The Lease name is
// daemon/kube.LeaseName; the tests hold the Role to it.)
const (
	// Namespace holds the ServiceAccount, the Lease Role and, by default,
	// the IPAM Lease itself ([kubernetes] lease_namespace).
	Namespace = "kube-system"
	// ServiceAccount is the identity hostlbd authenticates as.
	ServiceAccount = "hostlb"
)

// Objects decodes every YAML document of the files in FS that match globs
// (fs.Glob patterns such as "crds/*.yaml"). No glob means what a cluster
// needs before hostlbd can start: "crds/*.yaml" and "rbac.yaml"; the
// examples are user objects and only come when asked for.
//
// The order is stable and safe to apply in: files under crds/ first, then
// rbac.yaml, then examples/, each group sorted by name, documents in file
// order; a file matched by two globs appears once. Empty documents are
// skipped. A glob that matches no file is an error, so a typo cannot
// silently apply nothing. The caller owns the returned objects.
func Objects(globs ...string) ([]*unstructured.Unstructured, error) {
	if len(globs) == 0 {
		globs = []string{"crds/*.yaml", "rbac.yaml"}
	}
	var files []string
	for _, g := range globs {
		m, err := fs.Glob(FS, g)
		if err != nil {
			return nil, fmt.Errorf("manifests: glob %q: %w", g, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("manifests: glob %q matches no file", g)
		}
		files = append(files, m...)
	}
	slices.SortFunc(files, func(a, b string) int {
		if ra, rb := applyRank(a), applyRank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
	files = slices.Compact(files)

	var objs []*unstructured.Unstructured
	for _, name := range files {
		data, err := FS.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("manifests: %w", err)
		}
		o, err := decode(name, data)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	return objs, nil
}

// applyRank orders files so that what others depend on is applied first:
// CRDs before the objects of their kinds, RBAC before the daemon needs it.
func applyRank(name string) int {
	switch {
	case strings.HasPrefix(name, "crds/"):
		return 0
	case name == "rbac.yaml":
		return 1
	case strings.HasPrefix(name, "examples/"):
		return 2
	default:
		return 3
	}
}

// decode splits a multi-document YAML file and decodes each document. Keys
// are strict (a duplicate key is an error): these files are hand-written.
func decode(name string, data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("manifests: %s: document %d: %w", name, i, err)
		}
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("manifests: %s: document %d: %w", name, i, err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
			continue // only comments, or an empty document between two "---"
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("manifests: %s: document %d: %w", name, i, err)
		}
		objs = append(objs, u)
	}
}
