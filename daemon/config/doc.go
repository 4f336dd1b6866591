// Package config reads /etc/hostlb/hostlb.toml (SPEC §4) into a [Config].
//
// Decoding is strict and complete: unknown keys, wrong TOML types, invalid
// values and inconsistent combinations are all reported at once, as an
// [Errors] list of [Error] values that carry file, line, column and the
// dotted key ("vip[1].addresses[0]"), so that `hostlbd --check-config` can
// print everything a user has to fix in one go. A TOML syntax error is a
// single error, because nothing after it can be trusted.
//
// Values are normalised at the edge: addresses are net/netip values, times
// are time.Duration, the log level is a slog.Level, interface patterns are
// checked by netif's own parser (netif.ParsePattern, ParseExclude: the code
// that selects interfaces at run time, so the two cannot disagree on
// "/regex/"), and the files the config points at (the gossip key, BGP
// passwords) are read and checked while loading, so a reload either yields a
// config that works or keeps the old one. Relative paths in the file are
// resolved against the file's own directory.
//
// Those files, and the kubeconfig, are secrets: ReadSecret (secret.go)
// reads them without ever blocking (O_NONBLOCK: a FIFO is refused, not
// waited on) and at most a bounded size, and refuses anything but a regular
// file owned by root or the daemon's user that others can neither read nor
// write, naming the fix. The gossip key file holds one base64 key per line,
// the first the one that encrypts (decodeKeys).
//
// How it works: the document is checked by go-toml, then turned into a small
// tree that remembers the position of every key and value (tree.go); the
// schema is walked over that tree by hand (decode.go, sections.go), and
// cross-field checks run last over the decoded values (validate.go).
//
// [Changes] compares two configs for SIGHUP and says which differences a
// running daemon applies live and which need a restart.
package config
