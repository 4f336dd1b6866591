package kubelabbench

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// LogMessage is one kind of hostlbd log line (format text) the report
// counts per node.
type LogMessage struct {
	Label string // for the report
	Match string // a substring of the line
	// Event: the daemon records one Event beside each such line (an
	// Announcing Event when it starts announcing an IP, an IPAllocated or
	// IPReleased Event beside the IPAM's line).
	Event bool
}

// LogMessages are the lines that say how the ring and the Events fared:
// false failure detections under load, what the ownership check saw, the
// Events the daemon recorded and those client-go or hostlb's own Event
// queue says it dropped.
var LogMessages = []LogMessage{
	{Label: "a peer declared dead (gossip)", Match: `msg="gossip member dead"`},
	{Label: "started announcing an IP", Match: `msg=announcing `, Event: true},
	{Label: "stopped announcing an IP", Match: `msg="stopped announcing"`},
	{Label: `"IP announced by no node" (a gap ≥ 2 s in its view)`, Match: `msg="IP announced by no node"`},
	{Label: `"IP announced by several nodes" (≥ 2 s)`, Match: `msg="IP announced by several nodes"`},
	{Label: "IPAM: IP allocated", Match: `msg="IPAM: IP allocated"`, Event: true},
	{Label: "IPAM: IP released", Match: `msg="IPAM: IP released"`, Event: true},
	{Label: "Event dropped (client-go queue full)", Match: `too many queued events`},
	{Label: "Events dropped (hostlb's queue full; a line per minute)", Match: `msg="Events dropped`},
	{Label: "Event not written (API refused or away)", Match: `msg="Event not written"`},
}

// EventsDue sums the counts (CountLog's, of LogMessages) of the lines that
// each stand for one Event: how many Events the node's log says it
// recorded.
func EventsDue(counts []int) int {
	n := 0
	for i, c := range counts {
		if i < len(LogMessages) && LogMessages[i].Event {
			n += c
		}
	}
	return n
}

// CountLog counts the lines of r that contain each message's Match, in
// the order of msgs.
func CountLog(r io.Reader, msgs []LogMessage) ([]int, error) {
	counts := make([]int, len(msgs))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for i, m := range msgs {
			if strings.Contains(line, m.Match) {
				counts[i]++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read hostlbd log: %w", err)
	}
	return counts, nil
}
