// Package control serves hostlbd's control socket: the versioned JSON API
// of package api over HTTP on a unix socket, read by hostlbctl. It answers
// from the daemon's State (daemon.State, the node's picture as of its last
// reconcile pass) and asks the daemon to reload or to check its file; it
// decides nothing and changes nothing else.
//
// It lives under daemon/ because SPEC §2 fixes the top-level folders and
// puts the control API there, beside the other pieces the composition root
// wires; it is a leaf of that tree: the daemon does not import it (main
// hands the server to the daemon as a Component, and the server reads the
// daemon through the Source interface), so a fake Source tests it, and
// hostlbctl imports only its api subpackage.
//
// # Permission model (SPEC §8)
//
// Being able to run hostlbctl must not mean being able to read a secret.
// The socket is mode 0660, owned by the daemon's user and group
// hostlb-admin (Listen); the package creates that group and makes the
// daemon's user hostlb a member of it, so the daemon can give the socket
// to it. Secrets (gossip.key, BGP password files, the kubeconfig) stay
// root:hostlb 0640, and an administrator in hostlb-admin is not in group
// hostlb. The API itself exposes no secret, and POST /v1/config/check
// checks only the daemon's own configuration file, never a file or a
// path a client names (see api's doc).
//
// Lifecycle: Listen creates the socket (main calls it before the daemon
// starts, so a socket that cannot be created fails the start at once);
// Serve runs as a daemon Component (Options.Components: started after the
// core components, so the first stopped when the daemon drains) until its
// context is done, then closes the listener, which removes the socket
// file. A socket left by a run that crashed is removed by the next Listen;
// one that another process still accepts on is an error, never taken.
//
// Requests are bounded: no body, no query, at most maxConcurrent served at
// once (each holds a copy of the State and its JSON: about 4 MiB for
// 10,000 IPs), and every read and write has a deadline.
package control
