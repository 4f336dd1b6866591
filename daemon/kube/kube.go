package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hostlb/hostlb/daemon/reconcile"
	"github.com/hostlb/hostlb/daemon/version"
)

// ErrKubeconfig marks a kubeconfig that cannot be used: a configuration
// error (hostlbd exits 2), not an API server that is down.
var ErrKubeconfig = errors.New("invalid kubeconfig")

// Client rate limits: the IPAM leader writes one status per Service, and a
// burst of 1,000 new Services should not wait on client-go's default of 5
// requests per second. At rest the daemon sends nothing but its watches.
const (
	clientQPS   = 200
	clientBurst = 400
)

// RESTConfig builds the client configuration from a kubeconfig's content,
// or the in-cluster configuration when data is empty.
func RESTConfig(data []byte) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if len(data) == 0 {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.RESTConfigFromKubeConfig(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKubeconfig, err)
	}
	cfg.QPS, cfg.Burst = clientQPS, clientBurst
	cfg.UserAgent = "hostlbd/" + version.Version
	return cfg, nil
}

// Options configure the Kubernetes side of a node.
type Options struct {
	Log            *slog.Logger
	Config         *rest.Config
	NodeName       string
	LeaseNamespace string
	BGPClass       string
	// OnChange is told (without blocking) when a watched object changed.
	OnChange func(Kind)
	// IPAM tuning (tests).
	IPAM IPAMOptions
	// Client and Dynamic, when both set, are used instead of clients built
	// from Config (simulations with client-go's fake clientsets).
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
}

// Kubernetes is the node's Kubernetes side: the informers and the
// leader-elected IPAM controller.
type Kubernetes struct {
	Source *Source
	IPAM   *IPAM
	log    *slog.Logger
	opts   Options
	leader atomic.Bool
	// nodeState: 0 not known yet, 1 this node's Node exists, 2 it does not.
	nodeState atomic.Int32
	ann       announcements
	// world counts changes of what every Service's group depends on (the
	// Nodes, classes, pools and Configurations): the group cache rebuilds all on a new one.
	world  atomic.Uint64
	gmu    sync.Mutex // guards groups
	groups groupCache
	// pmu guards problems: the BGP problems logged, until they end.
	pmu      sync.Mutex
	problems map[string]bool
}

// New returns the inert Kubernetes side; its Run methods start it.
func New(opts Options) (*Kubernetes, error) {
	client, dyn := opts.Client, opts.Dynamic
	if client == nil || dyn == nil {
		var err error
		if client, err = kubernetes.NewForConfig(opts.Config); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKubeconfig, err)
		}
		if dyn, err = dynamic.NewForConfig(opts.Config); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKubeconfig, err)
		}
	}
	k := &Kubernetes{log: opts.Log.With("component", "kube"), opts: opts}
	var ipamCtl *IPAM
	k.Source = NewSource(SourceOptions{
		Log: opts.Log.With("component", "kube"), Client: client, Dynamic: dyn,
		OnChange: func(kind Kind) {
			switch kind {
			case KindNode, KindClass, KindPool, KindConfiguration, "":
				k.world.Add(1)
			}
			if ipamCtl != nil {
				ipamCtl.Trigger(kind)
			}
			if opts.OnChange != nil {
				opts.OnChange(kind)
			}
		},
	})
	io := opts.IPAM
	io.Log = opts.Log.With("component", "ipam")
	io.Client = client
	io.Source = k.Source
	io.Identity = opts.NodeName
	io.LeaseNamespace = opts.LeaseNamespace
	io.BGPClass = opts.BGPClass
	onLeader := io.OnLeader
	io.OnLeader = func(v bool) {
		k.leader.Store(v)
		if onLeader != nil {
			onLeader(v)
		}
	}
	ipamCtl = NewIPAM(io)
	k.IPAM = ipamCtl
	return k, nil
}

// Groups returns the groups of the Services, L2 and BGP (groupsOf), from the caches:
// none before they hold a full list. Only the groups of Services whose
// object or EndpointSlices changed since the last call are built anew; the
// result is shared with later calls: read-only. While the API server is unreachable
// the caches keep the last state they saw, so the node keeps announcing
// it. A node whose name matches no Node object is eligible for no
// Service; that is logged when it starts and when it ends.
func (k *Kubernetes) Groups() []reconcile.Group {
	select {
	case <-k.Source.Synced():
	default:
		return nil
	}
	world := k.world.Load() // before the snapshot: a change after it is a new world
	snap := k.Source.Snapshot()
	known := slices.ContainsFunc(snap.Nodes, func(n *corev1.Node) bool { return n.Name == k.opts.NodeName })
	state := int32(2)
	if known {
		state = 1
	}
	if old := k.nodeState.Swap(state); old != state {
		if known {
			if old == 2 {
				k.log.Info("Node found: Service IPs may be announced here", "node", k.opts.NodeName)
			}
		} else {
			k.log.Warn("no Node object has this node's name: no Service IP is announced here until one does "+
				"([node] name must be the Kubernetes Node name)", "node", k.opts.NodeName)
		}
	}
	k.gmu.Lock()
	defer k.gmu.Unlock()
	return k.groups.groups(snap, world, k.opts.BGPClass)
}

// Seeds returns the InternalIPs of every Node but this one (the first of
// each family), sorted: gossip seeds that follow the cluster.
func (k *Kubernetes) Seeds() []netip.Addr {
	var out []netip.Addr
	for _, n := range k.Source.Nodes() {
		if n.Name == k.opts.NodeName {
			continue
		}
		var have4, have6 bool
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			ip, err := netip.ParseAddr(a.Address)
			if err != nil || (ip.Is4() && have4) || (!ip.Is4() && have6) {
				continue
			}
			ip = ip.Unmap()
			have4, have6 = have4 || ip.Is4(), have6 || !ip.Is4()
			out = append(out, ip)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Synced is closed once every cache holds a full list.
func (k *Kubernetes) Synced() <-chan struct{} { return k.Source.Synced() }

// Summary describes the Kubernetes side for the STATUS line.
func (k *Kubernetes) Summary() string {
	select {
	case <-k.Source.Synced():
	default:
		return "Kubernetes API not reachable yet (Services not served; static VIPs are)"
	}
	line := "Kubernetes synced"
	if k.nodeState.Load() == 2 {
		line += ", NO Node named " + k.opts.NodeName + ": Service IPs not announced here"
	}
	if k.leader.Load() {
		line += ", IPAM leader"
	}
	return line
}

// Run runs the informers and the IPAM controller until ctx is done.
func (k *Kubernetes) Run(ctx context.Context) error {
	done := make(chan error, 1)
	sctx, stopSource := context.WithCancel(context.WithoutCancel(ctx))
	go func() { done <- k.Source.Run(sctx) }()
	err := k.IPAM.Run(ctx) // releases the Lease on stop, so the source must outlive it
	stopSource()
	return errors.Join(err, <-done)
}
