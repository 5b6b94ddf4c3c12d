// Package testproc builds the project's binaries, watches the output of
// processes, makes the socketpairs that connect them and the
// pseudo-terminals they run on, for tests that run real processes. For
// tests only.
package testproc

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Socketpair returns the two ends of a connected UNIX stream socket pair,
// as an agent makes for a collector. The caller closes both.
func Socketpair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		nc, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}
	return conn(fds[0]), conn(fds[1])
}

// Build builds the package pkg (an import path) into dir and returns the
// binary's path.
func Build(t testing.TB, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Lines sends r's lines on the channel it returns, which is closed at the
// end of r (when the process closes its end of the pipe).
func Lines(r io.Reader) <-chan string {
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// ExpectLine waits up to 10 s for a line on ch containing want, and
// returns it. what names the process in the failure message.
func ExpectLine(t testing.TB, ch <-chan string, what, want string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("%s ended before printing %q", what, want)
			}
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout:
			t.Fatalf("%s did not print %q within 10 s", what, want)
		}
	}
}

// StartBroker starts the daemoneye-broker binary bin on the socket sock
// with extra arguments, waits until it listens, and kills it at the end of
// the test.
func StartBroker(t testing.TB, bin, sock string, args ...string) *exec.Cmd {
	t.Helper()
	b := exec.Command(bin, append([]string{"--socket", sock}, args...)...)
	ExpectLine(t, Lines(Start(t, b, b.StderrPipe)), "the broker", "listening")
	return b
}

// Start opens a pipe from cmd with pipe (cmd.StdoutPipe or
// cmd.StderrPipe), starts cmd, and returns the pipe's end to read; the
// test's cleanup kills cmd and waits for it.
func Start(t testing.TB, cmd *exec.Cmd, pipe func() (io.ReadCloser, error)) io.ReadCloser {
	t.Helper()
	r, err := pipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return r
}

// CopyProgram copies the program src to dst, with permissions perm, and
// returns dst: a test runs its own copy, as an intruder's dropper would,
// so that the path tells its processes' events from every other's. It
// skips the test when src cannot be opened (no such program here) and
// fails it on any other error.
func CopyProgram(t testing.TB, src, dst string, perm os.FileMode) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Skipf("no %s: %v", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// OpenPTS opens a new pseudo-terminal and returns its slave, opened
// without becoming the caller's controlling terminal, and its number N
// (/dev/pts/N). It skips the test when the machine has no
// pseudo-terminals; the test's cleanup closes both ends.
func OpenPTS(t testing.TB) (*os.File, int) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return pts, n
}
