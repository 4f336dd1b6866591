package systemd

import (
	"os"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

// panicEnv makes the test binary panic at once: TestPanicIsRestarted runs
// it as a stand-in for a crashing hostlbd.
const panicEnv = "HOSTLB_TEST_PANIC"

func TestMain(m *testing.M) {
	if os.Getenv(panicEnv) == "1" {
		// No core file in the test's directory.
		_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
		panic("hostlbd stand-in crashing")
	}
	goleak.VerifyTestMain(m)
}
