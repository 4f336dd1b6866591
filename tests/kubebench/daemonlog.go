package kubebench

import (
	"bufio"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// The log messages hostlbd's IPAM writes beside each IPAllocated and
// IPReleased Event it records (daemon/kube controller.go reportChange).
var eventMsgs = []string{`msg="IPAM: IP allocated"`, `msg="IPAM: IP released"`}

// EventsLogged counts the IPAllocated and IPReleased Events hostlbd's log
// (format text) says it recorded.
func EventsLogged(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		for _, m := range eventMsgs {
			if strings.Contains(sc.Text(), m) {
				n++
			}
		}
	}
	return n, sc.Err()
}

// GC is one line of the Go runtime's GC trace (GODEBUG=gctrace=1, see the
// runtime package doc): the heap sizes around one collection, in bytes.
type GC struct {
	Live uint64 // the live heap the collection left ("A->B->C MB": C)
	Goal uint64 // the heap size at which the next collection starts
}

// gcLine matches "…, 4->4->2 MB, 5 MB goal, …"; the runtime prints whole
// MB (2^20 bytes).
var gcLine = regexp.MustCompile(`^gc \d+ @.* (\d+)->(\d+)->(\d+) MB, (\d+) MB goal`)

// LastGC returns the last GC trace line in r (a daemon's log, the trace
// interleaved with its own lines); ok is false when there is none.
func LastGC(r io.Reader) (gc GC, ok bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := gcLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		live, _ := strconv.ParseUint(m[3], 10, 64)
		goal, _ := strconv.ParseUint(m[4], 10, 64)
		gc, ok = GC{Live: live << 20, Goal: goal << 20}, true
	}
	return gc, ok, sc.Err()
}
