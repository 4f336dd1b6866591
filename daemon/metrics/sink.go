package metrics

import (
	"time"

	gometrics "github.com/hashicorp/go-metrics"
)

// memberlist reports what the ring's own API does not — suspicions, its
// awareness (health) score — only through hashicorp/go-metrics, whose sink
// is process-global: memberlist calls go-metrics' package functions, with
// no per-instance sink. memberlistSink takes the two series hostlb exposes
// and drops the rest (per-packet byte counts, timers of its own loops).

// memberlistSink adapts go-metrics to the Metrics' counters.
type memberlistSink struct{ m *Metrics }

var _ gometrics.MetricSink = memberlistSink{}

// InstallMemberlistSink makes memberlist report to m, for the whole
// process (go-metrics' global sink); hostlbd's main calls it once, before
// the ring starts. It starts no goroutine.
func (m *Metrics) InstallMemberlistSink() error {
	_, err := gometrics.NewGlobal(&gometrics.Config{
		FilterDefault:    true, // no prefix filter: the sink matches keys itself, cheaper than go-metrics' radix tree
		TimerGranularity: time.Millisecond,
	}, memberlistSink{m})
	return err
}

// is reports whether key is memberlist.<a>.<b>.
func is(key []string, a, b string) bool {
	return len(key) == 3 && key[0] == "memberlist" && key[1] == a && key[2] == b
}

func (s memberlistSink) SetGauge(key []string, val float32) {
	if is(key, "health", "score") {
		s.m.healthScore.Set(float64(val))
	}
}

func (s memberlistSink) SetGaugeWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.SetGauge(key, val)
}

func (s memberlistSink) EmitKey([]string, float32) {}

func (s memberlistSink) IncrCounter(key []string, val float32) {
	if is(key, "msg", "suspect") {
		s.m.suspicions.Add(float64(val))
	}
}

func (s memberlistSink) IncrCounterWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.IncrCounter(key, val)
}

func (s memberlistSink) AddSample([]string, float32)                              {}
func (s memberlistSink) AddSampleWithLabels([]string, float32, []gometrics.Label) {}
