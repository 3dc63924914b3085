package api

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

const canary = `apiVersion: trellis.dev/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
  - version: v3
    matches:
    - headers: {gray: {exact: "1"}}
    - queryParams: {debug: {exact: "true"}}
  - version: v1
    weight: 80
  - version: v2
    weight: 20
`

func TestDecodeCanary(t *testing.T) {
	rs, err := Decode([]byte(canary))
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0].(*Route)
	if r.Metadata.Namespace != "default" || r.Spec.Service != "reviews" || len(r.Spec.Rules) != 3 {
		t.Fatalf("decoded %+v", r)
	}
	if got := r.Spec.Rules[0].Matches[0].Headers["gray"].Exact; got != "1" {
		t.Fatalf("header match = %q", got)
	}
	if *r.Spec.Rules[1].Weight != 80 {
		t.Fatalf("weight = %d", *r.Spec.Rules[1].Weight)
	}
}

func TestDecodeMultiAndJSON(t *testing.T) {
	in := canary + "---\n" + `{"apiVersion":"trellis.dev/v1alpha1","kind":"Route","metadata":{"name":"ratings","namespace":"shop"},"spec":{"service":"ratings","rules":[{"version":"v1","weight":100}]}}`
	rs, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[1].Meta().Namespace != "shop" {
		t.Fatalf("got %d resources, second ns %q", len(rs), rs[1].Meta().Namespace)
	}
}

