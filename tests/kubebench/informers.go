package kubebench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	goruntime "runtime"
	"runtime/pprof"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/hostlb/hostlb/daemon/kube"
)

// InformerHeap is what InformerProfile measured.
type InformerHeap struct {
	Live           uint64 // live heap the informers added, after GC
	Services       int    // Services they cached
	EndpointSlices int    // EndpointSlices they cached
}

// InformerProfile runs, in this process, the informers hostlbd runs
// (kube.Source, with a daemon's kubeconfig and client settings; dial, when
// set, reaches an API server only a lab namespace can) until they hold
// every object, writes a heap profile to path, and reports how much live
// heap they hold: where a node's memory goes, before its own passes.
func InformerProfile(ctx context.Context, kubeconfig string, dial func(ctx context.Context, network, addr string) (net.Conn, error), path string) (h InformerHeap, err error) {
	data, err := os.ReadFile(kubeconfig)
	if err != nil {
		return InformerHeap{}, err
	}
	rc, err := kube.RESTConfig(data)
	if err != nil {
		return InformerHeap{}, err
	}
	rc.Dial = dial
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return InformerHeap{}, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return InformerHeap{}, err
	}
	var before, after goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&before)
	src := kube.NewSource(kube.SourceOptions{Log: slog.New(slog.DiscardHandler), Client: client, Dynamic: dyn})
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(sctx) }()
	defer func() {
		stop()
		if rerr := <-done; rerr != nil && err == nil {
			err = fmt.Errorf("in-process informers: %w", rerr)
		}
	}()
	select {
	case <-src.Synced():
	case <-time.After(2 * time.Minute):
		return InformerHeap{}, errors.New("the in-process informers did not sync within 2 minutes")
	}
	goruntime.GC()
	goruntime.ReadMemStats(&after)
	f, err := os.Create(path)
	if err != nil {
		return InformerHeap{}, err
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		return InformerHeap{}, err
	}
	snap := src.Snapshot()
	return InformerHeap{
		Live:     after.HeapAlloc - min(before.HeapAlloc, after.HeapAlloc),
		Services: len(snap.Services), EndpointSlices: len(snap.EndpointSlices),
	}, nil
}
