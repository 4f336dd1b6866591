// Command hostlbctl is the operator's tool for hostlbd: configuration checks,
// key generation and (as the control socket grows) the daemon's live state.
package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/version"
)

// Exit codes (SPEC §3): 0 ok, 1 error, 2 bad usage, 3 daemon not reachable.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const usage = `usage: hostlbctl COMMAND

commands:
  version              print version and commit
  config check FILE    validate a hostlb.toml; every problem with file:line (exit 1 if any)
  keygen               print a new base64 32-byte gossip key:
                         hostlbctl keygen > /etc/hostlb/gossip.key
                         chgrp hostlb /etc/hostlb/gossip.key && chmod 0640 /etc/hostlb/gossip.key
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "version", "--version":
		if len(args) != 1 {
			break
		}
		fmt.Fprintln(stdout, version.String("hostlbctl"))
		return exitOK
	case "keygen":
		if len(args) != 1 {
			break
		}
		return keygen(stdout, stderr)
	case "config":
		if len(args) == 3 && args[1] == "check" {
			return configCheck(args[2], stdout, stderr)
		}
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "hostlbctl: bad usage: %q\n\n%s", args, usage)
	return exitUsage
}

func keygen(stdout, stderr io.Writer) int {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		fmt.Fprintf(stderr, "hostlbctl: keygen: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
	return exitOK
}

func configCheck(path string, stdout, stderr io.Writer) int {
	if _, err := config.Load(path); err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	fmt.Fprintf(stdout, "%s: configuration is valid\n", path)
	return exitOK
}
