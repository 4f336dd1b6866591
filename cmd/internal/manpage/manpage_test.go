package manpage

import (
	"strings"
	"testing"
)

func TestRenderEscapes(t *testing.T) {
	p := Page{Name: "tool-x", Section: "8", Title: "does a-b", Source: "hostlb", Manual: "System Administration",
		Synopsis: []string{"tool-x [-s SOCKET] COMMAND"},
		Sections: []Section{{Name: "DESCRIPTION", Items: []Item{
			{Text: "first line\n.starts with a dot\n\nback\\slash"},
			{Tag: "-o json", Text: "tagged"},
			{Text: "  literal -x\n'quote", Literal: true},
		}}}}
	got := p.Render()
	for _, want := range []string{
		`.TH TOOL\-X 8 "" "hostlb" "System Administration"`,
		"tool\\-x \\- does a\\-b\n",
		".B tool\\-x\n[\\-s SOCKET] COMMAND\n",
		"\\&.starts with a dot\n.sp\nback\\eslash\n",
		".TP\n.B \\-o json\ntagged\n",
		".RS\n.nf\n  literal \\-x\n\\&'quote\n.fi\n.RE\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered page lacks %q:\n%s", want, got)
		}
	}
}

func TestParseFlagUsage(t *testing.T) {
	usage := "Usage of hostlbd:\n  -check-config\n    \tvalidate the configuration\n  -config file\n    \tconfiguration file (default \"/etc/x\")\n    \tsecond line\n"
	got := ParseFlagUsage(usage)
	want := []Flag{{"-check-config", "validate the configuration"}, {"-config file", `configuration file (default "/etc/x") second line`}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %q, want %q", got, want)
	}
}
