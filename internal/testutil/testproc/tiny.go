package testproc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"syscall"
)

// TinyELF returns the smallest static program there is for amd64: one
// loadable segment whose three instructions call exit_group(0). The kernel
// execs it without a dynamic loader and it makes no other system call, so
// a fork, an exec and an exit are all it costs: benchmarks use it to spawn
// processes as fast as the machine can. On other architectures it returns
// nil.
func TinyELF() []byte {
	if runtime.GOARCH != "amd64" {
		return nil
	}
	const base, hdr = 0x400000, 64 + 56
	code := []byte{
		0x31, 0xff, // xor edi, edi
		0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231 (exit_group)
		0x0f, 0x05, // syscall
	}
	le := binary.LittleEndian
	b := make([]byte, hdr, hdr+len(code))
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1}) // 64-bit, little endian, version 1
	le.PutUint16(b[16:], 2)                       // ET_EXEC
	le.PutUint16(b[18:], 0x3e)                    // EM_X86_64
	le.PutUint32(b[20:], 1)                       // EV_CURRENT
	le.PutUint64(b[24:], base+hdr)                // entry
	le.PutUint64(b[32:], 64)                      // program headers' offset
	le.PutUint16(b[52:], 64)                      // ELF header size
	le.PutUint16(b[54:], 56)                      // program header size
	le.PutUint16(b[56:], 1)                       // one program header
	ph := b[64:]
	le.PutUint32(ph[0:], 1)                      // PT_LOAD
	le.PutUint32(ph[4:], 5)                      // PF_R | PF_X
	le.PutUint64(ph[16:], base)                  // vaddr
	le.PutUint64(ph[24:], base)                  // paddr
	le.PutUint64(ph[32:], uint64(hdr+len(code))) // filesz
	le.PutUint64(ph[40:], uint64(hdr+len(code))) // memsz
	le.PutUint64(ph[48:], 0x1000)                // align
	return append(b, code...)
}

// Spawn forks and execs bin with no arguments nor environment and waits
// for it: the cheapest way to run a program from Go, for benchmarks of
// exec rates. It returns an error if bin could not be run or exited with
// a status other than 0. Safe for concurrent use (Go's fork lock
// serialises the forks).
func Spawn(bin string) error {
	pid, err := syscall.ForkExec(bin, []string{bin}, &syscall.ProcAttr{})
	if err != nil {
		return err
	}
	var ws syscall.WaitStatus
	for {
		_, err = syscall.Wait4(pid, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err == nil && ws.ExitStatus() != 0 {
		err = fmt.Errorf("%s exited with %v", bin, ws)
	}
	return err
}
