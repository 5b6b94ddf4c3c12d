package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// si formats a rate: 1.23 M, 456 k, 789.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2f M", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0f k", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func sizeLabel(n int) string {
	if n == 0 {
		return "-" // RPC: the envelope's own size
	}
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// cell formats one system's figure, with "*" when it needs a note.
func cell(m *Measurement, v float64, f func(float64) string) string {
	switch {
	case m.Skipped != "":
		return "skipped"
	case len(m.Trials) == 0:
		return "-"
	case m.Median.Err != "" && v == 0:
		return "error*"
	}
	s := f(v)
	if needsNote(m) {
		s += "*"
	}
	return s
}

func needsNote(m *Measurement) bool {
	t := &m.Median
	return t.Err != "" || !t.Complete || t.Dropped > 0 || t.Disconnects > 0
}

func ratio(r float64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", r)
}

func us(v float64) string { return fmt.Sprintf("%.1f", v) }

// WriteTable writes the report as two aligned tables (pub/sub, then
// request/reply) followed by notes on drops, errors and skips.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "DaemonEye vs NATS (nats-server %s, nats.go %s), %s %s/%s, %d CPUs, GOMAXPROCS=%d\n",
		r.NATSServer, r.NATSClient, r.GoVersion, r.GOOS, r.GOARCH, r.NumCPU, r.GOMAXPROCS)
	fmt.Fprintf(&b, "%d msgs per pub/sub trial, %d requests per req/reply trial, median of %d, %.1fs in all\n\n",
		r.Msgs, r.Requests, r.Count, r.Seconds)

	var ps, rr []*Result
	for i := range r.Results {
		if r.Results[i].Kind.calls() {
			rr = append(rr, &r.Results[i])
		} else {
			ps = append(ps, &r.Results[i])
		}
	}
	if len(ps) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "scenario\tsize\tDaemonEye msgs/s\tNATS msgs/s\tratio\tDaemonEye deliv/s\tNATS deliv/s\tdropped DE/NATS\t")
		for _, res := range ps {
			de, na := &res.DaemonEye, &res.NATS
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", res.Title, sizeLabel(res.Size),
				cell(de, de.Median.MsgsPerSec, si), cell(na, na.Median.MsgsPerSec, si), ratio(res.Ratio),
				cell(de, de.Median.DeliveriesPerSec, si), cell(na, na.Median.DeliveriesPerSec, si),
				fmt.Sprintf("%s/%s", drops(de), drops(na)))
		}
		tw.Flush()
		b.WriteString("\n")
	}
	if len(rr) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "scenario\tsize\tDaemonEye calls/s\tNATS calls/s\tratio\tDaemonEye p50 µs\tNATS p50 µs\tDaemonEye p99 µs\tNATS p99 µs\t")
		for _, res := range rr {
			de, na := &res.DaemonEye, &res.NATS
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", res.Title, sizeLabel(res.Size),
				cell(de, de.Median.CallsPerSec, si), cell(na, na.Median.CallsPerSec, si), ratio(res.Ratio),
				cell(de, de.Median.P50us, us), cell(na, na.Median.P50us, us),
				cell(de, de.Median.P99us, us), cell(na, na.Median.P99us, us))
		}
		tw.Flush()
		b.WriteString("\n")
	}
	b.WriteString("Transports: UNIX = DaemonEye's UNIX socket; TCP = NATS on loopback TCP; inproc = DaemonEye's in-process client (client.Connect);\n" +
		"in-process = nats.InProcessServer (net.Pipe); mTLS = TLS with verified client certificates on loopback TCP, both.\n" +
		"msgs/s = messages / (first publish .. last subscriber done); deliv/s = msgs/s × subscribers; ratio = DaemonEye / NATS.\n")
	var notes []string
	for i := range r.Results {
		res := &r.Results[i]
		for _, m := range []*Measurement{&res.DaemonEye, &res.NATS} {
			if n := note(res, m); n != "" {
				notes = append(notes, n)
			}
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range notes {
			b.WriteString("  " + n + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func drops(m *Measurement) string {
	if m.Skipped != "" || len(m.Trials) == 0 {
		return "-"
	}
	return fmt.Sprint(m.Median.Dropped)
}

func note(res *Result, m *Measurement) string {
	head := fmt.Sprintf("%s %s, %s:", res.Title, sizeLabel(res.Size), m.System)
	if m.Skipped != "" {
		return head + " " + m.Skipped
	}
	if !needsNote(m) {
		return ""
	}
	t := &m.Median
	var parts []string
	if !t.Complete {
		parts = append(parts, "incomplete (stalled or failed before every subscriber had every message; rates count what arrived)")
	}
	if t.Dropped > 0 {
		parts = append(parts, fmt.Sprintf("%d messages dropped over %d trials", t.Dropped, len(m.Trials)))
	}
	if t.Disconnects > 0 {
		parts = append(parts, fmt.Sprintf("%d connections lost (slow consumer?)", t.Disconnects))
	}
	if t.Err != "" {
		parts = append(parts, "error: "+t.Err)
	}
	return head + " " + strings.Join(parts, "; ")
}
