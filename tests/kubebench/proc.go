package kubebench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Mem is a process's memory as /proc/PID/status reports it, in bytes,
// and the CPU time it has used so far (/proc/PID/stat).
type Mem struct {
	RSS uint64        // VmRSS: resident now
	HWM uint64        // VmHWM: the peak of VmRSS over the process's life
	CPU time.Duration // utime + stime
}

// MiB renders a byte count in MiB with one decimal.
func MiB(b uint64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB" }

// ParseProcStatus reads VmRSS and VmHWM from the text of /proc/PID/status
// (proc(5): "VmRSS:\t   12345 kB").
func ParseProcStatus(r io.Reader) (Mem, error) {
	var (
		m        Mem
		rss, hwm bool
		sc       = bufio.NewScanner(r)
		parseKB  = func(v string) (uint64, error) {
			v = strings.TrimSpace(v)
			num, ok := strings.CutSuffix(v, " kB")
			if !ok {
				return 0, fmt.Errorf("%q is not in kB", v)
			}
			kb, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
			return kb << 10, err
		}
	)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var err error
		switch key {
		case "VmRSS":
			m.RSS, err = parseKB(val)
			rss = true
		case "VmHWM":
			m.HWM, err = parseKB(val)
			hwm = true
		}
		if err != nil {
			return Mem{}, fmt.Errorf("parse %s: %w", key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return Mem{}, err
	}
	if !rss || !hwm {
		return Mem{}, fmt.Errorf("no VmRSS or VmHWM (a kernel thread, or the process has exited)")
	}
	return m, nil
}

// userHZ is the unit of the times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture Go supports; proc(5)).
const userHZ = 100

// ParseProcStat returns utime + stime from the text of /proc/PID/stat.
// The command name (field 2) may hold spaces and parentheses, so fields
// are counted from the last ')'.
func ParseProcStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name in %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	var ticks uint64
	for _, v := range f[11:13] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("CPU time %q: %w", v, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// ReadMem reads pid's memory and CPU time from /proc.
func ReadMem(pid int) (Mem, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	m, err := ParseProcStatus(bytes.NewReader(data))
	if err != nil {
		return Mem{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Mem{}, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	if m.CPU, err = ParseProcStat(string(stat)); err != nil {
		return Mem{}, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	return m, nil
}

// Comm is pid's command name (/proc/PID/comm), "" when it cannot be read.
func Comm(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
