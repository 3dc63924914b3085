package model

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// onlyFields rejects a message that sets a field outside allowed.
//
// Conversion works from an allow list, not a deny list, on purpose: Envoy
// adds fields every release, and a field the proxy does not know may change
// what a request matches or where it goes (a rewrite, a retry, a TLS
// context). Silently ignoring it would make the proxy route differently
// from what the control plane meant, so an unknown feature is a NACK that
// says which field, and the allow list grows as the proxy learns features.
// Allowed fields are either converted by the caller or known not to change
// routing (stat_prefix, metadata, connect_timeout…).
//
// Unknown wire fields (from an xDS API newer than ours) are not visible
// here and are ignored.
func onlyFields(at string, m proto.Message, allowed ...string) error {
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !r.Has(fd) || slices.Contains(allowed, string(fd.Name())) {
			continue
		}
		return errAt(join(at, string(fd.Name())), "unsupported field%s", deprecatedNote(fd))
	}
	return nil
}

func deprecatedNote(fd protoreflect.FieldDescriptor) string {
	if opts, ok := fd.Options().(interface{ GetDeprecated() bool }); ok && opts.GetDeprecated() {
		return " (deprecated)"
	}
	return ""
}
