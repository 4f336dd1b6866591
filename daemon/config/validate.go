package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
)

// Cross-field checks, and the files the config points at. They run after
// decode, on the decoded values; d.where gives them the lines to blame.

const keySize = 32 // AES-256, what memberlist's keyring wants

// tcpMD5MaxKey is TCP_MD5SIG_MAXKEYLEN in Linux.
const tcpMD5MaxKey = 80

func (d *decoder) validate(cfg *Config) {
	d.validateNode(cfg)
	d.validateGossip(&cfg.Gossip)
	if cfg.L2.GratuitousCount > 0 && cfg.L2.GratuitousInterval == 0 {
		d.errorf(d.posOf("l2.gratuitous_interval"), "l2.gratuitous_interval",
			"must be more than 0 when gratuitous_count is %d (use \"1.1s\": Linux ignores a second ARP update within 1 s)", cfg.L2.GratuitousCount)
	}
	d.validateBGP(&cfg.BGP)
	d.validateKubernetes(&cfg.Kubernetes)
	d.validateVIPs(cfg)
}

// validateKubernetes reads the kubeconfig file, so that a missing or
// unreadable one is a configuration error (exit 2, file named) rather than
// a daemon that starts and never serves a Service. The daemon parses it.
func (d *decoder) validateKubernetes(k *Kubernetes) {
	const key = "kubernetes.kubeconfig"
	if !k.Enabled || k.Kubeconfig == "" || d.hasErr(key) {
		return
	}
	p := d.posOf(key)
	data, err := d.opts.ReadFile(k.Kubeconfig, KubeconfigLimit)
	var se *SecretFileError
	switch {
	case errors.As(err, &se):
		d.errorf(p, key, "%v", err)
	case errors.Is(err, fs.ErrNotExist):
		d.errorf(p, key, "%v (write it with: hostlbctl kubeconfig --server https://API-SERVER:6443 --out %s; "+
			"or set kubernetes.enabled = false on a host without Kubernetes)", err, k.Kubeconfig)
	case errors.Is(err, fs.ErrPermission):
		d.errorf(p, key, "%v (the daemon runs as user hostlb: chgrp hostlb %s; chmod 0640 %[2]s)", err, k.Kubeconfig)
	case err != nil:
		d.errorf(p, key, "%v", err)
	case len(data) == 0:
		d.errorf(p, key, "%s is empty", k.Kubeconfig)
	default:
		k.KubeconfigData = data
	}
}

// hasErr reports whether key or something under it already has an error, in
// which case later checks on it would only repeat the news.
func (d *decoder) hasErr(key string) bool {
	return d.errKeys[key]
}

func (d *decoder) validateNode(cfg *Config) {
	if _, inFile := d.where["node.name"]; inFile {
		return // checked while decoding
	}
	name := cfg.Node.Name
	if name == "" {
		d.errorf(d.posOf("node"), "node.name", "cannot determine the host name; set node.name")
		return
	}
	if msg := checkNodeName(name); msg != "" {
		d.errorf(d.posOf("node"), "node.name", "the host name %q %s; set node.name", name, msg)
	}
}

func (d *decoder) validateGossip(g *Gossip) {
	const key = "gossip.secret_key_file"
	if g.InsecurePlaintext {
		g.SecretKeys = nil
		return
	}
	if d.hasErr(key) || d.hasErr("gossip.insecure_plaintext") {
		return
	}
	p := d.posOf(key)
	create := fmt.Sprintf("create one with: umask 027; hostlbctl keygen > %s; chgrp hostlb %[1]s", g.SecretKeyFile)
	if g.SecretKeyFile == "" {
		d.errorf(p, key, "is empty; gossip needs a key unless gossip.insecure_plaintext = true")
		return
	}
	data, err := d.opts.ReadFile(g.SecretKeyFile, KeyFileLimit)
	var se *SecretFileError
	switch {
	case errors.As(err, &se):
		d.errorf(p, key, "%v", err)
		return
	case errors.Is(err, fs.ErrNotExist):
		d.errorf(p, key, "%v (%s)", err, create)
		return
	case errors.Is(err, fs.ErrPermission):
		d.errorf(p, key, "%v (the daemon runs as user hostlb: chgrp hostlb %s; chmod 0640 %[2]s)", err, g.SecretKeyFile)
		return
	case err != nil:
		d.errorf(p, key, "%v", err)
		return
	}
	keys, msg := decodeKeys(data)
	if msg != "" {
		d.errorf(p, key, "%s %s; want one base64-encoded %d-byte key per line, the first one used to send (%s)",
			g.SecretKeyFile, msg, keySize, create)
		return
	}
	g.SecretKeys = keys
}

