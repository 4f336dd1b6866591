package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeygen(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"keygen"}, &out, &errb, nil); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out.String()))
	if err != nil || len(key) != 32 {
		t.Fatalf("keygen printed %q: %d bytes, %v; want base64 of 32 bytes", out.String(), len(key), err)
	}
	var again bytes.Buffer
	run(t.Context(), []string{"keygen"}, &again, &errb, nil)
	if again.String() == out.String() {
		t.Error("two keygens printed the same key")
	}

	// The printed key is accepted by the config as a key file.
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "gossip.key")
	cfg := filepath.Join(dir, "hostlb.toml")
	if err := os.WriteFile(keyFile, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// No Kubernetes: this host has no kubeconfig, and only the key is under test.
	conf := "[node]\nname = \"n1\"\n[gossip]\nsecret_key_file = \"gossip.key\"\n[kubernetes]\nenabled = false\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run(t.Context(), []string{"config", "check", cfg}, &out, &errb, nil); code != exitOK {
		t.Fatalf("config check with a keygen key: exit %d: %s", code, errb.String())
	}
}

func TestUsageAndErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "usage:"},
		{[]string{"frobnicate"}, exitUsage, "bad usage"},
		{[]string{"config"}, exitUsage, "bad usage"},
		{[]string{"config", "check", "a.toml", "b.toml"}, exitUsage, "bad usage"},
		{[]string{"version"}, exitOK, "hostlbctl "},
		{[]string{"config", "check", "/nonexistent/hostlb.toml"}, exitError, "/nonexistent/hostlb.toml"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(t.Context(), tt.args, &out, &errb, nil)
		if code != tt.code {
			t.Errorf("%q: exit %d, want %d", tt.args, code, tt.code)
		}
		if !strings.Contains(out.String()+errb.String(), tt.want) {
			t.Errorf("%q: output lacks %q: %s%s", tt.args, tt.want, out.String(), errb.String())
		}
	}
}

// TestKeygenRotationSteps follows the rotation the help describes: every
// step's key file passes `config check`, and the help names the steps.
func TestKeygenRotationSteps(t *testing.T) {
	var help, errb bytes.Buffer
	run(t.Context(), []string{"help"}, &help, &errb, nil)
	for _, want := range []string{"add the new key as the second line", "move it to the first line",
		"remove the old key", "systemctl reload hostlb", "hostlbctl keygen >> /etc/hostlb/gossip.key"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, help.String())
		}
	}
	keygen := func() string {
		var out bytes.Buffer
		if code := run(t.Context(), []string{"keygen"}, &out, &errb, nil); code != exitOK {
			t.Fatalf("keygen: exit %d: %s", code, errb.String())
		}
		return out.String()
	}
	oldKey, newKey := keygen(), keygen()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "gossip.key")
	cfg := filepath.Join(dir, "hostlb.toml")
	conf := "[node]\nname = \"n1\"\n[gossip]\nsecret_key_file = \"gossip.key\"\n[kubernetes]\nenabled = false\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct{ name, content string }{
		{"before", oldKey},
		{"1. keygen >> appends the new key", oldKey + newKey},
		{"2. new key first", "# rotated\n" + newKey + oldKey},
		{"3. old key removed", newKey},
	} {
		if err := os.WriteFile(keyFile, []byte(step.content), 0o640); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		errb.Reset()
		if code := run(t.Context(), []string{"config", "check", cfg}, &out, &errb, nil); code != exitOK {
			t.Errorf("%s: config check: exit %d: %s", step.name, code, errb.String())
		}
	}
}
