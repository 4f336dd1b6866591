package kubelab

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// SliceWatch follows the EndpointSlices of one Service with a watch and
// records, at each event's arrival, which nodes have a ready endpoint: the
// moment the lab's client learns a change, as close as a client gets to
// the moment hostlbd's informers learn it.
type SliceWatch struct {
	lab    *Lab
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex // guards the fields below
	slices map[string]*discoveryv1.EndpointSlice
	states []SliceState
	err    error // why the watch ended early
}

// SliceState is the Service's ready endpoints by node after one event.
type SliceState struct {
	At    time.Time
	Ready []string // nodes with a ready endpoint, sorted
	// Usable says whether kube-proxy would send traffic anywhere: to a
	// ready endpoint, or, when none is, to one that is serving while it
	// terminates.
	Usable bool
}

// WatchSlices starts following the EndpointSlices of the Service ns/svc.
// Stop it.
func (l *Lab) WatchSlices(ns, svc string) (*SliceWatch, error) {
	sel := discoveryv1.LabelServiceName + "=" + svc
	ctx, cancel := context.WithCancel(l.ctx)
	lctx, lcancel := context.WithTimeout(ctx, apiTimeout)
	list, err := l.Admin().DiscoveryV1().EndpointSlices(ns).List(lctx, metav1.ListOptions{LabelSelector: sel})
	lcancel()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("kubelab: list EndpointSlices of %s/%s: %w", ns, svc, err)
	}
	w, err := l.Admin().DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("kubelab: watch EndpointSlices of %s/%s: %w", ns, svc, err)
	}
	sw := &SliceWatch{lab: l, cancel: cancel, done: make(chan struct{}), slices: map[string]*discoveryv1.EndpointSlice{}}
	for i := range list.Items {
		sw.slices[list.Items[i].Name] = &list.Items[i]
	}
	sw.record(time.Now())
	go func() {
		defer close(sw.done)
		defer w.Stop()
		for ev := range w.ResultChan() {
			at := time.Now()
			es, ok := ev.Object.(*discoveryv1.EndpointSlice)
			sw.mu.Lock()
			switch {
			case ev.Type == watch.Error || !ok:
				sw.err = fmt.Errorf("watch of EndpointSlices ended: %v", ev.Object)
			case ev.Type == watch.Deleted:
				delete(sw.slices, es.Name)
			default:
				sw.slices[es.Name] = es
			}
			sw.mu.Unlock()
			sw.record(at)
		}
	}()
	return sw, nil
}

func (sw *SliceWatch) record(at time.Time) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	var (
		ready                 []string
		anyReady, anyFallback bool
	)
	isTrue := func(b *bool, def bool) bool { return (b == nil && def) || (b != nil && *b) }
	for _, es := range sw.slices {
		for _, ep := range es.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			c := ep.Conditions
			anyFallback = anyFallback || (isTrue(c.Serving, true) && isTrue(c.Terminating, false))
			if !isTrue(c.Ready, true) {
				continue
			}
			anyReady = true
			if ep.NodeName != nil && !slices.Contains(ready, *ep.NodeName) {
				ready = append(ready, *ep.NodeName)
			}
		}
	}
	slices.Sort(ready)
	sw.states = append(sw.states, SliceState{At: at, Ready: ready, Usable: anyReady || anyFallback})
}

// States returns every state recorded so far, oldest first.
func (sw *SliceWatch) States() []SliceState {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return slices.Clone(sw.states)
}

// WaitReady waits until a recorded state satisfies ok and returns the first
// such state (with its arrival time, not the time this wait noticed it).
func (sw *SliceWatch) WaitReady(timeout time.Duration, ok func(ready []string) bool) (SliceState, error) {
	var got SliceState
	err := sw.lab.Poll(timeout, func() error {
		sw.mu.Lock()
		defer sw.mu.Unlock()
		for _, s := range sw.states {
			if ok(s.Ready) {
				got = s
				return nil
			}
		}
		if sw.err != nil {
			return permanent(sw.err)
		}
		return fmt.Errorf("ready endpoints on %v", sw.states[len(sw.states)-1].Ready)
	})
	if err != nil {
		return SliceState{}, fmt.Errorf("kubelab: EndpointSlices: %w", err)
	}
	return got, nil
}

// Stop ends the watch and waits for its goroutine.
func (sw *SliceWatch) Stop() {
	sw.cancel()
	<-sw.done
}
