// Command etcd is the etcd server the tests' kube-apiserver stores its state
// in: the upstream etcdmain entry point, built at the version k8s.io/kubernetes
// pins, so that no prebuilt binary has to be downloaded.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
