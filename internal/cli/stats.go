package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/daemoneye/daemoneye/internal/server"
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
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := c.Request(rctx, server.StatsTopic, nil)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := fmt.Fprintf(stdout, "%s\n", r.Payload)
		return err
	}
	var st server.Stats
	if err := json.Unmarshal(r.Payload, &st); err != nil {
		return fmt.Errorf("the broker's stats reply is not valid: %w", err)
	}
	return printStats(stdout, &st)
}

func printStats(w io.Writer, st *server.Stats) error {
	b := &st.Broker
	fmt.Fprintf(w, "published %d  delivered %d  unrouted %d  dropped %d  topics evicted %d\n",
		b.Published, b.Delivered, b.Unrouted, b.Dropped.Total(), b.TopicsEvicted)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "\nCONNECTION\tIDENTITY\tCLIENT\tPENDING\n")
	for _, c := range st.Connections {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", c.Session, c.Identity, c.Client, c.Pending)
	}
	fmt.Fprintf(tw, "\nTOPIC\tPUBLISHED\tENQUEUED\tUNROUTED\tDROPPED\n")
	for _, t := range b.Topics {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", t.Topic, t.Published, t.Enqueued, t.Unrouted, t.Dropped.Total())
	}
	fmt.Fprintf(tw, "\nSUBSCRIPTION\tPATTERN\tGROUP\tDELIVERED\tDROPPED\tQUEUED\tOVERFLOW\n")
	for _, s := range b.Subscriptions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", s.Subscriber+"/"+s.Name, s.Pattern, s.QueueGroup, s.Delivered, s.Dropped.Total(), s.QueueDepth, s.Overflow)
	}
	return tw.Flush()
}
