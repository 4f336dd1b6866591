package main

import (
	"fmt"
	"strings"
)

// command is one hostlbctl command. The table below is the one source of
// the usage text, the shell completions and the man page (man_test.go
// renders docs/man/hostlbctl.8 from it).
type command struct {
	name string
	// args are the positional arguments as the usage shows them.
	args string
	// brief is the one-line description the completions show.
	brief string
	// help explains the command, one or more lines.
	help string
	// daemon: the command talks to the control socket and takes -s, -o.
	daemon bool
	// words completes the first argument; files: the last one is a file.
	words []string
	files bool
}

// commands in the order the usage lists them.
var commands = []command{
	{name: "status", brief: "the node at a glance", daemon: true, help: `the node at a glance: ready, ring, IPs, conflicts,
BGP, reloads`},
	{name: "members", brief: "the gossip ring and what each member announces", daemon: true, help: `the gossip ring: each member's state, since when,
health, labels, the IPs it announces and those it
cannot, its failing health checks`},
	{name: "vips", brief: "every IP: owner, since, previous, why not elsewhere", daemon: true, help: `every IP: mode, owner node(s), since when, previous
owner, the interfaces (L2) or BGP peers it is
announced on here, its VIP or Service, and why every
other node does not announce it`},
	{name: "who-owns", brief: "who owns an IP, since when, and why not each other node", args: "IP", daemon: true, help: `who owns IP, since when, who had it before, and for
every other node why it does not announce it (dead,
not eligible, unhealthy, no endpoint, cannot
announce, standby)`},
	{name: "bgp", brief: "BGP sessions, BFD and prefixes", daemon: true, help: `BGP sessions: state and since when, BFD, how often
up, why last down; prefixes advertised, routes
imported`},
	{name: "conflicts", brief: "two owners on the wire, ring disagreements", daemon: true, help: `two owners: another MAC answering on the wire for
an IP this node announces (now, and the last 64
events), and IPs the ring gives two announcers or
none`},
	{name: "reload", brief: "re-read the configuration", daemon: true, help: `re-read the configuration (as systemctl reload
hostlb); says what changed and what needs a
restart, or every problem of a file it refused
(the daemon keeps its running configuration then)`},
	{name: "config", brief: "check a configuration file, or the daemon's own", args: "check [FILE]", words: []string{"check"}, files: true, help: `check FILE: validate a hostlb.toml with your own
  rights; every problem with file:line (exit 1 if any)
check: ask the running hostlbd to read its own file
  as a reload would, with its rights, applying
  nothing (-s, -o apply)`},
	{name: "keygen", brief: "print a new gossip key", help: `print a new base64 32-byte gossip key:
  (umask 027; hostlbctl keygen > /etc/hostlb/gossip.key)
  chgrp hostlb /etc/hostlb/gossip.key
The key file holds one key per line ('#' comments allowed): the
first encrypts, every one decrypts. Rotate without splitting the
ring in three passes; finish each pass on every node before the next:
  1. add the new key as the second line; systemctl reload hostlb
  2. move it to the first line;          systemctl reload hostlb
  3. remove the old key;                 systemctl reload hostlb
(hostlbctl keygen >> /etc/hostlb/gossip.key appends one for step 1.)`},
	{name: "kubeconfig", brief: "write the daemon's kubeconfig", args: "--server URL [--secret] [flags]", help: `write /etc/hostlb/kubeconfig with a token of the ServiceAccount
  kube-system/hostlb, requested with your admin kubeconfig
  (apply /usr/share/hostlb/manifests/ first; -h lists the flags)`},
	{name: "completion", brief: "print a shell completion script", args: "bash|zsh|fish", words: []string{"bash", "zsh", "fish"}, help: `print the shell completion script (the packages
install all three), e.g. for bash:
  hostlbctl completion bash > ~/.hostlbctl.bash`},
	{name: "version", brief: "print version and commit", help: `print version and commit`},
	{name: "help", brief: "print the help, or one command's", args: "[COMMAND]", help: `print this help, or one command's`},
}

// kubeconfigFlags are `hostlbctl kubeconfig`'s flags, for the completions.
var kubeconfigFlags = []string{"--server", "--secret", "--namespace", "--service-account", "--out",
	"--duration", "--admin-kubeconfig", "--ca-file"}

// globalOptions are the options of the commands that talk to the daemon.
const globalOptions = `options (before or after the command):
  -s SOCKET            the control socket (default $HOSTLB_SOCKET, else
                       /run/hostlb/hostlb.sock)
  -o table|json        human tables (default), or the daemon's JSON (schema
                       version 1, documented in the README)
`

const exitCodes = `exit status: 0 ok, 1 error, 2 bad usage, 3 hostlbd not reachable
(not running, or the socket is not yours: join group hostlb-admin)
`

func findCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// synopsis is "name args".
func (c command) synopsis() string {
	return strings.TrimSpace(c.name + " " + c.args)
}

// usageText is `hostlbctl help`.
func usageText() string {
	var b strings.Builder
	b.WriteString("usage: hostlbctl [-s SOCKET] [-o table|json] COMMAND [ARGS]\n\ncommands:\n")
	for _, c := range commands {
		b.WriteString(commandHelp(c))
	}
	b.WriteString("\n" + globalOptions + "\n" + exitCodes)
	return b.String()
}

// commandHelp is one command's block of the usage.
func commandHelp(c command) string {
	var b strings.Builder
	lines := strings.Split(c.help, "\n")
	syn := c.synopsis()
	const col = 23
	if len(syn) >= col-3 {
		fmt.Fprintf(&b, "  %s\n", syn)
	} else {
		fmt.Fprintf(&b, "  %-*s%s\n", col-2, syn, lines[0])
		lines = lines[1:]
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "%*s%s\n", col, "", l)
	}
	return b.String()
}
