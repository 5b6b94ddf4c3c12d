//go:build linux

package sensor

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// FuzzUnescapeMount checks mountinfo's octal unescaping against a naive
// regular-expression oracle.
func FuzzUnescapeMount(f *testing.F) {
	for _, s := range []string{`/mnt/a\040b`, `\134`, `/x\0`, `\777`, `/plain`, `\\040`} {
		f.Add(s)
	}
	re := regexp.MustCompile(`\\[0-7]{3}`)
	f.Fuzz(func(t *testing.T, s string) {
		want := re.ReplaceAllStringFunc(s, func(m string) string {
			n, err := strconv.ParseUint(m[1:], 8, 8)
			if err != nil {
				return m // above \377: kept as is
			}
			return string([]byte{byte(n)})
		})
		if got := unescapeMount(s); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", s, got, want)
		}
	})
}

// TestResolvePlan checks what the watches become: an existing directory by
// identity and prefix, a missing name in its parent, a pattern's matches,
// and a mount point below a watched directory.
func TestResolvePlan(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	must(t, err)
	must(t, os.MkdirAll(dir+"/etc/cron.d", 0o755))
	must(t, os.WriteFile(dir+"/etc/key_a", nil, 0o600))
	must(t, os.WriteFile(dir+"/etc/key_b", nil, 0o600))
	p, err := resolvePlan([]Watch{
		{Path: dir + "/etc", Flags: WatchWrites},
		{Path: dir + "/etc/shadow", Flags: WatchReads},
		{Path: dir + "/etc/key_*", Flags: WatchReads},
		{Path: dir + "/nothere/x", Flags: WatchWrites},
	}, []string{dir + "/etc/cron.d"})
	must(t, err)
	id := func(p string) ident {
		i, _, ok := statIdent(p)
		if !ok {
			t.Fatalf("stat %s", p)
		}
		return i
	}
	if p.watched[id(dir+"/etc")] != uint32(WatchWrites|watchNames) {
		t.Errorf("/etc: %#x", p.watched[id(dir+"/etc")])
	}
	if p.watched[id(dir+"/etc/key_a")] != uint32(WatchReads) || p.watched[id(dir+"/etc/key_b")] != uint32(WatchReads) {
		t.Error("the pattern's matches are not watched")
	}
	if p.watched[id(dir+"/etc/cron.d")] != uint32(WatchWrites) {
		t.Error("the mount point below /etc is not watched")
	}
	var k nameKey
	e := id(dir + "/etc")
	k.Ino, k.Dev = e.Ino, e.Dev
	copy(k.Name[:], "shadow")
	if p.names[k] != uint32(WatchReads) || len(p.names) != 1 {
		t.Errorf("names %v", p.names)
	}
	has := func(s string) bool {
		var lk lpmKey
		lk.Prefixlen = uint32(len(s)) * 8
		copy(lk.Data[:], s)
		_, ok := p.prefixes[lk]
		return ok
	}
	if !has(dir+"/etc/") || !has(dir+"/etc\x00") || !has(dir+"/etc/shadow\x00") || has(dir+"/nothere/x\x00") {
		t.Errorf("prefixes %d", len(p.prefixes))
	}
}
