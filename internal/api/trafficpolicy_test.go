package api

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func policy(spec string) string {
	return "apiVersion: trellis.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n" + spec
}

func TestDecodeTrafficPolicy(t *testing.T) {
	rs, err := Decode([]byte(policy("  service: reviews\n  version: v2\n  loadBalancer:\n    consistentHash: {header: x-user, minimumRingSize: 2048}\n")))
	if err != nil {
		t.Fatal(err)
	}
	p := rs[0].(*TrafficPolicy)
	if p.Metadata.Namespace != "default" || p.Spec.Service != "reviews" || p.Spec.Version != "v2" ||
		p.Spec.LoadBalancer.ConsistentHash.Header != "x-user" || *p.Spec.LoadBalancer.ConsistentHash.MinimumRingSize != 2048 {
		t.Fatalf("decoded %+v", p.Spec)
	}
}

func TestTrafficPolicyValid(t *testing.T) {
	for name, spec := range map[string]string{
		"roundRobin":        "  service: reviews\n  loadBalancer: {roundRobin: {}}\n",
		"random":            "  service: reviews\n  loadBalancer: {random: {}}\n",
		"leastRequest":      "  service: reviews\n  loadBalancer: {leastRequest: {}}\n",
		"leastRequest 10":   "  service: reviews\n  loadBalancer: {leastRequest: {choiceCount: 10}}\n",
		"cookie":            "  service: reviews\n  loadBalancer: {consistentHash: {cookie: {name: session}}}\n",
		"cookie ttl":        "  service: reviews\n  loadBalancer: {consistentHash: {cookie: {name: session, ttl: 1h}}}\n",
		"sourceIP":          "  service: reviews\n  version: \"1.0\"\n  loadBalancer: {consistentHash: {sourceIP: true}}\n",
		"ring size bounds":  "  service: reviews\n  loadBalancer: {consistentHash: {header: a, minimumRingSize: 64}}\n",
		"ring size maximum": "  service: reviews\n  loadBalancer: {consistentHash: {header: a, minimumRingSize: 65536}}\n",
		"outlier only":      "  service: reviews\n  outlierDetection: {}\n",
		"outlier all":       "  service: reviews\n  loadBalancer: {random: {}}\n  outlierDetection: {consecutive5xx: 3, consecutiveGatewayErrors: 2, interval: 5s, baseEjectionTime: 1m, maxEjectionPercent: 0}\n",
		"outlier 100%":      "  service: reviews\n  outlierDetection: {maxEjectionPercent: 100}\n",
		"pool only":         "  service: reviews\n  connectionPool: {maxRequests: 1}\n",
		"pool maximum":      "  service: reviews\n  version: v2\n  loadBalancer: {random: {}}\n  connectionPool: {maxRequests: 1000000}\n",
		"health http only":  "  service: reviews\n  healthCheck: {http: {path: /healthz}}\n",
		"health http all":   "  service: reviews\n  healthCheck: {http: {path: \"/health?full=1\", expectedStatuses: [200, 204, 429]}, interval: 5s, timeout: 500ms, unhealthyThreshold: 1, healthyThreshold: 1000}\n",
		"health grpc":       "  service: reviews\n  version: v2\n  healthCheck: {grpc: {}}\n",
		"health grpc named": "  service: reviews\n  healthCheck: {grpc: {service: trellis.sample.Echo}, interval: 100ms, timeout: 99ms}\n",
		"health tcp":        "  service: reviews\n  loadBalancer: {random: {}}\n  healthCheck: {tcp: {}, interval: 1h, timeout: 59m}\n",
	} {
		if _, err := Decode([]byte(policy(spec))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestTrafficPolicyErrors(t *testing.T) {
	tests := []struct{ name, spec, want string }{
		{"no service", "  loadBalancer: {random: {}}\n", "spec.service: required"},
		{"bad version", "  service: reviews\n  version: \"v 1\"\n  loadBalancer: {random: {}}\n", `spec.version: "v 1" must be`},
		{"no policy", "  service: reviews\n", "spec: set at least one of loadBalancer, outlierDetection, connectionPool, healthCheck"},
		{"hc none", "  service: reviews\n  healthCheck: {}\n", "spec.healthCheck: set exactly one of http, grpc, tcp (got 0)"},
		{"hc two", "  service: reviews\n  healthCheck: {tcp: {}, grpc: {}}\n", "spec.healthCheck: set exactly one of http, grpc, tcp (got 2)"},
		{"hc no path", "  service: reviews\n  healthCheck: {http: {}}\n", "spec.healthCheck.http.path: required"},
		{"hc relative path", "  service: reviews\n  healthCheck: {http: {path: healthz}}\n", `spec.healthCheck.http.path: "healthz" must start with /`},
		{"hc path space", "  service: reviews\n  healthCheck: {http: {path: \"/a b\"}}\n", `spec.healthCheck.http.path: "/a b" must not contain spaces`},
		{"hc status low", "  service: reviews\n  healthCheck: {http: {path: /, expectedStatuses: [200, 99]}}\n", "spec.healthCheck.http.expectedStatuses[1]: 99 is out of range 100..599"},
		{"hc status high", "  service: reviews\n  healthCheck: {http: {path: /, expectedStatuses: [600]}}\n", "spec.healthCheck.http.expectedStatuses[0]: 600 is out of range 100..599"},
		{"hc status type", "  service: reviews\n  healthCheck: {http: {path: /, expectedStatuses: 200}}\n", "spec.healthCheck.http.expectedStatuses: must be a list"},
		{"hc grpc service", "  service: reviews\n  healthCheck: {grpc: {service: \"a b\"}}\n", `spec.healthCheck.grpc.service: "a b" must be letters`},
		{"hc tcp field", "  service: reviews\n  healthCheck: {tcp: {send: ping}}\n", "spec.healthCheck.tcp.send: unknown field (known: )"},
		{"hc unknown", "  service: reviews\n  healthCheck: {tcp: {}, noTrafficInterval: 1m}\n", "spec.healthCheck.noTrafficInterval: unknown field (known: grpc, healthyThreshold, http, interval, tcp, timeout, unhealthyThreshold)"},
		{"hc bad interval", "  service: reviews\n  healthCheck: {tcp: {}, interval: often}\n", `spec.healthCheck.interval: "often" is not a duration`},
		{"hc short interval", "  service: reviews\n  healthCheck: {tcp: {}, interval: 50ms}\n", "spec.healthCheck.interval: 50ms must be whole milliseconds, at least 100ms and at most 1h0m0s"},
		{"hc long interval", "  service: reviews\n  healthCheck: {tcp: {}, interval: 2h}\n", "spec.healthCheck.interval: 2h must be whole milliseconds"},
		{"hc zero timeout", "  service: reviews\n  healthCheck: {tcp: {}, timeout: 0s}\n", "spec.healthCheck.timeout: 0s must be whole milliseconds, at least 1ms"},
		{"hc fraction timeout", "  service: reviews\n  healthCheck: {tcp: {}, timeout: 1500us}\n", "spec.healthCheck.timeout: 1500us must be whole milliseconds"},
		{"hc timeout not less", "  service: reviews\n  healthCheck: {tcp: {}, interval: 2s, timeout: 2s}\n", "spec.healthCheck.timeout: 2s must be less than interval 2s"},
		{"hc default timeout", "  service: reviews\n  healthCheck: {tcp: {}, interval: 500ms}\n", "spec.healthCheck.timeout: the default 1s must be less than interval 500ms: set a shorter timeout"},
		{"hc unhealthy zero", "  service: reviews\n  healthCheck: {tcp: {}, unhealthyThreshold: 0}\n", "spec.healthCheck.unhealthyThreshold: 0 is out of range 1..1000"},
		{"hc healthy high", "  service: reviews\n  healthCheck: {tcp: {}, healthyThreshold: 1001}\n", "spec.healthCheck.healthyThreshold: 1001 is out of range 1..1000"},
		{"cp empty", "  service: reviews\n  connectionPool: {}\n", "spec.connectionPool: set maxRequests"},
		{"cp zero", "  service: reviews\n  connectionPool: {maxRequests: 0}\n", "spec.connectionPool.maxRequests: 0 is out of range 1..1000000"},
		{"cp high", "  service: reviews\n  connectionPool: {maxRequests: 1000001}\n", "spec.connectionPool.maxRequests: 1000001 is out of range 1..1000000"},
		{"cp unknown", "  service: reviews\n  connectionPool: {maxRequests: 1, maxConnections: 5}\n", "spec.connectionPool.maxConnections: unknown field (known: maxRequests, retryBudget)"},
		{"od 5xx zero", "  service: reviews\n  outlierDetection: {consecutive5xx: 0}\n", "spec.outlierDetection.consecutive5xx: 0 is out of range 1..1000"},
		{"od gateway high", "  service: reviews\n  outlierDetection: {consecutiveGatewayErrors: 1001}\n", "spec.outlierDetection.consecutiveGatewayErrors: 1001 is out of range 1..1000"},
		{"od bad interval", "  service: reviews\n  outlierDetection: {interval: often}\n", `spec.outlierDetection.interval: "often" is not a duration`},
		{"od ejection negative", "  service: reviews\n  outlierDetection: {baseEjectionTime: -1s}\n", "spec.outlierDetection.baseEjectionTime: -1s must be whole milliseconds"},
		{"od ejection long", "  service: reviews\n  outlierDetection: {baseEjectionTime: 2h}\n", "at most 1h0m0s"},
		{"od percent", "  service: reviews\n  outlierDetection: {maxEjectionPercent: 101}\n", "spec.outlierDetection.maxEjectionPercent: 101 is out of range 0..100"},
		{"od unknown", "  service: reviews\n  outlierDetection: {splitExternalLocalOriginErrors: true}\n", "spec.outlierDetection.splitExternalLocalOriginErrors: unknown field"},
		{"none", "  service: reviews\n  loadBalancer: {}\n", "spec.loadBalancer: set exactly one of roundRobin, leastRequest, random, consistentHash (got 0)"},
		{"two", "  service: reviews\n  loadBalancer: {random: {}, roundRobin: {}}\n", "spec.loadBalancer: set exactly one of roundRobin, leastRequest, random, consistentHash (got 2)"},
		{"choices low", "  service: reviews\n  loadBalancer: {leastRequest: {choiceCount: 1}}\n", "spec.loadBalancer.leastRequest.choiceCount: 1 is out of range 2..10"},
		{"choices high", "  service: reviews\n  loadBalancer: {leastRequest: {choiceCount: 11}}\n", "spec.loadBalancer.leastRequest.choiceCount: 11 is out of range 2..10"},
		{"hash none", "  service: reviews\n  loadBalancer: {consistentHash: {}}\n", "spec.loadBalancer.consistentHash: set exactly one of header, cookie, sourceIP (got 0)"},
		{"hash two", "  service: reviews\n  loadBalancer: {consistentHash: {header: a, sourceIP: true}}\n", "(got 2)"},
		{"bad header", "  service: reviews\n  loadBalancer: {consistentHash: {header: \"a b\"}}\n", `spec.loadBalancer.consistentHash.header: "a b" is not a valid header name`},
		{"cookie no name", "  service: reviews\n  loadBalancer: {consistentHash: {cookie: {ttl: 1h}}}\n", "spec.loadBalancer.consistentHash.cookie.name: required"},
		{"cookie bad name", "  service: reviews\n  loadBalancer: {consistentHash: {cookie: {name: \"a;b\"}}}\n", "spec.loadBalancer.consistentHash.cookie.name: \"a;b\" is not a valid cookie name"},
		{"cookie bad ttl", "  service: reviews\n  loadBalancer: {consistentHash: {cookie: {name: s, ttl: soon}}}\n", "spec.loadBalancer.consistentHash.cookie.ttl: \"soon\" is not a duration"},
		{"cookie ttl fraction", "  service: reviews\n  loadBalancer: {consistentHash: {cookie: {name: s, ttl: 1500ms}}}\n", "spec.loadBalancer.consistentHash.cookie.ttl: 1500ms must be whole seconds"},
		{"cookie ttl negative", "  service: reviews\n  loadBalancer: {consistentHash: {cookie: {name: s, ttl: -1h}}}\n", "cookie.ttl: -1h must be whole seconds, more than 0"},
		{"ring small", "  service: reviews\n  loadBalancer: {consistentHash: {header: a, minimumRingSize: 63}}\n", "spec.loadBalancer.consistentHash.minimumRingSize: 63 is out of range 64..65536"},
		{"ring big", "  service: reviews\n  loadBalancer: {consistentHash: {header: a, minimumRingSize: 65537}}\n", "minimumRingSize: 65537 is out of range"},
		{"unknown field", "  service: reviews\n  slowStart: {}\n  loadBalancer: {random: {}}\n", "spec.slowStart: unknown field (known: connectionPool, healthCheck, loadBalancer, outlierDetection, service, version)"},
		{"unknown lb", "  service: reviews\n  loadBalancer: {maglev: {}}\n", "spec.loadBalancer.maglev: unknown field (known: consistentHash, leastRequest, random, roundRobin)"},
		{"random with field", "  service: reviews\n  loadBalancer: {random: {seed: 1}}\n", "spec.loadBalancer.random.seed: unknown field (known: )"},
		{"wrong type", "  service: reviews\n  loadBalancer: {consistentHash: {sourceIP: \"yes\"}}\n", "spec.loadBalancer.consistentHash.sourceIP: must be true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(policy(tt.spec)))
			if err == nil {
				t.Fatalf("accepted, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), `document 1 (TrafficPolicy "reviews"): `) {
				t.Fatalf("error %q does not name the document", err)
			}
		})
	}
}

func TestOutlierDetectionValues(t *testing.T) {
	rs, err := Decode([]byte(policy("  service: reviews\n  outlierDetection: {consecutive5xx: 3, baseEjectionTime: 1m}\n")))
	if err != nil {
		t.Fatal(err)
	}
	c5, cg, iv, be, mp := rs[0].(*TrafficPolicy).Spec.OutlierDetection.Values()
	if c5 != 3 || cg != DefaultConsecutiveGatewayErrors || iv != DefaultOutlierInterval || be != time.Minute || mp != DefaultMaxEjectionPercent {
		t.Fatalf("values %d %d %s %s %d", c5, cg, iv, be, mp)
	}
}

func TestHealthCheckValues(t *testing.T) {
	rs, err := Decode([]byte(policy("  service: reviews\n  healthCheck: {http: {path: /h, expectedStatuses: [204, 200, 204]}, interval: 2s, unhealthyThreshold: 5}\n")))
	if err != nil {
		t.Fatal(err)
	}
	hc := rs[0].(*TrafficPolicy).Spec.HealthCheck
	iv, to, un, he := hc.Values()
	if iv != 2*time.Second || to != DefaultHealthTimeout || un != 5 || he != DefaultHealthyThreshold {
		t.Fatalf("values %s %s %d %d", iv, to, un, he)
	}
	if got := hc.HTTP.Statuses(); !slices.Equal(got, []int{200, 204}) {
		t.Fatalf("statuses %v, want [200 204]", got)
	}
	if got := (&HTTPHealthCheck{Path: "/"}).Statuses(); got != nil {
		t.Fatalf("default statuses %v, want nil", got)
	}
}

func TestKindForTrafficPolicy(t *testing.T) {
	for _, s := range []string{"trafficpolicy", "TrafficPolicies", "tp"} {
		if k, ok := KindFor(s); !ok || k != KindTrafficPolicy {
			t.Errorf("KindFor(%q) = %q %v", s, k, ok)
		}
	}
}
