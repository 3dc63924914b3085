package mesherr

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Every code has its row in docs/errors.md, with the status and grpc-status
// this package maps it to: the table users read is the one the proxy
// follows.
func TestEveryCodeDocumented(t *testing.T) {
	data, err := os.ReadFile("../../../docs/errors.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "| `") {
			code := strings.SplitN(line, "`", 3)[1]
			rows[code] = line
		}
	}
	for code, m := range mapping {
		row, ok := rows[string(code)]
		if !ok {
			t.Errorf("%s has no row in docs/errors.md", code)
			continue
		}
		cells := strings.Split(row, "|")
		if len(cells) < 4 || strings.TrimSpace(cells[2]) != fmt.Sprint(m.http) ||
			!strings.HasPrefix(strings.TrimSpace(cells[3]), fmt.Sprint(m.grpc)+" ") {
			t.Errorf("docs/errors.md row of %s says %q, want status %d and grpc-status %d", code, row, m.http, m.grpc)
		}
	}
}