func TestDecodeErrors(t *testing.T) {
	route := func(spec string) string {
		return "apiVersion: trellis.dev/v1alpha1\nkind: Route\nmetadata: {name: reviews}\nspec:\n" + spec
	}
	tests := []struct {
		name, in, want string
	}{
		{"weights", route("  service: reviews\n  rules:\n  - {version: v1, weight: 70}\n  - {version: v2, weight: 20}\n"),
			`document 1 (Route "reviews"): spec.rules: weights of v1, v2 add up to 90, must be 100`},
		{"unknown field", route("  service: reviews\n  rules:\n  - {version: v1, weigth: 100}\n"),
			`spec.rules[0].weigth: unknown field (known: matches, version, weight)`},
		{"wrong type", route("  service: reviews\n  rules:\n  - {version: v1, weight: \"100\"}\n"),
			`spec.rules[0].weight: must be an integer, got a string`},
		{"number version", route("  service: reviews\n  rules:\n  - {version: 1.0, weight: 100}\n"),
			`spec.rules[0].version: must be a string, got a number`},
		{"no service", route("  rules:\n  - {version: v1, weight: 100}\n"), `spec.service: required`},
		{"bad service", route("  service: Reviews_\n  rules:\n  - {version: v1, weight: 100}\n"), `spec.service: "Reviews_" must be lower-case`},
		{"no rules", route("  service: reviews\n"), `spec.rules: at least one rule is required`},
		{"both", route("  service: reviews\n  rules:\n  - {version: v1, weight: 100, matches: [{headers: {a: {exact: b}}}]}\n"), `spec.rules[0]: a rule has either matches or a weight, not both`},
		{"neither", route("  service: reviews\n  rules:\n  - {version: v1}\n"), `spec.rules[0]: a rule needs matches`},
		{"range", route("  service: reviews\n  rules:\n  - {version: v1, weight: 120}\n"), `spec.rules[0].weight: 120 is out of range 0..100`},
		{"dup", route("  service: reviews\n  rules:\n  - {version: v1, weight: 50}\n  - {version: v1, weight: 50}\n"), `spec.rules[1].version: "v1" has a weight in an earlier rule already`},
		{"empty match", route("  service: reviews\n  rules:\n  - {version: v1, matches: [{}]}\n"), `spec.rules[0].matches[0]: a match needs at least one of`},
		{"two kinds", route("  service: reviews\n  rules:\n  - {version: v1, matches: [{headers: {gray: {exact: a, prefix: b}}}]}\n"), `spec.rules[0].matches[0].headers.gray: set exactly one of exact, prefix, regex, present (got 2)`},
		{"regex", route("  service: reviews\n  rules:\n  - {version: v1, matches: [{queryParams: {q: {regex: \"(\"}}}]}\n"), `spec.rules[0].matches[0].queryParams.q.regex: "(" is not a valid RE2 expression`},
		{"path slash", route("  service: reviews\n  rules:\n  - {version: v1, matches: [{path: {prefix: api}}]}\n"), `spec.rules[0].matches[0].path: "api" must start with /`},
		{"bad header", route("  service: reviews\n  rules:\n  - {version: v1, matches: [{headers: {\"a b\": {present: true}}}]}\n"), `is not a valid header name`},
		{"major groups", route("  service: reviews\n  rules:\n  - {version: \"1.0\", weight: 80}\n  - {version: \"1.1\", weight: 20}\n  - {version: \"2.0\", weight: 90}\n"), `spec.rules: weights of 2.0 add up to 90, must be 100 (major version 2)`},
		{"mixed versions", route("  service: reviews\n  rules:\n  - {version: \"1.0\", weight: 50}\n  - {version: v2, weight: 50}\n"), `spec.rules[0].version: "1.0" is MAJOR.MINOR but other versions are not`},
		{"timeout not a duration", route("  service: reviews\n  timeout: 2\n  rules:\n  - {version: v1, weight: 100}\n"), `spec.timeout: must be a string, got a number`},
		{"timeout unit", route("  service: reviews\n  timeout: 2sec\n  rules:\n  - {version: v1, weight: 100}\n"), `spec.timeout: "2sec" is not a duration (like 2s or 150ms)`},
		{"timeout zero", route("  service: reviews\n  timeout: 0s\n  rules:\n  - {version: v1, weight: 100}\n"), `spec.timeout: 0s must be whole milliseconds, from 1ms to 1h0m0s`},
		{"timeout too long", route("  service: reviews\n  timeout: 2h\n  rules:\n  - {version: v1, weight: 100}\n"), `spec.timeout: 2h must be whole milliseconds`},
		{"timeout sub-millisecond", route("  service: reviews\n  timeout: 1500us\n  rules:\n  - {version: v1, weight: 100}\n"), `spec.timeout: 1500us must be whole milliseconds`},
		{"api version", strings.Replace(route("  service: reviews\n  rules:\n  - {version: v1, weight: 100}\n"), "v1alpha1", "v1", 1), `apiVersion: must be "trellis.dev/v1alpha1"`},
		{"kind", "apiVersion: trellis.dev/v1alpha1\nkind: Canary\n", `document 1: kind: unknown kind "Canary"`},
		{"no kind", "apiVersion: trellis.dev/v1alpha1\n", `document 1: kind: required`},
		{"not a map", "- a\n- b\n", `document 1: must be a mapping`},
		{"yaml syntax", "a: [\n", `document 1:`},
		{"empty", "", `no resources in input`},
		{"second doc", canary + "---\n" + route("  service: reviews\n  rules: 3\n"), `document 2 (Route "reviews"): spec.rules: must be a list, got a number`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Decode([]byte(tc.in))
			if err == nil {
				t.Fatalf("no error, decoded %d resources", len(rs))
			}
			if rs != nil {
				t.Fatalf("resources returned with an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestDecodeValidVariants(t *testing.T) {
	route := func(spec string) string {
		return "apiVersion: trellis.dev/v1alpha1\nkind: Route\nmetadata: {name: reviews}\nspec:\n  service: reviews\n" + spec
	}
	for name, in := range map[string]string{
		"only matches":   route("  rules:\n  - {version: v2, matches: [{path: {prefix: /api}}, {headers: {x-user: {regex: \"a.*\"}}}]}\n"),
		"major minor":    route("  rules:\n  - {version: \"1.0\", weight: 80}\n  - {version: \"1.1\", weight: 20}\n  - {version: \"2.0\", weight: 100}\n"),
		"zero weight":    route("  rules:\n  - {version: v1, weight: 100}\n  - {version: v2, weight: 0}\n"),
		"timeout":        route("  timeout: 150ms\n  rules:\n  - {version: v1, weight: 100}\n"),
		"timeout bounds": route("  timeout: 1h\n  rules:\n  - {version: v1, weight: 100}\n---\napiVersion: trellis.dev/v1alpha1\nkind: Route\nmetadata: {name: r2}\nspec: {service: ratings, timeout: 1ms, rules: [{version: v1, weight: 100}]}\n"),
		"present":        route("  rules:\n  - {version: v2, matches: [{headers: {gray: {present: true}}}]}\n"),
		"empty doc sep":  "---\n" + route("  rules:\n  - {version: v1, weight: 100}\n") + "---\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode([]byte(in)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(canary))
	f.Add([]byte("kind: Route\nspec: {rules: [{weight: 1}]}"))
	f.Add([]byte(`{"kind":"Route","metadata":{"name":"a"},"spec":{"service":"a","rules":[{"version":"1.0","weight":100}]}}`))
	f.Add([]byte("a: &a [1, 2]\nb: [*a, *a, *a]\n"))
	f.Add([]byte("a: &a {x: 1}\nb: {<<: *a}\n---\n--- &d\nc: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Decode(data)
		if err != nil {
			return
		}
		if bytes.ContainsAny(data, "&*") {
			// Accepted input may hold & and * only inside strings; an
			// anchor or alias that got through would have been refused.
			var probe yaml.Node
			dec := yaml.NewDecoder(bytes.NewReader(data))
			for dec.Decode(&probe) == nil {
				if refuseAliases(&probe) != nil {
					t.Fatalf("Decode accepted an input with an anchor or alias")
				}
			}
		}
		for _, r := range rs {
			if verr := Validate(r); verr != nil {
				t.Fatalf("Decode accepted a resource Validate rejects: %v", verr)
			}
		}
	})
}

func TestDecodeRefusesAliases(t *testing.T) {
	route := "apiVersion: trellis.dev/v1alpha1\nkind: Route\nmetadata: {name: reviews}\nspec:\n  service: reviews\n"
	tests := []struct {
		name, in, want string
	}{
		{"alias", route + "  rules:\n  - &r {version: v1, weight: 100}\n  - *r\n", `document 1: line 7: YAML aliases are not accepted`},
		{"anchor only", route + "  rules:\n  - &r {version: v1, weight: 100}\n", `document 1: line 7: YAML aliases are not accepted`},
		{"merge key", route + "  rules:\n  - &r {version: v1}\n  - {<<: *r, weight: 100}\n", `document 1: line 7: YAML aliases are not accepted`},
		{"anchored key", "&k apiVersion: trellis.dev/v1alpha1\n", `document 1: line 1: YAML aliases are not accepted`},
		{"second document", canary + "---\n" + "a: &x 1\nb: *x\n", `document 2: line 16: YAML aliases are not accepted`},
		{"anchored document", "--- &doc\n" + canary, `document 1: line 1: YAML aliases are not accepted`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Decode([]byte(tc.in))
			if err == nil {
				t.Fatalf("no error, decoded %d resources", len(rs))
			}
			if !errors.Is(err, ErrYAMLAlias) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q (or is not ErrYAMLAlias)", err, tc.want)
			}
		})
	}
	// The characters alone are fine: a quoted "&" or "*" is a string.
	if _, err := Decode([]byte(route + "  rules:\n  - {version: v1, matches: [{headers: {x: {exact: \"&a *b\"}}}]}\n")); err != nil {
		t.Fatal(err)
	}
}

// An alias bomb (one 1,100-byte string anchored once and aliased 49,152 times:
// 145 KiB that expands to 54 MB) is refused without expanding it: the
// whole Decode allocates a few MB, measured by the runtime, not timed.
func TestDecodeAliasBombBoundedMemory(t *testing.T) {
	const (
		valueLen = 1100
		aliases  = 48 << 10
	)
	var b strings.Builder
	b.WriteString("apiVersion: trellis.dev/v1alpha1\nkind: Route\nmetadata: {name: bomb}\nspec:\n  service: bomb\n  rules:\n")
	// A Route of valid shape: before aliases were refused, this got past
	// the shape check and expanded in the JSON round trip.
	b.WriteString("  - version: v1\n    matches: [&m {headers: {h: {exact: \"" + strings.Repeat("x", valueLen) + "\"}}}")
	for range aliases {
		b.WriteString(",*m")
	}
	b.WriteString("]\n")
	body := []byte(b.String())
	if expanded := aliases * valueLen; len(body) > 150<<10 || expanded < 50<<20 {
		t.Fatalf("bomb is %d bytes expanding to %d; want <150 KiB to >50 MiB", len(body), expanded)
	}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Decode(body)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrYAMLAlias) || !strings.Contains(err.Error(), "document 1: line 8: YAML aliases are not accepted") {
		t.Fatalf("alias bomb: err = %v", err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d byte bomb (expands to %d MiB): Decode allocated %.1f MiB", len(body), aliases*valueLen>>20, float64(alloc)/(1<<20))
	if alloc > 64<<20 {
		t.Errorf("Decode allocated %d MiB for a %d KiB body", alloc>>20, len(body)>>10)
	}
}

func TestDecodeInputLimit(t *testing.T) {
	big := canary + "# " + strings.Repeat("x", MaxInputBytes) + "\n"
	if _, err := Decode([]byte(big)); err == nil || !strings.Contains(err.Error(), "over the limit of 4194304") {
		t.Fatalf("over-size input: err = %v", err)
	}
}
