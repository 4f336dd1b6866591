package failover

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// Env lets a program (the benchmark, the demo) use netlab, which is written
// for tests: it implements the testing.TB methods netlab calls. Fatal and
// Skip panic with an error that [RunEnv] recovers, so they must be called
// from the goroutine running RunEnv's fn, as netlab does.
type Env struct {
	testing.TB // nil: calling any method not defined below panics

	logf func(format string, args ...any)

	mu       sync.Mutex // guards the fields below
	cleanups []func()
	failed   bool
	tmpdirs  []string
}

type envAbort struct{ err error }

// RunEnv runs fn with a fresh Env, then its cleanups (last registered
// first), and returns fn's error or the message of a Fatal or Skip. logf
// receives Log and Error output; nil discards it.
func RunEnv(logf func(format string, args ...any), fn func(e *Env) error) (err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	e := &Env{logf: logf}
	defer func() {
		e.runCleanups()
		if e.Failed() && err == nil {
			err = errors.New("errors were reported (see above)")
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(envAbort)
			if !ok {
				panic(r)
			}
			err = a.err
		}
	}()
	return fn(e)
}

func (e *Env) runCleanups() {
	for {
		e.mu.Lock()
		n := len(e.cleanups)
		if n == 0 {
			dirs := e.tmpdirs
			e.tmpdirs = nil
			e.mu.Unlock()
			for _, d := range dirs {
				_ = os.RemoveAll(d)
			}
			return
		}
		f := e.cleanups[n-1]
		e.cleanups = e.cleanups[:n-1]
		e.mu.Unlock()
		f()
	}
}

// Helper does nothing.
func (e *Env) Helper() {}

// Name names the environment.
func (e *Env) Name() string { return "failover" }

// Cleanup registers f to run when RunEnv returns.
func (e *Env) Cleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}

// TempDir returns a new directory removed when RunEnv returns.
func (e *Env) TempDir() string {
	d, err := os.MkdirTemp("", "hostlb-failover-")
	if err != nil {
		e.Fatal(err)
	}
	e.mu.Lock()
	e.tmpdirs = append(e.tmpdirs, d)
	e.mu.Unlock()
	return d
}

// Log logs.
func (e *Env) Log(args ...any) { e.logf("%s", fmt.Sprint(args...)) }

// Logf logs.
func (e *Env) Logf(format string, args ...any) { e.logf(format, args...) }

// Error logs and marks the run failed.
func (e *Env) Error(args ...any) { e.fail(); e.Log(args...) }

// Errorf logs and marks the run failed.
func (e *Env) Errorf(format string, args ...any) { e.fail(); e.Logf(format, args...) }

// Fail marks the run failed.
func (e *Env) Fail() { e.fail() }

// Failed reports whether Error, Errorf or Fail was called.
func (e *Env) Failed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failed
}

func (e *Env) fail() {
	e.mu.Lock()
	e.failed = true
	e.mu.Unlock()
}

// Fatal aborts fn with the message as its error.
func (e *Env) Fatal(args ...any) { panic(envAbort{errors.New(fmt.Sprint(args...))}) }

// Fatalf aborts fn with the message as its error.
func (e *Env) Fatalf(format string, args ...any) {
	panic(envAbort{fmt.Errorf(format, args...)})
}

// FailNow aborts fn.
func (e *Env) FailNow() { panic(envAbort{errors.New("failed")}) }

// Skip aborts fn: a program cannot skip, so it is an error.
func (e *Env) Skip(args ...any) { e.Fatal(args...) }

// Skipf aborts fn: a program cannot skip, so it is an error.
func (e *Env) Skipf(format string, args ...any) { e.Fatalf(format, args...) }

// SkipNow aborts fn.
func (e *Env) SkipNow() { e.Fatal("skipped") }
