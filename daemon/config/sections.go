package config

import (
	"log/slog"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// decode fills cfg (which holds the defaults) from the document root.
func (d *decoder) decode(root *node, cfg *Config) {
	d.table("", root,
		handler{"node", func(k string, v *node) { d.node(k, v, &cfg.Node) }},
		handler{"log", func(k string, v *node) { d.log(k, v, &cfg.Log) }},
		handler{"gossip", func(k string, v *node) { d.gossip(k, v, &cfg.Gossip) }},
		handler{"l2", func(k string, v *node) { d.l2(k, v, &cfg.L2) }},
		handler{"bgp", func(k string, v *node) { d.bgp(k, v, &cfg.BGP) }},
		handler{"kubernetes", func(k string, v *node) { d.kubernetes(k, v, &cfg.Kubernetes) }},
		handler{"metrics", func(k string, v *node) { d.metrics(k, v, &cfg.Metrics) }},
		handler{"control", func(k string, v *node) { d.control(k, v, &cfg.Control) }},
		handler{"vip", func(k string, v *node) { cfg.VIPs = d.vips(k, v) }},
	)
}

func (d *decoder) node(path string, v *node, n *Node) {
	d.table(path, v,
		handler{"name", func(k string, v *node) {
			var s string
			if d.str(k, v, &s) {
				if msg := checkNodeName(s); msg != "" {
					d.errorf(v.pos, k, "%q %s", s, msg)
					return
				}
				n.Name = s
			}
		}},
		handler{"labels", func(k string, v *node) {
			if m := d.stringMap(k, v, d.checkLabel); m != nil {
				n.Labels = m
			}
		}},
	)
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// checkNodeName enforces a DNS-1123 subdomain, what Kubernetes requires of
// Node names; "" means fine.
func checkNodeName(s string) string {
	if s == "" {
		return "is empty"
	}
	if len(s) > 253 {
		return "is longer than 253 characters"
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) > 63 || !dnsLabel.MatchString(l) {
			return "is not a valid node name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
		}
	}
	return ""
}

var labelName = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

// checkLabel applies the Kubernetes label syntax, so that node labels and
// node selectors mean the same in static and Kubernetes mode.
func (d *decoder) checkLabel(key, name, val string, p pos) {
	n := name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		if checkNodeName(name[:i]) != "" {
			d.errorf(p, key, "label prefix %q is not a DNS subdomain", name[:i])
			return
		}
		n = name[i+1:]
	}
	if len(n) > 63 || !labelName.MatchString(n) {
		d.errorf(p, key, "%q is not a valid label name (at most 63 letters, digits, '-', '_', '.', starting and ending with a letter or digit)", name)
		return
	}
	if val != "" && (len(val) > 63 || !labelName.MatchString(val)) {
		d.errorf(p, key, "%q is not a valid label value (at most 63 letters, digits, '-', '_', '.', starting and ending with a letter or digit)", val)
	}
}

var levels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

func (d *decoder) log(path string, v *node, l *Log) {
	d.table(path, v,
		handler{"level", func(k string, v *node) {
			var s string
			if !d.str(k, v, &s) {
				return
			}
			lvl, ok := levels[s]
			if !ok {
				d.errorf(v.pos, k, "%q is not one of debug, info, warn, error", s)
				return
			}
			l.Level = lvl
		}},
		handler{"format", func(k string, v *node) {
			d.oneOf(k, v, &l.Format, FormatAuto, FormatJournal, FormatJSON, FormatText)
		}},
	)
}

