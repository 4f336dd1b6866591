package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hostlb/hostlb/netif"
)

// decoder walks the tree against the schema, collecting every problem.
type decoder struct {
	file string
	dir  string // resolves relative key, password and kubeconfig paths
	opts Options
	errs Errors
	// where maps the dotted key of every value seen to its position, so
	// that cross-field checks (validate.go) can point at the right line.
	where map[string]pos
	// errKeys holds every key that has an error, and all its parents.
	errKeys map[string]bool
}

func newDecoder(file string, o Options) *decoder {
	return &decoder{file: file, dir: filepath.Dir(file), opts: o, where: map[string]pos{}, errKeys: map[string]bool{}}
}

func (d *decoder) errorf(p pos, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: p.line, Col: p.col, Key: key, Msg: fmt.Sprintf(format, args...)})
	for key != "" && !d.errKeys[key] {
		d.errKeys[key] = true
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
}

// posOf finds the position of key, or failing that of the closest enclosing
// key that was written in the file; the zero pos if none was.
func (d *decoder) posOf(key string) pos {
	for key != "" {
		if p, ok := d.where[key]; ok {
			return p
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return pos{}
}

// handler decodes one known key of a table.
type handler struct {
	name string
	fn   func(key string, v *node)
}

// table checks that v is a table and dispatches each of its keys to the
// matching handler; unknown keys are reported with a suggestion.
func (d *decoder) table(path string, v *node, hs ...handler) {
	if !d.is(path, v, kindTable) {
		return
	}
	for _, f := range v.table.fields {
		key := joinKey(path, f.name)
		// Point at the value: that is what a later cross-field check
		// complains about. A table is best found by its header or key.
		d.where[key] = f.val.pos
		if f.val.kind == kindTable || f.val.kind == kindArray {
			d.where[key] = f.pos
		}
		var fn func(string, *node)
		for _, h := range hs {
			if h.name == f.name {
				fn = h.fn
				break
			}
		}
		if fn == nil {
			d.errorf(f.pos, key, "unknown key%s", suggest(f.name, hs))
			continue
		}
		fn(key, f.val)
	}
}

func suggest(name string, hs []handler) string {
	best, bestDist := "", 3
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.name
		if dist := editDistance(strings.ToLower(name), h.name); dist < bestDist {
			best, bestDist = h.name, dist
		}
	}
	// A suggestion that rewrites half the word is noise ("foo" → "log").
	if best != "" && 2*bestDist < len(name) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(names) == 0 {
		return ""
	}
	return " (known keys: " + strings.Join(names, ", ") + ")"
}

// editDistance is the optimal string alignment distance: Levenshtein plus
// transposition of neighbours, the commonest typo ("bnid").
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// joinKey appends name to a dotted path, quoting it when it is not a bare
// TOML key so that the path can be pasted back into the file.
func joinKey(path, name string) string {
	bare := name != ""
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			bare = false
			break
		}
	}
	if !bare {
		name = strconv.Quote(name)
	}
	if path == "" {
		return name
	}
	return path + "." + name
}

