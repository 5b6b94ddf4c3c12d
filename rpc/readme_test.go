package rpc_test

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeEmbedding checks that the README's embedding section is the
// code of Example_embedding, which go test compiles and runs: the README
// cannot show code that does not build or does something else.
func TestReadmeEmbedding(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("example_embed_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Embedding the bus\n")
	if !ok {
		t.Fatal(`README.md has no "## Embedding the bus" section`)
	}
	_, block, ok := strings.Cut(section, "```go\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("README.md's embedding section has no ```go block")
	}
	_, code, ok := strings.Cut(string(example), "// README:begin\n")
	code, _, ok2 = strings.Cut(code, "// README:end")
	if !ok || !ok2 {
		t.Fatal("example_embed_test.go has no README:begin/README:end markers")
	}
	if got, want := lines(block), lines(code); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("README.md's embedding code differs from Example_embedding; copy the example's code between the markers into the README\nREADME:\n%s\nexample:\n%s",
			strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// lines returns s's lines without indentation or trailing space.
func lines(s string) []string {
	var out []string
	for l := range strings.Lines(strings.TrimSpace(s)) {
		out = append(out, strings.TrimSpace(l))
	}
	return out
}