func (d *decoder) gossip(path string, v *node, g *Gossip) {
	var advertise string
	var advertisePos pos
	var joins []keyPart // the seeds as written, with their positions
	var joinKeys []string
	joinsOK := true
	d.table(path, v,
		handler{"bind", func(k string, v *node) {
			var s string
			if !d.str(k, v, &s) {
				return
			}
			ap, ok := d.addrPort(k, s, v.pos, 7947)
			if ok && ap.Port() == 0 {
				d.errorf(v.pos, k, "%q: port 0 would pick a random port the other nodes cannot know", s)
				return
			}
			if ok {
				g.Bind = ap
			}
		}},
		handler{"advertise", func(k string, v *node) {
			if d.str(k, v, &advertise) {
				advertisePos = v.pos
			}
		}},
		handler{"join", func(k string, v *node) {
			joinsOK = d.strings(k, v, func(k string, _ int, s string, p pos) {
				joins = append(joins, keyPart{name: s, pos: p})
				joinKeys = append(joinKeys, k)
			})
		}},
		handler{"secret_key_file", func(k string, v *node) { d.path(k, v, &g.SecretKeyFile) }},
		handler{"insecure_plaintext", func(k string, v *node) { d.boolean(k, v, &g.InsecurePlaintext) }},
		handler{"profile", func(k string, v *node) { d.oneOf(k, v, &g.Profile, ProfileFast, ProfileLAN, ProfileWAN) }},
		handler{"cluster", func(k string, v *node) {
			var s string
			if !d.str(k, v, &s) {
				return
			}
			if s != "" && (len(s) > 63 || !vipName.MatchString(s)) {
				d.errorf(v.pos, k, "%q is not a cluster name (at most 63 letters, digits, '-', '_', '.'; \"\" for none)", s)
				return
			}
			g.Cluster = s
		}},
	)
	// advertise and join default their port to the bind port, which may be
	// written after them; hence this second step.
	if advertise != "" {
		key := joinKey(path, "advertise")
		if ap, ok := d.addrPort(key, advertise, advertisePos, g.Bind.Port()); ok {
			if ap.Addr().IsUnspecified() || ap.Port() == 0 {
				d.errorf(advertisePos, key, "%q: other nodes cannot reach an unspecified address or port 0", advertise)
			} else {
				g.Advertise = ap
			}
		}
	}
	var out []string
	for i, j := range joins {
		s := j.name
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			out = append(out, netip.AddrPortFrom(a.Unmap(), g.Bind.Port()).String())
			continue
		}
		if s != "" && !strings.Contains(s, ":") {
			s = net.JoinHostPort(s, strconv.Itoa(int(g.Bind.Port())))
		}
		if !d.hostPort(joinKeys[i], s, j.pos, false) {
			joinsOK = false
		}
		out = append(out, s)
	}
	if joinsOK && joins != nil {
		g.Join = out
	}
}

// addrPort parses "ip:port" or a bare "ip", which gets defPort.
func (d *decoder) addrPort(key, s string, p pos, defPort uint16) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Addr().Zone() != "" {
			d.errorf(p, key, "%q: an IPv6 zone is not allowed here", s)
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a.Unmap(), defPort), true
	}
	if host, port, err := net.SplitHostPort(s); err == nil {
		if _, aerr := netip.ParseAddr(host); aerr == nil {
			d.errorf(p, key, "%q: port %q is not a number in 0..65535", s, port)
			return netip.AddrPort{}, false
		}
	}
	d.errorf(p, key, "%q is not an IP address or ip:port (IPv6 with a port goes in brackets: \"[2001:db8::1]:7947\")", s)
	return netip.AddrPort{}, false
}

func (d *decoder) l2(path string, v *node, l *L2) {
	d.table(path, v,
		handler{"interfaces", func(k string, v *node) { d.interfacePatterns(k, v, &l.Interfaces, checkPattern) }},
		handler{"exclude", func(k string, v *node) { d.interfacePatterns(k, v, &l.Exclude, checkExclude) }},
		handler{"gratuitous_count", func(k string, v *node) { d.intInto(k, v, 0, 100, &l.GratuitousCount) }},
		handler{"gratuitous_interval", func(k string, v *node) { d.duration(k, v, &l.GratuitousInterval) }},
		handler{"refresh_interval", func(k string, v *node) { d.duration(k, v, &l.RefreshInterval) }},
	)
}