func indexKey(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

var article = map[kind]string{
	kindString: "a string", kindInt: "an integer", kindFloat: "a float", kindBool: "a boolean",
	kindDatetime: "a date-time", kindArray: "an array", kindTable: "a table",
}

// is reports whether v has kind k, and reports a type error if not.
func (d *decoder) is(key string, v *node, k kind) bool {
	if v.kind == k {
		return true
	}
	d.errorf(v.pos, key, "expected %s, got %s", article[k], article[v.kind])
	return false
}

func (d *decoder) str(key string, v *node, dst *string) bool {
	if !d.is(key, v, kindString) {
		return false
	}
	*dst = v.data
	return true
}

func (d *decoder) boolean(key string, v *node, dst *bool) {
	if d.is(key, v, kindBool) {
		*dst = v.data == "true"
	}
}

// integer decodes a TOML integer within [lo, hi].
func (d *decoder) integer(key string, v *node, lo, hi int64) (int64, bool) {
	if !d.is(key, v, kindInt) {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(v.data, "_", ""), 0, 64)
	if err != nil || n < lo || n > hi {
		d.errorf(v.pos, key, "%s is out of range %d..%d", v.data, lo, hi)
		return 0, false
	}
	return n, true
}

func (d *decoder) intInto(key string, v *node, lo, hi int64, dst *int) {
	if n, ok := d.integer(key, v, lo, hi); ok {
		*dst = int(n)
	}
}

func (d *decoder) uint8Into(key string, v *node, lo int64, dst *uint8) {
	if n, ok := d.integer(key, v, lo, math.MaxUint8); ok {
		*dst = uint8(n)
	}
}

func (d *decoder) uint16Into(key string, v *node, lo int64, dst *uint16) {
	if n, ok := d.integer(key, v, lo, math.MaxUint16); ok {
		*dst = uint16(n)
	}
}

// asn decodes an AS number: 1..4294967295, 4-byte ASNs included (RFC 6793).
func (d *decoder) asn(key string, v *node, dst *uint32) {
	if n, ok := d.integer(key, v, 1, math.MaxUint32); ok {
		*dst = uint32(n)
	}
}

// duration decodes a Go duration string ("1.1s", "300ms"); never negative.
func (d *decoder) duration(key string, v *node, dst *time.Duration) bool {
	if v.kind == kindInt || v.kind == kindFloat {
		d.errorf(v.pos, key, "expected a duration string such as \"%ss\", got %s", v.data, article[v.kind])
		return false
	}
	if !d.is(key, v, kindString) {
		return false
	}
	t, err := time.ParseDuration(v.data)
	if err != nil {
		d.errorf(v.pos, key, "%q is not a duration (use a number and a unit: \"1.5s\", \"300ms\", \"2m\")", v.data)
		return false
	}
	if t < 0 {
		d.errorf(v.pos, key, "%q is negative", v.data)
		return false
	}
	*dst = t
	return true
}

// strings decodes an array of strings, calling each for every element.
func (d *decoder) strings(key string, v *node, each func(key string, i int, s string, p pos)) bool {
	if !d.is(key, v, kindArray) {
		return false
	}
	ok := true
	for i, it := range v.items {
		k := indexKey(key, i)
		d.where[k] = it.pos
		var s string
		if !d.str(k, it, &s) {
			ok = false
			continue
		}
		if each != nil {
			each(k, i, s, it.pos)
		}
	}
	return ok
}

// stringMap decodes a table of string values, e.g. node labels.
func (d *decoder) stringMap(key string, v *node, check func(key, name, val string, p pos)) map[string]string {
	if !d.is(key, v, kindTable) {
		return nil
	}
	out := make(map[string]string, len(v.table.fields))
	for _, f := range v.table.fields {
		k := joinKey(key, f.name)
		d.where[k] = f.pos
		var s string
		if !d.str(k, f.val, &s) {
			continue
		}
		if check != nil {
			check(k, f.name, s, f.pos)
		}
		out[f.name] = s
	}
	return out
}

// addr decodes an IP address without zone or prefix; IPv4-mapped IPv6 is
// unmapped so that one address has one spelling.
func (d *decoder) addr(key string, v *node, dst *netip.Addr) bool {
	var s string
	if !d.str(key, v, &s) {
		return false
	}
	a, ok := d.parseAddr(key, s, v.pos)
	if ok {
		*dst = a
	}
	return ok
}

func (d *decoder) parseAddr(key, s string, p pos) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if _, perr := netip.ParsePrefix(s); perr == nil {
			d.errorf(p, key, "%q is a prefix; write the address alone, without /len", s)
		} else {
			d.errorf(p, key, "%q is not an IP address", s)
		}
		return netip.Addr{}, false
	}
	if a.Zone() != "" {
		d.errorf(p, key, "%q: an IPv6 zone is not allowed here", s)
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// optAddr is addr where "" means unset.
func (d *decoder) optAddr(key string, v *node, dst *netip.Addr) {
	if v.kind == kindString && v.data == "" {
		*dst = netip.Addr{}
		return
	}
	d.addr(key, v, dst)
}

// hostPort checks "host:port" with a port in 1..65535. host may be a name.
func (d *decoder) hostPort(key, s string, p pos, emptyHostOK bool) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		d.errorf(p, key, "%q is not host:port (IPv6 goes in brackets: \"[2001:db8::1]:7947\")", s)
		return false
	}
	if host == "" && !emptyHostOK {
		d.errorf(p, key, "%q has no host", s)
		return false
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		d.errorf(p, key, "%q: port %q is not a number in 1..65535", s, port)
		return false
	}
	if strings.ContainsAny(host, " \t/") {
		d.errorf(p, key, "%q: %q is not a host name or IP address", s, host)
		return false
	}
	return true
}

// interfacePatterns decodes a list of interface patterns: `interfaces`
// entries (names or /regex/) or `exclude` entries (regular expressions),
// checked by parse, netif's own parser, so that what decodes here is
// exactly what the L2 output accepts. dst is set only when every entry is
// good.
func (d *decoder) interfacePatterns(key string, v *node, dst *[]string, parse func(string) error) {
	var out []string
	good := d.strings(key, v, func(k string, _ int, s string, p pos) {
		if err := parse(s); err != nil {
			d.errorf(p, k, "%v", err)
			return
		}
		out = append(out, s)
	})
	if good && len(out) == len(v.items) {
		*dst = append([]string{}, out...)
	}
}

func checkPattern(s string) error {
	_, err := netif.ParsePattern(s)
	return err
}

func checkExclude(s string) error {
	_, err := netif.ParseExclude(s)
	return err
}

// path decodes a file path; relative ones are resolved against the config
// file's directory, since the daemon's working directory is "/".
func (d *decoder) path(key string, v *node, dst *string) {
	var s string
	if !d.str(key, v, &s) {
		return
	}
	if strings.ContainsRune(s, 0) {
		d.errorf(v.pos, key, "path contains a NUL byte")
		return
	}
	if s != "" && !filepath.IsAbs(s) {
		s = filepath.Join(d.dir, s)
	}
	*dst = s
}

// oneOf decodes a string from a fixed set.
func (d *decoder) oneOf(key string, v *node, dst *string, allowed ...string) {
	var s string
	if !d.str(key, v, &s) {
		return
	}
	for _, a := range allowed {
		if s == a {
			*dst = s
			return
		}
	}
	d.errorf(v.pos, key, "%q is not one of %s", s, strings.Join(allowed, ", "))
}
