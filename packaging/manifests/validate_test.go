package manifests_test

import (
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/hostlb/hostlb/packaging/manifests"
)

// validate checks v against an OpenAPI v3 schema the way the API server
// does for the keywords these CRDs use, and also reports fields the schema
// does not declare: the server would prune them, silently losing a user's
// setting. A keyword it does not know is reported too, so it never checks
// less than it appears to. Transition rules (x-kubernetes-validations with
// oldSelf) only run on updates and are not evaluated here.
func validate(path string, s map[string]any, v any) []string {
	var errs []string
	fail := func(p, format string, args ...any) {
		errs = append(errs, p+": "+fmt.Sprintf(format, args...))
	}
	for k := range s {
		if !slices.Contains(knownKeywords, k) {
			fail(path, "schema keyword %q is unknown to this validator", k)
		}
	}

	switch typ, _ := s["type"].(string); typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			fail(path, "want object, got %T", v)
			return errs
		}
		for _, r := range asSlice(s["required"]) {
			if _, ok := m[r.(string)]; !ok {
				fail(join(path, r.(string)), "required")
			}
		}
		props, _ := s["properties"].(map[string]any)
		extra, _ := s["additionalProperties"].(map[string]any)
		open, _ := s["x-kubernetes-preserve-unknown-fields"].(bool)
		for k, fv := range m {
			p := join(path, k)
			switch {
			case path == "" && k == "metadata":
				// ObjectMeta is validated by the server itself.
			case props[k] != nil:
				errs = append(errs, validate(p, props[k].(map[string]any), fv)...)
			case extra != nil:
				errs = append(errs, validate(p, extra, fv)...)
			case !open:
				fail(p, "unknown field (the API server would prune it)")
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			fail(path, "want array, got %T", v)
			return errs
		}
		if lo, ok := s["minItems"]; ok && float64(len(a)) < number(lo) {
			fail(path, "fewer than %v items", lo)
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range a {
				errs = append(errs, validate(fmt.Sprintf("%s[%d]", path, i), items, e)...)
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			fail(path, "want string, got %T", v)
			return errs
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			fail(path, "want boolean, got %T", v)
			return errs
		}
	case "integer":
		if n, ok := numeric(v); !ok || n != math.Trunc(n) {
			fail(path, "want integer, got %T %v", v, v)
			return errs
		}
	case "":
		// A value validation inside anyOf: no type of its own.
	default:
		fail(path, "schema type %q is unknown to this validator", typ)
	}

	if p, ok := s["pattern"].(string); ok {
		if !regexp.MustCompile(p).MatchString(v.(string)) {
			fail(path, "does not match %s (got %q)", p, v)
		}
	}
	if f, ok := s["format"].(string); ok {
		if msg := checkFormat(f, v); msg != "" {
			fail(path, "%s", msg)
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return reflect.DeepEqual(e, v) }) {
		fail(path, "not one of %v (got %v)", enum, v)
	}
	if lo, ok := s["minimum"]; ok {
		if n, _ := numeric(v); n < number(lo) {
			fail(path, "below minimum %v (got %v)", lo, v)
		}
	}
	if hi, ok := s["maximum"]; ok {
		if n, _ := numeric(v); n > number(hi) {
			fail(path, "above maximum %v (got %v)", hi, v)
		}
	}
	if anyOf, ok := s["anyOf"].([]any); ok {
		var why []string
		matched := false
		for _, sub := range anyOf {
			e := validate(path, sub.(map[string]any), v)
			if len(e) == 0 {
				matched = true
				break
			}
			why = append(why, e...)
		}
		if !matched {
			fail(path, "matches none of anyOf: %s", strings.Join(why, "; "))
		}
	}
	return errs
}

var knownKeywords = []string{
	"type", "description", "properties", "additionalProperties", "items", "required",
	"pattern", "anyOf", "enum", "minimum", "maximum", "minItems", "format", "default",
	"x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations",
}

func checkFormat(format string, v any) string {
	switch format {
	case "int64":
		return ""
	case "ipv4", "ipv6":
		s, _ := v.(string)
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || (format == "ipv4") != a.Is4() {
			return fmt.Sprintf("not an %s address (got %q)", format, s)
		}
		return ""
	}
	return fmt.Sprintf("format %q is unknown to this validator", format)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// numeric reads a number decoded either by unstructured (int64) or by
// encoding/json (float64).
func numeric(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func number(v any) float64 {
	n, _ := numeric(v)
	return n
}

func fsGlob(pattern string) ([]string, error) { return fs.Glob(manifests.FS, pattern) }
