// Package api is the wire protocol of hostlbd's control socket, and its
// client: the JSON types every endpoint returns, their paths, and a Client
// that speaks HTTP over the unix socket. It imports nothing of the daemon,
// so hostlbctl (and any script author reading this file) gets the schema
// without the daemon's dependencies.
//
// # Protocol, version 1
//
// HTTP/1.1 over the unix socket ([control] socket, default
// /run/hostlb/hostlb.sock, mode 0660, group hostlb-admin). Requests carry
// no body and no query. Every response is one JSON object whose first
// fields are "version" (the schema version, 1), "node" (the answering
// daemon) and "time" (its clock; every time is RFC 3339 in the daemon's
// clock, so a client computes ages against "time", not its own clock).
// Field names are snake_case and stable within a version; new fields may
// appear, so clients ignore what they do not know. Arrays are never null
// (empty instead); a time that is unknown is null. Errors have a 4xx/5xx
// HTTP status and the body {"version":1,"node":…,"time":…,"error":"…"}.
//
//	GET  /v1/status        Status       the node at a glance
//	GET  /v1/members       Members      the ring, each member's health and announced IPs
//	GET  /v1/vips          VIPs         every IP: owners, since, previous, why not elsewhere
//	GET  /v1/vips/{ip}     WhoOwns      one IP (404 if no VIP or Service has it)
//	GET  /v1/bgp           BGP          sessions, BFD, prefixes
//	GET  /v1/conflicts     Conflicts    wire conflicts, their history, ring disagreements
//	POST /v1/reload        Reload       re-read the config (as SIGHUP); 422 if refused
//	POST /v1/config/check  ConfigCheck  read the daemon's own config file as a reload would, apply nothing
//
// config/check deliberately takes no file or path from the caller: the
// daemon reads key and password files with its own rights, and the
// socket's users (group hostlb-admin) must not learn through it anything
// of a file they cannot read themselves. `hostlbctl config check FILE`
// checks a file with the caller's own rights, in the hostlbctl process.
package api
