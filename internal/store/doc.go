// Package store keeps Trellis's user resources in etcd: an embedded
// single-node etcd by default, or an external cluster. Both modes share
// every code path after the etcd client is made.
//
// Key layout (everything lives under Prefix, "/trellis/"):
//
//	/trellis/resources/<Kind>/<namespace>/<name>  JSON of the resource (e.g. an api.Route)
//	/trellis/instances/<service>/<id>             JSON of an api.Instance, attached to a lease
//
// Resources are written by Apply, one etcd transaction per call, so a
// multi-document apply is all-or-nothing. Instances are written by package
// registry; their keys carry a lease so that an instance whose control plane
// dies leaves the mesh when the lease expires.
//
// Watch reports "something under /trellis/ changed" without saying what: the
// control plane re-reads its whole (small) state on every signal, which keeps
// the aggregator trivially correct after missed events, compactions and
// reconnects.
package store
