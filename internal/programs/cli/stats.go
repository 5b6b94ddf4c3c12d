package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/server"
	"github.com/daemoneye/daemoneye/topics"
)

// runStats asks the broker for its stats and prints them.
func runStats(ctx context.Context, g *global, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("stats", stderr, "stats [--json]: print the broker's counters, topics, subscriptions and connections")
	asJSON := fs.Bool("json", false, "print the stats as one JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: stats takes no arguments", errUsage)
	}
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	r, err := c.Request(rctx, topics.BrokerStats, nil)
	switch {
	case errors.Is(err, client.ErrNoResponders):
		return errors.New("the broker does not answer stats requests: it runs with its stats service turned off")
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return fmt.Errorf("the broker did not answer the stats request within %s: it may be overloaded, or (a broker older than this client) "+
			"its reply did not fit its payload limit; its log says which", statsTimeout)
	case err != nil:
		return err
	}
	var st server.Stats
	if err := json.Unmarshal(r.Payload, &st); err != nil {
		return fmt.Errorf("the broker's stats reply is not valid: %w", err)
	}
	if st.Error != "" {
		return fmt.Errorf("the broker could not send its stats: %s", st.Error)
	}
	if *asJSON {
		_, err := fmt.Fprintf(stdout, "%s\n", r.Payload)
		return err
	}
	return printStats(stdout, &st)
}

// statsTimeout bounds the wait for the broker's stats reply.
const statsTimeout = 5 * time.Second

func printStats(w io.Writer, st *server.Stats) error {
	b := &st.Broker
	fmt.Fprintf(w, "published %d  delivered %d  unrouted %d  dropped %d  topics evicted %d\n",
		b.Published, b.Delivered, b.Unrouted, b.Dropped.Total(), b.TopicsEvicted)
	fmt.Fprintf(w, "handshaking %d  refused at the pre-auth limit %d, at the connection limit %d  auth failures %d (throttled %d)\n",
		st.Handshaking, st.RefusedPreAuth, st.RefusedConns, st.AuthFailures, st.AuthThrottled)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "\nCONNECTION\tIDENTITY\tCLIENT\tPENDING\n")
	for _, c := range st.Connections {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", c.Session, c.Identity, c.Client, c.Pending)
	}
	omitted(tw, st.ConnectionsOmitted, "connections")
	fmt.Fprintf(tw, "\nTOPIC\tPUBLISHED\tENQUEUED\tUNROUTED\tDROPPED\n")
	for _, t := range b.Topics {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", t.Topic, t.Published, t.Enqueued, t.Unrouted, t.Dropped.Total())
	}
	omitted(tw, st.TopicsOmitted, "topics")
	fmt.Fprintf(tw, "\nSUBSCRIPTION\tPATTERN\tGROUP\tDELIVERED\tDROPPED\tQUEUED\tOVERFLOW\n")
	for _, s := range b.Subscriptions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", s.Subscriber+"/"+s.Name, s.Pattern, s.QueueGroup, s.Delivered, s.Dropped.Total(), s.QueueDepth, s.Overflow)
	}
	omitted(tw, st.SubscriptionsOmitted, "subscriptions")
	return tw.Flush()
}

// omitted notes entries the broker left out of its reply.
func omitted(w io.Writer, n int, what string) {
	if n > 0 {
		fmt.Fprintf(w, "(%d more %s not listed: the reply keeps the busiest)\n", n, what)
	}
}
