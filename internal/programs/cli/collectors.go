package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/daemoneye/daemoneye/collector"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

const collectorsSynopsis = `collectors list|status|restart|health|capabilities|config [flags] [ID] [JSON]

  list                      the agent's collectors: state, health, restarts
  status ID                 one of them
  restart ID                have the agent restart it
  health ID                 overall and per-component health
  capabilities ID           operations, topics, features and schema versions
  config ID                 the configuration in force and its version
  config ID JSON            change it: JSON is an object of keys to set
                            (null removes a key); --validate-only checks it,
                            --expected-version V applies it only at version V
  config --rollback ID      go back to the configuration before the last change`

// runCollectors runs the collectors subcommands.
func runCollectors(ctx context.Context, g *global, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stderr, "usage: daemoneye-cli %s\n", collectorsSynopsis)
		if len(args) == 0 {
			return fmt.Errorf("%w: name a subcommand", errUsage)
		}
		return nil
	}
	sub := args[0]
	switch sub {
	case "list", "status", "restart":
		return runAgentAdmin(ctx, g, sub, args[1:], stdout, stderr)
	}
	fs := newFlagSet("collectors "+sub, stderr, collectorsSynopsis)
	asJSON := fs.Bool("json", false, "print the response as protobuf JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the collector")
	var validateOnly, rollback *bool
	var expected *string
	maxArgs := 1
	switch sub {
	case "health", "capabilities":
	case "config":
		validateOnly = fs.Bool("validate-only", false, "check the configuration without applying it")
		rollback = fs.Bool("rollback", false, "go back to the configuration before the last change")
		expected = fs.String("expected-version", "", "apply only if this version is in force")
		maxArgs = 2
	default:
		return fmt.Errorf("%w: unknown collectors subcommand %q (list, status, restart, health, capabilities or config)", errUsage, sub)
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > maxArgs {
		return fmt.Errorf("%w: collectors %s takes a collector id%s", errUsage, sub, map[bool]string{true: " and an optional JSON object"}[maxArgs == 2])
	}
	id := fs.Arg(0)
	if err := collector.ValidateID(id); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var cfgReq *eventbusv1.ConfigUpdateRequest
	if sub == "config" {
		cfgReq = &eventbusv1.ConfigUpdateRequest{ValidateOnly: *validateOnly, Rollback: *rollback, ExpectedVersion: *expected}
		if fs.NArg() == 2 {
			cfgReq.Config = new(structpb.Struct)
			if err := protojson.Unmarshal([]byte(fs.Arg(1)), cfgReq.Config); err != nil {
				return fmt.Errorf("%w: the configuration is not a JSON object: %v", errUsage, err)
			}
		} else if !*rollback {
			cfgReq.ValidateOnly = true // show what is in force
		}
	}
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cc := collector.NewClientVia(newCollectorCaller(c))
	switch sub {
	case "health":
		r, err := cc.Health(cctx, id, &eventbusv1.HealthCheckRequest{IncludeMetrics: true})
		if err != nil {
			return callError(stdout, err)
		}
		if *asJSON {
			return printProto(stdout, r)
		}
		return printHealth(stdout, id, r)
	case "capabilities":
		r, err := cc.Capabilities(cctx, id, &eventbusv1.GetCapabilitiesRequest{IncludeVersions: true})
		if err != nil {
			return callError(stdout, err)
		}
		if *asJSON {
			return printProto(stdout, r)
		}
		return printCapabilities(stdout, id, r)
	default:
		r, err := cc.UpdateConfig(cctx, id, cfgReq)
		if err != nil {
			return callError(stdout, err)
		}
		if *asJSON {
			return printProto(stdout, r)
		}
		return printConfig(stdout, id, cfgReq, r)
	}
}

// enumName is an enum value's name without its type prefix, lower case:
// HEALTH_STATUS_HEALTHY is "healthy".
func enumName(full, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(full, prefix))
}

func printHealth(w io.Writer, id string, r *eventbusv1.HealthCheckResponse) error {
	fmt.Fprintf(w, "%s: %s, %s, up %v\n", id, enumName(r.GetStatus().String(), "HEALTH_STATUS_"),
		enumName(r.GetState().String(), "COLLECTOR_STATE_"), r.GetUptime().AsDuration().Round(time.Second))
	if len(r.GetComponents()) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "\nCOMPONENT\tSTATUS\tMESSAGE\n")
	for _, c := range r.GetComponents() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.GetName(), enumName(c.GetStatus().String(), "HEALTH_STATUS_"), c.GetMessage())
	}
	return tw.Flush()
}

func printCapabilities(w io.Writer, id string, r *eventbusv1.Capabilities) error {
	ops := make([]string, 0, len(r.GetSupportedOperations()))
	for _, op := range r.GetSupportedOperations() {
		ops = append(ops, enumName(op.String(), "RPC_OPERATION_"))
	}
	versions := make([]string, 0, len(r.GetSupportedVersions()))
	for _, v := range r.GetSupportedVersions() {
		versions = append(versions, fmt.Sprintf("%d.%d", v.GetMajor(), v.GetMinor()))
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "collector\t%s %s\n", id, r.GetSoftwareVersion())
	fmt.Fprintf(tw, "schema\t%s (speaks %s)\n", r.GetVersion().GetProtocolVersion(), strings.Join(versions, ", "))
	fmt.Fprintf(tw, "operations\t%s\n", strings.Join(ops, ", "))
	fmt.Fprintf(tw, "publishes\t%s\n", strings.Join(r.GetPublishedTopics(), ", "))
	fmt.Fprintf(tw, "subscribes\t%s\n", strings.Join(r.GetSubscribedPatterns(), ", "))
	fmt.Fprintf(tw, "features\t%s\n", strings.Join(r.GetFeatures(), ", "))
	return tw.Flush()
}

func printConfig(w io.Writer, id string, req *eventbusv1.ConfigUpdateRequest, r *eventbusv1.ConfigUpdateResult) error {
	switch {
	case req.GetValidateOnly() && req.GetConfig() == nil:
		fmt.Fprintf(w, "%s: configuration version %s\n", id, r.GetConfigVersion())
	case req.GetValidateOnly():
		fmt.Fprintf(w, "%s: valid; would change %s (version %s in force, unchanged)\n", id, orNone(r.GetChangedKeys()), r.GetConfigVersion())
	case r.GetApplied():
		fmt.Fprintf(w, "%s: applied version %s; changed %s\n", id, r.GetConfigVersion(), orNone(r.GetChangedKeys()))
	default:
		fmt.Fprintf(w, "%s: nothing changed (version %s)\n", id, r.GetConfigVersion())
	}
	if r.GetRestartRequired() {
		fmt.Fprintf(w, "some changes take effect after the collector restarts\n")
	}
	if r.GetCurrentConfig() == nil {
		return nil
	}
	return printProto(w, r.GetCurrentConfig())
}

func orNone(keys []string) string {
	if len(keys) == 0 {
		return "nothing"
	}
	return strings.Join(keys, ", ")
}
