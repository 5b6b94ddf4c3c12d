package bench

import (
	"crypto/tls"
	"fmt"
	"testing"

	"github.com/daemoneye/daemoneye/internal/testpki"
)

// pki holds the mutual TLS configurations both systems use: one CA, a
// server certificate for 127.0.0.1 and a client certificate, ECDSA P-256.
type pki struct {
	server *tls.Config // presents the server certificate, requires and verifies client certificates
	client *tls.Config // trusts the CA, presents the client certificate
}

// pkiFailure carries a testpki failure out of fatalTB.Fatalf.
type pkiFailure struct{ err error }

// fatalTB lets this command use testpki, whose functions take a
// testing.TB and report failure with Fatalf: it turns Fatalf into a panic
// that newPKI recovers. testpki calls nothing else but Helper.
type fatalTB struct{ testing.TB }

func (fatalTB) Helper() {}

func (fatalTB) Fatalf(format string, args ...any) {
	panic(pkiFailure{fmt.Errorf(format, args...)})
}

func (fatalTB) Fatal(args ...any) { panic(pkiFailure{fmt.Errorf("%s", fmt.Sprint(args...))}) }

func newPKI() (p *pki, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(pkiFailure)
			if !ok {
				panic(r)
			}
			p, err = nil, fmt.Errorf("bench: issue TLS certificates: %w", f.err)
		}
	}()
	var t fatalTB
	ca := testpki.NewCA(t, "daemoneye-bench CA")
	srv := ca.Server(t)
	cl := ca.Client(t, "bench-client")
	return &pki{server: ca.ServerConfig(srv), client: ca.ClientConfig(cl)}, nil
}
