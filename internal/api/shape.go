package api

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// checkShape walks a generic YAML/JSON value against the Go type it will be
// decoded into and reports the first unknown field or wrongly typed value
// with its full path ("spec.rules[1].weight: must be an integer, got
// string"). encoding/json's own errors drop slice indexes and do not flag
// unknown fields by path, which is what a user needs to find the mistake.
func checkShape(v any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return nil // null is the zero value
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: must be a mapping, got %s", orRoot(path), describe(v))
		}
		fields := jsonFields(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			ft, ok := fields[k]
			if !ok {
				return fmt.Errorf("%s: unknown field (known: %s)", join(path, k), knownList(fields))
			}
			if err := checkShape(m[k], ft, join(path, k)); err != nil {
				return err
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: must be a mapping, got %s", orRoot(path), describe(v))
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if err := checkShape(m[k], t.Elem(), join(path, k)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		s, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: must be a list, got %s", orRoot(path), describe(v))
		}
		for i, e := range s {
			if err := checkShape(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s: must be a string, got %s (quote it: \"%v\")", path, describe(v), v)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: must be true or false, got %s", path, describe(v))
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		switch n := v.(type) {
		case int, int64, uint64:
		case float64:
			if n != float64(int64(n)) {
				return fmt.Errorf("%s: must be an integer, got %v", path, n)
			}
		default:
			return fmt.Errorf("%s: must be an integer, got %s", path, describe(v))
		}
	}
	return nil
}

func typeOf(r Resource) reflect.Type { return reflect.TypeOf(r) }

// jsonFields maps each JSON field name of a struct to its type.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func knownList(fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		if n == "generation" { // set by the store, not by users
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func orRoot(path string) string {
	if path == "" {
		return "(document)"
	}
	return path
}
