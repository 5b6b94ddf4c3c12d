package procmond

import (
	"context"
	"log/slog"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/internal/programs/collectorcmd"
)

// connect is collectorcmd.Connect as procmond: the connection tests
// check procmond's retries and log lines through it.
func connect(ctx context.Context, addr string, opts client.Options, wait, maxWait time.Duration, log *slog.Logger) (*client.Conn, error) {
	return collectorcmd.Connect(ctx, "procmond", addr, opts, wait, maxWait, log)
}