func (d *decoder) bgp(path string, v *node, b *BGP) {
	d.table(path, v,
		handler{"asn", func(k string, v *node) { d.asn(k, v, &b.ASN) }},
		handler{"router_id", func(k string, v *node) {
			var a netip.Addr
			d.optAddr(k, v, &a)
			if a.IsValid() && !a.Is4() {
				d.errorf(v.pos, k, "%q: a BGP router ID is an IPv4 address (RFC 4271), even on IPv6-only hosts", v.data)
				return
			}
			b.RouterID = a
		}},
		handler{"listen_port", func(k string, v *node) { d.uint16Into(k, v, 0, &b.ListenPort) }},
		handler{"peer", func(k string, v *node) {
			if !d.isArrayOfTables(k, v) {
				return
			}
			b.Peers = make([]BGPPeer, 0, len(v.items))
			for i, it := range v.items {
				pk := indexKey(k, i)
				d.where[pk] = it.pos
				b.Peers = append(b.Peers, d.peer(pk, it))
			}
		}},
		handler{"import", func(k string, v *node) {
			d.table(k, v,
				handler{"enabled", func(k string, v *node) { d.boolean(k, v, &b.Import.Enabled) }},
				// 0 is no table and 255 is "local": routes there would hijack
				// the host's own addresses.
				handler{"table", func(k string, v *node) {
					if n, ok := d.integer(k, v, 1, math.MaxUint32); ok {
						if n == 255 {
							d.errorf(v.pos, k, "table 255 is the kernel's local table; use 254 (main) or a table of your own")
							return
						}
						b.Import.Table = int(n)
					}
				}},
				handler{"metric", func(k string, v *node) { d.intInto(k, v, 0, math.MaxUint32, &b.Import.Metric) }},
			)
		}},
	)
}

func (d *decoder) isArrayOfTables(key string, v *node) bool {
	if v.kind == kindTable {
		d.errorf(v.pos, key, "expected an array of tables: write [[%s]], not [%s]", key, key)
		return false
	}
	if !d.is(key, v, kindArray) {
		return false
	}
	for i, it := range v.items {
		if !d.is(indexKey(key, i), it, kindTable) {
			return false
		}
	}
	return true
}

func (d *decoder) peer(path string, v *node) BGPPeer {
	p := defaultPeer()
	d.table(path, v,
		handler{"address", func(k string, v *node) { d.addr(k, v, &p.Address) }},
		handler{"asn", func(k string, v *node) { d.asn(k, v, &p.ASN) }},
		handler{"port", func(k string, v *node) { d.uint16Into(k, v, 1, &p.Port) }},
		handler{"source_address", func(k string, v *node) { d.optAddr(k, v, &p.SourceAddress) }},
		handler{"hold_time", func(k string, v *node) { d.bgpTimer(k, v, &p.HoldTime) }},
		handler{"keepalive_time", func(k string, v *node) { d.bgpTimer(k, v, &p.KeepaliveTime) }},
		handler{"ebgp_multihop", func(k string, v *node) { d.uint8Into(k, v, 0, &p.EBGPMultihop) }},
		handler{"password_file", func(k string, v *node) { d.path(k, v, &p.PasswordFile) }},
		handler{"graceful_restart", func(k string, v *node) { d.boolean(k, v, &p.GracefulRestart) }},
		handler{"bfd", func(k string, v *node) {
			d.table(k, v,
				handler{"enabled", func(k string, v *node) { d.boolean(k, v, &p.BFD.Enabled) }},
				handler{"min_rx", func(k string, v *node) { d.positive(k, v, &p.BFD.MinRx) }},
				handler{"min_tx", func(k string, v *node) { d.positive(k, v, &p.BFD.MinTx) }},
				handler{"multiplier", func(k string, v *node) { d.uint8Into(k, v, 1, &p.BFD.Multiplier) }},
			)
		}},
	)
	return p
}

// bgpTimer is a duration in whole seconds up to 65535 s: what the BGP OPEN
// message can carry (RFC 4271 §4.2).
func (d *decoder) bgpTimer(key string, v *node, dst *time.Duration) {
	var t time.Duration
	if !d.duration(key, v, &t) {
		return
	}
	if t%time.Second != 0 || t > 65535*time.Second {
		d.errorf(v.pos, key, "%q: BGP timers are whole seconds from 0s to 65535s", v.data)
		return
	}
	*dst = t
}

