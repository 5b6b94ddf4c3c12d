package command

import (
	"bytes"
	"flag"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		ok       bool
		inStderr string
	}{
		{"flags", []string{"-v"}, 0, true, ""},
		{"help", []string{"-h"}, 0, false, "Usage"},
		{"bad flag", []string{"-nope"}, 2, false, "-nope"},
		{"left over", []string{"-v", "extra"}, 2, false, `prog: unexpected arguments ["extra"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			fs := flag.NewFlagSet("prog", flag.ContinueOnError)
			fs.SetOutput(&stderr)
			v := fs.Bool("v", false, "verbose")
			code, ok := ParseFlags(fs, tc.args, &stderr)
			if code != tc.code || ok != tc.ok {
				t.Errorf("ParseFlags(%q) = %d, %v; want %d, %v", tc.args, code, ok, tc.code, tc.ok)
			}
			if !strings.Contains(stderr.String(), tc.inStderr) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tc.inStderr)
			}
			if tc.ok && !*v {
				t.Error("-v was not parsed")
			}
		})
	}
}

func TestLogger(t *testing.T) {
	for _, verbose := range []bool{false, true} {
		var out bytes.Buffer
		log := Logger(&out, verbose)
		log.Debug("detail")
		log.Info("news")
		if got := strings.Contains(out.String(), "detail"); got != verbose {
			t.Errorf("verbose=%v: debug line written = %v", verbose, got)
		}
		if !strings.Contains(out.String(), "news") {
			t.Errorf("verbose=%v: info line missing from %q", verbose, out.String())
		}
	}
}
