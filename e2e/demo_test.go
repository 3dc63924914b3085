package e2e

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The demo starts, and the curl commands it prints show the 80/20 split
// and the header rule. The printed commands are run as printed.
func TestDemoPrintsWorkingCurls(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	d := start(t, "demo", "demo", "--http-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0", "--gateway-addr", "127.0.0.1:0")
	d.waitLine(regexp.MustCompile(`Press Ctrl-C to stop everything`), 90*time.Second)
	var split, gray, query string
	for _, l := range strings.Split(d.output(), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "for i in $(seq 100)"):
			split = l
		case strings.HasPrefix(l, "curl") && strings.Contains(l, "'gray: 1'") && strings.Contains(l, "x-trellis-version"):
			gray = l
		case strings.HasPrefix(l, "curl") && strings.Contains(l, "debug=true"):
			query = l
		}
	}
	if split == "" || gray == "" || query == "" {
		t.Fatalf("demo did not print the curls:\n%s", d.output())
	}
	sh := func(cmd string) string {
		out, err := exec.Command("bash", "-c", cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		return strings.ToLower(string(out))
	}
	counts := map[string]int{}
	for _, m := range regexp.MustCompile(`(\d+) x-trellis-version: (v\d)`).FindAllStringSubmatch(sh(split), -1) {
		counts[m[2]], _ = strconv.Atoi(m[1])
	}
	// 100 requests: allow sampling noise of ±12 points.
	if counts["v1"] < 68 || counts["v1"] > 92 || counts["v2"] < 8 || counts["v2"] > 32 || counts["v3"] != 0 {
		t.Fatalf("split printed by the demo's curl: %v", counts)
	}
	if out := sh(gray); !strings.Contains(out, "x-trellis-version: v3") {
		t.Fatalf("gray curl: %q", out)
	}
	if out := sh(query); !strings.Contains(out, "x-trellis-version: v3") {
		t.Fatalf("query curl: %q", out)
	}
	d.stop()
	if !strings.Contains(d.output(), "Stopping the demo") {
		t.Fatalf("demo did not stop cleanly:\n%s", d.output())
	}
}