func (d *decoder) positive(key string, v *node, dst *time.Duration) {
	var t time.Duration
	if d.duration(key, v, &t) {
		if t == 0 {
			d.errorf(v.pos, key, "must be more than 0")
			return
		}
		*dst = t
	}
}

func (d *decoder) kubernetes(path string, v *node, k8s *Kubernetes) {
	d.table(path, v,
		handler{"enabled", func(k string, v *node) { d.boolean(k, v, &k8s.Enabled) }},
		handler{"kubeconfig", func(k string, v *node) { d.path(k, v, &k8s.Kubeconfig) }},
		handler{"lease_namespace", func(k string, v *node) {
			var s string
			if d.str(k, v, &s) {
				if len(s) > 63 || !dnsLabel.MatchString(s) {
					d.errorf(v.pos, k, "%q is not a namespace name (lowercase letters, digits and '-', at most 63)", s)
					return
				}
				k8s.LeaseNamespace = s
			}
		}},
		handler{"load_balancer_class", func(k string, v *node) { d.str(k, v, &k8s.LoadBalancerClass) }},
	)
}

func (d *decoder) metrics(path string, v *node, m *Metrics) {
	d.table(path, v,
		handler{"listen", func(k string, v *node) {
			var s string
			if d.str(k, v, &s) && (s == "" || d.hostPort(k, s, v.pos, true)) {
				m.Listen = s
			}
		}},
	)
}

func (d *decoder) control(path string, v *node, c *Control) {
	d.table(path, v,
		handler{"socket", func(k string, v *node) {
			var s string
			if !d.str(k, v, &s) {
				return
			}
			if s == "" { // no control socket: hostlbctl cannot reach the daemon
				c.Socket = ""
				return
			}
			if !filepath.IsAbs(s) || strings.ContainsRune(s, 0) {
				d.errorf(v.pos, k, "%q is not an absolute path", s)
				return
			}
			// sun_path holds 108 bytes including the terminating NUL.
			if len(s) > 107 {
				d.errorf(v.pos, k, "%q is longer than the 107 bytes a unix socket path may have", s)
				return
			}
			c.Socket = s
		}},
	)
}

var vipName = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

func (d *decoder) vips(path string, v *node) []VIP {
	if !d.isArrayOfTables(path, v) {
		return []VIP{}
	}
	out := make([]VIP, 0, len(v.items))
	for i, it := range v.items {
		vk := indexKey(path, i)
		d.where[vk] = it.pos
		vip := defaultVIP()
		d.table(vk, it,
			handler{"name", func(k string, v *node) {
				if d.str(k, v, &vip.Name) && (len(vip.Name) > 63 || !vipName.MatchString(vip.Name)) {
					d.errorf(v.pos, k, "%q is not a VIP name (at most 63 letters, digits, '-', '_', '.')", vip.Name)
				}
			}},
			handler{"mode", func(k string, v *node) { d.oneOf(k, v, &vip.Mode, ModeL2, ModeBGP) }},
			handler{"addresses", func(k string, v *node) {
				d.strings(k, v, func(k string, _ int, s string, p pos) {
					if a, ok := d.parseAddr(k, s, p); ok {
						vip.Addresses = append(vip.Addresses, a)
					}
				})
			}},
			handler{"node_selector", func(k string, v *node) {
				if m := d.stringMap(k, v, d.checkLabel); m != nil {
					vip.NodeSelector = m
				}
			}},
			handler{"interfaces", func(k string, v *node) { d.interfacePatterns(k, v, &vip.Interfaces, checkPattern) }},
			handler{"local", func(k string, v *node) { d.boolean(k, v, &vip.Local) }},
			handler{"health", func(k string, v *node) {
				h := defaultHealth()
				vip.Health = h
				d.table(k, v,
					handler{"tcp", func(k string, v *node) {
						var s string
						if d.str(k, v, &s) && d.hostPort(k, s, v.pos, false) {
							h.TCP = s
						}
					}},
					handler{"interval", func(k string, v *node) { d.positive(k, v, &h.Interval) }},
					handler{"timeout", func(k string, v *node) { d.positive(k, v, &h.Timeout) }},
				)
			}},
		)
		out = append(out, vip)
	}
	return out
}
