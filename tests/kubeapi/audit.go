package kubeapi

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hostlb/hostlb/packaging/manifests"
)

// AuditUser is the only user whose requests the audit log of
// Options.AuditLog records: hostlbd's ServiceAccount, as the token of
// [Cluster.ServiceAccountConfig] authenticates it.
const AuditUser = "system:serviceaccount:" + manifests.Namespace + ":" + manifests.ServiceAccount

// auditPolicy records AuditUser's requests at level Metadata (verb,
// resource, subresource, user, status code, timestamps; no bodies) and
// nothing else. RequestReceived is omitted so that a request is one
// line, and a watch two: ResponseStarted when it starts, ResponseComplete
// when it ends.
var auditPolicy = fmt.Sprintf(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: [%q]
- level: None
`, AuditUser)

// AuditLogPath is the apiserver's audit log with Options.AuditLog: one
// JSON audit.k8s.io/v1 Event per line. It is in Dir, so gone after Stop
// removed a temporary Dir.
func (c *Cluster) AuditLogPath() string { return filepath.Join(c.dir, "audit.log") }

// auditArgs are kube-apiserver's audit flags with Options.AuditLog, none
// without. The policy file is (re)written into Dir first.
func (c *Cluster) auditArgs() []string {
	if !c.opts.AuditLog {
		return nil
	}
	policy := filepath.Join(c.dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		// kube-apiserver then exits naming the file, and Start's error
		// quotes its log.
		c.logf("write the audit policy: %v", err)
	}
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + c.AuditLogPath(),
		"--audit-log-format=json",
		// Written before the response: a request is in the log once its
		// client has the answer.
		"--audit-log-mode=blocking",
		// No rotation: a count must see every line.
		"--audit-log-maxsize=0",
	}
}
