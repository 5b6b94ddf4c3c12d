package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runFakeBroker is a process impersonating the broker: it listens on
// path, says it is ready, takes one connection and prints how many bytes
// it received before the client hung up.
func runFakeBroker(path string) int {
	l, err := net.Listen("unix", path)
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	defer l.Close()
	os.Chmod(path, 0o666)
	fmt.Println("ready")
	c, err := l.Accept()
	if err != nil {
		fmt.Println("accept:", err)
		return 1
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, c)
	fmt.Printf("received %d bytes (%v)\n", n, err)
	return 0
}

// startFakeBroker runs this test binary as uid 65534, listening on a
// socket in a directory of its own, and returns the socket's path, and a
// function that waits for the process and returns how many bytes it
// received.
func startFakeBroker(t *testing.T) (path string, received func() int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as another user (CI runs as root)")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "daemoneye-impostor-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary's own directory is root's and closed to others.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "impostor")
	if b, err := os.ReadFile(self); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sockDir := filepath.Join(dir, "run")
	if err := os.Mkdir(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(sockDir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(sockDir, "eventbus.sock")
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), "DAEMONEYE_TEST_FAKE_BROKER="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("the impostor did not start: %q", lines.Text())
	}
	return path, func() int {
		t.Helper()
		if !lines.Scan() {
			t.Fatal("the impostor printed no count")
		}
		var n int
		if f := strings.Fields(lines.Text()); len(f) >= 2 && f[0] == "received" {
			n, _ = strconv.Atoi(f[1])
		} else {
			t.Fatalf("the impostor said %q", lines.Text())
		}
		cmd.Wait()
		return n
	}
}

// A socket served by another user is refused before the hello, which
// would carry the token.
func TestDialRefusesBrokerOfAnotherUser(t *testing.T) {
	path, received := startFakeBroker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, path, Options{Token: ciToken, NoReconnect: true})
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded")
	}
	if !errors.Is(err, ErrUntrustedBroker) || !strings.Contains(err.Error(), "uid 65534") || !strings.Contains(err.Error(), "ServerUID") {
		t.Errorf("Dial: %v; want ErrUntrustedBroker naming uid 65534 and what to do", err)
	}
	if n := received(); n != 0 {
		t.Errorf("the impostor received %d bytes, want none", n)
	}
}

// Options.ServerUID names a broker that runs as another user on purpose.
func TestDialServerUID(t *testing.T) {
	path, received := startFakeBroker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// The impostor never answers the hello: the dial times out.
	c, err := Dial(ctx, path, Options{ServerUID: 65534, DialTimeout: time.Second, NoReconnect: true})
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded against a fake broker")
	}
	if errors.Is(err, ErrUntrustedBroker) {
		t.Errorf("Dial with ServerUID 65534: %v", err)
	}
	if n := received(); n == 0 {
		t.Error("the hello was not sent to the broker named by ServerUID")
	}
}