// decodeKeys reads a key file: one standard base64 key per line, the
// primary (the one that encrypts) first; blank lines and lines starting
// with '#' are ignored, and so is white space around a key (a trailing
// newline from echo or an editor, CRLF). A file of exactly 32 bytes is one
// raw key, as hostlb first accepted: 32 bytes can never be a base64 key
// line (44 characters). msg says what is wrong, "" when nothing is.
func decodeKeys(data []byte) ([][]byte, string) {
	if len(data) == keySize {
		return [][]byte{bytes.Clone(data)}, ""
	}
	if len(data) == 0 {
		return nil, "is empty"
	}
	var keys [][]byte
	seen := map[string]int{}
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(string(line))
		switch {
		case err != nil:
			return nil, fmt.Sprintf("line %d is not base64 (nor is the file one raw %d-byte key)", i+1, keySize)
		case len(k) != keySize:
			return nil, fmt.Sprintf("line %d holds the base64 of %d bytes", i+1, len(k))
		}
		if j, dup := seen[string(k)]; dup {
			return nil, fmt.Sprintf("line %d repeats the key of line %d", i+1, j)
		}
		seen[string(k)] = i + 1
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, "holds no key, only blank lines and comments"
	}
	return keys, ""
}

func (d *decoder) validateBGP(b *BGP) {
	if len(b.Peers) > 0 && b.ASN == 0 && !d.hasErr("bgp.asn") {
		d.errorf(d.posOf("bgp.peer[0]"), "bgp.asn", "required when a [[bgp.peer]] is set")
	}
	// GoBGP keys its peers by address: one session per router address,
	// whatever the port.
	seen := map[netip.Addr]int{}
	for i := range b.Peers {
		p := &b.Peers[i]
		k := indexKey("bgp.peer", i)
		if !p.Address.IsValid() {
			if !d.hasErr(k + ".address") {
				d.errorf(d.posOf(k), k+".address", "required")
			}
		} else {
			if p.Address.IsUnspecified() || p.Address.IsMulticast() {
				d.errorf(d.posOf(k+".address"), k+".address", "%s cannot be a BGP peer", p.Address)
			}
			if j, dup := seen[p.Address]; dup {
				d.errorf(d.posOf(k+".address"), k+".address", "%s is already bgp.peer[%d] (one session per router address)", p.Address, j)
			}
			seen[p.Address] = i
			if p.SourceAddress.IsValid() && p.SourceAddress.Is4() != p.Address.Is4() {
				d.errorf(d.posOf(k+".source_address"), k+".source_address", "%s and peer address %s are of different IP families", p.SourceAddress, p.Address)
			}
		}
		if p.ASN == 0 && !d.hasErr(k+".asn") {
			d.errorf(d.posOf(k), k+".asn", "required")
		}
		if !d.hasErr(k+".hold_time") && !d.hasErr(k+".keepalive_time") && p.HoldTime != 0 {
			switch {
			case p.KeepaliveTime == 0:
				d.errorf(d.posOf(k+".keepalive_time"), k+".keepalive_time", "0 with hold_time %s would let the session expire; use hold_time / 3", p.HoldTime)
			case p.HoldTime < 3*p.KeepaliveTime:
				d.errorf(d.posOf(k+".hold_time"), k+".hold_time", "%s is less than 3 × keepalive_time (%s); use at least %s, or 0 to disable keepalives", p.HoldTime, p.KeepaliveTime, 3*p.KeepaliveTime)
			}
		}
		if p.PasswordFile != "" && !d.hasErr(k+".password_file") {
			d.readPassword(k+".password_file", p)
		}
	}
}

