package config

import "testing"

// [control] socket = "" turns the control socket off, like [metrics]
// listen = ""; any other value must be an absolute path that fits a unix
// socket address.
func TestControlSocket(t *testing.T) {
	for _, tt := range []struct{ toml, want string }{
		{"", "/run/hostlb/hostlb.sock"},
		{"[control]\nsocket = \"\"", ""},
		{"[control]\nsocket = \"/tmp/h.sock\"", "/tmp/h.sock"},
	} {
		c := mustParse(t, testOptions(), "/etc/hostlb/hostlb.toml", []byte(tt.toml))
		if c.Control.Socket != tt.want {
			t.Errorf("%q: socket %q, want %q", tt.toml, c.Control.Socket, tt.want)
		}
	}
	long := "/run/x"
	for len(long) < 108 {
		long += "x"
	}
	_, err := testOptions().Parse("/etc/hostlb/hostlb.toml", []byte("[control]\nsocket = \""+long+"\""))
	if got := where(t, err); len(got) != 1 || got[0] != "2:control.socket" {
		t.Errorf("a %d-byte socket path: errors %v, want 2:control.socket", len(long), got)
	}
}
