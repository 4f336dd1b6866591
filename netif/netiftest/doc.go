// Package netiftest provides in-memory fakes of netif's kernel touchpoints
// — a link/address monitor whose links tests set by hand, and an address
// manager that records what it holds — so the daemon can run several times
// in one test process without root or network namespaces.
package netiftest
