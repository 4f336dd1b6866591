package bgpbench

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hostlb/hostlb/tests/failover"
)

// Ms formats d in milliseconds with one decimal ("12.3 ms").
func Ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// Row is one line of a distribution table: p50, p90, p99 and max of ds
// (nearest rank: with 30 samples p99 is the maximum).
func Row(name string, ds []time.Duration) string {
	s := failover.Summarize(ds)
	return fmt.Sprintf("| %s | %d | %s | %s | %s | %s |", name, s.N, Ms(s.P50), Ms(s.P90), Ms(s.P99), Ms(s.Max))
}

// RowHeader is the header of Row's table.
const RowHeader = "| measure | n | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|"

// Withdrawal is one crash of one node: how long after its link went down
// its next hop left the router's kernel.
type Withdrawal struct {
	Detect  string // "bfd" or "hold"
	Speaker string // "hostlbd" or "gobgp"
	Run     int
	Took    time.Duration
}

// WriteCSV writes ws with a header: detect, speaker, run, ms.
func WriteCSV(w io.Writer, ws []Withdrawal) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"detect", "speaker", "run", "ms"})
	for _, x := range ws {
		_ = cw.Write([]string{x.Detect, x.Speaker, strconv.Itoa(x.Run),
			strconv.FormatFloat(float64(x.Took)/float64(time.Millisecond), 'f', 3, 64)})
	}
	cw.Flush()
	return cw.Error()
}

// Plot writes png with gnuplot: the CDF of the withdrawal time of every
// (detection, speaker) pair, on a log time axis, like docs/failover.png.
// dataDir keeps the data files and the script.
func Plot(png, dataDir string, ws []Withdrawal) error {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		return fmt.Errorf("gnuplot is not installed (make deps installs gnuplot-nox): %w", err)
	}
	type key struct{ detect, speaker string }
	groups := map[key][]time.Duration{}
	var keys []key
	for _, x := range ws {
		k := key{x.Detect, x.Speaker}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], x.Took)
	}
	var plots []string
	for _, k := range keys {
		s := slices.Clone(groups[k])
		slices.Sort(s)
		file := filepath.Join(dataDir, fmt.Sprintf("cdf-%s-%s.dat", k.detect, k.speaker))
		var b strings.Builder
		fmt.Fprintf(&b, "%.3f 0\n", float64(s[0])/float64(time.Millisecond))
		for j, d := range s {
			fmt.Fprintf(&b, "%.3f %.4f\n", float64(d)/float64(time.Millisecond), float64(j+1)/float64(len(s)))
		}
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			return err
		}
		color := "#1f77b4" // hostlbd blue, as in docs/failover.png
		if k.speaker != "hostlbd" {
			color = "#7f7f7f"
		}
		dash := 1
		if k.detect == "hold" {
			dash = 2
		}
		plots = append(plots, fmt.Sprintf("%q using 1:2 with steps lw 2 dt %d lc rgb %q title \"%s, %s (n=%d)\"",
			file, dash, color, k.speaker, k.detect, len(s)))
	}
	if len(plots) == 0 {
		plots = []string{`1/0 title "no data"`}
	}
	script := fmt.Sprintf(`set terminal pngcairo noenhanced size 900,560 font "DejaVu Sans,11"
set output %q
set title "BGP: a node crashes (link down + kill -9); until its next hop leaves BIRD's kernel\nBFD 100 ms x 3 vs hold timer 3 s (keepalive 1 s); hostlbd vs a plain GoBGP speaker, same run"
set logscale x 10
set xrange [50:10000]
set yrange [0:1.02]
set grid
set key bottom right
set xlabel "withdrawal time (ms, log scale)"
set ylabel "fraction of runs"
set arrow 1 from 1000, graph 0 to 1000, graph 1 nohead dt 3 lc rgb "black"
plot %s
`, png, strings.Join(plots, ", \\\n     "))
	sp := filepath.Join(dataDir, "bgp-withdrawal.gnuplot")
	if err := os.WriteFile(sp, []byte(script), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("gnuplot", sp).CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot %s: %w\n%s", sp, err, out)
	}
	return nil
}
