package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/transport"
	"github.com/daemoneye/daemoneye/internal/testutil/testpki"
	"github.com/daemoneye/daemoneye/server"
)

// The global --url tls:// and --tls-* flags reach a broker over mutual TLS,
// and the broker sees the certificate's identity.
func TestTLSFlags(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "cli-test-ca")
	caFile := ca.Write(t, dir, "ca.crt")
	cert, key := ca.Client(t, "operator").Write(t, dir, "operator")
	b, err := eventbus.New(eventbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Broker: b})
	if err != nil {
		t.Fatal(err)
	}
	l, err := transport.ListenTCP("127.0.0.1:0", transport.TCPConfig{TLS: ca.ServerConfig(ca.Server(t))})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-served; b.Close() })
	url := "tls://" + l.Addr().String()

	code, out, errOut := run(t, "--url", url, "--tls-ca", caFile, "--tls-cert", cert, "--tls-key", key, "stats", "--json")
	if code != 0 {
		t.Fatalf("stats over TLS: exit %d: %s", code, errOut)
	}
	var st server.Stats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("stats --json printed %q: %v", out, err)
	}
	if len(st.Connections) != 1 || st.Connections[0].Identity != "cert:operator" {
		t.Errorf("connections %+v, want one identified as cert:operator", st.Connections)
	}
	// Without a client certificate the broker refuses, and says why.
	code, _, errOut = run(t, "--url", url, "--tls-ca", caFile, "stats")
	if code == 0 || !strings.Contains(errOut, "certificate") {
		t.Errorf("stats without a client certificate: exit %d, %q", code, errOut)
	}
}
