package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The README's five-minute tour, run as written against a demo on free
// ports (the only edits: the gateway address and TRELLIS_SERVER).
func TestReadmeTour(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	tour := regexp.MustCompile("(?s)## A five-minute tour.*?```sh\n(.*?)```").FindSubmatch(readme)
	if tour == nil {
		t.Fatal("README has no tour code block")
	}
	d := start(t, "demo", "demo", "--http-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0", "--gateway-addr", "127.0.0.1:0")
	d.waitLine(regexp.MustCompile(`Press Ctrl-C to stop everything`), 90*time.Second)
	gw := d.waitLine(regexp.MustCompile(`gateway:\s+http://(\S+)`), time.Second)[1]
	api := d.waitLine(regexp.MustCompile(`control plane:\s+http://(\S+)`), time.Second)[1]

	dir := t.TempDir()
	if err := os.Symlink(binary, filepath.Join(dir, "trellis")); err != nil {
		t.Fatal(err)
	}
	script := strings.ReplaceAll(string(tour[1]), "127.0.0.1:8080", gw)
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TRELLIS_SERVER=http://"+api)
	outb, _ := cmd.CombinedOutput()
	out := strings.ToLower(string(outb))

	for _, want := range []string{
		"reviews      v1(1) v2(1) v3(1)", // get services
		"x-trellis-version: v3",          // the header rule
		"route/reviews updated (generation 2)",
		"error: document 1 (route \"reviews\"): spec.rules: weights of v1, v2 add up to 90, must be 100",
		"weight: 50", // get routes -o yaml shows the applied change
		"route/reviews deleted",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tour output lacks %q", want)
		}
	}
	counts := map[string]string{}
	for _, m := range regexp.MustCompile(`(\d+) x-trellis-version: (v\d)`).FindAllStringSubmatch(out, -1) {
		counts[m[2]] = m[1]
	}
	if counts["v1"] == "" || counts["v2"] == "" || counts["v3"] != "" {
		t.Errorf("tour split: %v", counts)
	}
	if t.Failed() {
		t.Logf("tour output:\n%s", outb)
	}
}
