package sensor

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// WatchFlags say what of a watched path is reported.
type WatchFlags uint32

// The watch flags. Their values are those of the kernel maps.
const (
	// WatchWrites reports the writes (OpOpenWrite, OpCreate, OpTruncate,
	// OpUnlink, OpRename, OpChmod, OpChown, OpLink, OpSymlink) to the path,
	// or below it when it is a directory.
	WatchWrites WatchFlags = 0x1
	// WatchReads reports the read-only opens (OpRead) of the path when it
	// is a regular file, or of every regular file below it when it is a
	// directory.
	WatchReads WatchFlags = 0x2

	watchNames WatchFlags = 0x4 // kernel only: the directory has watched names
)

// String returns "writes", "reads", "writes|reads", "0" or the bits in hex.
func (f WatchFlags) String() string {
	switch f {
	case 0:
		return "0"
	case WatchWrites:
		return "writes"
	case WatchReads:
		return "reads"
	case WatchWrites | WatchReads:
		return "writes|reads"
	}
	return fmt.Sprintf("%#x", uint32(f))
}

// A Watch is one watched path set.
//
// Path is absolute and clean; any of its components may be a pattern of
// path.Match ("/home/*/.ssh", "/etc/ssh/ssh_host_*_key"). How it is
// watched depends on its last component:
//
//   - a literal name whose parent is a directory (/etc/shadow,
//     /home/*/.bashrc, /etc/cron.d when it exists as a file or does not
//     exist yet): the name in that directory is watched, in the kernel,
//     whether or not it exists, and stays watched when a rename replaces
//     the file (a new inode); it must be at most MaxNameBytes bytes;
//   - a literal name of an existing directory (/etc, /boot): the directory
//     and everything below it, by its identity (device and inode);
//   - a pattern: each file or directory it matches when Resolve runs, by
//     identity.
//
// Patterns, and parents that do not exist yet, are resolved again by each
// Resolve: a file created later that a pattern matches, or a home
// directory added later, is watched from the next Resolve on. Mount
// points below a watched directory are watched too (the kernel walk stays
// within one file system). A name directly below "/" that does not exist
// is not watched (it would make the kernel look up the top component of
// every path on the root file system).
type Watch struct {
	// Path is the path set.
	Path string
	// Flags say what is reported: WatchWrites, WatchReads or both.
	Flags WatchFlags
}

// validate checks w and returns its parent and last component.
func (w Watch) validate() (dir, last string, err error) {
	p := w.Path
	switch {
	case !path.IsAbs(p) || path.Clean(p) != p || p == "/":
		return "", "", fmt.Errorf("%w: %q is not an absolute, clean path below /", ErrWatch, p)
	case w.Flags == 0 || w.Flags&^(WatchWrites|WatchReads) != 0:
		return "", "", fmt.Errorf("%w: %q has flags %v; use WatchWrites, WatchReads or both", ErrWatch, p, w.Flags)
	}
	for _, c := range strings.Split(p[1:], "/") {
		if _, err := filepath.Match(c, ""); err != nil {
			return "", "", fmt.Errorf("%w: %q: component %q: %v", ErrWatch, p, c, err)
		}
	}
	dir, last = path.Split(p)
	dir = path.Clean(dir)
	if !hasMeta(last) && len(last) > MaxNameBytes {
		return "", "", fmt.Errorf("%w: %q: a watched name is at most %d bytes", ErrWatch, p, MaxNameBytes)
	}
	return dir, last, nil
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// DefaultWatches returns the path sets watched when Options.Watches is nil:
// the system configuration, the users' shell start-up files, histories and
// ssh directories, the binary and library directories, /boot, cron's
// spool and the systemd unit directories for writes; the password and
// sudo files, ssh private keys and cloud credential files for reads.
func DefaultWatches() []Watch {
	w := func(f WatchFlags, paths ...string) []Watch {
		out := make([]Watch, len(paths))
		for i, p := range paths {
			out[i] = Watch{Path: p, Flags: f}
		}
		return out
	}
	var ws []Watch
	// /etc holds cron.d, crontab, cron.{hourly,daily,...}, systemd,
	// ld.so.preload, sudoers and sudoers.d, passwd, shadow, group, pam.d.
	ws = append(ws, w(WatchWrites, "/etc", "/boot", "/var/spool/cron",
		"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin",
		"/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec",
		"/usr/local/lib", "/usr/local/libexec",
		"/run/systemd/system", "/run/systemd/transient", "/run/systemd/generator")...)
	ws = append(ws, w(WatchReads, "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-",
		"/etc/sudoers", "/etc/sudoers.d", "/etc/security/opasswd", "/etc/ssh/ssh_host_*_key")...)
	for _, home := range []string{"/root", "/home/*"} {
		for _, f := range []string{".ssh", ".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile",
			".zshrc", ".zshenv", ".zprofile", ".zlogin", ".zlogout", ".cshrc", ".tcshrc", ".kshrc", ".mkshrc",
			".bash_history", ".zsh_history", ".sh_history", ".history", ".python_history", ".mysql_history",
			".psql_history", ".lesshst", ".viminfo", ".config/systemd", ".config/autostart", ".config/fish/config.fish",
			".xinitrc", ".xprofile", ".xsession"} {
			ws = append(ws, Watch{Path: home + "/" + f, Flags: WatchWrites})
		}
		for _, f := range []string{".ssh/id_rsa", ".ssh/id_dsa", ".ssh/id_ecdsa", ".ssh/id_ed25519", ".ssh/id_ecdsa_sk",
			".ssh/id_ed25519_sk", ".aws/credentials", ".aws/sso/cache", ".config/gcloud", ".azure", ".kube/config",
			".docker/config.json", ".git-credentials", ".netrc", ".pgpass", ".vault-token"} {
			ws = append(ws, Watch{Path: home + "/" + f, Flags: WatchReads})
		}
	}
	return ws
}

// Resolved says what Resolve put in the kernel maps.
type Resolved struct {
	// Entries is how many files and directories are watched by identity
	// (directories with watched names included).
	Entries int
	// Names is how many names in directories are watched.
	Names int
	// Prefixes is how many path strings are watched (for the calls that
	// take an absolute path).
	Prefixes int
	// Devices is how many file systems have something watched.
	Devices int
	// Skipped is how many entries and names did not fit Options.MaxWatched.
	Skipped int
}
