package placement

import (
	"maps"
	"net/netip"
)

// Heirs returns the heir of every L2 IP in assigned that has exactly one
// owner: the node Place would give the IP if its owner were dead, all else
// (requests, the other nodes' liveness) unchanged. The heir is the node that
// watches the owner directly and takes the IP over when it loses the owner
// (package heartbeat); memberlist's verdict comes later and, with agreeing
// views, confirms the same node.
//
// reqs and up are what assigned was placed from (assigned is normally
// Place(reqs, up); a caller may pass an adjusted copy). An IP whose owner is
// the only alive eligible node has no heir and is absent from the result,
// as are BGP IPs and L2 IPs without exactly one owner. Addresses are
// expected to be unique, as the daemon's requests are; when several
// assignments share one, the first in assigned wins.
//
// Heirs calls Place once per distinct owner, on the requests of the
// Services that owner holds IPs of (Services are placed independently, so
// the others cannot change), never once per IP. It does not modify its
// arguments.
func Heirs(reqs []Request, up map[string]bool, assigned []Assignment) map[netip.Addr]string {
	type key struct {
		service string
		slot    int
		addr    netip.Addr
	}
	// owned: owner → the IPs it holds; services: owner → its Services.
	owned := map[string][]key{}
	services := map[string]map[string]bool{}
	for _, a := range assigned {
		if a.Mode != L2 || len(a.Owners) != 1 {
			continue
		}
		o := a.Owners[0]
		owned[o] = append(owned[o], key{a.Service, a.Slot, a.Addr})
		if services[o] == nil {
			services[o] = map[string]bool{}
		}
		services[o][a.Service] = true
	}
	heirs := map[key]string{}
	sub := make([]Request, 0, len(reqs))
	for owner, ips := range owned {
		sub = sub[:0]
		for _, r := range reqs {
			if services[owner][r.Service] {
				sub = append(sub, r)
			}
		}
		without := maps.Clone(up)
		delete(without, owner)
		mine := make(map[key]bool, len(ips))
		for _, k := range ips {
			mine[k] = true
		}
		for _, a := range Place(sub, without) {
			if k := (key{a.Service, a.Slot, a.Addr}); mine[k] && a.Mode == L2 && len(a.Owners) == 1 {
				heirs[k] = a.Owners[0]
			}
		}
	}
	out := make(map[netip.Addr]string, len(heirs))
	seen := make(map[netip.Addr]bool, len(heirs))
	for _, a := range assigned {
		if a.Mode != L2 || len(a.Owners) != 1 || seen[a.Addr] {
			continue
		}
		seen[a.Addr] = true
		if h, ok := heirs[key{a.Service, a.Slot, a.Addr}]; ok {
			out[a.Addr] = h
		}
	}
	return out
}
