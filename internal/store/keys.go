package store

import (
	"fmt"
	"strings"
)

// Key prefixes. They end in "/" so that a prefix read of one kind or service
// never picks up another whose name merely starts the same way.
const (
	Prefix          = "/trellis/"
	ResourcesPrefix = Prefix + "resources/"
	InstancesPrefix = Prefix + "instances/"
)

// ResourceKey is where a resource lives.
func ResourceKey(kind, namespace, name string) string {
	return ResourcesPrefix + kind + "/" + namespace + "/" + name
}

// KindPrefix is the prefix of every resource of one kind.
func KindPrefix(kind string) string {
	return ResourcesPrefix + kind + "/"
}

// InstanceKey is where a registered instance lives.
func InstanceKey(service, id string) string {
	return InstancesPrefix + service + "/" + id
}

// CheckKeySegment rejects a key segment (kind, namespace, name, service, id)
// that would change the shape of a key. The API validates names far more
// strictly; this is the store's own guard for callers that bypass it.
func CheckKeySegment(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	}
	if strings.ContainsAny(s, "/\x00") {
		return fmt.Errorf("%w: %s %q contains '/'", ErrInvalid, what, s)
	}
	return nil
}
