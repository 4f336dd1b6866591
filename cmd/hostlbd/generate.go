package main

// The man page docs/man/hostlbd.8 is rendered from hostlbd's usage text by
// man_test.go.
//go:generate go test -run ^TestManPage$ -update .
