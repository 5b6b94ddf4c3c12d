package sensor

// The BPF objects and their Go loaders (fs_bpfel.go, fs_bpfeb.go and their
// .o files) are generated from bpf/fs.bpf.c and committed, so that
// building and testing need no C compiler. Regenerate them with
// .ci/bpf-gen-check, which installs the pinned clang from Debian and fails
// when the committed files differ from what it generates.
//
//go:generate go tool bpf2go -cc clang-16 -strip llvm-strip-16 -no-global-types fs bpf/fs.bpf.c -- -mcpu=v3 -Wall -Werror
