// Package syncmap holds what the proxy's per-cluster state tables (kept in
// sync.Maps keyed by cluster name, outside configuration snapshots) share.
package syncmap

import "sync"

// DeleteUnless deletes every entry of m, keyed by cluster name, that keep
// refuses: the state of clusters gone from the configuration, so that the
// tables do not grow with cluster churn.
func DeleteUnless(m *sync.Map, keep func(cluster string) bool) {
	m.Range(func(k, _ any) bool {
		if name, ok := k.(string); ok && !keep(name) {
			m.Delete(k)
		}
		return true
	})
}
