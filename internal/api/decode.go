package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Resource is implemented by every kind of user resource.
type Resource interface {
	GetKind() string
	Meta() *Metadata
}

// GetKind reports the resource's kind.
func (r *Route) GetKind() string { return KindRoute }

// Meta returns the resource's metadata for the store to fill in.
func (r *Route) Meta() *Metadata { return &r.Metadata }

// GetKind reports the resource's kind.
func (p *TrafficPolicy) GetKind() string { return KindTrafficPolicy }

// Meta returns the resource's metadata for the store to fill in.
func (p *TrafficPolicy) Meta() *Metadata { return &p.Metadata }

// MaxInputBytes is the largest input Decode reads. The HTTP API caps apply
// bodies lower still (control.MaxApplyBytes); this bound holds for every
// caller.
const MaxInputBytes = 4 << 20

// Decode reads one or more YAML or JSON documents (YAML documents separated
// by "---"; JSON is YAML), strictly: an unknown field or a value of the
// wrong type is an error naming its path. Each resource is defaulted and
// validated. On any error nothing is returned, so a caller cannot store
// half of a file.
//
// YAML anchors and aliases are refused: a few bytes aliased many times
// expand to gigabytes (the YAML library limits aliases by node count, not
// size). Each document is parsed into a yaml.Node tree first, which holds
// an alias as one node pointing at its anchor and so never expands it, and
// the tree is checked before it is converted to values.
func Decode(data []byte) ([]Resource, error) {
	if len(data) > MaxInputBytes {
		return nil, fmt.Errorf("input is %d bytes, over the limit of %d", len(data), MaxInputBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []Resource
	for doc := 1; ; doc++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %s", doc, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		if err := refuseAliases(&node); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		var raw any
		if err := node.Decode(&raw); err != nil {
			return nil, fmt.Errorf("document %d: %s", doc, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		if raw == nil { // an empty document between separators
			continue
		}
		r, err := decodeOne(raw)
		if err != nil {
			return nil, fmt.Errorf("document %d%s", doc, err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, errors.New("no resources in input")
	}
	return out, nil
}

// ErrYAMLAlias is wrapped by Decode's error for an input using a YAML
// anchor or alias.
var ErrYAMLAlias = errors.New("YAML aliases are not accepted")

// refuseAliases walks a parsed document in order (iteratively: the parser
// bounds the depth, but a walk need not rely on it) and fails at the first
// anchor or alias, naming its line. Merge keys ("<<: *base") are aliases too.
func refuseAliases(root *yaml.Node) error {
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Kind == yaml.AliasNode || n.Anchor != "" {
			return fmt.Errorf("line %d: %w (anchors and aliases; write the value out)", n.Line, ErrYAMLAlias)
		}
		for i := len(n.Content) - 1; i >= 0; i-- { // the first child is popped first
			stack = append(stack, n.Content[i])
		}
	}
	return nil
}

// decodeOne turns one generic document into a typed, validated resource.
// Errors start with ": " or " (Kind "name"): " so Decode can prefix the
// document number.
func decodeOne(raw any) (Resource, error) {
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf(": must be a mapping with apiVersion, kind, metadata and spec")
	}
	kind, _ := obj["kind"].(string)
	var r Resource
	switch kind {
	case KindRoute:
		r = &Route{}
	case KindTrafficPolicy:
		r = &TrafficPolicy{}
	case "":
		return nil, fmt.Errorf(": kind: required")
	default:
		return nil, fmt.Errorf(": kind: unknown kind %q (known: %s, %s)", kind, KindRoute, KindTrafficPolicy)
	}
	name, _ := nestedString(obj, "metadata", "name")
	where := fmt.Sprintf(" (%s %q): ", kind, name)
	if err := checkShape(raw, typeOf(r), ""); err != nil {
		return nil, fmt.Errorf("%s%w", where, err)
	}
	// checkShape guarantees the JSON round trip cannot fail on types.
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("%s%w", where, err)
	}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("%s%w", where, err)
	}
	Default(r)
	if err := Validate(r); err != nil {
		return nil, fmt.Errorf("%s%w", where, err)
	}
	return r, nil
}

// DecodeJSON reads one resource of a known kind from its stored JSON form
// (the store's own bytes: already validated when applied).
func DecodeJSON(kind string, data []byte) (Resource, error) {
	var r Resource
	switch kind {
	case KindRoute:
		r = &Route{}
	case KindTrafficPolicy:
		r = &TrafficPolicy{}
	default:
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return r, nil
}

// Default fills in what a user may leave out.
func Default(r Resource) {
	m := r.Meta()
	if m.Namespace == "" {
		m.Namespace = DefaultNamespace
	}
}

func nestedString(obj map[string]any, keys ...string) (string, bool) {
	var cur any = obj
	for _, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		cur = m[k]
	}
	s, ok := cur.(string)
	return s, ok
}

// KindFor maps what a user types on the command line ("route", "routes",
// "Route") to a kind.
func KindFor(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "route", "routes", "rt":
		return KindRoute, true
	case "trafficpolicy", "trafficpolicies", "tp":
		return KindTrafficPolicy, true
	}
	return "", false
}
