package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, glob := range []string{"testdata/*.toml", "../../configs/*.toml", "../../configs/examples/*.toml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, s := range []string{
		"", "[", "[[vip]]", "vip = [{}]", "a.b.c = 1", "[node]\nlabels.x.y = 1",
		"[[vip]]\n[vip.health]\n[[vip]]\nhealth = {}", "bgp.peer = [1, {address = 2}]",
		"[gossip]\njoin = [[], {}]", "[l2]\ninterfaces = [\"/(?i)x{1000}/\"]",
	} {
		f.Add([]byte(s))
	}
	o := testOptions()
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := o.Parse("fuzz.toml", data)
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", c != nil, err)
		}
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is not a non-empty Errors: %v", err)
			}
			for i := 1; i < len(errs); i++ {
				if errs[i].Line < errs[i-1].Line {
					t.Fatalf("errors not sorted by line: %v", err)
				}
			}
			_ = err.Error()
			return
		}
		// A valid config compares equal to itself.
		if live, restart := Changes(c, c); live != nil || restart != nil {
			t.Fatalf("Changes(c, c) = %v, %v", live, restart)
		}
	})
}