func (d *decoder) readPassword(key string, p *BGPPeer) {
	at := d.posOf(key)
	data, err := d.opts.ReadFile(p.PasswordFile, PasswordLimit)
	var se *SecretFileError
	switch {
	case errors.As(err, &se):
		d.errorf(at, key, "%v", err)
		return
	case errors.Is(err, fs.ErrNotExist):
		d.errorf(at, key, "%v (put the TCP-MD5 password in it, mode 0640, group hostlb; or set password_file = \"\" for no password)", err)
		return
	case errors.Is(err, fs.ErrPermission):
		d.errorf(at, key, "%v (the daemon runs as user hostlb: chgrp hostlb %s; chmod 0640 %[2]s)", err, p.PasswordFile)
		return
	case err != nil:
		d.errorf(at, key, "%v", err)
		return
	}
	pw := strings.TrimRight(string(data), "\r\n")
	switch {
	case pw == "":
		d.errorf(at, key, "%s is empty; set password_file = \"\" for no password", p.PasswordFile)
	case len(pw) > tcpMD5MaxKey:
		d.errorf(at, key, "%s holds a %d-byte password; TCP-MD5 allows at most %d", p.PasswordFile, len(pw), tcpMD5MaxKey)
	default:
		p.Password = pw
	}
}

func (d *decoder) validateVIPs(cfg *Config) {
	names := map[string]int{}
	addrs := map[netip.Addr]string{}
	for i := range cfg.VIPs {
		v := &cfg.VIPs[i]
		k := indexKey("vip", i)
		switch {
		case v.Name == "":
			if !d.hasErr(k + ".name") {
				d.errorf(d.posOf(k), k+".name", "required")
			}
		case hasKey(names, v.Name):
			d.errorf(d.posOf(k+".name"), k+".name", "%q is already the name of vip[%d]", v.Name, names[v.Name])
		default:
			names[v.Name] = i
		}
		if len(v.Addresses) == 0 && !d.hasErr(k+".addresses") {
			d.errorf(d.posOf(k), k+".addresses", "required: at least one IP address")
		}
		for j, a := range v.Addresses {
			ak := indexKey(k+".addresses", j)
			if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
				d.errorf(d.posOf(ak), ak, "%s cannot be a VIP (unspecified, multicast or loopback)", a)
				continue
			}
			if other, dup := addrs[a]; dup {
				d.errorf(d.posOf(ak), ak, "%s is already an address of %s", a, other)
				continue
			}
			addrs[a] = fmt.Sprintf("vip[%d] (%q)", i, v.Name)
		}
		if v.Mode == ModeBGP {
			if len(cfg.BGP.Peers) == 0 && !d.hasErr("bgp.peer") {
				d.errorf(d.posOf(k+".mode"), k+".mode", "\"bgp\" needs at least one [[bgp.peer]]")
			}
			if len(v.Interfaces) > 0 {
				d.errorf(d.posOf(k+".interfaces"), k+".interfaces", "only applies to mode \"l2\"; a BGP VIP is announced to peers, not on interfaces")
			}
		}
		if h := v.Health; h != nil {
			hk := k + ".health"
			if h.TCP == "" && !d.hasErr(hk+".tcp") {
				d.errorf(d.posOf(hk), hk+".tcp", "required: the \"host:port\" to connect to")
			}
			if h.Timeout >= h.Interval && !d.hasErr(hk+".timeout") && !d.hasErr(hk+".interval") {
				d.errorf(d.posOf(hk+".timeout"), hk+".timeout", "%s must be less than interval (%s)", h.Timeout, h.Interval)
			}
		}
	}
}

func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}
