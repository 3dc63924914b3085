package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Pinned Go load generators (newer ones do not build here: see
// /work/shared/NOTES.md and docs/performance.md).
var goTools = []struct{ name, pkg, version string }{
	{"ghz", "github.com/bojand/ghz/cmd/ghz", "v0.121.0"},
	{"fortio", "fortio.org/fortio", "v1.68.2"},
}

// Debian packages and the command each provides.
var debTools = []struct{ cmd, pkg string }{
	{"wrk", "wrk"},
	{"h2load", "nghttp2-client"},
	{"nginx", "nginx"},
	{"haproxy", "haproxy"},
	{"taskset", "util-linux"},
}

// toolset is where every external program is.
type toolset struct {
	wrk, h2load, nginx, haproxy, ghz, fortio string
	trellis                                  string
	self                                     string // this harness's binary (the backend)
}

// lookPath also looks in the sbin directories (nginx and haproxy are
// installed there and a non-root PATH may lack them).
func lookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// ensureTools installs what is missing: Debian packages with apt-get (as
// root, or with sudo), the Go load generators with go install into
// toolsDir at their pinned versions. It then builds trellis into toolsDir.
func ensureTools(root, toolsDir string, install bool, logf func(string, ...any)) (*toolset, error) {
	var missing []string
	for _, t := range debTools {
		if lookPath(t.cmd) == "" {
			missing = append(missing, t.pkg)
		}
	}
	if len(missing) > 0 {
		if !install {
			return nil, fmt.Errorf("missing Debian packages %v (run without -no-install to install them)", missing)
		}
		logf("installing Debian packages: %s", strings.Join(missing, " "))
		sudo := []string{}
		if os.Geteuid() != 0 {
			if _, err := exec.LookPath("sudo"); err != nil {
				return nil, fmt.Errorf("missing %v and not root (no sudo): apt-get install -y %s", missing, strings.Join(missing, " "))
			}
			sudo = []string{"sudo", "-E"}
		}
		// RUNLEVEL=1 keeps the packages' init scripts from starting a
		// system nginx/haproxy: the harness runs its own.
		env := []string{"DEBIAN_FRONTEND=noninteractive", "RUNLEVEL=1"}
		if err := runLogged(env, append(sudo, "apt-get", "update", "-qq")...); err != nil {
			return nil, err
		}
		args := append(append(sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends"), missing...)
		if err := runLogged(env, args...); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(toolsDir, 0o755); err != nil {
		return nil, err
	}
	for _, t := range goTools {
		bin := filepath.Join(toolsDir, t.name)
		stamp := bin + ".version"
		if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == t.version {
			if _, err := os.Stat(bin); err == nil {
				continue
			}
		}
		if !install {
			return nil, fmt.Errorf("missing %s %s in %s (run without -no-install)", t.name, t.version, toolsDir)
		}
		logf("go install %s@%s", t.pkg, t.version)
		if err := runLogged([]string{"GOBIN=" + toolsDir, "GOFLAGS="}, "go", "install", t.pkg+"@"+t.version); err != nil {
			return nil, err
		}
		if err := os.WriteFile(stamp, []byte(t.version+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	ts := &toolset{
		wrk: lookPath("wrk"), h2load: lookPath("h2load"), nginx: lookPath("nginx"), haproxy: lookPath("haproxy"),
		ghz: filepath.Join(toolsDir, "ghz"), fortio: filepath.Join(toolsDir, "fortio"),
		trellis: filepath.Join(toolsDir, "trellis"),
	}
	logf("building trellis")
	build := exec.Command("go", "build", "-o", ts.trellis, "./cmd/trellis")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/trellis: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ts.self = self
	return ts, nil
}

func runLogged(env []string, argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v", strings.Join(argv, " "), err)
	}
	return nil
}

// versions is one line per tool, for the report.
func (ts *toolset) versions() map[string]string {
	first := func(re string, argv ...string) string {
		out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if m := regexp.MustCompile(re).FindStringSubmatch(string(out)); m != nil {
			return m[1]
		}
		return strings.TrimSpace(firstLine(string(out)))
	}
	v := map[string]string{
		"wrk":     first(`wrk (\S+)`, ts.wrk, "-v"),
		"h2load":  first(`nghttp2/(\S+)`, ts.h2load, "--version"),
		"nginx":   first(`nginx/(\S+)`, ts.nginx, "-v"),
		"haproxy": first(`HAProxy version (\S+)`, ts.haproxy, "-v"),
		"fortio":  first(`^(\S+)`, ts.fortio, "version"),
		"go":      first(`go version (go\S+)`, "go", "version"),
	}
	for _, t := range goTools {
		if t.name == "ghz" { // ghz built with go install reports "dev"
			v["ghz"] = t.version
		}
	}
	return v
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
