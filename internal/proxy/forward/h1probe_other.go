//go:build !unix

package forward

import "time"

// alive without a non-blocking peek: only unasked buffered bytes are seen.
// A connection the instance closed is found when the request fails, and a
// replayable request is then sent again (exchange).
func (c *h1Conn) alive(time.Duration) bool { return c.br.Buffered() == 0 }

func (c *h1Conn) probe(fd uintptr) bool { return true }
